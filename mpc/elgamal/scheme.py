"""ElGamal over Z*_{N^2} with the message in the exponent of (1+N), threshold decryption.

The Bresson-Catalano-Pointcheval construction (DESIGN 3.1)::

    pk = (N, g, h = g^x)      Enc(m; r) = (g^r, h^r (1+N)^m) mod N^2
    Dec: (1+N)^m = c2 / c1^x,  m = (c2 / c1^x mod N^2 - 1) / N

(1+N)^m = 1 + mN mod N^2, so the message costs one multiplication and
decryption needs no discrete log: plaintexts are all of Z_N. The key is shared
additively over the integers on squares: h = g^(2x) with x = x_1 + x_2; each
holder gives a partial decryption c1^(2 x_i), and whoever holds both partials
(and c) decrypts. Working on squares removes every element of order 2 (-1
among them) from what a key share ever touches (docs/security.md).

Raw maths only: nothing here imports networking.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import gmpy2
from gmpy2 import f_mod, mpz

from mpc.elgamal.fixedbase import FixedBaseTable
from mpc.elgamal.opcount import OPS
from mpc.elgamal.params import STAT_BITS, GroupParams
from mpc.errors import DecryptionError, EncodingError, ParameterError
from mpc.pool import Pool

DEFAULT_WINDOW = 8
PROOF_CHALLENGE_BITS = 128
"""Challenge bits of the upload proofs (:mod:`mpc.elgamal.proofs`)."""


def g_table_bits(params: GroupParams) -> int:
    """Exponent bits g's fixed-base table covers: an upload proof's response, the longest."""
    return params.exponent_bits + PROOF_CHALLENGE_BITS + STAT_BITS + 1


def _check_element(params: GroupParams, v: mpz, what: str) -> mpz:
    if not 0 < v < params.n2:
        raise EncodingError(f"{what} is outside Z_(N^2): must satisfy 0 < c < N^2")
    if gmpy2.gcd(v, params.n) != 1:
        raise EncodingError(f"{what} is not invertible mod N^2 (shares a factor with N)")
    return v


def as_bytes(data: object, what: str) -> bytes:
    """Accept bytes-like input only; anything else is an EncodingError (never a TypeError)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError(f"{what} must be bytes, got {type(data).__name__}")
    return bytes(data)


def element_to_bytes(params: GroupParams, v: int) -> bytes:
    """Fixed-width big-endian encoding of one element mod N^2."""
    return int(v).to_bytes(params.element_bytes, "big")


def element_from_bytes(params: GroupParams, data: bytes, what: str = "element") -> mpz:
    """Decode and validate one element mod N^2 (exact length, range, invertible)."""
    data = as_bytes(data, what)
    if len(data) != params.element_bytes:
        raise EncodingError(
            f"{what} must be exactly {params.element_bytes} bytes, got {len(data)}"
        )
    return _check_element(params, mpz(int.from_bytes(data, "big")), what)


