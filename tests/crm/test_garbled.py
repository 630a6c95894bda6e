"""The garbled comparison: IKNP oblivious transfer, the garbled borrow chain, and protocol
"compare" with method "gc" step by step (mpc/comparison/ot.py, gc.py)."""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpc.protocols.compare as cmp
from mpc.comparison import gc, ot
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, combine, local_joint_keys, params_for
from mpc.errors import EncodingError, ParameterError, ProtocolError
from mpc.v1 import compare_pb2

P = params_for(1024)
_KEYS = local_joint_keys(P)
PK, SP_SHARE, PSP_SHARE = _KEYS[0], _KEYS[1][0], _KEYS[1][1]
KEY = ot.OtDeltaKey()
SEEDS = ot.OtChoiceSeeds(KEY.public())
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decrypt(ct: Ciphertext) -> int:
    return combine(ct, [SP_SHARE.partial_decrypt(ct), PSP_SHARE.partial_decrypt(ct)])


# -- oblivious transfer ------------------------------------------------------------------------


@SETTINGS
@given(st.lists(st.integers(0, 1), min_size=1, max_size=700))
def test_extension_gives_the_free_xor_correlation(choices: list[int]) -> None:
    nonce = secrets.token_bytes(ot.NONCE_BYTES)
    message, t = ot.extend_choices(SEEDS, choices, nonce)
    q = ot.extend_delta(KEY, SEEDS.point, message, len(choices), nonce)
    delta = KEY.delta_array()
    assert t.shape == q.shape == (len(choices), 16)
    for j, b in enumerate(choices):
        assert bytes(t[j]) == bytes(q[j] ^ delta) if b else bytes(t[j]) == bytes(q[j])


def test_base_ots_give_the_garbler_one_seed_of_each_pair() -> None:
    mine = KEY.seeds(SEEDS.point)
    bits = [(KEY.delta[i >> 3] >> (i & 7)) & 1 for i in range(ot.KAPPA)]
    assert bits[0] == 1  # the colour bit of Delta
    for i, (k0, k1) in enumerate(SEEDS.seeds):
        assert mine[i] == (k1 if bits[i] else k0) and k0 != k1
    # a fresh evaluator instance (a new R) gives new seeds; the garbler follows
    other = ot.OtChoiceSeeds(KEY.public())
    assert other.point != SEEDS.point and other.seeds[0] != SEEDS.seeds[0]
    assert KEY.seeds(other.point)[0] in other.seeds[0]


def test_ot_keys_are_fresh_and_deterministic() -> None:
    """Two keys share neither Delta nor published points; the same Delta and secrets publish
    the same points."""
    a, b = ot.OtDeltaKey(), ot.OtDeltaKey()
    assert a.delta != b.delta and a.public() != b.public()
    assert len(a.public()) == ot.PUBLIC_BYTES
    again = ot.OtDeltaKey(a.delta, a.secrets_)
    assert again.public() == a.public() and again.delta == a.delta


def test_extension_under_another_key_does_not_correlate() -> None:
    nonce = secrets.token_bytes(16)
    choices = [secrets.randbits(1) for _ in range(200)]
    message, t = ot.extend_choices(ot.OtChoiceSeeds(ot.OtDeltaKey().public()), choices, nonce)
    q = ot.extend_delta(KEY, SEEDS.point, message, len(choices), nonce)
    assert not any(bytes(t[j]) in (bytes(q[j]), bytes(q[j] ^ KEY.delta_array())) for j in range(200))


def test_malformed_ot_input_is_refused() -> None:
    nonce = secrets.token_bytes(16)
    message, _ = ot.extend_choices(SEEDS, [1, 0, 1], nonce)
    for bad in (
        lambda: ot.extend_delta(KEY, SEEDS.point, message[:-1], 3, nonce),
        lambda: ot.extend_delta(KEY, SEEDS.point, message, 200, nonce),
        lambda: ot.extend_delta(KEY, SEEDS.point, message, 3, nonce[:8]),
        lambda: ot.extend_delta(KEY, b"\x02" + bytes(32), message, 3, nonce),
        lambda: ot.OtChoiceSeeds(KEY.public()[:-1]),
        lambda: ot.OtChoiceSeeds(b"\x05" * ot.PUBLIC_BYTES),
    ):
        with pytest.raises(EncodingError):
            bad()
    with pytest.raises(ParameterError):
        ot.extend_choices(SEEDS, [], nonce)
    with pytest.raises(ParameterError):
        ot.extend_choices(SEEDS, [0, 2], nonce)
    with pytest.raises(ParameterError):
        ot.OtDeltaKey(delta=b"\x00" * 16)  # colour bit clear
    with pytest.raises(ParameterError):
        ot.OtDeltaKey(secrets_=(b"\x01" * 32,))  # not 128 secrets


