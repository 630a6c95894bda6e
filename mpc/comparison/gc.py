"""A garbled comparison circuit [c < r] for a batch, half-gates and free XOR (raw maths).

The *garbler* knows r (l bits), the *evaluator* c (l bits) and holds, from
the correlated OT of :mod:`mpc.comparison.ot`, the label t_i = q_i XOR c_i Delta
of each of its bits. The circuit is the borrow chain, least significant bit
first, one AND gate a bit:

    g_0 = 0,   g_(i+1) = g_i XOR ((r_i XOR g_i) AND (NOT c_i XOR g_i)),   [c < r] = g_l

(g_(i+1) is the majority of r_i, NOT c_i and g_i.) The garbler knows r_i, so
r_i XOR g_i is g_i's label shifted by r_i Delta on its side and the same label
on the evaluator's; NOT c_i is a shift by Delta of the OT's zero label. So r
never enters the circuit as a wire, and the evaluator cannot tell the l gates
apart. Each AND gate is garbled with Zahur, Rosulek and Evans' half gates
(EUROCRYPT 2015): two 16-byte rows, four hashes to garble, two to evaluate.
The hash is Guo, Katz, Wang and Yu's tweakable circular-correlation-robust
TMMO, H(x, i) = pi(pi(x) XOR i) XOR pi(x), with pi fixed-key AES (IEEE S&P
2020). Tweaks are a 12-byte batch nonce and a gate counter, so no tweak
repeats under one Delta.

Output: the garbler sends d = colour(zero label of g_l) XOR delta_k with its own
random bit delta_k, and the evaluator reads colour(its label) XOR d =
[c < r] XOR delta_k: nobody learns the comparison. Everything is vectorised
over the batch (numpy, one AES call for all comparisons' gates of a layer).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mpc.comparison.ot import LABEL_BYTES
from mpc.errors import EncodingError, ParameterError

__all__ = [
    "GATE_NONCE_BYTES",
    "Garbled",
    "evaluate_less_than",
    "garble_less_than",
    "hash_labels",
    "tweaks",
    "value_bits",
]

GATE_NONCE_BYTES = 12
_FIXED_KEY = bytes.fromhex("6d70632d63726d2f67632f7631000000")  # public: pi is a fixed permutation
_local = threading.local()


def _pi(x: np.ndarray) -> np.ndarray:
    enc = getattr(_local, "enc", None)
    if enc is None:
        enc = _local.enc = Cipher(algorithms.AES(_FIXED_KEY), modes.ECB()).encryptor()
    return np.frombuffer(enc.update(x.tobytes()), dtype=np.uint8).reshape(x.shape)


def hash_labels(x: np.ndarray, tweaks: np.ndarray) -> np.ndarray:
    """TMMO: H(x, i) = pi(pi(x) XOR i) XOR pi(x), row by row."""
    p = _pi(x)
    return _pi(p ^ tweaks) ^ p


def value_bits(values: np.ndarray | Sequence[int], bits: int) -> np.ndarray:
    """(K,) non-negative values below 2^bits -> (K, bits) of 0/1, least significant first.

    numpy unsigned arrays (bits <= 64) or Python ints of any size.
    """
    if isinstance(values, np.ndarray) and values.dtype == np.uint64 and bits <= 64:
        return ((values[:, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    width = (bits + 7) // 8
    ints = [int(v) for v in values]
    if any(v < 0 or v >> bits for v in ints):
        raise ParameterError(f"a value is negative or does not fit in {bits} bits")
    raw = np.frombuffer(b"".join(v.to_bytes(width, "little") for v in ints), dtype=np.uint8)
    return np.unpackbits(raw.reshape(len(ints), width), axis=1, bitorder="little")[:, :bits].copy()


def _colour(x: np.ndarray) -> np.ndarray:
    return x[..., 0] & 1


def _times(bit: np.ndarray, x: np.ndarray) -> np.ndarray:
    """bit_k * x_k (rows), bit of 0/1."""
    return x & (np.uint8(0) - bit.astype(np.uint8))[:, None]


def tweaks(nonce: bytes, count: int) -> np.ndarray:
    """(count, 16): the hash tweaks nonce || j for j < count (a 12-byte nonce, a 32-bit counter).

    Every user of one Delta draws a fresh nonce per batch, so no tweak repeats."""
    if len(nonce) != GATE_NONCE_BYTES:
        raise ParameterError(f"a tweak nonce has {GATE_NONCE_BYTES} bytes")
    out = np.empty((count, LABEL_BYTES), dtype=np.uint8)
    out[:, :GATE_NONCE_BYTES] = np.frombuffer(nonce, dtype=np.uint8)
    out[:, GATE_NONCE_BYTES:] = np.arange(count, dtype="<u4")[:, None].view(np.uint8)
    return out


def _tweaks(nonce: bytes, count: int, bits: int) -> np.ndarray:
    """(bits, 2, count, 16): tweak of gate (k, i), half h = nonce || 2 * (i * count + k) + h."""
    return tweaks(nonce, 2 * bits * count).reshape(bits, count, 2, LABEL_BYTES).transpose(0, 2, 1, 3)


@dataclass(frozen=True)
class Garbled:
    """One batch's garbled circuits: start labels (K, 16), tables (l, 2, K, 16), decode bits (K,)."""

    start: np.ndarray
    tables: np.ndarray
    decode: np.ndarray

    def to_bytes(self) -> tuple[bytes, bytes, bytes]:
        return self.start.tobytes(), self.tables.tobytes(), np.packbits(self.decode, bitorder="little").tobytes()

    @classmethod
    def from_bytes(cls, start: bytes, tables: bytes, decode: bytes, count: int, bits: int) -> Garbled:
        if len(start) != count * LABEL_BYTES:
            raise EncodingError(f"garbled comparison: {len(start)} bytes of start labels, expected {count * 16}")
        if len(tables) != 2 * bits * count * LABEL_BYTES:
            raise EncodingError(
                f"garbled comparison: {len(tables)} bytes of tables, expected {2 * bits * count * 16}"
            )
        if len(decode) != (count + 7) // 8:
            raise EncodingError(f"garbled comparison: {len(decode)} bytes of decoding bits for {count}")
        d = np.unpackbits(np.frombuffer(decode, dtype=np.uint8), bitorder="little")
        if d[count:].any():
            raise EncodingError("garbled comparison: padding bits are not zero")
        return cls(
            np.frombuffer(start, dtype=np.uint8).reshape(count, LABEL_BYTES),
            np.frombuffer(tables, dtype=np.uint8).reshape(bits, 2, count, LABEL_BYTES),
            d[:count].copy(),
        )