class Ciphertext:
    """An encryption (c1, c2) under one public key; immutable, with homomorphic operators.

    ``a + b`` and ``a - b`` add and subtract plaintexts, ``a * k`` multiplies by a
    known integer (negative allowed), ``-a`` negates. None of these re-randomise:
    call :meth:`PublicKey.rerandomize` before a ciphertext leaves its holder.
    """

    __slots__ = ("c1", "c2", "pk")

    def __init__(self, pk: PublicKey, c1: mpz, c2: mpz) -> None:
        self.pk = pk
        self.c1 = c1
        self.c2 = c2

    def _same_key(self, other: object) -> Ciphertext:
        if not isinstance(other, Ciphertext):
            raise ParameterError(f"expected a Ciphertext, got {type(other).__name__}")
        if other.pk.params.n != self.pk.params.n or other.pk.h != self.pk.h:
            raise ParameterError("ciphertexts under different keys cannot be combined")
        return other

    def __add__(self, other: Ciphertext) -> Ciphertext:
        o = self._same_key(other)
        OPS["mulmod"] += 2
        n2 = self.pk.params.n2
        return Ciphertext(self.pk, f_mod(self.c1 * o.c1, n2), f_mod(self.c2 * o.c2, n2))

    def __neg__(self) -> Ciphertext:
        OPS["invert"] += 2
        n2 = self.pk.params.n2
        return Ciphertext(self.pk, gmpy2.invert(self.c1, n2), gmpy2.invert(self.c2, n2))

    def __sub__(self, other: Ciphertext) -> Ciphertext:
        return self + (-self._same_key(other))

    def __mul__(self, k: int) -> Ciphertext:
        if not isinstance(k, int | mpz):
            return NotImplemented
        n2 = self.pk.params.n2
        OPS["powmod"] += 2
        OPS["powmod_bits"] += 2 * int(k).bit_length()
        return Ciphertext(self.pk, gmpy2.powmod(self.c1, k, n2), gmpy2.powmod(self.c2, k, n2))

    __rmul__ = __mul__

    def shift_left(self, bits: int) -> Ciphertext:
        """Multiply the plaintext by 2^bits (repeated squaring)."""
        return self * (1 << bits)

    def add_plain(self, m: int) -> Ciphertext:
        """Add a known plaintext: one multiplication by 1 + mN."""
        p = self.pk.params
        OPS["mulmod"] += 1
        return Ciphertext(self.pk, self.c1, f_mod(self.c2 * (1 + (m % p.n) * p.n), p.n2))

    def to_bytes(self) -> bytes:
        """c1 || c2, each fixed-width big-endian."""
        p = self.pk.params
        return element_to_bytes(p, self.c1) + element_to_bytes(p, self.c2)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ciphertext) and (self.c1, self.c2) == (other.c1, other.c2)

    def __hash__(self) -> int:
        return hash((int(self.c1), int(self.c2)))

    def __repr__(self) -> str:
        return f"Ciphertext(c1=0x{int(self.c1) & 0xFFFFFFFF:08x}..., {self.pk.params.name})"


class ZeroPool(Pool[tuple[mpz, mpz]]):
    """Precomputed encryptions of zero (g^r, h^r), drawn once each, never reused.

    Re-randomising costs one multiplication per component when the pool has
    stock. :meth:`start` refills it in a background thread, in idle time
    (see :class:`mpc.pool.Pool`); when it is empty a fresh pair is computed on
    the spot, never an old one returned.
    """

    chunk = 1  # one pair (about 3 ms at 2048 bits) at a time, so idleness is checked often

    def __init__(self, pk: PublicKey, target: int = 256) -> None:
        super().__init__(lambda n: [pk.fresh_zero_pair() for _ in range(n)], target, "zero-pool")
        self.pk = pk