# -- the garbled borrow chain ------------------------------------------------------------------


def _run_circuit(cs: list[int], rs: list[int], bits: int, masks: list[int]) -> np.ndarray:
    nonce = secrets.token_bytes(ot.NONCE_BYTES)
    c_bits = gc.value_bits(np.array(cs, dtype=np.uint64), bits)
    message, t = ot.extend_choices(SEEDS, c_bits.reshape(-1), nonce)
    q = ot.extend_delta(KEY, SEEDS.point, message, len(cs) * bits, nonce)
    gate_nonce = secrets.token_bytes(gc.GATE_NONCE_BYTES)
    r_bits = gc.value_bits(np.array(rs, dtype=np.uint64), bits)
    garbled = gc.garble_less_than(
        KEY.delta_array(), q.reshape(len(cs), bits, 16), r_bits, np.array(masks, np.uint8), gate_nonce
    )
    start, tables, decode = garbled.to_bytes()
    wire = gc.Garbled.from_bytes(start, tables, decode, len(cs), bits)
    return gc.evaluate_less_than(t.reshape(len(cs), bits, 16), wire, gate_nonce)


@st.composite
def pairs(draw: Any) -> tuple[int, list[int], list[int], list[int]]:
    bits = draw(st.sampled_from([1, 2, 8, 31, 32, 64]))
    top = (1 << bits) - 1
    value = st.one_of(st.sampled_from([0, top, top >> 1]), st.integers(0, top))
    ps = draw(st.lists(st.one_of(st.tuples(value, value), value.map(lambda v: (v, v))), min_size=1, max_size=50))
    masks = draw(st.lists(st.integers(0, 1), min_size=len(ps), max_size=len(ps)))
    return bits, [a for a, _ in ps], [b for _, b in ps], masks


@SETTINGS
@given(pairs())
def test_the_circuit_computes_less_than_xor_the_mask(case: tuple[int, list[int], list[int], list[int]]) -> None:
    bits, cs, rs, masks = case
    got = _run_circuit(cs, rs, bits, masks)
    assert got.tolist() == [int(c < r) ^ m for c, r, m in zip(cs, rs, masks, strict=True)]


def test_the_edges_at_64_bits() -> None:
    top = (1 << 64) - 1
    cs = [0, top, 0, top, top - 1, top, 5, 5]
    rs = [0, top, top, 0, top, top - 1, 5, 6]
    assert _run_circuit(cs, rs, 64, [0] * 8).tolist() == [int(c < r) for c, r in zip(cs, rs, strict=True)]


def test_every_table_and_decoding_bit_looks_fresh() -> None:
    """The same inputs twice: no table row repeats (fresh labels, fresh tweaks), and with
    random masks the decoding bits do not follow the result."""
    cs, rs = [7] * 64, [7] * 64
    a = _run_circuit(cs, rs, 8, [secrets.randbits(1) for _ in range(64)])
    b = _run_circuit(cs, rs, 8, [secrets.randbits(1) for _ in range(64)])
    assert 8 < int(a.sum()) < 56 and 8 < int(b.sum()) < 56  # coin flips, P(fail) < 2^-20
    g1 = gc.garble_less_than(KEY.delta_array(), np.zeros((4, 8, 16), np.uint8), np.zeros((4, 8), np.uint8),
                             np.zeros(4, np.uint8), secrets.token_bytes(12))
    g2 = gc.garble_less_than(KEY.delta_array(), np.zeros((4, 8, 16), np.uint8), np.zeros((4, 8), np.uint8),
                             np.zeros(4, np.uint8), secrets.token_bytes(12))
    rows = {bytes(r) for g in (g1, g2) for r in g.tables.reshape(-1, 16)}
    assert len(rows) == 2 * 2 * 8 * 4


