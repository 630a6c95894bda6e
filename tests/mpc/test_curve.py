"""Tests of mpc.elgamal.curve: zero tests, homomorphic identities, encodings, infinity."""

from __future__ import annotations

import ast
import pickle
import secrets
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.elgamal import curve
from mpc.elgamal.curve import (
    CIPHERTEXT_BYTES,
    CURVE_ORDER,
    POINT_BYTES,
    CurveCiphertext,
    CurvePrivateKey,
    CurvePublicKey,
    PointAtInfinityError,
    ciphertexts_from_bytes,
    ciphertexts_to_bytes,
    sum_ciphertexts,
)
from mpc.errors import DecryptionError, EncodingError, MpcError, ParameterError

N = CURVE_ORDER
P = 2**256 - 2**32 - 977  # the field prime of secp256k1
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SK = CurvePrivateKey.generate()
PK = SK.public_key

small = st.integers(min_value=-40, max_value=40)
anyint = st.integers(min_value=-(2**300), max_value=2**300)
scalars = st.one_of(
    st.integers(min_value=-40, max_value=40),
    st.integers(min_value=N - 40, max_value=N + 40),
    st.integers(min_value=1, max_value=N - 1),
).filter(lambda k: k % N != 0)


def _not_on_curve_x() -> int:
    """The smallest x for which x^3 + 7 is not a square mod p (no point has it)."""
    x = 1
    while pow((x**3 + 7) % P, (P - 1) // 2, P) == 1:
        x += 1
    return x


BAD_X = _not_on_curve_x().to_bytes(32, "big")


def _same_plaintext(a: CurveCiphertext, b: CurveCiphertext) -> bool:
    return SK.is_zero(a - b)


# -- keys -------------------------------------------------------------------------------


def test_keys_round_trip_and_hide_the_secret() -> None:
    assert len(PK.to_bytes()) == POINT_BYTES
    assert PK.to_bytes()[0] in (2, 3)
    assert CurvePublicKey.from_bytes(PK.to_bytes()) == PK
    assert hash(CurvePublicKey.from_bytes(PK.to_bytes())) == hash(PK)
    assert pickle.loads(pickle.dumps(PK)) == PK
    restored = CurvePrivateKey.from_bytes(SK.to_bytes())
    assert restored.public_key == PK
    assert pickle.loads(pickle.dumps(SK)).public_key == PK
    assert SK.to_bytes().hex() not in repr(SK)
    assert CurvePrivateKey.generate().public_key != PK


@pytest.mark.parametrize(
    "data",
    [b"", PK.to_bytes()[:-1], PK.to_bytes() + b"\x00", b"\x04" + BAD_X, b"\x02" + BAD_X,
     b"\x00" * 33, b"\x02" + P.to_bytes(32, "big"), b"\x03" + b"\xff" * 32],
)  # fmt: skip
def test_public_key_rejects_malformed(data: bytes) -> None:
    with pytest.raises(EncodingError):
        CurvePublicKey.from_bytes(data)


def test_private_key_rejects_bad_secrets() -> None:
    for data in (b"", b"\x00" * 32, N.to_bytes(32, "big"), b"\xff" * 32, b"\x01" * 31):
        with pytest.raises(EncodingError):
            CurvePrivateKey.from_bytes(data)
    for x in (0, N, -1):
        with pytest.raises(ParameterError):
            CurvePrivateKey(x)


# -- encryption and zero tests ----------------------------------------------------------


@pytest.mark.parametrize("enc", [PK.encrypt, SK.encrypt], ids=["public", "owner"])
@pytest.mark.parametrize(
    "m", [0, 1, -1, 2, -2, 1000, N - 1, N, -N, 2 * N + 3, 2**255, N + 1, -(2**200)]
)
def test_is_zero_on_fixed_values(enc, m: int) -> None:
    assert SK.is_zero(enc(m)) == (m % N == 0)


@FAST
@given(m=anyint)
def test_is_zero_matches_residue(m: int) -> None:
    assert SK.is_zero(PK.encrypt(m)) == (m % N == 0)
    assert SK.is_zero(SK.encrypt(m)) == (m % N == 0)


def test_bits() -> None:
    for b in (0, 1, False, True):
        assert SK.decrypt_small(PK.encrypt_bit(b), 1) == int(b)
        assert SK.decrypt_small(SK.encrypt_bit(b), 1) == int(b)
    for bad in (2, -1, 1.0, "1", None):
        with pytest.raises(ParameterError):
            PK.encrypt_bit(bad)  # type: ignore[arg-type]
        with pytest.raises(ParameterError):
            SK.encrypt_bit(bad)  # type: ignore[arg-type]


def test_encrypt_rejects_non_integers() -> None:
    for bad in (1.5, "3", None, b"\x01"):
        with pytest.raises(ParameterError):
            PK.encrypt(bad)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        SK.is_zero(PK)  # type: ignore[arg-type]


def test_encryption_is_randomised() -> None:
    a, b = PK.encrypt(5), PK.encrypt(5)
    assert a.to_bytes() != b.to_bytes()
    assert a != b
    assert _same_plaintext(a, b)


def test_owner_encryption_decrypts_like_public_encryption() -> None:
    for m in (-3, 0, 4):
        assert SK.decrypt_small(SK.encrypt(m), 5) == m
        assert SK.decrypt_small(PK.encrypt(m), 5) == m


def test_decrypt_small_bounds() -> None:
    assert SK.decrypt_small(PK.encrypt(-7), 7) == -7
    with pytest.raises(DecryptionError):
        SK.decrypt_small(PK.encrypt(8), 7)
    with pytest.raises(DecryptionError):
        SK.decrypt_small(PK.encrypt(N - 8), 7)
    for bad in (-1, 2**30):
        with pytest.raises(ParameterError):
            SK.decrypt_small(PK.encrypt(1), bad)


# -- homomorphic identities -------------------------------------------------------------


@FAST
@given(a=small, b=small)
def test_add_sub_neg_small(a: int, b: int) -> None:
    ca, cb = PK.encrypt(a), PK.encrypt(b)
    assert SK.decrypt_small(ca + cb, 80) == a + b
    assert SK.decrypt_small(ca - cb, 80) == a - b
    assert SK.decrypt_small(-ca, 40) == -a
    assert SK.decrypt_small(ca.add_plain(b), 80) == a + b


@FAST
@given(a=anyint, b=anyint, k=scalars)
def test_identities_on_large_values(a: int, b: int, k: int) -> None:
    ca, cb = PK.encrypt(a), PK.encrypt(b)
    assert _same_plaintext(ca + cb, PK.encrypt(a + b))
    assert _same_plaintext(ca - cb, PK.encrypt(a - b))
    assert _same_plaintext(-ca, PK.encrypt(-a))
    assert _same_plaintext(ca.add_plain(b), PK.encrypt(a + b))
    assert _same_plaintext(ca * k, PK.encrypt(a * k))
    assert _same_plaintext(k * ca, PK.encrypt(a * k))
    assert SK.is_zero((ca - cb).add_plain(b - a))


@pytest.mark.parametrize("k", [*range(-30, 0), *range(1, 31)])
def test_scalar_multiplication_small(k: int) -> None:
    ct = PK.encrypt(3)
    assert SK.decrypt_small(ct * k, 90) == 3 * k
    assert SK.decrypt_small(k * ct, 90) == 3 * k


@pytest.mark.parametrize("k", [N + 1, 1, N - 1, N + 2, 2 * N - 5, -N - 1, 2**300])
def test_scalar_multiplication_reduces_mod_n(k: int) -> None:
    ct = PK.encrypt(4)
    assert _same_plaintext(ct * k, PK.encrypt(4 * k))
    if k % N == 1:
        assert ct * k == ct


@pytest.mark.parametrize("k", [0, N, -N, 5 * N])
def test_scalar_zero_mod_n_is_refused(k: int) -> None:
    with pytest.raises(ParameterError, match="infinity"):
        PK.encrypt(3) * k


def test_operators_refuse_other_types() -> None:
    ct = PK.encrypt(1)
    with pytest.raises(TypeError):
        ct + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        ct - b"x"  # type: ignore[operator]
    with pytest.raises(TypeError):
        ct * 1.5  # type: ignore[operator]
    with pytest.raises(TypeError):
        ct * ct  # type: ignore[operator]
    with pytest.raises(ParameterError):
        ct.add_plain(1.5)  # type: ignore[arg-type]


def test_add_plain_zero_and_negative() -> None:
    ct = PK.encrypt(9)
    assert ct.add_plain(0) == ct
    assert ct.add_plain(N) == ct
    assert SK.is_zero(ct.add_plain(-9))
    assert SK.decrypt_small(ct.add_plain(-12), 3) == -3


def test_sum_ciphertexts() -> None:
    values = [3, -1, 0, 7, 1, 1, -4]
    cts = [PK.encrypt(v) for v in values]
    assert SK.decrypt_small(sum_ciphertexts(cts), 20) == sum(values)
    assert sum_ciphertexts(cts[:1]) == cts[0]
    # intermediate cancellation is fine as long as the total is not infinity
    assert SK.decrypt_small(sum_ciphertexts([cts[0], -cts[0], cts[3]]), 10) == 7
    with pytest.raises(ParameterError):
        sum_ciphertexts([])
    with pytest.raises(ParameterError):
        sum_ciphertexts([cts[0], 3])  # type: ignore[list-item]
    with pytest.raises(PointAtInfinityError):
        sum_ciphertexts([cts[0], -cts[0]])


# -- the point at infinity --------------------------------------------------------------


def test_self_cancellation_raises() -> None:
    ct = PK.encrypt(5)
    for make in (lambda: ct - ct, lambda: ct + (-ct), lambda: (ct * 3) - (3 * ct)):
        with pytest.raises(PointAtInfinityError, match="infinity") as info:
            make()
        assert isinstance(info.value, ParameterError)
        assert isinstance(info.value, MpcError)


def test_zero_difference_of_distinct_ciphertexts_is_fine() -> None:
    a, b = PK.encrypt(5), PK.encrypt(5)
    assert SK.is_zero(a - b)
    assert SK.is_zero(PK.encrypt(0))
    assert SK.is_zero(PK.encrypt(0) + PK.encrypt(0))


def _scripted(monkeypatch: pytest.MonkeyPatch, values: list[int]) -> list[int]:
    """Replace the module's randomness with a script; returns the list it consumes."""
    remaining = list(values)

    def fake() -> int:
        return remaining.pop(0)

    monkeypatch.setattr(curve, "_random_scalar", fake)
    return remaining


def test_public_encrypt_redraws_randomness_that_would_give_infinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, m = 7, 5
    sk = CurvePrivateKey(x)
    bad_r = (-m * pow(x, -1, N)) % N  # m*G + r*Y = O
    remaining = _scripted(monkeypatch, [bad_r, 11])
    ct = sk.public_key.encrypt(m)
    assert remaining == []
    assert sk.decrypt_small(ct, 10) == m


def test_owner_encrypt_redraws_randomness_that_would_give_infinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, m = 7, 5
    sk = CurvePrivateKey(x)
    remaining = _scripted(monkeypatch, [(-m * pow(x, -1, N)) % N, 11])
    ct = sk.encrypt(m)
    assert remaining == []
    assert sk.decrypt_small(ct, 10) == m


def test_rerandomize_redraws_randomness_that_would_give_infinity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _scripted(monkeypatch, [11])
    ct = PK.encrypt(2)  # r = 11
    remaining = _scripted(monkeypatch, [N - 11, 13])  # s = -r would cancel C1
    fresh = ct.rerandomize(PK)
    assert remaining == []
    assert SK.decrypt_small(fresh, 3) == 2


# -- rerandomisation --------------------------------------------------------------------


@FAST
@given(m=anyint)
def test_rerandomize_changes_bytes_not_plaintext(m: int) -> None:
    ct = PK.encrypt(m)
    fresh = ct.rerandomize(PK)
    assert fresh.to_bytes()[:POINT_BYTES] != ct.to_bytes()[:POINT_BYTES]
    assert fresh.to_bytes()[POINT_BYTES:] != ct.to_bytes()[POINT_BYTES:]
    assert fresh != ct
    assert _same_plaintext(fresh, ct)
    assert SK.is_zero(fresh) == (m % N == 0)


def test_rerandomize_needs_a_public_key() -> None:
    with pytest.raises(ParameterError):
        PK.encrypt(1).rerandomize(SK)  # type: ignore[arg-type]


# -- immutability and encodings ---------------------------------------------------------


def test_ciphertext_is_immutable_and_hashable() -> None:
    ct = PK.encrypt(1)
    with pytest.raises(AttributeError):
        ct._c1 = None  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ct.anything = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        PK._bytes = b""  # type: ignore[misc]
    with pytest.raises(AttributeError):
        SK._x = 1  # type: ignore[misc]
    assert {ct, CurveCiphertext.from_bytes(ct.to_bytes())} == {ct}


@FAST
@given(m=anyint)
def test_serialisation_round_trip(m: int) -> None:
    ct = PK.encrypt(m)
    data = ct.to_bytes()
    assert len(data) == CIPHERTEXT_BYTES
    assert data[0] in (2, 3) and data[POINT_BYTES] in (2, 3)
    back = CurveCiphertext.from_bytes(data)
    assert back == ct and back.to_bytes() == data and bytes(back) == data
    assert CurveCiphertext(bytearray(data)) == ct
    assert CurveCiphertext.from_bytes(memoryview(data)) == ct
    assert pickle.loads(pickle.dumps(ct)) == ct
    assert SK.is_zero(back) == (m % N == 0)


GOOD = PK.encrypt(3).to_bytes()
GOOD_POINT = GOOD[:POINT_BYTES]
MALFORMED = {
    "empty": b"",
    "one point only": GOOD_POINT,
    "one byte short": GOOD[:-1],
    "one byte long": GOOD + b"\x02",
    "all zeros": b"\x00" * CIPHERTEXT_BYTES,
    "all ones": b"\xff" * CIPHERTEXT_BYTES,
    "C1 prefix 0x04": b"\x04" + GOOD[1:],
    "C2 prefix 0x00": GOOD_POINT + b"\x00" + GOOD[POINT_BYTES + 1 :],
    "C2 prefix 0x05": GOOD_POINT + b"\x05" + GOOD[POINT_BYTES + 1 :],
    "C1 x not on curve": b"\x02" + BAD_X + GOOD[POINT_BYTES:],
    "C2 x not on curve": GOOD_POINT + b"\x03" + BAD_X,
    "C1 x = p": b"\x02" + P.to_bytes(32, "big") + GOOD[POINT_BYTES:],
    "C2 x > p": GOOD_POINT + b"\x02" + b"\xff" * 32,
    "C1 x = 0": b"\x02" + bytes(32) + GOOD[POINT_BYTES:],
    "uncompressed C1": b"\x04" + bytes(64) + b"\x00",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_ciphertexts_are_rejected(data: bytes) -> None:
    with pytest.raises(EncodingError):
        CurveCiphertext.from_bytes(data)


@pytest.mark.parametrize("data", ["0" * 132, 42, None, [0] * 66])
def test_non_bytes_are_rejected(data: object) -> None:
    with pytest.raises(EncodingError):
        CurveCiphertext.from_bytes(data)  # type: ignore[arg-type]
    with pytest.raises(EncodingError):
        ciphertexts_from_bytes(data)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=70))