class PublicKey:
    """The joint public key (params, h); encrypts and re-randomises.

    Fixed-base tables for g and h are built on first use (about 0.4 s each at
    2048 bits) and reused; ``precompute=False`` keeps plain powmod for a party
    that encrypts only a handful of values.
    """

    def __init__(
        self, params: GroupParams, h: int, *, window: int = DEFAULT_WINDOW, precompute: bool = True
    ) -> None:
        self.params = params
        self.h = _check_element(params, mpz(h), "public key h")
        if self.h == 1:
            raise ParameterError("public key h = 1 is degenerate")
        self.window = window
        self.precompute = precompute
        self._tables: tuple[FixedBaseTable, FixedBaseTable] | None = None
        self._table_lock = threading.Lock()
        self._pool: ZeroPool | None = None

    # -- fixed-base exponentiation -------------------------------------------------
    def _get_tables(self) -> tuple[FixedBaseTable, FixedBaseTable]:
        if self._tables is None:
            with self._table_lock:
                if self._tables is None:
                    p = self.params
                    self._tables = (
                        FixedBaseTable(p.g, p.n2, g_table_bits(p), self.window),
                        FixedBaseTable(self.h, p.n2, p.exponent_bits, self.window),
                    )
        return self._tables

    def g_pow(self, e: int) -> mpz:
        if self.precompute:
            return self._get_tables()[0].pow(e)
        OPS["powmod"] += 1
        OPS["powmod_bits"] += int(e).bit_length()
        return gmpy2.powmod(self.params.g, e, self.params.n2)

    def h_pow(self, e: int) -> mpz:
        if self.precompute:
            return self._get_tables()[1].pow(e)
        OPS["powmod"] += 1
        OPS["powmod_bits"] += int(e).bit_length()
        return gmpy2.powmod(self.h, e, self.params.n2)

    def random_exponent(self) -> mpz:
        """A fresh exponent of |N| + 128 bits (statistically close to uniform)."""
        return mpz(secrets.randbits(self.params.exponent_bits))

    def fresh_zero_pair(self) -> tuple[mpz, mpz]:
        """(g^r, h^r) for a fresh r: an encryption of zero."""
        r = self.random_exponent()
        return self.g_pow(r), self.h_pow(r)

    # -- encryption ----------------------------------------------------------------
    def encrypt(self, m: int, r: int | None = None) -> Ciphertext:
        """Encrypt m (taken mod N; negative m wraps to N - |m|) with fresh randomness."""
        p = self.params
        if r is None:
            r = self.random_exponent()
        c1 = self.g_pow(r)
        c2 = f_mod(self.h_pow(r) * (1 + (m % p.n) * p.n), p.n2)
        OPS["mulmod"] += 1
        return Ciphertext(self, c1, c2)

    def encrypt_from_pool(self, m: int) -> Ciphertext:
        """Encrypt m with a precomputed zero pair: one multiplication."""
        p = self.params
        z1, z2 = self.pool.draw_one()
        OPS["mulmod"] += 1
        return Ciphertext(self, z1, f_mod(z2 * (1 + (m % p.n) * p.n), p.n2))

    def encrypt_many(self, ms: Iterable[int]) -> list[Ciphertext]:
        return [self.encrypt(m) for m in ms]

    @property
    def pool(self) -> ZeroPool:
        """This key's pool of encryptions of zero (created empty on first use)."""
        if self._pool is None:
            self._pool = ZeroPool(self)
        return self._pool

    def rerandomize(self, ct: Ciphertext) -> Ciphertext:
        """Same plaintext, fresh randomness: multiply by an encryption of zero from the pool."""
        z1, z2 = self.pool.draw_one()
        n2 = self.params.n2
        OPS["mulmod"] += 2
        return Ciphertext(self, f_mod(ct.c1 * z1, n2), f_mod(ct.c2 * z2, n2))

    # -- wire ----------------------------------------------------------------------
    @property
    def ciphertext_bytes(self) -> int:
        return 2 * self.params.element_bytes

    def ciphertext_from_bytes(self, data: bytes) -> Ciphertext:
        """Decode one ciphertext; raises EncodingError on any malformation."""
        data = as_bytes(data, "ciphertext")
        if len(data) != self.ciphertext_bytes:
            raise EncodingError(
                f"ciphertext must be exactly {self.ciphertext_bytes} bytes, got {len(data)}"
            )
        e = self.params.element_bytes
        c1 = element_from_bytes(self.params, data[:e], "ciphertext c1")
        c2 = element_from_bytes(self.params, data[e:], "ciphertext c2")
        return Ciphertext(self, c1, c2)

    def ciphertexts_to_bytes(self, cts: Sequence[Ciphertext]) -> bytes:
        """A batch as one blob: the fixed-width encodings back to back."""
        return b"".join(c.to_bytes() for c in cts)

    def ciphertexts_from_bytes(self, blob: bytes, count: int | None = None) -> list[Ciphertext]:
        """Decode a batch blob; its length must be count * ciphertext_bytes exactly."""
        w = self.ciphertext_bytes
        blob = as_bytes(blob, "ciphertext batch")
        if len(blob) % w:
            raise EncodingError(f"batch of {len(blob)} bytes is not a multiple of {w}")
        if count is not None and len(blob) != count * w:
            raise EncodingError(
                f"batch says {count} ciphertexts but carries {len(blob) // w} ({len(blob)} bytes)"
            )
        mv = memoryview(blob)
        return [self.ciphertext_from_bytes(mv[i : i + w]) for i in range(0, len(blob), w)]

    def to_bytes(self) -> bytes:
        return element_to_bytes(self.params, self.h)

    @classmethod
    def from_bytes(cls, params: GroupParams, data: bytes, **kw: object) -> PublicKey:
        h = element_from_bytes(params, data, "public key h")
        if h == 1:
            raise EncodingError("public key h = 1 is degenerate")
        return cls(params, h, **kw)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and (self.params.n, self.h) == (other.params.n, other.h)

    def __hash__(self) -> int:
        return hash((int(self.params.n), int(self.h)))


