"""Oblivious transfer for the garbled comparison: base OTs on secp256k1, IKNP extension (raw maths).

The *garbler* (the SP in protocol "compare") holds a 128-bit string Delta,
the *evaluator* (the PSP) holds choice bits b_j. After one extension the
evaluator has 16-byte rows t_j and the garbler rows q_j with

    t_j = q_j XOR b_j * Delta

which is exactly a free-XOR wire: q_j is the zero label of input wire j and
the evaluator holds the label of its own bit (Ishai, Kilian, Nissim, Petrank,
CRYPTO 2003, used as correlated OT the way garbled-circuit libraries do, with
the OT's Delta equal to the circuit's).

* Base OTs, once per pair of servers (Bellare-Micali, receiver first): the
  garbler is the base-OT *receiver* with choice string Delta. For each i < 128
  it publishes P_i0, with P_i1 = C_i - P_i0 where C_i is a point nobody knows
  the logarithm of (hashed to the curve); it knows the secret of P_i,Delta_i
  only. The evaluator picks r, sends R = rG and derives k_ib = H(i, b, R,
  r P_ib) for both b; the garbler derives k_i,Delta_i = H(i, Delta_i, R, sk_i R).
  P_i0 is uniform whatever Delta_i is, so the evaluator learns nothing of
  Delta; the other seed needs the CDH of R and P_i,1-Delta_i.
* Extension (one message, evaluator -> garbler): for a batch with a fresh
  16-byte nonce, column i of T is G(k_i0) and the evaluator sends
  u_i = G(k_i0) XOR G(k_i1) XOR b; the garbler's column i of Q is
  G(k_i,Delta_i) XOR Delta_i u_i. G is AES-128 in counter mode keyed by the
  seed, with the nonce as initial counter block. Rows are the transposes.

Bit order: bit i of a 16-byte label is bit (i mod 8) of byte i // 8; the
point-and-permute ("colour") bit is bit 0, and Delta has it set.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from coincurve import PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.comparison import ec
from mpc.errors import EncodingError, ParameterError

__all__ = [
    "KAPPA",
    "LABEL_BYTES",
    "NONCE_BYTES",
    "OtChoiceSeeds",
    "OtDeltaKey",
    "extend_choices",
    "extend_delta",
    "transpose",
]

KAPPA = 128
"""Base OTs, bits of Delta, bits of a label."""
LABEL_BYTES = KAPPA // 8
NONCE_BYTES = 16
PUBLIC_BYTES = KAPPA * ec.COMPRESSED_BYTES
"""The garbler's published base-OT message: 128 compressed points."""
_DOMAIN = b"mpc-crm/ot/v1/"


def _hash_to_curve(i: int) -> ec.Point:
    """C_i: a point whose logarithm nobody knows (try-and-increment on x)."""
    ctr = 0
    while True:
        x = hashlib.sha256(_DOMAIN + b"C" + i.to_bytes(2, "big") + ctr.to_bytes(4, "big")).digest()
        try:
            return ec.parse_compressed(b"\x02" + x, "C")
        except EncodingError:
            ctr += 1


_C: list[ec.Point] = []


def _constants() -> list[ec.Point]:
    if not _C:
        _C.extend(_hash_to_curve(i) for i in range(KAPPA))
    return _C


def _seed(i: int, b: int, point: bytes, shared: bytes) -> bytes:
    data = _DOMAIN + b"seed" + i.to_bytes(2, "big") + bytes((b,)) + point + shared
    return hashlib.sha256(data).digest()[:16]


def _bits_of(delta: bytes) -> list[int]:
    return [(delta[i >> 3] >> (i & 7)) & 1 for i in range(KAPPA)]


def _prg(seed: bytes, nonce: bytes, nbytes: int) -> np.ndarray:
    enc = Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor()
    return np.frombuffer(enc.update(bytes(nbytes)), dtype=np.uint8)


_TRANSPOSE_8X8 = tuple(
    (np.uint64(shift), np.uint64(mask))
    for shift, mask in ((7, 0x00AA00AA00AA00AA), (14, 0x0000CCCC0000CCCC), (28, 0x00000000F0F0F0F0))
)