def test_arbitrary_bytes_parse_or_raise_encoding_error(data: bytes) -> None:
    try:
        ct = CurveCiphertext.from_bytes(data)
    except EncodingError:
        return
    assert ct.to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(x=st.binary(min_size=32, max_size=32), prefix=st.sampled_from([2, 3]))
def test_random_x_coordinates_parse_or_raise_encoding_error(x: bytes, prefix: int) -> None:
    data = bytes([prefix]) + x + GOOD[POINT_BYTES:]
    try:
        ct = CurveCiphertext.from_bytes(data)
    except EncodingError:
        return
    assert ct.to_bytes() == data


# -- batches ----------------------------------------------------------------------------


def test_batch_round_trip() -> None:
    cts = [PK.encrypt_bit(secrets.randbelow(2)) for _ in range(9)]
    blob = ciphertexts_to_bytes(cts)
    assert len(blob) == 9 * CIPHERTEXT_BYTES
    assert ciphertexts_from_bytes(blob) == cts
    assert ciphertexts_from_bytes(blob, count=9) == cts
    assert ciphertexts_from_bytes(bytearray(blob), 9) == cts
    assert ciphertexts_to_bytes([]) == b""
    assert ciphertexts_from_bytes(b"") == []
    assert ciphertexts_from_bytes(b"", count=0) == []