@dataclass(frozen=True)
class KeyShare:
    """One key holder's secret x_i (|N| + 128 bits) and its public parts.

    ``root`` = g^(x_i) is what the holder reveals in key generation; ``h`` =
    root^2 = g^(2 x_i) is its factor of the joint key. Everything that touches
    a key share works on squares: the joint key is a product of squares and a
    partial decryption is c1^(2 x_i), so an element of order 2 (in a share or
    in a ciphertext) leaks nothing about x_i (docs/security.md).
    """

    params: GroupParams
    x: mpz = field(repr=False)
    root: mpz = field(init=False, repr=False)
    h: mpz = field(init=False)

    def __post_init__(self) -> None:
        if not 0 < self.x < (1 << self.params.exponent_bits):
            raise ParameterError(f"a key share must be in [1, 2^{self.params.exponent_bits})")
        n2 = self.params.n2
        root = gmpy2.powmod(self.params.g, self.x, n2)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "h", f_mod(root * root, n2))

    @classmethod
    def generate(cls, params: GroupParams) -> KeyShare:
        return cls(params, mpz(secrets.randbits(params.exponent_bits)))

    def partial_decrypt(self, ct: Ciphertext) -> mpz:
        """c1^(2 x_i) mod N^2: this holder's contribution to a decryption (on the square of c1)."""
        OPS["partial_decrypt"] += 1
        OPS["partial_decrypt_bits"] += int(self.x).bit_length() + 1
        return gmpy2.powmod(ct.c1, 2 * self.x, self.params.n2)

    def partial_decrypt_many(self, cts: Sequence[Ciphertext]) -> list[mpz]:
        """Partial decryptions of a batch; gmpy2 releases the GIL inside (see mpc.elgamal.batch)."""
        if not cts:
            return []
        OPS["partial_decrypt"] += len(cts)
        OPS["partial_decrypt_bits"] += len(cts) * (int(self.x).bit_length() + 1)
        return list(gmpy2.powmod_base_list([c.c1 for c in cts], 2 * self.x, self.params.n2))

    def to_bytes(self) -> bytes:
        """The secret exponent, fixed width. Store it with file mode 0600."""
        return int(self.x).to_bytes((self.params.exponent_bits + 7) // 8, "big")

    @classmethod
    def from_bytes(cls, params: GroupParams, data: bytes) -> KeyShare:
        data = as_bytes(data, "key share")
        if len(data) != (params.exponent_bits + 7) // 8:
            raise EncodingError("key share has the wrong length for these parameters")
        x = mpz(int.from_bytes(data, "big"))
        if x == 0 or x.bit_length() > params.exponent_bits:
            raise EncodingError("key share is out of range for these parameters")
        return cls(params, x)


def combine(ct: Ciphertext, partials: Sequence[int]) -> int:
    """Decrypt with every holder's partial decryption: m in [0, N).

    Raises DecryptionError if the partials do not belong to this ciphertext and
    key (the quotient is then not of the form 1 + mN).
    """
    p = ct.pk.params
    if not partials:
        raise DecryptionError("no partial decryptions to combine")
    prod = mpz(1)
    for d in partials:
        prod = f_mod(prod * _check_element(p, mpz(d), "partial decryption"), p.n2)
    OPS["mulmod"] += len(partials)
    OPS["invert"] += 1
    u = f_mod(ct.c2 * gmpy2.invert(prod, p.n2), p.n2)
    q, rem = gmpy2.f_divmod(u - 1, p.n)
    if rem != 0:
        raise DecryptionError(
            "partial decryptions do not combine to a valid plaintext "
            "(missing, wrong key, or for another ciphertext)"
        )
    return int(q)


def combine_many(cts: Sequence[Ciphertext], partials: Sequence[Sequence[int]]) -> list[int]:
    """combine() for a batch: partials[j] lists holder j's partials, one per ciphertext."""
    for j, row in enumerate(partials):
        if len(row) != len(cts):
            raise DecryptionError(
                f"holder {j} sent {len(row)} partial decryptions for {len(cts)} ciphertexts"
            )
    return [combine(ct, [row[i] for row in partials]) for i, ct in enumerate(cts)]


def sum_ciphertexts(cts: Sequence[Ciphertext]) -> Ciphertext:
    """The homomorphic sum of a non-empty list (one multiplication per term and component)."""
    if not cts:
        raise ParameterError("cannot sum an empty list of ciphertexts")
    acc = cts[0]
    for c in cts[1:]:
        acc = acc + c
    return acc


def to_signed(m: int, n: int) -> int:
    """Read a plaintext in [0, N) as a signed value in (-N/2, N/2]."""
    return m - n if m > n // 2 else m
