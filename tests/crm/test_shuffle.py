"""Oblivious permute-and-share (mpc/comparison/shuffle.py) and its use in top-N."""

from __future__ import annotations

import random
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.recommender.topn import inverse, shuffle_order
from mpc.comparison import ot, shuffle
from mpc.errors import EncodingError, ParameterError

KEY = ot.OtDeltaKey()  # the holder's (the PSP's) Delta
SEEDS = ot.OtChoiceSeeds(KEY.public())  # the permuter's (the SP's) base OTs
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def permutations(draw: st.DrawFn, max_log: int = 8) -> list[int]:
    n = 1 << draw(st.integers(1, max_log))
    return draw(st.permutations(list(range(n))))


@SETTINGS
@given(permutations())
def test_routing_realises_any_permutation(perm: list[int]) -> None:
    bits = shuffle.route(perm)
    layers = shuffle.structure(len(perm))
    assert [len(b) for b in bits] == [len(layer) for layer in layers] == [len(perm) // 2] * len(layers)
    assert len(layers) == 2 * (len(perm).bit_length() - 1) - 1
    for layer in layers:  # each layer's switches touch every wire once
        assert sorted(w for pair in layer for w in pair) == list(range(len(perm)))
    values = [random.randrange(10**6) for _ in perm]
    assert shuffle.apply(values, bits) == [values[p] for p in perm]


def test_routing_refuses_bad_input() -> None:
    for bad in ([0, 1, 2], [0, 0, 1, 1], [], [1]):
        with pytest.raises(ParameterError):
            shuffle.route(bad)
    assert shuffle.size_for(1) == 2 and shuffle.size_for(999) == 1024 and shuffle.size_for(1024) == 1024
    with pytest.raises(ParameterError):
        shuffle.size_for(0)


def _run(perm: list[int], values: list[int], bits: int) -> tuple[list[int], list[int]]:
    swaps = shuffle.route(perm)
    nonce = secrets.token_bytes(ot.NONCE_BYTES)
    columns, labels = shuffle.permuter_choices(SEEDS, swaps, nonce)
    a, pads = shuffle.holder_pads(KEY, SEEDS.point, columns, nonce, values, bits)
    c = shuffle.permuter_finish(swaps, labels, nonce, pads)
    return a, c


@SETTINGS
@given(permutations(max_log=6), st.data())
def test_shares_add_up_to_the_permuted_values(perm: list[int], data: st.DataObject) -> None:
    bits = data.draw(st.sampled_from([2, 41, 112, 126, 127, 300]))
    top = (1 << max(1, bits - 40)) - 1
    values = data.draw(st.lists(st.integers(0, top), min_size=len(perm), max_size=len(perm)))
    a, c = _run(perm, values, bits)
    assert [x + y for x, y in zip(a, c, strict=True)] == [values[p] for p in perm]
    assert all(1 <= x <= 1 << bits for x in a)  # the holder's shares are its own coins


def test_bits_shuffled_back_leave_the_permuter_a_non_negative_mask() -> None:
    """How top-N returns the selection: b_B = z_B + c_B with z_B >= 1 at the PSP, so the
    SP's rho_B = -c_B = z_B - b_B is never negative and hides b_B (kappa = 40)."""
    perm = shuffle_order(37, 5)
    chosen = [1 if j in {0, 3, 17} else 0 for j in range(len(perm))]
    z, c = _run(inverse(perm), chosen, 41)
    b = [chosen[j] for j in inverse(perm)]
    assert [x + y for x, y in zip(z, c, strict=True)] == b
    assert all(-y >= 0 for y in c) and sum(b) == 3 and b[5] == 0


def test_fresh_shares_every_run() -> None:
    perm = list(range(16))
    random.shuffle(perm)
    values = [7] * 16
    a1, c1 = _run(perm, values, 60)
    a2, c2 = _run(perm, values, 60)
    assert not set(a1) & set(a2) and not set(c1) & set(c2)


def test_malformed_shuffle_messages_are_refused() -> None:
    perm = list(range(8))
    swaps = shuffle.route(perm)
    nonce = secrets.token_bytes(16)
    columns, labels = shuffle.permuter_choices(SEEDS, swaps, nonce)
    _, pads = shuffle.holder_pads(KEY, SEEDS.point, columns, nonce, [1] * 8, 50)
    with pytest.raises(EncodingError):
        shuffle.permuter_finish(swaps, labels, nonce, pads[:-1])
    with pytest.raises(EncodingError):
        shuffle.holder_pads(KEY, SEEDS.point, columns[:-16], nonce, [1] * 8, 50)
    with pytest.raises(ParameterError):
        shuffle.holder_pads(KEY, SEEDS.point, columns, nonce, [1] * 8, shuffle.MAX_BITS + 1)
    with pytest.raises(ParameterError):
        shuffle.holder_pads(KEY, SEEDS.point, columns, nonce, [1] * 6, 50)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 300), st.data())
def test_shuffle_order_puts_the_target_last_among_users(n_users: int, data: st.DataObject) -> None:
    target = data.draw(st.integers(0, n_users - 1))
    perm = shuffle_order(n_users, target)
    assert sorted(perm) == list(range(shuffle.size_for(n_users)))
    assert perm[n_users - 1] == target and target not in perm[: n_users - 1]
    assert perm[n_users:] == list(range(n_users, len(perm)))
    assert inverse(perm)[target] == n_users - 1
