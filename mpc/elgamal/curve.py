"""Exponential ElGamal on secp256k1, used only for zero tests (DESIGN 3.2).

The PSP owns the key alone. With generator G, group order n, secret x and
public key Y = xG::

    Enc(m; r) = (C1, C2) = (rG, mG + rY)        r uniform in [1, n-1]
    is_zero:  C2 == x*C1   (one scalar multiplication, no discrete log)

Ciphertexts are additively homomorphic: they add, subtract, negate and
multiply by known integer scalars (all modulo n), so the SP can build the
blinded terms of a DGK comparison and the PSP learns only "zero or not".
Plaintexts are residues mod n; small negative integers are fine (-1 is n-1).

Implementation: the maths runs in libsecp256k1 through coincurve's cffi
binding (``coincurve._libsecp256k1``), on its opaque 64-byte point structs.
Measured on the target machine the binding saves a parse (with a field square
root, ~5 us) per negation and a Python wrapper per operation, compared with
``coincurve.PublicKey``; points are serialised only by ``to_bytes``.
The wire format of a point is the 33-byte SEC1 compressed form and a
ciphertext is C1 || C2 (66 bytes).

The point at infinity: libsecp256k1 public keys cannot represent it, and it
has no 33-byte encoding, so this module never produces it:

* an encryption of 0 is (rG, rY) (the mG term is skipped, not added);
* fresh randomness that would give infinity (probability about 1/n, i.e.
  never in practice) is redrawn, in ``encrypt`` and ``rerandomize``;
* an operation on existing ciphertexts whose result has C1 or C2 at infinity
  raises :class:`PointAtInfinityError` (a :class:`ParameterError`). C1 at
  infinity means the randomness cancelled: ``ct - ct``, ``ct + (-ct)`` or
  ``k * ct`` with k = 0 mod n (which is refused up front). Such a "trivial
  encryption" carries no randomness and is not a ciphertext worth sending; to
  hold a public constant, encrypt it. C2 at infinity with C1 finite would
  need m = -r*x mod n, which nobody can aim at without the secret key.

Timing: ``is_zero`` multiplies by the long-lived secret with libsecp256k1's
constant-time ECDH, and the key owner's ``CurvePrivateKey.encrypt`` uses the
constant-time fixed-base multiplication. Multiplying an arbitrary point
(``tweak_mul``: r*Y in ``CurvePublicKey.encrypt``, s*Y in ``rerandomize``,
``k * ct``) is variable-time in the scalar; those scalars are ephemeral and
used once, and only the party computing sees the time of a single one.

Ciphertexts do not record their key: mixing ciphertexts of two keys gives
garbage, not an error. Nothing in this module imports networking.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from functools import lru_cache
from hashlib import sha256 as _sha256
from typing import Any

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from mpc.errors import DecryptionError, EncodingError, MpcError, ParameterError

__all__ = [
    "CIPHERTEXT_BYTES",
    "CURVE_ORDER",
    "POINT_BYTES",
    "SCALAR_BYTES",
    "CurveCiphertext",
    "CurvePrivateKey",
    "CurvePublicKey",
    "PointAtInfinityError",
    "ciphertexts_from_bytes",
    "ciphertexts_to_bytes",
    "sum_ciphertexts",
]

#: Order n of the secp256k1 group (plaintexts and scalars live in Z_n).
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
POINT_BYTES = 33
CIPHERTEXT_BYTES = 2 * POINT_BYTES
SCALAR_BYTES = 32

_N = CURVE_ORDER
_CTX = GLOBAL_CONTEXT.ctx
_POINT_T = ffi.typeof("secp256k1_pubkey *")
_COMPRESSED = 258  # SECP256K1_EC_COMPRESSED
# Scalar multiples below this are sums of repeated points (one libsecp256k1
# call, a few additions), cheaper than a full scalar multiplication.
_SMALL_SCALAR = 24
# |m| below this: m*G is cached (bits, small counters and offsets repeat).
_CACHE_LIMIT = 1 << 16
_DECRYPT_SMALL_LIMIT = 1 << 24

_Point = Any  # a cffi "secp256k1_pubkey *"; never mutated once built


class PointAtInfinityError(ParameterError):
    """The result of an operation would be the point at infinity, which cannot be encoded."""


# -- point primitives (libsecp256k1 via cffi; every one returns a new point) -------------


def _random_scalar() -> int:
    """A uniform scalar in [1, n-1] from the OS CSPRNG."""
    return secrets.randbelow(_N - 1) + 1


def _base_mul(k: int) -> _Point:
    """k*G for 1 <= k < n (constant-time fixed-base multiplication)."""
    p = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_create(_CTX, p, k.to_bytes(SCALAR_BYTES, "big")):
        raise ParameterError("scalar must be in [1, n-1]")  # unreachable for callers here
    return p


def _mul(p: _Point, k: int) -> _Point:
    """k*P for 1 <= k < n (variable-time in k: not for long-lived secrets)."""
    q = ffi.new(_POINT_T, p[0])
    if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, q, k.to_bytes(SCALAR_BYTES, "big")):
        raise ParameterError("scalar must be in [1, n-1]")  # unreachable for callers here
    return q


def _neg(p: _Point) -> _Point:
    """-P."""
    q = ffi.new(_POINT_T, p[0])
    lib.secp256k1_ec_pubkey_negate(_CTX, q)
    return q


def _try_sum(points: list[_Point]) -> _Point | None:
    """Sum of points, or None if it is the point at infinity."""
    q = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_combine(_CTX, q, points, len(points)):
        return None
    return q


def _sum(points: list[_Point], what: str) -> _Point:
    q = _try_sum(points)
    if q is None:
        raise PointAtInfinityError(
            f"{what} is the point at infinity, which cannot be represented or encoded "
            "(typically a ciphertext combined with its own negation)"
        )
    return q


def _scale(p: _Point, k: int) -> _Point:
    """k*P for 1 <= k < n, with a fast path for small |k|."""
    if k <= _SMALL_SCALAR:
        return p if k == 1 else _sum([p] * k, "k*P")
    if _N - k <= _SMALL_SCALAR:
        j = _N - k
        return _neg(p if j == 1 else _sum([p] * j, "k*P"))
    return _mul(p, k)


def _serialize(p: _Point) -> bytes:
    out = ffi.new("unsigned char[33]")
    out_len = ffi.new("size_t *", POINT_BYTES)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, out_len, p, _COMPRESSED)
    return bytes(out)


def _parse(data: bytes, what: str) -> _Point:
    """A point from its 33-byte compressed form; EncodingError if it is not one."""
    if len(data) != POINT_BYTES:
        raise EncodingError(f"{what}: expected {POINT_BYTES} bytes, got {len(data)}")
    if data[0] not in (2, 3):
        raise EncodingError(
            f"{what}: prefix byte 0x{data[0]:02x} is not a compressed point (0x02 or 0x03)"
        )
    p = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_parse(_CTX, p, data, POINT_BYTES):
        raise EncodingError(f"{what}: x is not the coordinate of a secp256k1 point")
    return p


def _equal(p: _Point, q: _Point) -> bool:
    return lib.secp256k1_ec_pubkey_cmp(_CTX, p, q) == 0


@lru_cache(maxsize=4096)
def _cached_base_mul(k: int) -> _Point:
    return _base_mul(k)


def _g_mul(k: int) -> _Point:
    """k*G for 1 <= k < n, cached when k or n-k is small."""
    if k < _CACHE_LIMIT or _N - k < _CACHE_LIMIT:
        return _cached_base_mul(k)
    return _base_mul(k)


_G = _g_mul(1)


def _as_int(value: object, what: str) -> int:
    if not isinstance(value, int):
        raise ParameterError(f"{what} must be an int, got {type(value).__name__}")
    return value


def _as_bytes(data: object, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise EncodingError(f"{what}: expected bytes, got {type(data).__name__}")


def _bit(b: object) -> int:
    if not isinstance(b, int) or b not in (0, 1):
        raise ParameterError(f"a bit must be 0 or 1, got {b!r}")
    return int(b)


# -- ciphertexts ------------------------------------------------------------------------


class CurveCiphertext:
    """An immutable ciphertext (C1, C2) = (rG, mG + rY); 66 bytes on the wire.

    Supports ``a + b``, ``a - b``, ``-a``, ``k * a`` / ``a * k`` (int k, mod n),
    :meth:`add_plain` and :meth:`rerandomize`. ``CurveCiphertext(data)`` is
    :meth:`from_bytes`.
    """

    __slots__ = ("_c1", "_c2")
    _c1: _Point
    _c2: _Point

    def __init__(self, data: bytes) -> None:
        data = _as_bytes(data, "curve ciphertext")
        if len(data) != CIPHERTEXT_BYTES:
            raise EncodingError(
                f"curve ciphertext: expected {CIPHERTEXT_BYTES} bytes, got {len(data)}"
            )
        object.__setattr__(self, "_c1", _parse(data[:POINT_BYTES], "curve ciphertext C1"))
        object.__setattr__(self, "_c2", _parse(data[POINT_BYTES:], "curve ciphertext C2"))

    @classmethod
    def _wrap(cls, c1: _Point, c2: _Point) -> CurveCiphertext:
        ct = object.__new__(cls)
        object.__setattr__(ct, "_c1", c1)
        object.__setattr__(ct, "_c2", c2)
        return ct

    @classmethod
    def from_bytes(cls, data: bytes) -> CurveCiphertext:
        """Parse C1 || C2 (two compressed points); EncodingError on any malformation."""
        return cls(data)

    def to_bytes(self) -> bytes:
        """C1 || C2, two 33-byte compressed points."""
        return _serialize(self._c1) + _serialize(self._c2)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CurveCiphertext is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("CurveCiphertext is immutable")

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (CurveCiphertext.from_bytes, (self.to_bytes(),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CurveCiphertext):
            return NotImplemented
        return _equal(self._c1, other._c1) and _equal(self._c2, other._c2)

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"CurveCiphertext({self.to_bytes()[:8].hex()}...)"

    def __add__(self, other: object) -> CurveCiphertext:
        if not isinstance(other, CurveCiphertext):
            return NotImplemented
        return CurveCiphertext._wrap(
            _sum([self._c1, other._c1], "C1 of the sum"),
            _sum([self._c2, other._c2], "C2 of the sum"),
        )

    def __sub__(self, other: object) -> CurveCiphertext:
        if not isinstance(other, CurveCiphertext):
            return NotImplemented
        return CurveCiphertext._wrap(
            _sum([self._c1, _neg(other._c1)], "C1 of the difference"),
            _sum([self._c2, _neg(other._c2)], "C2 of the difference"),
        )

    def __neg__(self) -> CurveCiphertext:
        return CurveCiphertext._wrap(_neg(self._c1), _neg(self._c2))

    def __mul__(self, k: object) -> CurveCiphertext:
        """Encryption of k*m. k is reduced mod n; k = 0 mod n raises ParameterError
        (both points would be at infinity: use ``pk.encrypt(0)`` for a zero)."""
        if not isinstance(k, int):
            return NotImplemented
        k %= _N
        if k == 0:
            raise ParameterError(
                "scalar is 0 mod n: the result would be the point at infinity; encrypt 0 instead"
            )
        if k == 1:
            return self
        return CurveCiphertext._wrap(_scale(self._c1, k), _scale(self._c2, k))

    __rmul__ = __mul__

    def add_plain(self, m: int) -> CurveCiphertext:
        """Encryption of (plaintext + m) mod n, same randomness (no fresh r)."""
        m = _as_int(m, "plaintext") % _N
        if m == 0:
            return self
        return CurveCiphertext._wrap(self._c1, _sum([self._c2, _g_mul(m)], "C2 after add_plain"))

    def rerandomize(self, pk: CurvePublicKey) -> CurveCiphertext:
        """Same plaintext, fresh randomness: adds an encryption of zero under pk."""
        if not isinstance(pk, CurvePublicKey):
            raise ParameterError("rerandomize needs the CurvePublicKey the ciphertext is under")
        while True:
            s = _random_scalar()
            c1 = _try_sum([self._c1, _base_mul(s)])
            if c1 is None:  # s = -r: probability 1/n; redraw
                continue
            c2 = _try_sum([self._c2, _mul(pk._y, s)])
            if c2 is None:
                continue
            return CurveCiphertext._wrap(c1, c2)


def sum_ciphertexts(cts: Iterable[CurveCiphertext]) -> CurveCiphertext:
    """Sum of many ciphertexts in two libsecp256k1 calls (faster than repeated +)."""
    items = list(cts)
    if not items:
        raise ParameterError("cannot sum an empty list of ciphertexts (no encoding for it)")
    for ct in items:
        if not isinstance(ct, CurveCiphertext):
            raise ParameterError(f"expected CurveCiphertext, got {type(ct).__name__}")
    if len(items) == 1:
        return items[0]
    return CurveCiphertext._wrap(
        _sum([ct._c1 for ct in items], "C1 of the sum"),
        _sum([ct._c2 for ct in items], "C2 of the sum"),
    )


def ciphertexts_to_bytes(cts: Iterable[CurveCiphertext]) -> bytes:
    """Concatenation of the 66-byte encodings."""
    return b"".join(ct.to_bytes() for ct in cts)


def ciphertexts_from_bytes(blob: bytes, count: int | None = None) -> list[CurveCiphertext]:
    """Parse a concatenation of 66-byte ciphertexts, checking its length (and count if given)."""
    blob = _as_bytes(blob, "curve ciphertext batch")
    if len(blob) % CIPHERTEXT_BYTES:
        raise EncodingError(
            f"curve ciphertext batch: {len(blob)} bytes is not a multiple of {CIPHERTEXT_BYTES}"
        )
    if count is not None:
        count = _as_int(count, "count")
        if count < 0:
            raise ParameterError(f"count must be >= 0, got {count}")
        if len(blob) != count * CIPHERTEXT_BYTES:
            raise EncodingError(
                f"curve ciphertext batch: expected {count} ciphertexts "
                f"({count * CIPHERTEXT_BYTES} bytes), got {len(blob)} bytes"
            )
    return [
        CurveCiphertext(blob[i : i + CIPHERTEXT_BYTES])
        for i in range(0, len(blob), CIPHERTEXT_BYTES)
    ]


# -- keys -------------------------------------------------------------------------------


class CurvePublicKey:
    """Y = xG; encrypts. 33 bytes on the wire (compressed point)."""

    __slots__ = ("_bytes", "_y")
    _y: _Point
    _bytes: bytes

    def __init__(self, data: bytes) -> None:
        data = _as_bytes(data, "curve public key")
        object.__setattr__(self, "_y", _parse(data, "curve public key"))
        object.__setattr__(self, "_bytes", data)

    @classmethod
    def _wrap(cls, y: _Point) -> CurvePublicKey:
        pk = object.__new__(cls)
        object.__setattr__(pk, "_y", y)
        object.__setattr__(pk, "_bytes", _serialize(y))
        return pk

    @classmethod
    def from_bytes(cls, data: bytes) -> CurvePublicKey:
        """Parse a 33-byte compressed point; EncodingError if it is not one."""
        return cls(data)

    def to_bytes(self) -> bytes:
        """The 33-byte compressed point."""
        return self._bytes

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CurvePublicKey is immutable")

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (CurvePublicKey.from_bytes, (self._bytes,))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CurvePublicKey):
            return NotImplemented
        return self._bytes == other._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def __repr__(self) -> str:
        return f"CurvePublicKey({self._bytes.hex()})"

    def encrypt(self, m: int) -> CurveCiphertext:
        """Encrypt m (any int, taken mod n; meant for small values) with fresh randomness."""
        m = _as_int(m, "plaintext") % _N
        mg = _g_mul(m) if m else None
        while True:
            r = _random_scalar()
            ry = _mul(self._y, r)
            if mg is None:
                return CurveCiphertext._wrap(_base_mul(r), ry)
            c2 = _try_sum([mg, ry])
            if c2 is not None:  # else m = -r*x: probability 1/n; redraw
                return CurveCiphertext._wrap(_base_mul(r), c2)

    def encrypt_bit(self, b: int) -> CurveCiphertext:
        """Encrypt a bit (0 or 1, ParameterError otherwise)."""
        return self.encrypt(_bit(b))


class CurvePrivateKey:
    """The secret x in [1, n-1]; tests ciphertexts for zero. Owned by the PSP alone."""

    __slots__ = ("_public", "_x", "_xb")
    _x: int
    _xb: bytes
    _public: CurvePublicKey

    def __init__(self, x: int) -> None:
        x = _as_int(x, "secret key")
        if not 0 < x < _N:
            raise ParameterError("secret key must be in [1, n-1]")
        object.__setattr__(self, "_x", x)
        object.__setattr__(self, "_xb", x.to_bytes(SCALAR_BYTES, "big"))
        object.__setattr__(self, "_public", CurvePublicKey._wrap(_base_mul(x)))

    @classmethod
    def generate(cls) -> CurvePrivateKey:
        """A fresh key from the OS CSPRNG (``secrets``)."""
        return cls(_random_scalar())

    @classmethod
    def from_bytes(cls, data: bytes) -> CurvePrivateKey:
        """The key from its 32-byte big-endian secret (for storage by its owner)."""
        data = _as_bytes(data, "curve secret key")
        if len(data) != SCALAR_BYTES:
            raise EncodingError(f"curve secret key: expected {SCALAR_BYTES} bytes, got {len(data)}")
        x = int.from_bytes(data, "big")
        if not 0 < x < _N:
            raise EncodingError("curve secret key: scalar must be in [1, n-1]")
        return cls(x)

    def to_bytes(self) -> bytes:
        """The 32-byte big-endian secret. It is secret: never send it."""
        return self._xb

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("CurvePrivateKey is immutable")

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return (CurvePrivateKey.from_bytes, (self._xb,))

    def __repr__(self) -> str:
        return f"CurvePrivateKey(<secret>, public={self._public.to_bytes().hex()})"

    @property
    def public_key(self) -> CurvePublicKey:
        """Y = xG."""
        return self._public

    def is_zero(self, ct: CurveCiphertext) -> bool:
        """True iff ct encrypts 0 mod n: one scalar multiplication, C2 == x*C1.

        x*C1 is computed by libsecp256k1's constant-time ECDH (the secret is
        long-lived; ``tweak_mul`` is variable-time in the scalar), which
        returns SHA-256 of the compressed point, so the comparison is against
        SHA-256 of C2's compressed form (equal iff the points are, barring a
        SHA-256 collision).
        """
        if not isinstance(ct, CurveCiphertext):
            raise ParameterError(f"expected CurveCiphertext, got {type(ct).__name__}")
        out = ffi.new("unsigned char[32]")
        if not lib.secp256k1_ecdh(_CTX, out, ct._c1, self._xb, ffi.NULL, ffi.NULL):
            raise MpcError("libsecp256k1 ECDH failed")  # unreachable: x is a valid scalar
        return bytes(out) == _sha256(_serialize(ct._c2)).digest()

    def encrypt(self, m: int) -> CurveCiphertext:
        """Encrypt m as the key owner: C2 = (m + r*x)G, two fixed-base multiplications.

        Same distribution as ``public_key.encrypt(m)``, cheaper (the owner
        encrypts its own bits in a comparison).
        """
        m = _as_int(m, "plaintext") % _N
        while True:
            r = _random_scalar()
            k = (m + r * self._x) % _N
            if k:  # else m = -r*x: probability 1/n; redraw
                return CurveCiphertext._wrap(_base_mul(r), _base_mul(k))

    def encrypt_bit(self, b: int) -> CurveCiphertext:
        """Encrypt a bit (0 or 1) as the key owner."""
        return self.encrypt(_bit(b))

    def decrypt_small(self, ct: CurveCiphertext, bound: int) -> int:
        """TEST HELPER: the plaintext m with |m| <= bound, by brute force (O(bound)).

        Not for protocol use (the protocols only need :meth:`is_zero`).
        DecryptionError if the plaintext is outside [-bound, bound].
        """
        bound = _as_int(bound, "bound")
        if not 0 <= bound <= _DECRYPT_SMALL_LIMIT:
            raise ParameterError(f"bound must be in [0, {_DECRYPT_SMALL_LIMIT}]")
        if self.is_zero(ct):
            return 0
        target = _serialize(_sum([ct._c2, _neg(_mul(ct._c1, self._x))], "mG"))
        acc = _G
        for i in range(1, bound + 1):
            s = _serialize(acc)
            if s[1:] == target[1:]:  # same x: +iG or -iG
                return i if s[0] == target[0] else -i
            acc = _sum([acc, _G], "iG")
        raise DecryptionError(f"plaintext is not in [-{bound}, {bound}]")
