"""Batch-oriented secp256k1 point arithmetic for the comparison (raw maths, no networking).

:mod:`mpc.elgamal.curve` is the general-purpose curve ElGamal of the project
(one object per ciphertext, compressed points on the wire). A comparison
handles tens of thousands of points per batch, so this module works on bare
libsecp256k1 point structs (through coincurve's cffi binding, like
``mpc.elgamal.curve``) and adds what the hot loops need:

* **uncompressed wire format** (SEC1, 65 bytes): parsing one costs about
  0.4 us against about 5 us for a compressed point (a field square root);
* **fixed-base comb tables** (:class:`Comb`): k*P as one libsecp256k1 call
  summing at most 32 precomputed points (k's 32 bytes index 32 rows of 255
  multiples), about 30 % cheaper than ``secp256k1_ec_pubkey_create`` here and
  usable for any base, notably the PSP's public key Y. Lookups are indexed by
  the scalar, so a comb is for ephemeral scalars only, never for a
  long-lived secret (the PSP's key goes through the constant-time ECDH);
* **zero test by ECDH**: libsecp256k1's ECDH returns SHA-256 of the compressed
  point x*C1, so a ciphertext (C1, C2) encrypts 0 iff that digest equals
  SHA-256 of C2's compressed encoding, which is a byte slice of its
  uncompressed encoding (no point operation on C2 at all).

Every function counts its calls in :data:`OPS` (the benchmark reports them).
The point at infinity cannot be represented: a sum or product that would be
infinity raises :class:`~mpc.elgamal.curve.PointAtInfinityError`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Sequence
from typing import Any

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from mpc.elgamal.curve import CURVE_ORDER, PointAtInfinityError
from mpc.errors import EncodingError, MpcError, ParameterError

__all__ = [
    "COMPRESSED_BYTES",
    "OPS",
    "ORDER",
    "POINT_BYTES",
    "Comb",
    "G",
    "add",
    "add_mul",
    "base_comb",
    "comb_for",
    "compressed",
    "digest",
    "ecdh_digest",
    "mul",
    "neg",
    "parse",
    "parse_compressed",
    "random_scalar",
    "random_scalars",
    "serialize",
    "serialize_compressed",
    "serialize_pair",
    "small_multiple",
]

ORDER = CURVE_ORDER
POINT_BYTES = 65
"""SEC1 uncompressed point: 0x04 || x || y."""
COMPRESSED_BYTES = 33

OPS: Counter[str] = Counter()
"""Calls per operation: ``mul`` (variable-base scalar multiplication), ``comb``
(fixed-base multiplication), ``ecdh`` (zero test), ``add`` (one libsecp256k1
sum of several points), ``parse``, ``serialize``. Reset it with ``OPS.clear()``."""

_CTX = GLOBAL_CONTEXT.ctx
_POINT_T = ffi.typeof("secp256k1_pubkey *")
_ARRAY_T = "secp256k1_pubkey *[]"
_FLAG_UNCOMPRESSED = 2
_FLAG_COMPRESSED = 258

Point = Any
"""A cffi ``secp256k1_pubkey *`` (opaque 64 bytes); never mutated once built."""


def random_scalar() -> int:
    """Uniform in [1, n-1] from the OS CSPRNG."""
    return secrets.randbelow(ORDER - 1) + 1


def random_scalars(count: int) -> list[int]:
    """``count`` independent scalars in [1, n-1], each within 2^-128 of uniform.

    One read of the OS CSPRNG for the whole batch: 384 random bits per scalar,
    reduced mod n - 1.
    """
    below = ORDER - 1
    raw = secrets.token_bytes(48 * count)
    return [int.from_bytes(raw[i : i + 48], "big") % below + 1 for i in range(0, 48 * count, 48)]


def parse(data: bytes, what: str = "point") -> Point:
    """A point from its 65-byte uncompressed encoding; EncodingError if it is not one."""
    OPS["parse"] += 1
    if len(data) != POINT_BYTES:
        raise EncodingError(f"{what}: expected {POINT_BYTES} bytes, got {len(data)}")
    if data[0] != 4:
        raise EncodingError(f"{what}: prefix byte 0x{data[0]:02x} is not an uncompressed point")
    p = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_parse(_CTX, p, bytes(data), POINT_BYTES):
        raise EncodingError(f"{what}: (x, y) is not a point of secp256k1")
    return p


def parse_compressed(data: bytes, what: str = "point") -> Point:
    """A point from its 33-byte compressed encoding; EncodingError if it is not one."""
    OPS["parse"] += 1
    if len(data) != COMPRESSED_BYTES or data[0] not in (2, 3):
        raise EncodingError(f"{what}: not a {COMPRESSED_BYTES}-byte compressed point")
    p = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_parse(_CTX, p, bytes(data), COMPRESSED_BYTES):
        raise EncodingError(f"{what}: x is not the coordinate of a secp256k1 point")
    return p


def serialize(p: Point) -> bytes:
    """The 65-byte uncompressed encoding."""
    OPS["serialize"] += 1
    out = ffi.new("unsigned char[65]")
    size = ffi.new("size_t *", POINT_BYTES)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, size, p, _FLAG_UNCOMPRESSED)
    return ffi.buffer(out, POINT_BYTES)[:]


def serialize_compressed(p: Point) -> bytes:
    """The 33-byte compressed encoding."""
    OPS["serialize"] += 1
    out = ffi.new("unsigned char[33]")
    size = ffi.new("size_t *", COMPRESSED_BYTES)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, size, p, _FLAG_COMPRESSED)
    return ffi.buffer(out, COMPRESSED_BYTES)[:]


def compressed(uncompressed: bytes) -> bytes:
    """Compressed encoding from an uncompressed one, by slicing (no curve arithmetic)."""
    return bytes((2 | (uncompressed[64] & 1),)) + uncompressed[1:33]


def add(points: Sequence[Point]) -> Point:
    """The sum of one or more points in one libsecp256k1 call."""
    OPS["add"] += 1
    q = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_combine(_CTX, q, ffi.new(_ARRAY_T, list(points)), len(points)):
        raise PointAtInfinityError("a sum of points is the point at infinity")
    return q


def add_mul(points: Sequence[Point], k: int) -> Point:
    """k * (sum of points), k in [1, n-1]: one sum and one in-place multiplication."""
    OPS["add"] += 1
    OPS["mul"] += 1
    q = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_combine(_CTX, q, ffi.new(_ARRAY_T, list(points)), len(points)):
        raise PointAtInfinityError("a sum of points is the point at infinity")
    if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, q, k.to_bytes(32, "big")):
        raise ParameterError("scalar must be in [1, n-1]")
    return q


def serialize_pair(a: Point, b: Point) -> bytes:
    """The 130-byte encoding of two points (uncompressed, back to back)."""
    OPS["serialize"] += 2
    out = ffi.new("unsigned char[130]")
    size = ffi.new("size_t *", POINT_BYTES)
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, size, a, _FLAG_UNCOMPRESSED)
    size[0] = POINT_BYTES
    lib.secp256k1_ec_pubkey_serialize(_CTX, out + POINT_BYTES, size, b, _FLAG_UNCOMPRESSED)
    return ffi.buffer(out, 2 * POINT_BYTES)[:]


def neg(p: Point) -> Point:
    """-P (cheap: negates y)."""
    q = ffi.new(_POINT_T, p[0])
    lib.secp256k1_ec_pubkey_negate(_CTX, q)
    return q


def mul(p: Point, k: int) -> Point:
    """k*P for k in [1, n-1]: variable time in k, so for ephemeral scalars only."""
    OPS["mul"] += 1
    q = ffi.new(_POINT_T, p[0])
    if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, q, k.to_bytes(32, "big")):
        raise ParameterError("scalar must be in [1, n-1]")
    return q


def ecdh_digest(secret: bytes, p: Point) -> bytes:
    """SHA-256 of the compressed encoding of secret*P (libsecp256k1's constant-time ECDH)."""
    OPS["ecdh"] += 1
    out = ffi.new("unsigned char[32]")
    if not lib.secp256k1_ecdh(_CTX, out, p, secret, ffi.NULL, ffi.NULL):
        raise MpcError("libsecp256k1 ECDH failed")  # unreachable for a valid secret
    return ffi.buffer(out, 32)[:]


def digest(compressed_point: bytes) -> bytes:
    """SHA-256 of a compressed encoding: what :func:`ecdh_digest` returns for that point."""
    return hashlib.sha256(compressed_point).digest()


class Comb:
    """k*P for a fixed base P: 32 rows of the 255 multiples d * 256^i * P.

    k*P is the sum of the row entries picked by k's 32 little-endian bytes:
    one libsecp256k1 call adding at most 32 points. Building the table is
    8,160 point additions (some 25 ms here); it holds about 0.5 MB of points.
    Variable time in k (table lookups): for ephemeral scalars only.
    """

    __slots__ = ("_rows", "base")

    def __init__(self, base: Point) -> None:
        self.base = base
        rows: list[list[Point]] = []
        b = base
        for _ in range(32):
            row: list[Point] = [None, b]
            acc = b
            for _d in range(2, 256):
                acc = _add2(acc, b)
                row.append(acc)
            rows.append(row)
            b = _add2(acc, b)  # 256 * (this row's base)
        self._rows = rows

    def mul(self, k: int) -> Point:
        """k*P for k in [1, n-1]."""
        OPS["comb"] += 1
        rows = self._rows
        pts = [rows[i][d] for i, d in enumerate(k.to_bytes(32, "little")) if d]
        if len(pts) == 1:
            return pts[0]
        q = ffi.new(_POINT_T)
        if not lib.secp256k1_ec_pubkey_combine(_CTX, q, ffi.new(_ARRAY_T, pts), len(pts)):
            raise PointAtInfinityError("k*P is the point at infinity (k = 0 mod n)")
        return q


def _add2(a: Point, b: Point) -> Point:
    q = ffi.new(_POINT_T)
    if not lib.secp256k1_ec_pubkey_combine(_CTX, q, ffi.new(_ARRAY_T, [a, b]), 2):
        raise PointAtInfinityError("a sum of points is the point at infinity")
    return q


def _generator() -> Point:
    p = ffi.new(_POINT_T)
    lib.secp256k1_ec_pubkey_create(_CTX, p, (1).to_bytes(32, "big"))
    return p


G: Point = _generator()
_BASE_COMB: Comb | None = None
_COMBS: dict[bytes, Comb] = {}


def base_comb() -> Comb:
    """The comb table of the generator G (built on first use, then shared)."""
    global _BASE_COMB
    if _BASE_COMB is None:
        _BASE_COMB = Comb(G)
    return _BASE_COMB


def comb_for(public_key: bytes) -> Comb:
    """The comb table of a public point given by its compressed encoding (cached)."""
    table = _COMBS.get(public_key)
    if table is None:
        table = Comb(parse_compressed(public_key, "curve public key"))
        if len(_COMBS) >= 16:  # a handful of PSP keys at most; forget the oldest
            del _COMBS[next(iter(_COMBS))]
        _COMBS[public_key] = table
    return table


_SMALL: dict[int, Point] = {}


def small_multiple(k: int) -> Point:
    """k*G for a small non-zero integer k (negative allowed), cached."""
    p = _SMALL.get(k)
    if p is None:
        if k == 0:
            raise PointAtInfinityError("0*G is the point at infinity")
        p = ffi.new(_POINT_T)
        lib.secp256k1_ec_pubkey_create(_CTX, p, (k % ORDER).to_bytes(32, "big"))
        _SMALL[k] = p
    return p