def test_batch_rejects_bad_blobs() -> None:
    blob = ciphertexts_to_bytes([PK.encrypt(i) for i in range(3)])
    for bad in (blob[:-1], blob + b"\x02", blob[:65], blob[1:]):
        with pytest.raises(EncodingError, match="multiple"):
            ciphertexts_from_bytes(bad)
    for count in (0, 2, 4):
        with pytest.raises(EncodingError, match="expected"):
            ciphertexts_from_bytes(blob, count=count)
    with pytest.raises(ParameterError):
        ciphertexts_from_bytes(blob, count=-3)
    with pytest.raises(ParameterError):
        ciphertexts_from_bytes(blob, count="3")  # type: ignore[arg-type]
    middle_broken = blob[:CIPHERTEXT_BYTES] + MALFORMED["C2 x not on curve"] + blob[-66:]
    with pytest.raises(EncodingError):
        ciphertexts_from_bytes(middle_broken, count=3)


# -- hygiene ----------------------------------------------------------------------------


def test_module_imports_no_networking() -> None:
    tree = ast.parse(Path(curve.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"grpc", "socket", "asyncio", "http", "urllib", "ssl", "mpc_pb2"}
    assert names <= {"__future__", "secrets", "collections", "functools", "hashlib", "typing",
                     "coincurve", "mpc"}  # fmt: skip
