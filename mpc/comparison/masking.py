"""The comparison's first step: z = 2^l + x - y, masked slot by slot and packed (raw maths).

For l-bit x and y, z = 2^l + x - y lies in [1, 2^(l+1)) and its bit l is
[x >= y]. The SP adds to every z its own mask r, uniform below
2^(l + 1 + kappa), and packs the values c = z + r into as few joint-key
ciphertexts as the slot layout allows (``SlotLayout`` with value_bits = l + 1,
one term, kappa, one guard bit: a slot of l + 2 + kappa bits, 27 of them per
2048-bit plaintext at l = 32). One threshold decryption then opens a whole
ciphertext's slots to the PSP, each c within statistical distance 2^-kappa of
uniform whatever z is.

Ciphertext costs: E(x) - E(y) for a batch uses one modular inversion in all
(Montgomery's trick); Horner packing costs (slot_bits + 1)-bit powers per
slot (DESIGN 3.3, :func:`mpc.packing.pack_ciphertexts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import gmpy2
from gmpy2 import f_mod, mpz

from mpc.elgamal import Ciphertext, GroupParams, PublicKey
from mpc.elgamal.opcount import OPS
from mpc.errors import ParameterError
from mpc.packing import SlotLayout, pack_bits, pack_ciphertexts, pack_masks, random_masks

__all__ = [
    "batch_invert",
    "compare_layout",
    "differences",
    "draw_masks",
    "mask_and_pack",
    "negate_plus_one",
]


def compare_layout(params: GroupParams, bits: int, kappa: int) -> SlotLayout:
    """Slots for z + r: value_bits = l + 1, one term, kappa, one guard bit."""
    return SlotLayout.for_modulus(params.n, bits + 1, 1, kappa=kappa)


def draw_masks(layout: SlotLayout, count: int) -> list[int]:
    """One mask per comparison, uniform below 2^(l + 1 + kappa)."""
    return random_masks(layout, count)


def batch_invert(values: Sequence[mpz], modulus: mpz) -> list[mpz]:
    """Inverses of many units mod ``modulus`` with one inversion (Montgomery's trick)."""
    if not values:
        return []
    OPS["mulmod"] += 3 * (len(values) - 1)
    OPS["invert"] += 1
    prefix = [mpz(values[0])]
    for v in values[1:]:
        prefix.append(f_mod(prefix[-1] * v, modulus))
    inv = gmpy2.invert(prefix[-1], modulus)
    out: list[mpz] = [mpz(0)] * len(values)
    for i in range(len(values) - 1, 0, -1):
        out[i] = f_mod(inv * prefix[i - 1], modulus)
        inv = f_mod(inv * values[i], modulus)
    out[0] = inv
    return out


def differences(
    pk: PublicKey, xs: Sequence[Ciphertext], ys: Sequence[Ciphertext]
) -> list[Ciphertext]:
    """E(x_k - y_k) for every k: E(x_k) * E(y_k)^-1, inverting all of the E(y_k) at once."""
    if len(xs) != len(ys):
        raise ParameterError(f"{len(xs)} x ciphertexts but {len(ys)} y ciphertexts")
    for c in (*xs, *ys):
        if not isinstance(c, Ciphertext) or c.pk != pk:
            raise ParameterError("every input must be a Ciphertext under the joint key")
    n2 = pk.params.n2
    inv = batch_invert([v for c in ys for v in (c.c1, c.c2)], n2)
    OPS["mulmod"] += 2 * len(xs)
    return [
        Ciphertext(pk, f_mod(x.c1 * inv[2 * k], n2), f_mod(x.c2 * inv[2 * k + 1], n2))
        for k, x in enumerate(xs)
    ]


def negate_plus_one(pk: PublicKey, cts: Sequence[Ciphertext]) -> list[Ciphertext]:
    """E(1 - m) for each E(m), with one inversion for the whole batch."""
    p = pk.params
    inv = batch_invert([v for c in cts for v in (c.c1, c.c2)], p.n2)
    one = mpz(1 + p.n)
    OPS["mulmod"] += len(cts)
    return [Ciphertext(pk, inv[2 * k], f_mod(inv[2 * k + 1] * one, p.n2)) for k in range(len(cts))]


def mask_and_pack(
    pk: PublicKey,
    layout: SlotLayout,
    diffs: Sequence[Ciphertext],
    bits: int,
    masks: Sequence[int],
    *,
    rerandomize: bool = True,
) -> list[Ciphertext]:
    """Packed E(2^l + d_k + r_k), ``layout.capacity`` comparisons per ciphertext.

    Slot k of a packed plaintext holds 2^l + d_k + r_k < 2^(l+1) + 2^(l+1+kappa)
    <= 2^slot_bits (d_k in (-2^l, 2^l)), so slots never carry into each other
    and the packed integer is below N. With ``rerandomize`` each packed
    ciphertext gets a fresh encryption of zero (from ``pk.pool``), so the PSP
    cannot link it to the input ciphertexts.
    """
    if len(masks) != len(diffs):
        raise ParameterError(f"{len(masks)} masks for {len(diffs)} ciphertexts")
    if layout.value_bits != bits + 1:
        raise ParameterError(f"layout has value_bits={layout.value_bits}, expected {bits + 1}")
    out: list[Ciphertext] = []
    cap = layout.capacity
    for start in range(0, len(diffs), cap):
        chunk = diffs[start : start + cap]
        offset = pack_bits([1 << bits] * len(chunk), layout.slot_bits)
        offset += pack_masks(layout, masks[start : start + cap])
        ct = pack_ciphertexts(layout, chunk).add_plain(offset)
        out.append(pk.rerandomize(ct) if rerandomize else ct)
    return out