def test_malformed_garbled_batches_are_refused() -> None:
    g = gc.garble_less_than(KEY.delta_array(), np.zeros((3, 4, 16), np.uint8), np.zeros((3, 4), np.uint8),
                            np.zeros(3, np.uint8), secrets.token_bytes(12))
    start, tables, decode = g.to_bytes()
    for args in (
        (start[:-1], tables, decode),
        (start, tables + b"\x00", decode),
        (start, tables, decode + b"\x00"),
        (start, tables, bytes([decode[0] | 0x80])),  # a padding bit set
    ):
        with pytest.raises(EncodingError):
            gc.Garbled.from_bytes(*args, 3, 4)
    with pytest.raises(ParameterError):
        gc.garble_less_than(KEY.delta_array(), np.zeros((3, 5, 16), np.uint8), np.zeros((3, 4), np.uint8),
                            np.zeros(3, np.uint8), secrets.token_bytes(12))
    with pytest.raises(ParameterError):
        gc.garble_less_than(KEY.delta_array(), np.zeros((3, 4, 16), np.uint8), np.zeros((3, 4), np.uint8),
                            np.zeros(3, np.uint8), b"short")


# -- protocol "compare", method "gc", step by step ---------------------------------------------


def _steps(ds: list[int], bits: int, output: str) -> dict[str, Any]:
    params = cmp.CompareParams(bits, len(ds), output)
    assert params.method == cmp.METHOD_GC  # the default
    sp_pools, psp_pools = SpPools(), PspPools()
    state, masked = cmp.sp_masked(PK, params, diffs=[PK.encrypt(d) for d in ds], pools=sp_pools)
    ps = cmp.psp_masked(PK, PSP_SHARE, masked, params)
    partials = cmp.sp_partials(state, SP_SHARE)
    choices = cmp.psp_choices(ps, partials, psp_pools)
    garbled = cmp.sp_garble(state, choices)
    bits_out, result = cmp.psp_evaluate(ps, garbled)
    return {
        "params": params, "state": state, "ps": ps, "masked": masked, "partials": partials,
        "choices": choices, "garbled": garbled, "bits": bits_out, "result": result,
        "pools": (sp_pools, psp_pools),
    }


