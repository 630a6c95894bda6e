"""Linear forms with the SP's secret coefficients on XOR-shared bits, by OT (raw maths).

The SP holds coefficients C[v, o] and constants c[o] (o: outputs), and one
XOR share a[v] of each bit x[v] = a[v] XOR b[v]; the PSP holds b[v]. Both
end with additive shares, modulo 2^W, of

    y[o] = c[o] + sum_v C[v, o] * x[v].

Since C * x = C * a + C * (1 - 2a) * b, each bit of the PSP's costs one
1-out-of-2 OT (Gilboa's product of a known value and a bit): from the
correlated IKNP extension of :mod:`mpc.comparison.ot` (the SP holds Delta,
the PSP chooses by b[v]) both sides derive random pads P0, P1 (the SP) and
P_b (the PSP) by the fixed-key hash, one per output; the SP sends
D = P0 - P1 + C * (1 - 2a) and keeps -P0; the PSP adds D when b = 1. Every
sum is modulo 2^W, so D and the shares are uniform: nothing is learnt by
either side (the PSP's pad P_(1-b) is behind the hash).

Numbers modulo 2^W (W a multiple of 32) are numpy arrays of 32-bit limbs
held in uint64, least significant first, so that sums of up to 2^32 terms
need one carry pass (:func:`normalize`). Batches of many customers run at
once: shapes are (customers, variables[, outputs], limbs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpc.comparison import gc, ot
from mpc.errors import EncodingError, ParameterError

__all__ = [
    "LIMB_BITS",
    "from_limbs",
    "limbs_for",
    "neg",
    "normalize",
    "pads",
    "psp_finish",
    "sp_corrections",
    "to_limbs",
]

LIMB_BITS = 32
_MASK = np.uint64((1 << LIMB_BITS) - 1)


def limbs_for(bits: int) -> int:
    """How many 32-bit limbs hold numbers modulo 2^W for W >= ``bits``."""
    return max(1, -(-bits // LIMB_BITS))


def to_limbs(values: Sequence[int], n: int) -> np.ndarray:
    """Python integers (any sign) modulo 2^(32 n) as an (len, n) limb array."""
    mod = 1 << (LIMB_BITS * n)
    raw = b"".join((int(v) % mod).to_bytes(4 * n, "little") for v in values)
    return np.frombuffer(raw, dtype="<u4").reshape(len(values), n).astype(np.uint64)


def from_limbs(x: np.ndarray) -> list[int]:
    """(..., n) limbs (normalized) -> Python integers, flattened over the leading axes."""
    flat = x.reshape(-1, x.shape[-1]).astype("<u4")
    width = 4 * x.shape[-1]
    raw = flat.tobytes()
    return [int.from_bytes(raw[i : i + width], "little") for i in range(0, len(raw), width)]


def normalize(x: np.ndarray) -> np.ndarray:
    """Carry every limb into the next; the top limb's carry is dropped (modulo 2^W). In place."""
    for i in range(x.shape[-1] - 1):
        x[..., i + 1] += x[..., i] >> np.uint64(LIMB_BITS)
        x[..., i] &= _MASK
    x[..., -1] &= _MASK
    return x


def neg(x: np.ndarray) -> np.ndarray:
    """-x modulo 2^W for normalized limbs."""
    out = _MASK - x
    out[..., 0] += np.uint64(1)
    return normalize(out)


def pads(labels: np.ndarray, nonce: bytes, outputs: int, n: int) -> np.ndarray:
    """(count, outputs, n) uniform limbs from each OT label, by the tweaked fixed-key hash."""
    count = labels.shape[0]
    blocks = -(-outputs * n * 4 // gc.LABEL_BYTES)
    tw = gc.tweaks(nonce[: gc.GATE_NONCE_BYTES], count * blocks)
    h = gc.hash_labels(np.repeat(labels, blocks, axis=0), tw)
    words = h.reshape(count, blocks * gc.LABEL_BYTES).view("<u4")[:, : outputs * n]
    return words.reshape(count, outputs, n).astype(np.uint64)


def sp_corrections(
    key: ot.OtDeltaKey, point: bytes, columns: bytes, nonce: bytes,
    coefs: np.ndarray, consts: np.ndarray, a: np.ndarray,
) -> tuple[np.ndarray, bytes]:
    """SP: its shares (customers, outputs, n) and the message of corrections D.

    ``coefs`` (variables, outputs, n) and ``consts`` (outputs, n) are limbs
    (the same for every customer); ``a`` (customers, variables) its XOR
    shares. The PSP's OT choices are its shares b, customer by customer.
    """
    customers, variables = a.shape
    if coefs.shape[0] != variables or coefs.shape[2:] != consts.shape[1:] or coefs.shape[1] != consts.shape[0]:
        raise ParameterError("coefficients, constants and shares do not match")
    outputs, n = consts.shape
    q = ot.extend_delta(key, point, columns, customers * variables, nonce)
    p0 = pads(q, nonce, outputs, n).reshape(customers, variables, outputs, n)
    p1 = pads(q ^ key.delta_array(), nonce, outputs, n).reshape(customers, variables, outputs, n)
    flip = a.astype(bool)[:, :, None, None]
    k = np.where(flip, neg(coefs.copy())[None], coefs[None])
    d = normalize(p0 + neg(p1) + k)
    mine = np.where(flip, coefs[None], np.uint64(0)).sum(axis=1) + consts[None]
    mine = normalize(mine + neg(normalize(p0.sum(axis=1))))
    return mine, d.astype("<u4").tobytes()


def psp_finish(labels: np.ndarray, nonce: bytes, b: np.ndarray, message: bytes, outputs: int, n: int) -> np.ndarray:
    """PSP: its shares (customers, outputs, n) from its OT labels for the choices ``b``
    (customers, variables) and the SP's corrections."""
    customers, variables = b.shape
    expected = customers * variables * outputs * n * 4
    if len(message) != expected:
        raise EncodingError(f"linear forms: {len(message)} bytes of corrections, expected {expected}")
    if labels.shape != (customers * variables, gc.LABEL_BYTES):
        raise ParameterError("OT labels do not match the choices")
    d = np.frombuffer(message, dtype="<u4").reshape(customers, variables, outputs, n).astype(np.uint64)
    pb = pads(labels, nonce, outputs, n).reshape(customers, variables, outputs, n)
    total = pb + np.where(b.astype(bool)[:, :, None, None], d, np.uint64(0))
    return normalize(total.sum(axis=1))