def garble_less_than(
    delta: np.ndarray, zero_labels: np.ndarray, r_bits: np.ndarray, masks: np.ndarray, nonce: bytes
) -> Garbled:
    """Garble [c_k < r_k] XOR masks_k for K comparisons.

    ``delta`` (16,) with its colour bit set; ``zero_labels`` (K, l, 16), the OT's q
    for the evaluator's bits c; ``r_bits`` (K, l), the garbler's bits, least
    significant first; ``masks`` (K,) the garbler's output bits.
    """
    count, bits = r_bits.shape
    if zero_labels.shape != (count, bits, LABEL_BYTES):
        raise ParameterError(f"zero labels of shape {zero_labels.shape}, expected {(count, bits, LABEL_BYTES)}")
    if not delta[0] & 1:
        raise ParameterError("Delta's colour bit must be set")
    tw = _tweaks(nonce, count, bits)
    dd = np.broadcast_to(delta, (count, LABEL_BYTES))
    g = _random_labels(count)
    start = g.copy()
    tables = np.empty((bits, 2, count, LABEL_BYTES), dtype=np.uint8)
    for i in range(bits):
        a0 = g ^ _times(r_bits[:, i], dd)
        b0 = g ^ zero_labels[:, i] ^ dd
        pa, pb = _colour(a0), _colour(b0)
        ha = hash_labels(np.concatenate([a0, a0 ^ dd]), np.concatenate([tw[i, 0], tw[i, 0]]))
        hb = hash_labels(np.concatenate([b0, b0 ^ dd]), np.concatenate([tw[i, 1], tw[i, 1]]))
        ha0, ha1, hb0, hb1 = ha[:count], ha[count:], hb[:count], hb[count:]
        tg = ha0 ^ ha1 ^ _times(pb, dd)
        te = hb0 ^ hb1 ^ a0
        w0 = ha0 ^ _times(pa, tg) ^ hb0 ^ _times(pb, hb0 ^ hb1)
        tables[i, 0], tables[i, 1] = tg, te
        g = g ^ w0
    return Garbled(start, tables, (_colour(g) ^ masks.astype(np.uint8)).astype(np.uint8))


def _random_labels(count: int) -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(count * LABEL_BYTES), dtype=np.uint8).reshape(count, LABEL_BYTES)


def evaluate_less_than(labels: np.ndarray, garbled: Garbled, nonce: bytes) -> np.ndarray:
    """Evaluate: [c_k < r_k] XOR masks_k (K,) from the evaluator's labels (K, l, 16)."""
    count, bits = labels.shape[0], labels.shape[1]
    if garbled.tables.shape != (bits, 2, count, LABEL_BYTES):
        raise ParameterError("garbled tables do not match the labels")
    tw = _tweaks(nonce, count, bits)
    g = garbled.start
    for i in range(bits):
        a = g
        b = g ^ labels[:, i]
        tg, te = garbled.tables[i, 0], garbled.tables[i, 1]
        w = hash_labels(a, tw[i, 0]) ^ _times(_colour(a), tg) ^ hash_labels(b, tw[i, 1]) ^ _times(_colour(b), te ^ a)
        g = g ^ w
    return (_colour(g) ^ garbled.decode).astype(np.uint8)
