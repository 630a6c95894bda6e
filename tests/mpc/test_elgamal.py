"""Tests of mpc.elgamal: homomorphism, threshold decryption, pool, wire format, tables.

All at 1024 bits (RSA-1024) for speed; one joint key per module.
"""

from __future__ import annotations

import functools
import operator
import secrets
import time
from collections.abc import Callable

import gmpy2
import pytest
from gmpy2 import mpz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.elgamal import (
    Ciphertext,
    GroupParams,
    KeyShare,
    PublicKey,
    ZeroPool,
    combine,
    combine_many,
    custom_params,
    local_joint_keys,
    params_for,
    to_signed,
)
from mpc.elgamal.batch import BatchEncryptor, partial_decrypt_batch
from mpc.elgamal.fixedbase import FixedBaseTable
from mpc.elgamal.params import DEFAULT_SEED, derive_generator
from mpc.errors import DecryptionError, EncodingError, ParameterError

BITS = 1024
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

P = params_for(BITS)
N = int(P.n)
N2 = int(P.n2)
plaintexts = st.integers(min_value=0, max_value=N - 1)
edge_plaintexts = st.sampled_from([0, 1, 2, N // 2, N // 2 + 1, N - 2, N - 1])
any_plaintext = plaintexts | edge_plaintexts


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, list[KeyShare]]:
    """The joint key of SP and PSP, built once for the whole module."""
    return local_joint_keys(P)


@pytest.fixture(scope="module")
def pk(keys: tuple[PublicKey, list[KeyShare]]) -> PublicKey:
    return keys[0]


@pytest.fixture(scope="module")
def shares(keys: tuple[PublicKey, list[KeyShare]]) -> list[KeyShare]:
    return keys[1]


@pytest.fixture(scope="module")
def other_keys() -> tuple[PublicKey, list[KeyShare]]:
    """A second, independent joint key (tables never built: only partials are used)."""
    return local_joint_keys(P)


def dec(ct: Ciphertext, shares: list[KeyShare]) -> int:
    """Threshold decryption with every share."""
    return combine(ct, [s.partial_decrypt(ct) for s in shares])


def reference_quotient(ct: Ciphertext, x: int) -> int:
    """c2 / c1^x mod N^2, computed directly from a secret exponent."""
    return int(gmpy2.f_mod(ct.c2 * gmpy2.invert(gmpy2.powmod(ct.c1, x, N2), N2), N2))


def reference_dec(ct: Ciphertext, x: int) -> int:
    """Plain (non-threshold) decryption with the joint secret x."""
    u = reference_quotient(ct, x)
    assert (u - 1) % N == 0, "reference decryption did not give 1 + mN"
    return (u - 1) // N


def joint_secret(shares: list[KeyShare]) -> int:
    """The exponent of the joint key: h = g^(2x) with x the sum of the shares (keys on squares)."""
    return 2 * sum(int(s.x) for s in shares)


# -- homomorphic identities ------------------------------------------------------------


@FAST
@given(a=any_plaintext, b=any_plaintext)
def test_add(pk: PublicKey, shares: list[KeyShare], a: int, b: int) -> None:
    assert dec(pk.encrypt(a) + pk.encrypt(b), shares) == (a + b) % N


@FAST
@given(a=any_plaintext, b=any_plaintext)
def test_sub(pk: PublicKey, shares: list[KeyShare], a: int, b: int) -> None:
    assert dec(pk.encrypt(a) - pk.encrypt(b), shares) == (a - b) % N


scalars = st.integers(min_value=-(2**200), max_value=2**200) | st.sampled_from(
    [0, 1, -1, 2, N - 1, N, N + 1, -N, 2**2000 + 12345, -(2**3000) - 7]
)


@FAST
@given(a=any_plaintext, k=scalars)
def test_scalar_mul(pk: PublicKey, shares: list[KeyShare], a: int, k: int) -> None:
    ct = pk.encrypt(a)
    assert dec(ct * k, shares) == (a * k) % N
    assert dec(k * ct, shares) == (a * k) % N


def test_scalar_mul_accepts_mpz_and_rejects_others(pk: PublicKey, shares: list[KeyShare]) -> None:
    ct = pk.encrypt(7)
    assert dec(ct * mpz(6), shares) == 42
    with pytest.raises(TypeError):
        ct * 1.5  # type: ignore[operator]


@FAST
@given(a=any_plaintext, m=st.integers(min_value=-(2**1100), max_value=2**1100) | edge_plaintexts)
def test_add_plain(pk: PublicKey, shares: list[KeyShare], a: int, m: int) -> None:
    ct = pk.encrypt(a)
    out = ct.add_plain(m)
    assert out.c1 == ct.c1  # adding a known value needs no new randomness
    assert dec(out, shares) == (a + m) % N


@FAST
@given(a=any_plaintext, bits=st.integers(min_value=0, max_value=2100))
def test_shift_left(pk: PublicKey, shares: list[KeyShare], a: int, bits: int) -> None:
    assert dec(pk.encrypt(a).shift_left(bits), shares) == (a << bits) % N


@FAST
@given(a=any_plaintext)
def test_negation(pk: PublicKey, shares: list[KeyShare], a: int) -> None:
    ct = pk.encrypt(a)
    assert dec(-ct, shares) == (-a) % N
    assert dec(ct + (-ct), shares) == 0


@settings(max_examples=4, deadline=None)
@given(values=st.lists(any_plaintext, min_size=1, max_size=60))
def test_sum_of_many(pk: PublicKey, shares: list[KeyShare], values: list[int]) -> None:
    total = functools.reduce(operator.add, [pk.encrypt(v) for v in values])
    assert dec(total, shares) == sum(values) % N


def test_linear_combination(pk: PublicKey, shares: list[KeyShare]) -> None:
    rng = secrets.SystemRandom()
    xs = [rng.randrange(-1000, 1000) for _ in range(20)]
    ws = [rng.randrange(-(2**64), 2**64) for _ in range(20)]
    cts = [pk.encrypt(x) for x in xs]
    acc = functools.reduce(operator.add, [c * w for c, w in zip(cts, ws, strict=True)])
    assert to_signed(dec(acc, shares), N) == sum(x * w for x, w in zip(xs, ws, strict=True))


def test_operations_across_keys_are_refused(pk: PublicKey, other_keys: tuple) -> None:
    other_pk = other_keys[0]
    a = pk.encrypt(1)
    b = Ciphertext(other_pk, a.c1, a.c2)
    with pytest.raises(ParameterError):
        a + b
    with pytest.raises(ParameterError):
        a - b
    with pytest.raises(ParameterError):
        a + 5  # type: ignore[operator]


def test_encrypt_with_given_randomness_is_deterministic(pk: PublicKey, shares: list) -> None:
    r = pk.random_exponent()
    assert pk.encrypt(99, r) == pk.encrypt(99, r)
    assert pk.encrypt(99) != pk.encrypt(99)
    assert dec(pk.encrypt(99, r), shares) == 99


def test_fixed_base_and_plain_keys_agree(pk: PublicKey, shares: list[KeyShare]) -> None:
    plain = PublicKey(P, pk.h, precompute=False)
    r = pk.random_exponent()
    assert pk.encrypt(123, r) == plain.encrypt(123, r)
    assert dec(plain.encrypt(5), shares) == 5


# -- threshold decryption ----------------------------------------------------------------


def test_joint_key_is_product_of_shares(pk: PublicKey, shares: list[KeyShare]) -> None:
    assert len(shares) == 2
    assert pk.h == gmpy2.f_mod(shares[0].h * shares[1].h, P.n2)
    assert pk.h == gmpy2.powmod(P.g, joint_secret(shares), P.n2)
    for s in shares:
        assert s.root == gmpy2.powmod(P.g, s.x, P.n2)
        assert s.h == gmpy2.powmod(P.g, 2 * s.x, P.n2)
        assert s.x.bit_length() <= P.exponent_bits


@FAST
@given(m=any_plaintext)
def test_threshold_equals_plain_decryption(pk: PublicKey, shares: list[KeyShare], m: int) -> None:
    ct = pk.encrypt(m)
    x = joint_secret(shares)
    assert reference_dec(ct, x) == m
    assert dec(ct, shares) == m
    # order of the partials does not matter
    assert combine(ct, [s.partial_decrypt(ct) for s in reversed(shares)]) == m


@settings(max_examples=8, deadline=None)
@given(m=any_plaintext)
def test_one_share_alone_does_not_decrypt(pk: PublicKey, shares: list[KeyShare], m: int) -> None:
    ct = pk.encrypt(m)
    for s in shares:
        # the reference: c2 / c1^(x_i) is not 1 + mN
        assert reference_quotient(ct, 2 * int(s.x)) != (1 + m * N) % N2
        try:
            got = combine(ct, [s.partial_decrypt(ct)])
        except DecryptionError:
            continue
        assert got != m


def test_same_share_twice_does_not_decrypt(pk: PublicKey, shares: list[KeyShare]) -> None:
    ct = pk.encrypt(31337)
    d = shares[0].partial_decrypt(ct)
    with pytest.raises(DecryptionError):
        combine(ct, [d, d])


def test_partials_from_another_key_are_rejected(
    pk: PublicKey, shares: list[KeyShare], other_keys: tuple
) -> None:
    ct = pk.encrypt(424242)
    others = other_keys[1]
    with pytest.raises(DecryptionError):
        combine(ct, [s.partial_decrypt(ct) for s in others])
    # one right partial and one from the other key
    with pytest.raises(DecryptionError):
        combine(ct, [shares[0].partial_decrypt(ct), others[1].partial_decrypt(ct)])


def test_partials_for_another_ciphertext_are_rejected(
    pk: PublicKey, shares: list[KeyShare]
) -> None:
    ct = pk.encrypt(77)
    other = pk.encrypt(77)  # same plaintext, other randomness
    with pytest.raises(DecryptionError):
        combine(ct, [s.partial_decrypt(other) for s in shares])
    with pytest.raises(DecryptionError):
        combine(ct, [shares[0].partial_decrypt(ct), shares[1].partial_decrypt(other)])


def test_combine_needs_partials(pk: PublicKey) -> None:
    with pytest.raises(DecryptionError):
        combine(pk.encrypt(1), [])


def test_combine_many(pk: PublicKey, shares: list[KeyShare]) -> None:
    ms = [0, 1, N - 1, 12345]
    cts = pk.encrypt_many(ms)
    partials = [s.partial_decrypt_many(cts) for s in shares]
    assert partials[0] == [shares[0].partial_decrypt(c) for c in cts]
    assert combine_many(cts, partials) == ms
    with pytest.raises(DecryptionError):
        combine_many(cts, [partials[0], partials[1][:-1]])
    assert shares[0].partial_decrypt_many([]) == []


# -- re-randomisation and the pool of encryptions of zero ---------------------------------


def test_rerandomize_keeps_plaintext_changes_both(pk: PublicKey, shares: list[KeyShare]) -> None:
    for m in (0, 1, N - 1, 987654321):
        ct = pk.encrypt(m)
        fresh = pk.rerandomize(ct)
        assert fresh.c1 != ct.c1
        assert fresh.c2 != ct.c2
        assert dec(fresh, shares) == m
        again = pk.rerandomize(fresh)
        assert again.c1 not in (ct.c1, fresh.c1)
        assert dec(again, shares) == m


def test_pool_never_hands_out_a_pair_twice(pk: PublicKey, shares: list[KeyShare]) -> None:
    pool = ZeroPool(pk, target=40)
    pool.fill()
    assert len(pool) == 40
    drawn = [pool.draw_one() for _ in range(60)]  # 40 from stock, 20 computed on demand
    assert len(pool) == 0
    assert pool.drawn == 60
    assert pool.on_demand == 20
    assert len({(int(a), int(b)) for a, b in drawn}) == 60
    assert len({int(a) for a, _ in drawn}) == 60
    for z1, z2 in drawn[::10] + drawn[-3:]:
        assert dec(Ciphertext(pk, z1, z2), shares) == 0


def test_pool_fill_count_and_extend(pk: PublicKey, shares: list[KeyShare]) -> None:
    pool = ZeroPool(pk, target=8)
    pool.fill(3)
    assert len(pool) == 3
    pool.fill()  # up to the target
    assert len(pool) == 8
    pool.fill()  # already full: nothing to do
    assert len(pool) == 8
    extra = pk.fresh_zero_pair()
    pool.extend([extra])
    assert len(pool) == 9
    got = [pool.draw_one() for _ in range(9)]
    assert got[-1] == extra
    assert pool.on_demand == 0


def test_rerandomize_with_empty_pool_is_still_correct(shares: list[KeyShare]) -> None:
    own = PublicKey(P, gmpy2.f_mod(shares[0].h * shares[1].h, P.n2), precompute=False)
    assert len(own.pool) == 0
    ct = own.encrypt(55)
    a = own.rerandomize(ct)
    b = own.rerandomize(ct)
    assert own.pool.on_demand == 2
    assert a != b
    assert a.c1 != ct.c1
    assert a.c2 != ct.c2
    assert dec(a, shares) == dec(b, shares) == 55


def _wait_for(cond: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_pool_background_refill_start_stop(pk: PublicKey, shares: list[KeyShare]) -> None:
    pool = ZeroPool(pk, target=12)
    pool.start()
    try:
        pool.start()  # a second start is a no-op
        assert _wait_for(lambda: len(pool) >= 12), "background thread did not fill the pool"
        drawn = [pool.draw_one() for _ in range(10)]  # drops below half: the thread wakes up
        assert _wait_for(lambda: len(pool) >= 12), "background thread did not refill"
    finally:
        pool.stop()
    assert pool._thread is None
    stock = len(pool)
    time.sleep(0.2)
    assert len(pool) == stock  # nothing added after stop
    drawn += [pool.draw_one() for _ in range(stock)]
    assert pool.on_demand == 0
    assert len({(int(a), int(b)) for a, b in drawn}) == len(drawn)
    for z1, z2 in drawn[::5]:
        assert dec(Ciphertext(pk, z1, z2), shares) == 0
    pool.stop()  # stop twice is harmless
    # restart after stop works
    pool.start()
    try:
        assert _wait_for(lambda: len(pool) >= 6)
    finally:
        pool.stop()


def test_encrypt_from_pool(pk: PublicKey, shares: list[KeyShare]) -> None:
    pk.pool.fill(5)
    cts = [pk.encrypt_from_pool(m) for m in (0, 1, -1, N - 1, 2**1000, 42, 43)]  # 2 on demand
    assert [dec(c, shares) for c in cts] == [0, 1, N - 1, N - 1, 2**1000 % N, 42, 43]
    assert len({c.c1 for c in cts}) == len(cts)


# -- to_signed ---------------------------------------------------------------------------


def test_to_signed() -> None:
    assert to_signed(0, N) == 0
    assert to_signed(1, N) == 1
    assert to_signed(N - 1, N) == -1
    assert to_signed(N // 2, N) == N // 2
    assert to_signed(N // 2 + 1, N) == N // 2 + 1 - N
    assert to_signed(5, 11) == 5
    assert to_signed(6, 11) == -5
    assert to_signed(5, 10) == 5  # (-N/2, N/2]
    assert to_signed(6, 10) == -4


@FAST
@given(v=st.integers(min_value=-(N // 2), max_value=N // 2))
def test_negative_values_round_trip(pk: PublicKey, shares: list[KeyShare], v: int) -> None:
    assert to_signed(dec(pk.encrypt(v), shares), N) == v


# -- serialisation -----------------------------------------------------------------------


def test_ciphertext_round_trip(pk: PublicKey, shares: list[KeyShare]) -> None:
    for m in (0, 1, N - 1):
        ct = pk.encrypt(m)
        data = ct.to_bytes()
        assert isinstance(data, bytes)
        assert len(data) == pk.ciphertext_bytes == 2 * P.element_bytes
        back = pk.ciphertext_from_bytes(data)
        assert back == ct
        assert back.c1 == ct.c1 and back.c2 == ct.c2
        assert dec(back, shares) == m
        assert pk.ciphertext_from_bytes(bytearray(data)) == ct
        assert pk.ciphertext_from_bytes(memoryview(data)) == ct
    # small values keep their full width (leading zero bytes)
    tiny = Ciphertext(pk, mpz(1), mpz(2))
    assert len(tiny.to_bytes()) == pk.ciphertext_bytes
    assert pk.ciphertext_from_bytes(tiny.to_bytes()) == tiny


def test_batch_round_trip(pk: PublicKey, shares: list[KeyShare]) -> None:
    ms = [3, 1, 4, 1, 5, N - 9]
    cts = pk.encrypt_many(ms)
    blob = pk.ciphertexts_to_bytes(cts)
    assert len(blob) == len(ms) * pk.ciphertext_bytes
    assert pk.ciphertexts_from_bytes(blob) == cts
    back = pk.ciphertexts_from_bytes(blob, count=len(ms))
    assert back == cts
    assert [dec(c, shares) for c in back] == ms
    assert pk.ciphertexts_to_bytes([]) == b""
    assert pk.ciphertexts_from_bytes(b"") == []
    assert pk.ciphertexts_from_bytes(b"", count=0) == []


def test_public_key_round_trip(pk: PublicKey, shares: list[KeyShare]) -> None:
    data = pk.to_bytes()
    assert len(data) == P.element_bytes
    back = PublicKey.from_bytes(P, data)
    assert back == pk
    assert hash(back) == hash(pk)
    assert back.h == pk.h
    assert dec(back.encrypt(2024), shares) == 2024


def test_key_share_round_trip(pk: PublicKey, shares: list[KeyShare]) -> None:
    ct = pk.encrypt(8)
    for s in shares:
        data = s.to_bytes()
        assert len(data) == (P.exponent_bits + 7) // 8
        back = KeyShare.from_bytes(P, data)
        assert back == s
        assert back.x == s.x and back.h == s.h
        assert back.partial_decrypt(ct) == s.partial_decrypt(ct)


# -- malformed bytes: every kind is an EncodingError ----------------------------------------

EB = P.element_bytes
CB = 2 * EB


def _elem(v: int) -> bytes:
    return v.to_bytes(EB, "big")


def _good_ct(pk: PublicKey) -> bytes:
    return pk.encrypt(5).to_bytes()


BAD_ELEMENTS = {
    "zero": 0,
    "n_squared": N2,
    "n_squared_plus_1": N2 + 1,
    "all_ff": 2 ** (8 * EB) - 1,
    "n_itself": N,  # shares a factor with N
    "two_n": 2 * N,
    "n_times_big": N * (N - 1),
}


def _ct_cases() -> list:
    cases: list = [
        pytest.param(lambda pk: pk.ciphertext_from_bytes(_good_ct(pk)[:-1]), id="ct-short"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(_good_ct(pk) + b"\0"), id="ct-long"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(b""), id="ct-empty"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(b"\0" * CB), id="ct-all-zero"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(_good_ct(pk)[:EB]), id="ct-half"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(None), id="ct-none"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes("x" * CB), id="ct-str"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(list(_good_ct(pk))), id="ct-list"),
        pytest.param(lambda pk: pk.ciphertext_from_bytes(12345), id="ct-int"),
    ]
    for name, v in BAD_ELEMENTS.items():
        cases.append(
            pytest.param(
                lambda pk, v=v: pk.ciphertext_from_bytes(_elem(v) + _good_ct(pk)[EB:]),
                id=f"ct-c1-{name}",
            )
        )
        cases.append(
            pytest.param(
                lambda pk, v=v: pk.ciphertext_from_bytes(_good_ct(pk)[:EB] + _elem(v)),
                id=f"ct-c2-{name}",
            )
        )
    return cases


def _batch_cases() -> list:
    def blob(pk: PublicKey, k: int = 3) -> bytes:
        return pk.ciphertexts_to_bytes(pk.encrypt_many(range(k)))

    return [
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(blob(pk)[:-1]), id="batch-short"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(blob(pk) + b"\1"), id="batch-long"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(b"\1" * (CB // 2)), id="batch-half"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(blob(pk), count=2), id="count-fewer"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(blob(pk), count=4), id="count-more"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(blob(pk), count=-3), id="count-neg"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(b"", count=1), id="count-empty"),
        pytest.param(
            lambda pk: pk.ciphertexts_from_bytes(blob(pk, 2) + _elem(N) + _elem(1)),
            id="batch-bad-element",
        ),
        pytest.param(
            lambda pk: pk.ciphertexts_from_bytes(blob(pk, 1) + b"\0" * CB), id="batch-zero-item"
        ),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(None), id="batch-none"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes("x" * CB), id="batch-str"),
        pytest.param(lambda pk: pk.ciphertexts_from_bytes(7), id="batch-int"),
    ]


def _pk_cases() -> list:
    good = lambda pk: pk.to_bytes()  # noqa: E731
    cases: list = [
        pytest.param(lambda pk: PublicKey.from_bytes(P, good(pk)[:-1]), id="pk-short"),
        pytest.param(lambda pk: PublicKey.from_bytes(P, good(pk) + b"\0"), id="pk-long"),
        pytest.param(lambda pk: PublicKey.from_bytes(P, b""), id="pk-empty"),
        pytest.param(lambda pk: PublicKey.from_bytes(P, None), id="pk-none"),
        pytest.param(lambda pk: PublicKey.from_bytes(P, "a" * EB), id="pk-str"),
        pytest.param(
            lambda pk: PublicKey.from_bytes(P, list(good(pk))),
            id="pk-list",
        ),
        pytest.param(
            lambda pk: PublicKey.from_bytes(P, _elem(1)),
            id="pk-h-one",
        ),
    ]
    for name, v in BAD_ELEMENTS.items():
        cases.append(
            pytest.param(lambda pk, v=v: PublicKey.from_bytes(P, _elem(v)), id=f"pk-{name}")
        )
    return cases


def _share_cases() -> list:
    size = (P.exponent_bits + 7) // 8
    return [
        pytest.param(lambda pk: KeyShare.from_bytes(P, b"\1" * (size - 1)), id="share-short"),
        pytest.param(lambda pk: KeyShare.from_bytes(P, b"\1" * (size + 1)), id="share-long"),
        pytest.param(lambda pk: KeyShare.from_bytes(P, b""), id="share-empty"),
        pytest.param(lambda pk: KeyShare.from_bytes(P, None), id="share-none"),
        pytest.param(lambda pk: KeyShare.from_bytes(P, "a" * size), id="share-str"),
    ]


@pytest.mark.parametrize("decode", _ct_cases() + _batch_cases() + _pk_cases() + _share_cases())
def test_malformed_bytes_raise_encoding_error(
    pk: PublicKey, decode: Callable[[PublicKey], object]
) -> None:
    with pytest.raises(EncodingError):
        decode(pk)


def test_public_key_from_int_outside_group_is_encoding_error() -> None:
    for v in (0, N, N2, -1):
        with pytest.raises(EncodingError):
            PublicKey(P, v)
    with pytest.raises(ParameterError):
        PublicKey(P, 1)


def test_partial_outside_group_is_rejected(pk: PublicKey, shares: list[KeyShare]) -> None:
    ct = pk.encrypt(3)
    good = shares[0].partial_decrypt(ct)
    for bad in (0, N, N2, N2 + 5):
        with pytest.raises(EncodingError):
            combine(ct, [good, bad])


# -- fixed-base tables -----------------------------------------------------------------------

TABLE_BITS = 301  # not a multiple of any window above 1, to exercise the top window
WINDOWS = list(range(1, 11))


@pytest.fixture(scope="module")
def tables() -> dict[int, FixedBaseTable]:
    return {w: FixedBaseTable(P.g, P.n2, TABLE_BITS, w) for w in WINDOWS}


def _check_pow(t: FixedBaseTable, e: int) -> None:
    assert t.pow(e) == gmpy2.powmod(P.g, e, P.n2), f"window {t.window}, exponent {e}"


@settings(max_examples=25, deadline=None)
@given(w=st.sampled_from(WINDOWS), e=st.integers(min_value=0, max_value=2**TABLE_BITS - 1))
def test_fixed_base_random_exponents(tables: dict[int, FixedBaseTable], w: int, e: int) -> None:
    _check_pow(tables[w], e)


@pytest.mark.parametrize("w", WINDOWS)
def test_fixed_base_edge_exponents(tables: dict[int, FixedBaseTable], w: int) -> None:
    t = tables[w]
    assert t.pow(0) == 1
    edges = [
        1,
        2,
        (1 << w) - 1,
        1 << w,
        2**TABLE_BITS - 1,  # max-bit: every digit non-zero
        2 ** (TABLE_BITS - 1),  # only the top bit
        2**TABLE_BITS,  # one bit too long: powmod fallback
        2 ** (TABLE_BITS + 77) + 3,  # far too long
        mpz(2) ** TABLE_BITS - 1,  # mpz exponents work too
    ]
    for e in edges:
        _check_pow(t, e)
    _check_pow(t, -5)  # negative: falls back to powmod (inverse)


def test_fixed_base_full_size_table(pk: PublicKey) -> None:
    for e in (0, 1, 2**P.exponent_bits - 1, pk.random_exponent(), 2**P.exponent_bits + 1):
        assert pk.g_pow(e) == gmpy2.powmod(P.g, e, P.n2)
        assert pk.h_pow(e) == gmpy2.powmod(pk.h, e, P.n2)


def test_fixed_base_rejects_bad_arguments() -> None:
    for w in (0, 17, -1):
        with pytest.raises(ParameterError):
            FixedBaseTable(P.g, P.n2, 64, w)
    with pytest.raises(ParameterError):
        FixedBaseTable(P.g, P.n2, 0)


# -- parameters --------------------------------------------------------------------------------


def test_params_for_unknown_size() -> None:
    for bits in (999, 0, 512, 4096):
        with pytest.raises(ParameterError):
            params_for(bits)


def test_params_shape() -> None:
    assert isinstance(P, GroupParams)
    assert P.bits == BITS
    assert P.name == "RSA-1024"
    assert P.n2 == P.n * P.n
    assert P.exponent_bits == BITS + 128
    assert P.plaintext_bits == BITS - 1
    assert P.element_bytes == (int(P.n2.bit_length()) + 7) // 8
    assert params_for(BITS) is P  # cached


def test_generator_is_deterministic_from_seed() -> None:
    assert derive_generator(P.n, DEFAULT_SEED) == P.g
    assert P.seed == DEFAULT_SEED
    other = params_for(BITS, seed="another public seed")
    assert other.g != P.g
    assert other.n == P.n
    assert derive_generator(P.n, "another public seed") == other.g
    for g in (P.g, other.g):
        assert 1 < g < P.n2
        assert gmpy2.gcd(g, P.n) == 1


def test_custom_params() -> None:
    cp = custom_params(N, name="mine")
    assert cp.g == P.g and cp.name == "mine"
    for bad in (N + 1, 2**600, 15, 2**510 + 1, (2**300 + 1) ** 2):
        with pytest.raises(ParameterError):
            custom_params(bad)


# -- batch encryption over processes and batch partial decryption -------------------------------


def test_batch_encryptor(pk: PublicKey, shares: list[KeyShare]) -> None:
    ms = [0, 1, -1, N - 1, *range(2, 22)]
    before = len(pk.pool)
    with BatchEncryptor(pk, workers=2, chunk=4) as be:
        be.warm_up()
        cts = be.encrypt(ms)
        assert be.encrypt([]) == []
        be.fill_pool(6)
    assert len(cts) == len(ms)
    assert all(c.pk is pk for c in cts)
    assert len({c.c1 for c in cts}) == len(cts)
    assert [dec(c, shares) for c in cts] == [m % N for m in ms]
    assert len(pk.pool) == before + 6
    z1, z2 = pk.pool.draw_one()
    assert dec(Ciphertext(pk, z1, z2), shares) == 0


def test_partial_decrypt_batch(pk: PublicKey, shares: list[KeyShare]) -> None:
    ms = list(range(9))
    cts = pk.encrypt_many(ms)
    for s in shares:
        expect = [s.partial_decrypt(c) for c in cts]
        assert partial_decrypt_batch(s, cts, workers=2) == expect
        assert partial_decrypt_batch(s, cts, workers=1) == expect
        assert partial_decrypt_batch(s, cts[:1], workers=2) == expect[:1]
    assert partial_decrypt_batch(shares[0], [], workers=2) == []
    partials = [partial_decrypt_batch(s, cts, workers=2) for s in shares]
    assert combine_many(cts, partials) == ms
