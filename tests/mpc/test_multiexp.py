"""Tests of mpc.elgamal.multiexp: exact agreement with the naive product, counts, errors.

Small moduli and the real 1024-bit N^2 (RSA-1024 squared); every algorithm is
forced in turn as well as chosen automatically.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import gmpy2
import pytest
from gmpy2 import mpz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.elgamal import KeyShare, PublicKey, combine, local_joint_keys, params_for
from mpc.elgamal import multiexp as mx
from mpc.elgamal.multiexp import (
    OpCounter,
    choose_method,
    multiexp,
    multiexp_ciphertexts,
    multiexp_many,
)
from mpc.elgamal.scheme import Ciphertext
from mpc.errors import ParameterError

P = params_for(1024)
N2 = int(P.n2)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORCED = ("straus", "pippenger")


def naive(bases: Sequence[int], exps: Sequence[int], m: int) -> int:
    acc = 1 % m
    for b, e in zip(bases, exps, strict=True):
        acc = acc * pow(b, e, m) % m
    return acc


def random_bases(rng: random.Random, n: int, m: int = N2) -> list[mpz]:
    return [mpz(rng.randrange(1, m)) for _ in range(n)]


def count_fmod(mp: pytest.MonkeyPatch) -> list[int]:
    """Count every modular reduction the module performs (one per multiplication or squaring)."""
    calls = [0]
    real: Callable[[mpz, mpz], mpz] = gmpy2.f_mod

    def f_mod(x: mpz, m: mpz) -> mpz:
        calls[0] += 1
        return real(x, m)

    mp.setattr(mx, "f_mod", f_mod)
    return calls


@pytest.fixture
def counted_fmod(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_fmod(monkeypatch)


# -- agreement with the naive product --------------------------------------------------------

exponent = st.one_of(st.integers(0, 3), st.integers(0, 2**41 - 1), st.integers(0, 2**70 - 1))


@FAST
@given(
    m=st.integers(2, 2**64),
    pairs=st.lists(st.tuples(st.integers(-(2**80), 2**80), exponent), max_size=40),
)
def test_small_moduli_match_naive(m: int, pairs: list[tuple[int, int]]) -> None:
    bases = [b for b, _ in pairs]
    exps = [e for _, e in pairs]
    want = naive(bases, exps, m)
    for method in ("auto", *FORCED):
        got = multiexp(bases, exps, m, method=method)
        assert isinstance(got, type(mpz(0)))
        assert got == want, method


@FAST
@given(
    seed=st.integers(0, 2**32), n=st.integers(1, 40), bits=st.sampled_from([1, 2, 5, 41, 50, 70])
)
def test_real_modulus_matches_naive(seed: int, n: int, bits: int) -> None:
    rng = random.Random(seed)
    bases = random_bases(rng, n)
    exps = [rng.getrandbits(rng.randint(0, bits)) for _ in range(n)]
    want = naive(bases, exps, N2)
    for method in ("auto", *FORCED):
        assert multiexp(bases, exps, P.n2, method=method) == want, method


def test_many_bases_use_pippenger_and_match() -> None:
    rng = random.Random(7)
    bases = random_bases(rng, 400)
    exps = [rng.getrandbits(41) for _ in bases]
    counter = OpCounter()
    assert multiexp(bases, exps, P.n2, counter=counter) == naive(bases, exps, N2)
    assert counter.methods == {"pippenger": 1}
    # A powmod per base would take about 41 squarings and 8 multiplications each.
    assert counter.total < 400 * 49 / 5


@FAST
@given(seed=st.integers(0, 2**32), n=st.integers(0, 60))
def test_subset_product(seed: int, n: int) -> None:
    rng = random.Random(seed)
    bases = random_bases(rng, n)
    exps = [rng.getrandbits(1) for _ in bases]
    counter = OpCounter()
    assert multiexp(bases, exps, P.n2, counter=counter) == naive(bases, exps, N2)
    ones = sum(exps)
    assert counter.multiplications == max(ones - 1, 0)
    assert counter.squarings == 0
    if ones:
        assert counter.methods == {"product": 1}
        assert multiexp(bases, exps, P.n2, method="product") == naive(bases, exps, N2)


def test_exponent_edge_cases() -> None:
    rng = random.Random(3)
    b = random_bases(rng, 5)
    assert multiexp([], [], P.n2) == 1
    assert multiexp(b, [0] * 5, P.n2) == 1
    assert multiexp([b[0]], [1], P.n2) == b[0]
    assert multiexp([b[0]], [2**69 + 12345], P.n2) == pow(b[0], 2**69 + 12345, P.n2)
    for method in FORCED:
        assert multiexp(b, [1, 0, 1, 0, 1], P.n2, method=method) == naive(b, [1, 0, 1, 0, 1], N2)
    # bases that are not reduced, and the base 0
    assert multiexp([N2 + 5, -1, 0], [3, 3, 0], P.n2) == 125 * (N2 - 1) % N2
    assert multiexp([0, 5], [2, 1], 7) == 0
    assert multiexp([3], [5], 2) == 1


# -- operation counts ------------------------------------------------------------------------


@FAST
@given(seed=st.integers(0, 2**32), n=st.integers(1, 50), bits=st.sampled_from([1, 3, 20, 50, 70]))
def test_counts_are_exact(seed: int, n: int, bits: int) -> None:
    rng = random.Random(seed)
    bases = random_bases(rng, n, 2**61 - 1)  # any modulus: the count does not depend on it
    exps = [rng.getrandbits(bits) for _ in bases]
    for method in ("auto", *FORCED):
        with pytest.MonkeyPatch.context() as mp:
            calls = count_fmod(mp)
            counter = OpCounter()
            multiexp(bases, exps, 2**61 - 1, counter=counter, method=method)
        assert counter.total == calls[0], method


def test_counter_accumulates_and_resets(counted_fmod: list[int]) -> None:
    rng = random.Random(5)
    bases = random_bases(rng, 20)
    exps = [rng.getrandbits(50) for _ in bases]
    counter = OpCounter()
    multiexp(bases, exps, P.n2, counter=counter)
    first = counter.total
    assert counter.methods == {"straus": 1}
    # 20 powmods of 50 bits would cost about 20 * (49 + 10); sharing must beat that by far.
    assert first < 20 * 59 / 2
    multiexp(bases, exps, P.n2, counter=counter, method="pippenger")
    assert counter.calls == 2 and counter.methods == {"straus": 1, "pippenger": 1}
    assert counter.total == counted_fmod[0]
    d = counter.as_dict()
    assert d["total"] == d["multiplications"] + d["squarings"]  # type: ignore[operator]
    counter.reset()
    assert counter.as_dict() == OpCounter().as_dict()


def test_choose_method() -> None:
    rng = random.Random(11)
    assert choose_method([rng.getrandbits(50) | 2**49 for _ in range(20)]) == "straus"
    assert choose_method([rng.getrandbits(41) | 2**40 for _ in range(1000)]) == "pippenger"
    assert choose_method([1, 0] * 500) == "product"
    assert choose_method([0, 0]) == "none"
    assert choose_method([]) == "none"


# -- several products with shared exponents ---------------------------------------------------


@FAST
@given(seed=st.integers(0, 2**32), n=st.integers(0, 30), k=st.integers(1, 4))
def test_many_matches_columns(seed: int, n: int, k: int) -> None:
    rng = random.Random(seed)
    rows = [random_bases(rng, k) for _ in range(n)]
    exps = [rng.getrandbits(rng.choice([1, 41, 64])) for _ in rows]
    for method in ("auto", *FORCED):
        counter = OpCounter()
        got = multiexp_many(rows, exps, P.n2, columns=k, counter=counter, method=method)
        single = OpCounter()
        assert len(got) == k
        for j in range(k):
            col = [r[j] for r in rows]
            assert got[j] == naive(col, exps, N2)
            assert multiexp(col, exps, P.n2, counter=single, method=method) == got[j]
        assert counter.total == single.total


def test_many_shapes() -> None:
    assert multiexp_many([], [], P.n2) == []
    assert multiexp_many([], [], P.n2, columns=3) == [1, 1, 1]
    assert multiexp_many([(5, 6)], [0], P.n2) == [1, 1]
    with pytest.raises(ParameterError, match="unknown multiexp method"):
        multiexp_many([], [], P.n2, method="fast")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="row 1 has 1 bases"):
        multiexp_many([(2, 3), (4,)], [1, 1], P.n2)
    with pytest.raises(ParameterError, match="expected 3"):
        multiexp_many([(2, 3)], [1], P.n2, columns=3)
    with pytest.raises(ParameterError, match="columns"):
        multiexp_many([], [], P.n2, columns=0)


# -- ciphertexts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, list[KeyShare]]:
    pk, shares = local_joint_keys(P)
    return PublicKey(P, pk.h, precompute=False), shares


def decrypt(ct: Ciphertext, shares: list[KeyShare]) -> int:
    return combine(ct, [s.partial_decrypt(ct) for s in shares])


def test_ciphertexts_linear_combination(keys: tuple[PublicKey, list[KeyShare]]) -> None:
    pk, shares = keys
    rng = random.Random(13)
    ms = [rng.randrange(2**40) for _ in range(25)]
    cts = [pk.encrypt(v) for v in ms]
    exps = [rng.getrandbits(41) for _ in cts]
    exps[3] = 0
    exps[4] = 1
    for method in ("auto", *FORCED):
        counter = OpCounter()
        out = multiexp_ciphertexts(pk, cts, exps, counter=counter, method=method)
        assert decrypt(out, shares) == sum(e * v for e, v in zip(exps, ms, strict=True)) % int(P.n)
        assert out.c1 == multiexp([c.c1 for c in cts], exps, P.n2, method=method)
        assert out.c2 == multiexp([c.c2 for c in cts], exps, P.n2, method=method)
        one = OpCounter()
        multiexp([c.c1 for c in cts], exps, P.n2, counter=one, method=method)
        assert counter.total == 2 * one.total
    bits = [pk.encrypt(1) for _ in range(10)]
    assert decrypt(multiexp_ciphertexts(pk, bits, [1, 0] * 5), shares) == 5


def test_ciphertexts_empty_and_errors(keys: tuple[PublicKey, list[KeyShare]]) -> None:
    pk, shares = keys
    empty = multiexp_ciphertexts(pk, [], [])
    assert empty == Ciphertext(pk, mpz(1), mpz(1))
    assert decrypt(empty, shares) == 0
    ct = pk.encrypt(7)
    assert multiexp_ciphertexts(pk, [ct], [0]) == Ciphertext(pk, mpz(1), mpz(1))
    with pytest.raises(ParameterError, match="negative"):
        multiexp_ciphertexts(pk, [ct], [-1])
    with pytest.raises(ParameterError, match="not a Ciphertext"):
        multiexp_ciphertexts(pk, [ct.c1], [1])  # type: ignore[list-item]
    other = PublicKey(P, pow(P.g, 12345, P.n2), precompute=False)
    with pytest.raises(ParameterError, match="different key"):
        multiexp_ciphertexts(pk, [ct, other.encrypt(1)], [1, 1])


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bases", "exps", "modulus", "method", "match"),
    [
        ([2, 3], [1, -5], 11, "auto", "exponent 1 is negative"),
        ([2], [1.5], 11, "auto", "exponent 0 must be an integer"),
        ([2], ["3"], 11, "auto", "exponent 0 must be an integer"),
        ([2, 3], [1], 11, "auto", "2 rows of bases for 1 exponents"),
        ([2], [1], 1, "auto", "modulus must be at least 2"),
        ([2], [1], 11.0, "auto", "modulus must be an integer"),
        ([2.5], [1], 11, "auto", "bases must be integers"),
        ([2], [3], 11, "product", "0 or 1"),
        ([2], [3], 11, "bogus", "unknown multiexp method"),
    ],
)
def test_bad_input(
    bases: list[object], exps: list[object], modulus: object, method: str, match: str
) -> None:
    with pytest.raises(ParameterError, match=match):
        multiexp(bases, exps, modulus, method=method)  # type: ignore[arg-type]


def test_accepts_mpz_and_index_types() -> None:
    assert multiexp([mpz(3), True], [mpz(4), 7], mpz(1000)) == 81