def test_gc_steps_output_psp_and_what_each_side_sees() -> None:
    bits = 16
    top = (1 << bits) - 1
    ds = [0, 1, -1, top, -top, 5, -5, 0]
    run = _steps(ds, bits, cmp.OUTPUT_PSP)
    assert run["bits"] == [int(d >= 0) for d in ds] and run["result"] is None
    masked = compare_pb2.CompareMasked.FromString(run["masked"])
    # no curve key and no thermometers; the SP's base-OT key instead
    assert not masked.curve_key and not masked.thermometers.blob
    assert bytes(masked.ot_key) == run["pools"][0].ot.public()
    # what the PSP decrypts is masked: c = z + r, never z
    z = [(1 << bits) + d for d in ds]
    assert all(c != zk and c - r == zk for c, r, zk in zip(run["ps"].values, run["state"].masks, z, strict=True))
    # the garbled message's sizes follow from the parameters alone
    g = compare_pb2.CompareGarbled.FromString(run["garbled"])
    assert len(g.tables) == 2 * bits * len(ds) * 16 and len(g.start) == 16 * len(ds)
    c = compare_pb2.CompareChoices.FromString(run["choices"])
    assert len(c.columns) == 128 * 16 * ((len(ds) * bits + 127) // 128)


def test_gc_output_encrypted_is_masked_at_the_psp() -> None:
    """Equal inputs every time: what the PSP encrypts is z XOR mu, a coin flip; the SP's
    unmasking gives E(1) for every one."""
    count = 64
    run = _steps([0] * count, 8, cmp.OUTPUT_ENCRYPTED)
    assert run["bits"] is None
    sent = compare_pb2.CompareResult.FromString(run["result"])
    seen = [decrypt(ct) for ct in PK.ciphertexts_from_bytes(sent.ciphertexts.blob)]
    assert 8 < sum(seen) < count - 8  # P(fail) < 2^-20
    out = cmp.sp_unmask(run["state"], run["result"], rerandomize=True)
    assert [decrypt(ct) for ct in out] == [1] * count


def test_gc_malformed_and_out_of_order_messages() -> None:
    run = _steps([3, -3, 0], 8, cmp.OUTPUT_ENCRYPTED)
    params = run["params"]
    masked = compare_pb2.CompareMasked.FromString(run["masked"])
    masked.ot_key = masked.ot_key[:-1]
    with pytest.raises(EncodingError):
        cmp.psp_masked(PK, PSP_SHARE, masked.SerializeToString(), params)
    for change in ({"columns": b"\x00" * 16}, {"nonce": b"\x00"}, {"point": b"\x02" + bytes(32)}):
        bad = compare_pb2.CompareChoices.FromString(run["choices"])
        for k, v in change.items():
            setattr(bad, k, v)
        with pytest.raises(EncodingError):
            cmp.sp_garble(run["state"], bad.SerializeToString())
    for change in ({"tables": b"\x00" * 32}, {"nonce": b"\x00" * 4}, {"start": b""}, {"decode": b""}):
        bad = compare_pb2.CompareGarbled.FromString(run["garbled"])
        for k, v in change.items():
            setattr(bad, k, v)
        with pytest.raises(EncodingError):
            cmp.psp_evaluate(run["ps"], bad.SerializeToString())
    short = compare_pb2.CompareResult.FromString(run["result"])
    short.ciphertexts.count = 2
    with pytest.raises(EncodingError):
        cmp.sp_unmask(run["state"], short.SerializeToString())
    with pytest.raises(EncodingError):
        cmp.sp_garble(run["state"], b"\x0a\xff")
    # out of order: evaluate before choosing, unmask before garbling, DGK steps on a GC batch
    fresh_state, fresh_masked = cmp.sp_masked(PK, params, diffs=[PK.encrypt(1)] * 3)
    fresh_ps = cmp.psp_masked(PK, PSP_SHARE, fresh_masked, params)
    with pytest.raises(ProtocolError):
        cmp.psp_evaluate(fresh_ps, run["garbled"])
    with pytest.raises(ProtocolError):
        cmp.sp_unmask(fresh_state, run["result"])
    with pytest.raises(ProtocolError):
        cmp.psp_terms(fresh_ps, run["partials"])
    # the stored results of the good run are untouched by all of the above
    assert [decrypt(ct) for ct in cmp.sp_unmask(run["state"], run["result"])] == [1, 0, 1]


def test_method_on_the_wire() -> None:
    for method in (cmp.METHOD_GC, cmp.METHOD_DGK):
        p = cmp.CompareParams(32, 10, method=method)
        assert cmp.CompareParams.from_proto(p.to_proto()) == p
    with pytest.raises(ParameterError):
        cmp.CompareParams(32, 10, method="yao")
    raw = cmp.CompareParams(32, 10).to_proto()
    raw.method = compare_pb2.COMPARE_METHOD_UNSPECIFIED
    with pytest.raises(EncodingError):
        cmp.CompareParams.from_proto(raw)


# -- numbers the servers hold: top-N's selection on shares ---------------------------------------


@SETTINGS
@given(st.data())
def test_held_comparison_of_shares_equals_the_plaintext_order(data: st.DataObject) -> None:
    """X_j = Y_j - M_j shared as in top-N (Y at the PSP, M at the SP): the garbled comparison of
    Y_a - Y_b with M_a - M_b gives [X_a >= X_b], ties and the edges of the range included."""
    from crm.recommender.topn import held_values

    x_bits = data.draw(st.sampled_from([1, 8, 31]))
    k = x_bits + 40 + 1  # the PSP's shares: its coins, kappa bits wider than the values
    top = (1 << x_bits) - 1
    xs = data.draw(st.lists(st.one_of(st.sampled_from([0, top]), st.integers(0, top)), min_size=2, max_size=40))
    ys = [secrets.randbelow(1 << k) + 1 for _ in xs]
    ms = [y - x for x, y in zip(xs, ys, strict=True)]
    pairs = data.draw(
        st.lists(st.tuples(st.integers(0, len(xs) - 1), st.integers(0, len(xs) - 1)).filter(lambda p: p[0] != p[1]),
                 min_size=1, max_size=60)
    )
    bits = k + 3
    psp_pools, sp_pools = PspPools(), SpPools()
    labels, choices = cmp.psp_held_choices(psp_pools, sp_pools.ot.public(), held_values(ys, pairs, bits), bits)
    garbled = cmp.sp_held_garble(sp_pools.ot, held_values(ms, pairs, bits), bits, choices)
    assert cmp.psp_held_result(labels, garbled) == [int(xs[a] >= xs[b]) for a, b in pairs]


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 2100), seed=st.integers(0, 2**32))
def test_transpose_is_the_bit_matrix_transpose(rows: int, seed: int) -> None:
    """The IKNP transpose (bytes, then 8x8 bit blocks in 64-bit words) against its definition:
    row j's bit i is column i's bit j."""
    nbytes = 16 * ((rows + 127) // 128)
    columns = np.random.default_rng(seed).integers(0, 256, (ot.KAPPA, nbytes), dtype=np.uint8)
    bits = np.unpackbits(columns, axis=1, bitorder="little")[:, :rows]
    want = np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little")
    got = ot.transpose(columns, rows)
    assert got.shape == (rows, ot.LABEL_BYTES) and (got == want).all()
