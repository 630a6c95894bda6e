"""Secure comparison (mpc/comparison, protocol "compare"), against plaintext, with 1024-bit keys."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import secrets
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpc.protocols.compare as cmp  # registers "compare"
from mpc.comparison import dgk, ec
from mpc.comparison.masking import batch_invert, differences, negate_plus_one
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, KeyShare, PublicKey, combine, local_joint_keys, params_for
from mpc.elgamal.curve import CurvePrivateKey
from mpc.errors import DecryptionError, EncodingError, ParameterError, ProtocolError
from mpc.protocol import ProtocolSpec, RoleFactory, SessionContext, get_protocol, run_local
from mpc.transport import InMemoryNetwork
from mpc.v1 import common_pb2, compare_pb2

P = params_for(1024)
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_KEYS = local_joint_keys(P)
PK, SP_SHARE, PSP_SHARE = _KEYS[0], _KEYS[1][0], _KEYS[1][1]
CURVE = CurvePrivateKey.generate()


def decrypt(ct: Ciphertext) -> int:
    return combine(ct, [SP_SHARE.partial_decrypt(ct), PSP_SHARE.partial_decrypt(ct)])


def plain(xs: list[int], ys: list[int]) -> list[int]:
    return [int(x >= y) for x, y in zip(xs, ys, strict=True)]


@st.composite
def batches(
    draw: Any, bits: int, min_size: int = 1, max_size: int = 40
) -> tuple[list[int], list[int]]:
    """Pairs of l-bit values with many equal pairs and the edges 0 and 2^l - 1 on both sides."""
    top = (1 << bits) - 1
    value = st.one_of(
        st.sampled_from([0, top, 1 % (top + 1), top - 1 if top else 0]), st.integers(0, top)
    )
    pairs = draw(
        st.lists(
            st.one_of(
                st.tuples(value, value),
                value.map(lambda v: (v, v)),  # equal
            ),
            min_size=min_size,
            max_size=max_size,
        )
    )
    return [a for a, _ in pairs], [b for _, b in pairs]


def run(protocol: str, inputs: dict[str, dict[str, Any]]) -> dict[str, object]:
    return asyncio.run(run_local(protocol, inputs, timeout=60.0))


def compare_inputs(
    params: cmp.CompareParams, xs: list[int], ys: list[int], **sp: Any
) -> dict[str, dict[str, Any]]:
    return {
        "sp": {
            "pk": PK,
            "share": SP_SHARE,
            "params": params,
            "xs": [PK.encrypt(v) for v in xs],
            "ys": [PK.encrypt(v) for v in ys],
            **sp,
        },
        "psp": {"pk": PK, "share": PSP_SHARE, "params": params},
    }


# -- the DGK terms in the clear ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bits", "beta", "widths", "levels"),
    [
        (1, 1, (1,), 1),
        (1, 4, (1,), 1),
        (8, 3, (3, 3, 2), 17),
        (32, 4, (4,) * 8, 120),
        (64, 2, (2,) * 32, 96),
        (64, 8, (8,) * 8, 2040),
    ],
)
def test_digit_plans(bits: int, beta: int, widths: tuple[int, ...], levels: int) -> None:
    plan = dgk.DigitPlan.create(bits, beta)
    assert plan.widths == widths and plan.levels == levels and plan.terms == len(widths) + 1
    v = (1 << bits) - 1
    assert sum(plan.thermometer(v)) == sum((1 << w) - 1 for w in widths)
    assert sum(plan.thermometer(0)) == 0


@pytest.mark.parametrize("bad", [(0, 1), (65, 1), (8, 0), (8, 9), (True, 1), (8.0, 1)])
def test_digit_plan_refuses_bad_sizes(bad: tuple[Any, Any]) -> None:
    with pytest.raises(ParameterError):
        dgk.DigitPlan.create(*bad)


@pytest.mark.parametrize("beta", [1, 2, 3, 4])
def test_terms_exhaustively_one_zero_iff_the_relation(beta: int) -> None:
    """For all a, b < 2^l (l <= 5) and both delta: exactly one zero term iff [a < b] XOR delta."""
    for bits in range(1, 6):
        plan = dgk.DigitPlan.create(bits, beta)
        for a in range(1 << bits):
            th = plan.thermometer(a)
            for b in range(1 << bits):
                for delta in (0, 1):
                    values = [dgk.evaluate(f, th) for f in plan.forms(b, delta) if f is not None]
                    assert all(0 <= v <= plan.terms for v in values)
                    assert values.count(0) == (int(a < b) ^ delta), (bits, beta, a, b, delta)


@FAST
@given(
    bits=st.sampled_from([8, 32, 64]),
    beta=st.integers(1, 5),
    data=st.data(),
)
def test_terms_on_random_values(bits: int, beta: int, data: st.DataObject) -> None:
    plan = dgk.DigitPlan.create(bits, beta)
    a_s, b_s = data.draw(batches(bits, 5, 20))
    for a, b in zip(a_s, b_s, strict=True):
        for delta in (0, 1):
            forms = plan.forms(b, delta)
            values = [dgk.evaluate(f, plan.thermometer(a)) for f in forms if f is not None]
            assert values.count(0) == (int(a < b) ^ delta)
            if delta == 0:
                assert forms[-1] is None  # the equality term's place holds a dummy


# -- the DGK terms under encryption -----------------------------------------------------------


def test_encrypted_terms_zero_iff_relation_and_blinded() -> None:
    bits, beta = 8, 2
    plan = dgk.DigitPlan.create(bits, beta)
    a_s = [0, 255, 7, 7, 200, 13, 0, 255]
    b_s = [0, 255, 7, 8, 199, 250, 255, 0]
    count = len(a_s)
    pools = SpPools(CURVE)  # the key holder (in "compare", the SP)
    blob = dgk.encrypt_thermometers(plan, a_s, pools.bits)
    assert len(blob) == count * plan.levels * dgk.CIPHERTEXT_BYTES
    # the thermometer ciphertexts decrypt to the thermometer bits
    for k, a in enumerate(a_s):
        th = plan.thermometer(a)
        for j, bit in enumerate(th):
            o = (k * plan.levels + j) * 130
            assert CURVE.decrypt_small(dgk.as_curve_ciphertext(blob[o : o + 130]), 1) == bit
    holder_c1 = {blob[o : o + 65] for o in range(0, len(blob), 130)}
    sp = PspPools()  # the blinder
    for delta in (0, 1):
        terms = dgk.blind_terms(
            plan,
            blob,
            b_s,
            [delta] * count,
            sp.randomizers(CURVE.public_key.to_bytes()),
            sp.dummies,
        )
        assert len(terms) == count * plan.terms * 130
        zero_positions = []
        for k in range(count):
            cts = [
                dgk.as_curve_ciphertext(terms[o : o + 130])
                for o in range(k * plan.terms * 130, (k + 1) * plan.terms * 130, 130)
            ]
            zeros = [i for i, c in enumerate(cts) if CURVE.is_zero(c)]
            assert len(zeros) == int(a_s[k] < b_s[k]) ^ delta
            zero_positions.extend(zeros)
            for i, c in enumerate(cts):
                if i not in zeros:  # blinded: the plaintext is a random scalar, not a small term
                    with pytest.raises(DecryptionError):
                        CURVE.decrypt_small(c, 1000)
        # every term carries the blinder's fresh randomness: no C1 of the key holder reappears
        assert not holder_c1 & {terms[o : o + 65] for o in range(0, len(terms), 130)}
        assert dgk.zero_counts(plan, terms, count, CURVE) == [
            int(a < b) ^ delta for a, b in zip(a_s, b_s, strict=True)
        ]
    # shuffled: over a batch of comparisons that all have a zero term, it is not always in one place
    many = 40
    terms = dgk.blind_terms(
        plan,
        dgk.encrypt_thermometers(plan, [0] * many, pools.bits),
        [5] * many,
        [0] * many,
        sp.randomizers(CURVE.public_key.to_bytes()),
        sp.dummies,
    )
    places = set()
    for k in range(many):
        for i in range(plan.terms):
            o = (k * plan.terms + i) * 130
            if CURVE.is_zero(dgk.as_curve_ciphertext(terms[o : o + 130])):
                places.add(i)
    assert len(places) > 1


def test_more_than_one_zero_term_is_a_protocol_error() -> None:
    assert dgk.lambdas([0, 1, 1]) == [0, 1, 1]
    with pytest.raises(ProtocolError):
        dgk.lambdas([0, 2])


def test_blind_terms_refuses_malformed_thermometers() -> None:
    plan = dgk.DigitPlan.create(4, 2)
    pools, sp = SpPools(CURVE), PspPools()
    blob = dgk.encrypt_thermometers(plan, [3, 9], pools.bits)
    rnd, dum = sp.randomizers(CURVE.public_key.to_bytes()), sp.dummies
    with pytest.raises(EncodingError):
        dgk.blind_terms(plan, blob[:-1], [1, 2], [0, 1], rnd, dum)
    bad = bytearray(blob)
    bad[65] = 3  # a C2 prefix
    with pytest.raises(EncodingError):
        dgk.blind_terms(plan, bytes(bad), [1, 2], [0, 1], rnd, dum)
    bad = bytearray(blob)
    bad[2 * 130 + 65 + 35] ^= 1  # T_{0,3}'s C2 (used by b = 15, delta = 1): off the curve
    with pytest.raises(EncodingError):
        dgk.blind_terms(plan, bytes(bad), [15, 15], [1, 1], rnd, dum)


# -- building blocks --------------------------------------------------------------------------


def test_comb_matches_libsecp256k1() -> None:
    comb = ec.base_comb()
    for k in [1, 2, 255, 256, 2**255, ec.ORDER - 1, secrets.randbelow(ec.ORDER - 1) + 1]:
        assert ec.serialize(comb.mul(k)) == ec.serialize(ec.mul(ec.G, k))
    y = CURVE.public_key.to_bytes()
    k = secrets.randbelow(ec.ORDER - 1) + 1
    assert ec.serialize_compressed(ec.comb_for(y).mul(k)) == ec.serialize_compressed(
        ec.mul(ec.parse_compressed(y), k)
    )


def test_points_parse_strictly() -> None:
    good = ec.serialize(ec.G)
    assert ec.compressed(good) == ec.serialize_compressed(ec.G)
    for bad in [good[:-1], b"\x02" + good[1:], good[:64] + bytes([good[64] ^ 1])]:
        with pytest.raises(EncodingError):
            ec.parse(bad)
    with pytest.raises(EncodingError):
        ec.parse_compressed(b"\x05" + bytes(32))


def test_random_scalars_are_in_range_and_distinct() -> None:
    s = ec.random_scalars(500)
    assert all(1 <= v < ec.ORDER for v in s) and len(set(s)) == 500


def test_batch_invert_differences_and_negation() -> None:
    pk = PK
    vals = [3, 5, 7, 11]
    inv = batch_invert(vals, P.n2)
    assert all(v * i % P.n2 == 1 for v, i in zip(vals, inv, strict=True))
    assert batch_invert([], P.n2) == []
    xs, ys = [5, 0, 9, 2**40], [2, 7, 9, 1]
    d = differences(pk, [pk.encrypt(v) for v in xs], [pk.encrypt(v) for v in ys])
    assert [decrypt(c) - P.n * (decrypt(c) > P.n // 2) for c in d] == [3, -7, 0, 2**40 - 1]
    assert [decrypt(c) for c in negate_plus_one(pk, [pk.encrypt(0), pk.encrypt(1)])] == [1, 0]
    with pytest.raises(ParameterError):
        differences(pk, [pk.encrypt(1)], [])


def test_pools_draw_each_item_once_and_compute_shortfalls() -> None:
    pools = SpPools(CURVE)
    assert pools.key is CURVE and SpPools().key.to_bytes() != CURVE.to_bytes()
    pools.bits.fill(5)
    assert len(pools.bits) == 5
    items = pools.bits.draw(8)
    assert len(items) == 8 and len({c1 for c1, _, _ in items}) == 8
    st_ = pools.bits.stats()
    assert st_["made"] == 8 and st_["on_demand"] == 3 and st_["drawn"] == 8 and st_["stock"] == 0
    c1, c20, c21 = items[0]
    assert CURVE.decrypt_small(dgk.as_curve_ciphertext(c1 + c20), 1) == 0
    assert CURVE.decrypt_small(dgk.as_curve_ciphertext(c1 + c21), 1) == 1
    sp = PspPools()
    pool = sp.randomizers(CURVE.public_key.to_bytes())
    assert sp.randomizers(CURVE.public_key.to_bytes()) is pool
    pool.target = 4
    pool.start()
    try:
        for _ in range(200):
            if len(pool) >= 4:
                break
            asyncio.run(asyncio.sleep(0.01))
        assert len(pool) >= 4
    finally:
        pool.stop()
    ((sg, sy),) = pool.draw(1)
    # (sG, sY) is an encryption of zero
    assert CURVE.is_zero(dgk.as_curve_ciphertext(ec.serialize(sg) + ec.serialize(sy)))
    dummy = sp.dummies.draw(1)[0]
    assert not CURVE.is_zero(dgk.as_curve_ciphertext(dummy))


# -- parameters -------------------------------------------------------------------------------


def test_params_round_trip_and_validation() -> None:
    p = cmp.CompareParams(32, 10, cmp.OUTPUT_ENCRYPTED, digit_bits=3)
    assert cmp.CompareParams.from_bytes(p.to_proto().SerializeToString()) == p
    assert p.plan.widths == (3,) * 10 + (2,)
    for bad in [
        dict(bits=0),
        dict(bits=65),
        dict(count=0),
        dict(output="sp"),
        dict(kappa=0),
        dict(digit_bits=9),
        dict(count=10**9),
    ]:
        with pytest.raises(ParameterError):
            cmp.CompareParams(**{"bits": 8, "count": 3, **bad})
    with pytest.raises(EncodingError):
        cmp.CompareParams.from_bytes(
            compare_pb2.CompareParams(
                bits=8, count=1, output=0, digit_bits=1, kappa=40
            ).SerializeToString()
        )
    with pytest.raises(EncodingError):
        cmp.CompareParams.from_bytes(b"\xff\xff")
    with pytest.raises(EncodingError):
        cmp.CompareParams.from_bytes(
            compare_pb2.CompareParams(
                bits=99, count=1, output=1, digit_bits=1, kappa=40
            ).SerializeToString()
        )


# -- the whole protocol against plaintext -------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.sampled_from([1, 8, 32, 64]),
    beta=st.integers(1, 4),
    output=st.sampled_from([cmp.OUTPUT_PSP, cmp.OUTPUT_ENCRYPTED]),
    method=st.sampled_from([cmp.METHOD_GC, cmp.METHOD_DGK]),
    data=st.data(),
)
def test_compare_matches_plaintext(bits: int, beta: int, output: str, method: str, data: st.DataObject) -> None:
    xs, ys = data.draw(batches(bits, 1, 30))
    params = cmp.CompareParams(bits, len(xs), output, digit_bits=beta, method=method)
    out = run("compare", compare_inputs(params, xs, ys))
    if output == cmp.OUTPUT_PSP:
        assert out["psp"] == plain(xs, ys) and out["sp"] is None
    else:
        assert out["psp"] is None
        assert [decrypt(c) for c in out["sp"]] == plain(xs, ys)


@pytest.mark.parametrize("method", [cmp.METHOD_GC, cmp.METHOD_DGK])
@pytest.mark.parametrize("output", [cmp.OUTPUT_PSP, cmp.OUTPUT_ENCRYPTED])
def test_a_batch_over_several_ciphertexts_with_every_edge(output: str, method: str) -> None:
    bits = 32
    top = (1 << bits) - 1
    layout = cmp.CompareParams(bits, 1).layout(PK)
    edges = [(0, 0), (top, top), (0, top), (top, 0), (1, 0), (0, 1), (top - 1, top), (top, top - 1)]
    rnd = [(secrets.randbits(bits), secrets.randbits(bits)) for _ in range(10)]
    equal = [(v, v) for v in (secrets.randbits(bits) for _ in range(12))]
    pairs = edges + rnd + equal
    assert len(pairs) > 2 * layout.capacity  # three packed ciphertexts
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    params = cmp.CompareParams(bits, len(pairs), output, method=method)
    out = run("compare", compare_inputs(params, xs, ys))
    got = out["psp"] if output == cmp.OUTPUT_PSP else [decrypt(c) for c in out["sp"]]
    assert got == plain(xs, ys)


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 5000), chunks=st.integers(1, cmp.MAX_CHUNKS), minimum=st.integers(1, 300))
def test_chunk_sizes_cover_the_batch(count: int, chunks: int, minimum: int) -> None:
    sizes = cmp.chunk_sizes(count, chunks, minimum)
    assert sum(sizes) == count and 1 <= len(sizes) <= chunks
    assert max(sizes) - min(sizes) <= 1
    if len(sizes) > 1:
        assert min(sizes) >= minimum
    assert len(sizes) == max(1, min(chunks, count // minimum))


@pytest.mark.parametrize("output", [cmp.OUTPUT_PSP, cmp.OUTPUT_ENCRYPTED])
def test_a_pipelined_batch_equals_plaintext_in_order(output: str) -> None:
    """Parts run concurrently (steps "0.masked", "1.masked", ...); results stay in input order."""
    bits = 16
    top = (1 << bits) - 1
    rng = random.Random(5)
    pairs = [(0, 0), (top, top), (0, top), (top, 0)] + [
        (rng.randrange(top + 1), rng.randrange(top + 1)) for _ in range(3 * cmp.MIN_CHUNK)
    ]
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    params = cmp.CompareParams(bits, len(pairs), output, chunks=4)
    assert len(cmp.chunk_sizes(params.count, params.chunks)) == 3
    net = InMemoryNetwork()
    out = asyncio.run(run_local("compare", compare_inputs(params, xs, ys), net, timeout=60.0))
    got = out["psp"] if output == cmp.OUTPUT_PSP else [decrypt(c) for c in out["sp"]]
    assert got == plain(xs, ys)
    assert params.to_proto().chunks == 4
    assert cmp.CompareParams.from_proto(params.to_proto()) == params


def test_chunks_are_checked() -> None:
    for bad in (0, cmp.MAX_CHUNKS + 1, -1):
        with pytest.raises(ParameterError):
            cmp.CompareParams(16, 10, chunks=bad)
    with pytest.raises(ParameterError):
        cmp.chunk_sizes(10, 0)
    assert cmp.CompareParams.from_proto(cmp.CompareParams(16, 10).to_proto()).chunks == 1


def test_differences_as_input_and_output_rerandomised() -> None:
    ds = [0, 5, -5, (1 << 16) - 1, -((1 << 16) - 1), -1]
    params = cmp.CompareParams(16, len(ds), cmp.OUTPUT_ENCRYPTED, digit_bits=3, method=cmp.METHOD_DGK)
    state, masked = cmp.sp_masked(PK, params, diffs=[PK.encrypt(d) for d in ds])
    ps = cmp.psp_masked(PK, PSP_SHARE, masked, params)
    terms = cmp.psp_terms(ps, cmp.sp_partials(state, SP_SHARE), PspPools())
    hints, plain_u = cmp.sp_result(state, terms)
    assert hints is None and plain_u is not None  # output "encrypted": three messages, no hints
    _, fresh = cmp.sp_result(state, terms, rerandomize=True)
    assert fresh is not None
    assert [decrypt(c) for c in fresh] == [decrypt(c) for c in plain_u] == [int(d >= 0) for d in ds]
    assert all(a.c1 != b.c1 for a, b in zip(plain_u, fresh, strict=True))


# -- the steps one by one, and what each party sees --------------------------------------------


def test_steps_one_by_one_and_each_view() -> None:
    bits, count = 32, 30
    xs = [secrets.randbits(bits) for _ in range(count)]
    ys = [x if k % 2 else secrets.randbits(bits) for k, x in enumerate(xs)]
    params = cmp.CompareParams(bits, count, cmp.OUTPUT_PSP, digit_bits=2, method=cmp.METHOD_DGK)
    inputs = ([PK.encrypt(v) for v in xs], [PK.encrypt(v) for v in ys])
    state, masked = cmp.sp_masked(PK, params, xs=inputs[0], ys=inputs[1], pools=SpPools(CURVE))
    msg = compare_pb2.CompareMasked.FromString(masked)
    assert msg.ciphertexts.count == params.layout(PK).count_plaintexts(count) == 3
    # re-randomised: no packed ciphertext shares c1 with an input
    packed = PK.ciphertexts_from_bytes(msg.ciphertexts.blob)
    assert not {c.c1 for c in packed} & {c.c1 for c in inputs[0] + inputs[1]}
    # the SP's thermometers: of 2^l - 1 - (r mod 2^l), under its own key, sent with its key
    low = (1 << bits) - 1
    assert bytes(msg.curve_key) == CURVE.public_key.to_bytes()
    assert msg.thermometers.count == count * params.plan.levels
    for k in (0, count - 1):
        want = params.plan.thermometer(low - (state.masks[k] & low))
        o = k * params.plan.levels * 130
        got = [
            CURVE.decrypt_small(dgk.as_curve_ciphertext(msg.thermometers.blob[o + j * 130 : o + j * 130 + 130]), 1)
            for j in range(params.plan.levels)
        ]
        assert got == want

    ps = cmp.psp_masked(PK, PSP_SHARE, masked)  # parameters taken from the SP's message
    terms = cmp.psp_terms(ps, cmp.sp_partials(state, SP_SHARE), PspPools())
    z = [(1 << bits) + x - y for x, y in zip(xs, ys, strict=True)]
    # the PSP sees c = z + r: different from z in every slot, and z is recovered only with r
    assert all(c != zk for c, zk in zip(ps.values, z, strict=True))
    assert [c - r for c, r in zip(ps.values, state.masks, strict=True)] == z
    assert all(c >= (1 << (bits + 1)) for c in ps.values)  # the masks' kappa bits are there

    tmsg = compare_pb2.CompareTerms.FromString(terms)
    assert tmsg.terms.count == count * params.plan.terms and tmsg.ciphertexts.count == 0
    # what the SP zero-tests out: lambda = [c^ < r^] XOR delta, delta the PSP's
    lam = dgk.lambdas(dgk.zero_counts(params.plan, tmsg.terms.blob, count, CURVE))
    assert lam == [int((c & low) < (state.masks[k] & low)) ^ ps.deltas[k] for k, c in enumerate(ps.values)]
    hints, none = cmp.sp_result(state, terms)
    assert none is None and hints is not None
    # the PSP gets r_l XOR lambda, never r_l or lambda apart
    got_hints = cmp._unpack_bits(compare_pb2.CompareHints.FromString(hints).hints, count, "hints")
    assert got_hints == [state.top(k) ^ lam[k] for k in range(count)]
    assert cmp.psp_finish(ps, hints) == plain(xs, ys)


def test_lambda_alone_is_masked_by_delta() -> None:
    """Equal inputs every time: what the SP zero-tests out is lambda = t XOR delta, a coin flip."""
    count = 64
    params = cmp.CompareParams(8, count, cmp.OUTPUT_ENCRYPTED, digit_bits=4, method=cmp.METHOD_DGK)
    state, masked = cmp.sp_masked(PK, params, diffs=[PK.encrypt(0)] * count, pools=SpPools(CURVE))
    ps = cmp.psp_masked(PK, PSP_SHARE, masked, params)
    terms = compare_pb2.CompareTerms.FromString(
        cmp.psp_terms(ps, cmp.sp_partials(state, SP_SHARE), PspPools())
    )
    assert terms.ciphertexts.count == count  # E(u) for output "encrypted", nothing in the clear
    lam = dgk.zero_counts(params.plan, terms.terms.blob, count, CURVE)
    assert 8 < sum(lam) < count - 8  # P(fail) < 2^-20


# -- malformed messages -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def session() -> dict[str, Any]:
    params = cmp.CompareParams(8, 5, cmp.OUTPUT_PSP, digit_bits=2, method=cmp.METHOD_DGK)
    state, masked = cmp.sp_masked(
        PK, params, diffs=[PK.encrypt(v) for v in [0, 1, -1, 100, -100]], pools=SpPools(CURVE)
    )
    partials = cmp.sp_partials(state, SP_SHARE)
    ps = cmp.psp_masked(PK, PSP_SHARE, masked, params)
    pools = PspPools()
    terms = cmp.psp_terms(ps, partials, pools)
    hints, _ = cmp.sp_result(state, terms)
    return {
        "params": params,
        "state": state,
        "masked": masked,
        "partials": partials,
        "ps": ps,
        "pools": pools,
        "terms": terms,
        "hints": hints,
    }


def _mutate(raw: bytes, cls: Any, **change: Any) -> bytes:
    msg = cls.FromString(raw)
    for path, value in change.items():
        obj = msg
        *parents, last = path.split("__")
        for p in parents:
            obj = getattr(obj, p)
        setattr(obj, last, value)
    return msg.SerializeToString()


def test_malformed_masked_is_refused(session: dict[str, Any]) -> None:
    masked = session["masked"]
    blob = compare_pb2.CompareMasked.FromString(masked).thermometers.blob
    for bad in [
        b"\x0a\xff",
        _mutate(masked, compare_pb2.CompareMasked, ciphertexts__count=2),
        _mutate(masked, compare_pb2.CompareMasked, ciphertexts__width=10),
        _mutate(masked, compare_pb2.CompareMasked, ciphertexts__blob=b"\x00" * 256),
        compare_pb2.CompareMasked(
            ciphertexts=compare_pb2.CompareMasked.FromString(masked).ciphertexts
        ).SerializeToString(),
        _mutate(masked, compare_pb2.CompareMasked, params__digit_bits=0),
        _mutate(masked, compare_pb2.CompareMasked, curve_key=b"\x02" + bytes(32)),
        _mutate(masked, compare_pb2.CompareMasked, curve_key=b""),
        _mutate(masked, compare_pb2.CompareMasked, thermometers__count=3),
        _mutate(masked, compare_pb2.CompareMasked, thermometers__width=66),
        _mutate(masked, compare_pb2.CompareMasked, thermometers__blob=blob[:-130]),
    ]:
        with pytest.raises(EncodingError):
            cmp.psp_masked(PK, PSP_SHARE, bad, session["params"])
    with pytest.raises(EncodingError):
        cmp.psp_masked(PK, PSP_SHARE, "not bytes", session["params"])  # type: ignore[arg-type]
    other = dataclasses.replace(session["params"], output=cmp.OUTPUT_ENCRYPTED)
    with pytest.raises(ProtocolError):
        cmp.psp_masked(PK, PSP_SHARE, masked, other)
    # a thermometer point in the wrong form is refused when the PSP uses it
    bad_prefix = _mutate(masked, compare_pb2.CompareMasked, thermometers__blob=b"\x05" + blob[1:])
    ps = cmp.psp_masked(PK, PSP_SHARE, bad_prefix, session["params"])
    with pytest.raises(EncodingError):
        cmp.psp_terms(ps, session["partials"], session["pools"])


def test_malformed_partials_are_refused(session: dict[str, Any]) -> None:
    ps, pools = session["ps"], session["pools"]
    partials = session["partials"]
    for bad in [
        b"\x0a\x03abc",
        _mutate(partials, compare_pb2.ComparePartials, partials__count=2),
        _mutate(partials, compare_pb2.ComparePartials, partials__blob=b"\x00" * P.element_bytes),
    ]:
        with pytest.raises(EncodingError):
            cmp.psp_terms(ps, bad, pools)
    wrong = compare_pb2.ComparePartials(
        partials=common_pb2.Batch(
            count=1, width=P.element_bytes, blob=(5).to_bytes(P.element_bytes, "big")
        )
    ).SerializeToString()
    with pytest.raises(DecryptionError):
        cmp.psp_terms(ps, wrong, pools)


def test_malformed_terms_and_hints_are_refused(session: dict[str, Any]) -> None:
    ps, terms, state = session["ps"], session["terms"], session["state"]
    blob = compare_pb2.CompareTerms.FromString(terms).terms.blob
    broken = bytearray(blob)
    broken[130 + 40] ^= 0x55  # a coordinate of a C1: off the curve
    broken2 = bytearray(blob)
    broken2[65 + 64] ^= 1  # a C2's y: off the curve
    for bad in [
        b"\x12\x01",
        _mutate(terms, compare_pb2.CompareTerms, terms__count=1),
        _mutate(terms, compare_pb2.CompareTerms, terms__blob=blob[:-1]),
        _mutate(terms, compare_pb2.CompareTerms, terms__blob=bytes(broken)),
        _mutate(terms, compare_pb2.CompareTerms, terms__blob=bytes(broken2)),
        _mutate(terms, compare_pb2.CompareTerms, ciphertexts__count=1),  # output "psp": none
    ]:
        with pytest.raises(EncodingError):
            cmp.sp_result(state, bad)
    hints = session["hints"]
    assert len(cmp.psp_finish(ps, hints)) == 5
    for bad in [
        b"\xff",
        compare_pb2.CompareHints(hints=b"").SerializeToString(),
        compare_pb2.CompareHints(hints=b"\xff").SerializeToString(),  # padding bits (5 comparisons)
        compare_pb2.CompareHints(hints=b"\x00\x00").SerializeToString(),
    ]:
        with pytest.raises(EncodingError):
            cmp.psp_finish(ps, bad)
    early = dataclasses.replace(ps, deltas=[])
    with pytest.raises(ProtocolError):
        cmp.psp_finish(early, hints)
    # output "encrypted": the E(u) batch must have one ciphertext per comparison
    params = dataclasses.replace(session["params"], output=cmp.OUTPUT_ENCRYPTED)
    st, masked = cmp.sp_masked(PK, params, diffs=[PK.encrypt(v) for v in [0, 1, -1, 2, -2]])
    p2 = cmp.psp_masked(PK, PSP_SHARE, masked, params)
    good = cmp.psp_terms(p2, cmp.sp_partials(st, SP_SHARE), PspPools())
    for bad in [
        _mutate(good, compare_pb2.CompareTerms, ciphertexts__count=4),
        _mutate(good, compare_pb2.CompareTerms, ciphertexts__blob=b"\x00" * 7),
    ]:
        with pytest.raises(EncodingError):
            cmp.sp_result(st, bad)
    _, out = cmp.sp_result(st, good)
    assert out is not None and [decrypt(c) for c in out] == [1, 1, 0, 1, 0]


def test_sp_inputs_are_checked() -> None:
    params = cmp.CompareParams(8, 2)
    cts = [PK.encrypt(1), PK.encrypt(2)]
    with pytest.raises(ParameterError):
        cmp.sp_masked(PK, params)
    with pytest.raises(ParameterError):
        cmp.sp_masked(PK, params, diffs=cts, xs=cts, ys=cts)
    with pytest.raises(ParameterError):
        cmp.sp_masked(PK, params, diffs=cts[:1])
    other, _ = local_joint_keys(P)
    with pytest.raises(ParameterError):
        cmp.sp_masked(other, params, diffs=cts)


# -- the protocol in the registry, started by a peer, reused inside another -------------------


def test_registered_and_startable_by_a_peer() -> None:
    spec = get_protocol("compare")
    assert spec.roles == ("sp", "psp")
    names = [s.name for s in spec.steps]
    assert names[:4] == ["masked", "partials", "terms", "hints"]
    assert f"{cmp.MAX_CHUNKS - 1}.hints" in names and len(names) == 7 * (cmp.MAX_CHUNKS + 1)
    assert names[4:7] == ["choices", "garbled", "result"]

    class FakeParty:
        role = "psp"  # the server a comparison's SP asks

        def require_key(self) -> tuple[PublicKey, KeyShare]:
            return PK, PSP_SHARE

        async def run_crypto(self, fn: Any, *args: Any) -> Any:
            return fn(*args)

    party = FakeParty()
    raw = cmp.CompareParams(16, 4, cmp.OUTPUT_ENCRYPTED).to_proto().SerializeToString()
    inputs = spec.responder_inputs(party, raw)
    assert inputs["params"] == cmp.CompareParams(16, 4, cmp.OUTPUT_ENCRYPTED)
    assert isinstance(inputs["pools"], PspPools) and inputs["pools"] is party.compare_pools
    assert "curve_key" not in inputs  # the PSP needs no curve key of its own to compare
    again = spec.responder_inputs(party, raw)
    assert again["pools"] is inputs["pools"]
    with pytest.raises(EncodingError):
        spec.responder_inputs(party, b"\x08\x00\x10\x00")


class _TwoBatches(ProtocolSpec):
    """A protocol that runs two comparison batches in one session, as other protocols may."""

    name = "test-two-comparisons"
    roles = ("sp", "psp")
    steps = cmp.compare_steps("first.") + cmp.compare_steps("second.")

    class Sp:
        async def run(self, ctx: SessionContext) -> object:
            a = await cmp.compare_batch(ctx, **ctx.inputs["first"], prefix="first.")
            b = await cmp.compare_batch(ctx, **ctx.inputs["second"], prefix="second.")
            return a, b

    class Psp:
        async def run(self, ctx: SessionContext) -> object:
            common = {"pk": PK, "share": PSP_SHARE, "pools": ctx.inputs["pools"]}
            a = await cmp.compare_batch(ctx, **common, prefix="first.")
            b = await cmp.compare_batch(ctx, **common, prefix="second.")
            return a, b

    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": Sp, "psp": Psp}


def test_compare_batch_inside_another_protocol() -> None:
    from mpc.protocol import register_protocol, unregister_protocol

    register_protocol(_TwoBatches)
    try:
        p1 = cmp.CompareParams(4, 3, cmp.OUTPUT_PSP, digit_bits=1)
        p2 = cmp.CompareParams(4, 2, cmp.OUTPUT_ENCRYPTED, digit_bits=3)
        sp_common = {"pk": PK, "share": SP_SHARE, "pools": SpPools(CURVE)}
        out = run(
            _TwoBatches.name,
            {
                "sp": {
                    "first": {
                        **sp_common,
                        "params": p1,
                        "diffs": [PK.encrypt(v) for v in (0, 3, -3)],
                    },
                    "second": {
                        **sp_common,
                        "params": p2,
                        "diffs": [PK.encrypt(v) for v in (-1, 15)],
                    },
                },
                "psp": {"pools": PspPools()},
            },
        )
        (sp_a, sp_b), (psp_a, psp_b) = out["sp"], out["psp"]
        assert sp_a is None and psp_a == [1, 1, 0]
        assert psp_b is None and [decrypt(c) for c in sp_b] == [0, 1]
    finally:
        unregister_protocol(_TwoBatches.name)


# -- between two party servers, over gRPC ------------------------------------------------------


async def test_compare_between_party_servers(parties: Any) -> None:
    """The SP server starts a "compare" session; the PSP server answers it by protocol name."""
    pk, sp_share = parties.sp.require_key()
    _, psp_share = parties.psp.require_key()
    xs = [0, 7, 65535, 300, 300]
    ys = [0, 9, 0, 299, 301]
    for output, method in itertools.product((cmp.OUTPUT_ENCRYPTED, cmp.OUTPUT_PSP), (cmp.METHOD_GC, cmp.METHOD_DGK)):
        params = cmp.CompareParams(16, len(xs), output, digit_bits=2, method=method)
        out = await parties.sp.start_session(
            "compare",
            params.to_proto(),
            {
                "pk": pk,
                "share": sp_share,
                "params": params,
                "xs": [pk.encrypt(v) for v in xs],
                "ys": [pk.encrypt(v) for v in ys],
                "run_crypto": parties.sp.run_crypto,
            },
        )
        if output == cmp.OUTPUT_PSP:
            assert out is None
        else:
            got = [
                combine(c, [sp_share.partial_decrypt(c), psp_share.partial_decrypt(c)]) for c in out
            ]
            assert got == plain(xs, ys)
    assert isinstance(parties.psp.compare_pools, PspPools)


@pytest.mark.slow
def test_the_two_process_benchmark_runs_and_checks_its_results() -> None:
    """bench_compare --processes at a small size: a PSP server in a child process, gRPC, mTLS."""
    from bench.compare_processes import run_processes

    outputs = [cmp.OUTPUT_PSP, cmp.OUTPUT_ENCRYPTED]
    runs = run_processes(1024, 16, 2 * cmp.MIN_CHUNK, 2, outputs, lambda _: None)
    assert [(r["method"], r["output"]) for r in runs] == [
        (m, o) for m in (cmp.METHOD_GC, cmp.METHOD_DGK) for o in outputs
    ]
    assert all(r["ms_per_comparison"] > 0 and r["chunks"] == 2 for r in runs)
    # encrypted results decrypted with both shares, equal to plaintext
    assert [r["checked"] for r in runs] == [0, 64, 0, 64]


def test_the_comparison_benchmark_measures_both_methods() -> None:
    """bench_compare in one process at a tiny size: gc once, dgk per digit width, checked."""
    from bench.compare import format_table, run_benchmark

    res = run_benchmark(1024, 8, 8, digit_bits=(2, 4), overlap=True, chunks=2, seed=1)
    keys = [(r["method"], r["digit_bits"], r["output"], r["mode"]) for r in res["runs"]]
    assert keys == [
        (m, b, o, mode)
        for m, bs in ((cmp.METHOD_GC, (None,)), (cmp.METHOD_DGK, (2, 4)))
        for b in bs
        for o in (cmp.OUTPUT_PSP, cmp.OUTPUT_ENCRYPTED)
        for mode in ("serial", "overlap")
    ]
    assert all(r["correct"] and r["comparison_ms"] > 0 for r in res["runs"])
    joint = {"sp_joint_zero_pool", "psp_joint_zero_pool"}
    for r in res["runs"]:
        if r["method"] == cmp.METHOD_GC:
            assert set(r["precomputed"]) <= joint and r["precomputed_note"]
            assert {"sp.sp_garble", "psp.psp_choices", "psp.psp_evaluate"} <= set(r["steps_ms"])
        else:
            assert "sp_bit_encryptions" in r["precomputed"] and r["precomputed_note"] is None
    assert set(res["summary"]) == {cmp.METHOD_GC, cmp.METHOD_DGK}
    assert set(res["ratio_dgk_over_gc"]) == {"serial", "overlap"}
    assert "dgk / gc" in format_table(res)
    only = run_benchmark(1024, 8, 8, methods=[cmp.METHOD_GC], outputs=[cmp.OUTPUT_PSP], seed=1)
    assert [r["method"] for r in only["runs"]] == [cmp.METHOD_GC]
    assert "ratio_dgk_over_gc" not in only and set(only["summary"]) == {cmp.METHOD_GC}