def transpose(columns: np.ndarray, rows: int) -> np.ndarray:
    """(128, nbytes) bit columns -> (rows, 16) labels: row j's bit i is column i's bit j.

    Bytes first (a 16-times smaller matrix than bits), then every 8x8 block of bits
    within a 64-bit word by three mask-and-shift rounds (Hacker's Delight 7-3): about
    ten times faster than unpacking to one byte per bit."""
    nb = columns.shape[1]
    x = np.ascontiguousarray(columns.T).view("<u8").copy()  # word g of byte row b: columns 8g..8g+7
    for shift, mask in _TRANSPOSE_8X8:
        t = (x ^ (x >> shift)) & mask
        x ^= t ^ (t << shift)
    out = x.view(np.uint8).reshape(nb, columns.shape[0] // 8, 8).transpose(0, 2, 1).reshape(nb * 8, -1)
    return np.ascontiguousarray(out[:rows])


@dataclass
class OtDeltaKey:
    """The garbler's base-OT key: Delta (colour bit set) and 128 secrets, kept in memory
    for the life of a server; :meth:`public` is what the evaluator needs."""

    delta: bytes = field(default=b"")
    secrets_: tuple[bytes, ...] = ()
    _public: bytes = field(default=b"", init=False, repr=False)
    _seeds: dict[bytes, list[bytes]] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.delta:
            d = bytearray(secrets.token_bytes(LABEL_BYTES))
            d[0] |= 1
            self.delta = bytes(d)
        if not self.secrets_:
            self.secrets_ = tuple(PrivateKey().secret for _ in range(KAPPA))
        if len(self.delta) != LABEL_BYTES or not self.delta[0] & 1:
            raise ParameterError("Delta must be 16 bytes with its colour bit (bit 0) set")
        if len(self.secrets_) != KAPPA:
            raise ParameterError(f"an OT key needs {KAPPA} secrets, got {len(self.secrets_)}")
        c = _constants()
        out = []
        for i, (sk, bit) in enumerate(zip(self.secrets_, _bits_of(self.delta), strict=True)):
            mine = ec.parse_compressed(PrivateKey(sk).public_key.format(), "OT key")
            # P_i0 = sk G if Delta_i = 0, else C_i - sk G (then P_i1 = sk G).
            out.append(ec.serialize_compressed(mine if not bit else ec.add([c[i], ec.neg(mine)])))
        self._public = b"".join(out)

    def public(self) -> bytes:
        """The 128 points P_i0 (4,224 bytes), what the evaluator needs."""
        return self._public

    def seeds(self, point: bytes) -> list[bytes]:
        """k_i,Delta_i for the evaluator's R (compressed); 128 ECDHs, kept per R."""
        with self._lock:  # batches of one session are garbled in several threads
            got = self._seeds.get(point)
            if got is None:
                r = ec.parse_compressed(point, "evaluator's OT point")
                bits = _bits_of(self.delta)
                got = [_seed(i, bits[i], point, ec.ecdh_digest(sk, r)) for i, sk in enumerate(self.secrets_)]
                if len(self._seeds) >= 16:
                    self._seeds.pop(next(iter(self._seeds)))
                self._seeds[point] = got
            return got

    def delta_array(self) -> np.ndarray:
        return np.frombuffer(self.delta, dtype=np.uint8)


@dataclass
class OtChoiceSeeds:
    """The evaluator's base-OT outcome for one garbler key: R and both seeds of every i.

    Made from the garbler's :meth:`OtDeltaKey.public` (256 ECDHs); R is fresh
    for every instance, so each server start begins a new epoch.
    """

    garbler_public: bytes
    point: bytes = field(init=False)
    seeds: tuple[tuple[bytes, bytes], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pub = bytes(self.garbler_public)
        if len(pub) != PUBLIC_BYTES:
            raise EncodingError(f"the peer's OT key: {len(pub)} bytes, expected {PUBLIC_BYTES}")
        c = _constants()
        key = PrivateKey()
        self.point = key.public_key.format()
        r = key.secret
        seeds = []
        for i in range(KAPPA):
            p0 = ec.parse_compressed(pub[33 * i : 33 * i + 33], f"the peer's OT point {i}")
            p1 = ec.add([c[i], ec.neg(p0)])
            seeds.append(
                (_seed(i, 0, self.point, ec.ecdh_digest(r, p0)), _seed(i, 1, self.point, ec.ecdh_digest(r, p1)))
            )
        self.seeds = tuple(seeds)


def _pack_choices(bits: np.ndarray, nbytes: int) -> np.ndarray:
    packed = np.packbits(bits.astype(np.uint8), bitorder="little")
    return np.pad(packed, (0, nbytes - packed.size))


def _nbytes(count: int) -> int:
    return 16 * ((count + 127) // 128)


def extend_choices(
    seeds: OtChoiceSeeds, choices: Sequence[int] | np.ndarray, nonce: bytes
) -> tuple[bytes, np.ndarray]:
    """Evaluator: the message u (128 columns) and its labels t_j (len(choices), 16)."""
    bits = np.asarray(choices, dtype=np.uint8)
    if bits.ndim != 1 or bits.size == 0 or int(bits.max()) > 1:
        raise ParameterError("OT choices must be a non-empty sequence of bits")
    if len(nonce) != NONCE_BYTES:
        raise ParameterError(f"an OT nonce has {NONCE_BYTES} bytes")
    m = bits.size
    nb = _nbytes(m)
    b = _pack_choices(bits, nb)
    t = np.empty((KAPPA, nb), dtype=np.uint8)
    u = np.empty((KAPPA, nb), dtype=np.uint8)
    for i, (k0, k1) in enumerate(seeds.seeds):
        t[i] = _prg(k0, nonce, nb)
        u[i] = t[i] ^ _prg(k1, nonce, nb) ^ b
    return u.tobytes(), transpose(t, m)


def extend_delta(key: OtDeltaKey, point: bytes, message: bytes, count: int, nonce: bytes) -> np.ndarray:
    """Garbler: the zero labels q_j (count, 16) for the evaluator's message u."""
    nb = _nbytes(count)
    if len(message) != KAPPA * nb:
        raise EncodingError(f"OT extension: {len(message)} bytes for {count} choices, expected {KAPPA * nb}")
    if len(nonce) != NONCE_BYTES:
        raise EncodingError(f"OT extension: nonce of {len(nonce)} bytes, expected {NONCE_BYTES}")
    u = np.frombuffer(message, dtype=np.uint8).reshape(KAPPA, nb)
    q = np.empty((KAPPA, nb), dtype=np.uint8)
    for i, (seed, bit) in enumerate(zip(key.seeds(point), _bits_of(key.delta), strict=True)):
        q[i] = _prg(seed, nonce, nb)
        if bit:
            q[i] ^= u[i]
    return transpose(q, count)
