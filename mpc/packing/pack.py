"""Per-slot blinding and homomorphic packing of ciphertexts.

Blinding (DESIGN 3.3, 3.4). Before a packed value is decrypted by a party
that must not see it, every slot gets its OWN mask, drawn uniformly below
2^(value_bits + term_bits + kappa): kappa bits wider than anything the slot
holds, so each blinded slot is within statistical distance 2^-kappa of
uniform whatever the slot's content. The packed mask is sum_i r_i *
2^(i * slot_bits). Never blind a packed value with one random number that is
narrower than the packed value: adding r < 2^66 to a 972-bit packed value (as
SeComLib did) changes only its lowest ~66 bits plus a carry, and every slot
above stays readable, other users' values among them.

Homomorphic packing. k ciphertexts of slot-sized plaintexts become one
ciphertext of sum_i m_i * 2^(i * slot_bits), by Horner from the top slot down:
acc = ct_{k-1}; acc = acc * 2^slot_bits + ct_i for i = k-2 .. 0. Each step
multiplies by a known (slot_bits + 1)-bit scalar, so the whole packing costs
about (k - 1) * slot_bits squarings, against ~k^2 * slot_bits / 2 for
multiplying each ciphertext by its own 2^(i * slot_bits).

Raw maths: nothing here imports networking.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Protocol, Self, TypeVar

from mpc.errors import LayoutError, ParameterError
from mpc.packing.layout import SlotLayout, _integer, pack_bits


class AdditiveCiphertext(Protocol):
    """What :func:`pack_ciphertexts` needs of a ciphertext (the ElGamal Ciphertext has it).

    ``a + b`` adds plaintexts and ``a * k`` multiplies the plaintext by a known
    int, each returning a new ciphertext. An optional ``shift_left(bits)``
    (plaintext times 2^bits) is used when present.
    """

    def __add__(self, other: Self, /) -> Self: ...

    def __mul__(self, k: int, /) -> Self: ...


C = TypeVar("C", bound=AdditiveCiphertext)


# -- per-slot blinding -------------------------------------------------------------------


def _randbits(rng: Any) -> Any:
    draw = getattr(rng, "randbits", None) or getattr(rng, "getrandbits", None)
    if not callable(draw):
        raise ParameterError(
            f"rng must provide randbits(k) or getrandbits(k), got {type(rng).__name__}"
        )
    return draw


def _check_blindable(layout: SlotLayout) -> None:
    if not layout.blindable:
        raise LayoutError(
            f"this layout is not meant for blinding (kappa={layout.kappa}, "
            f"guard={layout.guard}): masks need kappa >= 1 and a guard bit"
        )


def random_masks(layout: SlotLayout, count: int | None = None, rng: Any = secrets) -> list[int]:
    """``count`` independent masks (default one per slot), each uniform in [0, 2^mask_bits).

    mask_bits = value_bits + term_bits + kappa, so a mask hides any slot sum
    (< 2^(value_bits + term_bits)) up to statistical distance 2^-kappa and, with
    the guard bit, cannot carry into the next slot. Use one mask per slot and
    pack them with :func:`pack_masks`; never one narrow number over the packed
    value. ``count`` may exceed the capacity (masks for several plaintexts, see
    :func:`pack_masks_many`). ``rng`` needs randbits(k) or getrandbits(k); the
    default is the ``secrets`` module. Pass another only in tests.
    """
    _check_blindable(layout)
    if count is None:
        count = layout.capacity
    count = _integer("count", count)
    if count < 0:
        raise ParameterError(f"count must be >= 0, got {count}")
    draw = _randbits(rng)
    bits = layout.mask_bits
    out = [int(draw(bits)) for _ in range(count)]
    for r in out:
        if r < 0 or r.bit_length() > bits:
            raise ParameterError(f"rng returned {r}, outside [0, 2^{bits})")
    return out


def pack_masks(layout: SlotLayout, masks: Sequence[int]) -> int:
    """The packed mask sum_i masks[i] * 2^(i * slot_bits), to add to a packed value.

    Each mask must be in [0, 2^mask_bits) (LayoutError naming the index
    otherwise), at most ``capacity`` of them.
    """
    _check_blindable(layout)
    if len(masks) > layout.capacity:
        raise LayoutError(f"{len(masks)} masks do not fit {layout.capacity} slots")
    bits = layout.mask_bits
    checked = []
    for i, r in enumerate(masks):
        r = _integer(f"mask at index {i}", r)
        if r < 0 or r.bit_length() > bits:
            raise LayoutError(f"mask at index {i} is {r}, outside [0, 2^{bits})")
        checked.append(r)
    return pack_bits(checked, layout.slot_bits)


def pack_masks_many(layout: SlotLayout, masks: Sequence[int]) -> list[int]:
    """pack_masks() over consecutive chunks of ``capacity`` masks, like SlotLayout.pack_many."""
    return [pack_masks(layout, chunk) for chunk in layout.chunks(masks)]


def unblind(blinded_slots: Sequence[int], masks: Sequence[int]) -> list[int]:
    """Slot-wise blinded - mask: the sums hidden in unpacked blinded slots.

    ``blinded_slots`` comes from SlotLayout.unpack of a decrypted packed value
    to which :func:`pack_masks` of ``masks`` was added; it must have one entry
    per mask.
    """
    if len(blinded_slots) != len(masks):
        raise ParameterError(
            f"{len(blinded_slots)} blinded slots but {len(masks)} masks: they must match"
        )
    return [
        _integer("blinded slot", b) - _integer("mask", r)
        for b, r in zip(blinded_slots, masks, strict=True)
    ]


def unblind_packed(layout: SlotLayout, x: int, masks: Sequence[int]) -> list[int]:
    """unblind(layout.unpack(x, len(masks)), masks): one decrypted blinded plaintext."""
    return unblind(layout.unpack(x, len(masks)), masks)


# -- homomorphic packing -----------------------------------------------------------------


def _shift_left(ct: C, bits: int) -> C:
    shift = getattr(ct, "shift_left", None)
    if callable(shift):
        return shift(bits)  # type: ignore[no-any-return]
    return ct * (1 << bits)


def pack_ciphertexts(layout: SlotLayout, cts: Sequence[C]) -> C:
    """One ciphertext of sum_i m_i * 2^(i * slot_bits) from ciphertexts of m_0 .. m_{k-1}.

    Horner from the top slot down: acc = ct_{k-1}, then acc = acc * 2^slot_bits
    + ct_i for i = k-2 .. 0, using ``ct.shift_left(slot_bits)`` if the
    ciphertext has it and ``ct * 2^slot_bits`` otherwise. Requires
    1 <= len(cts) <= capacity. The plaintexts cannot be checked under
    encryption: each must already be in [0, 2^slot_bits), which the layout
    guarantees for a sum of at most ``terms`` values in [0, 2^value_bits),
    plus at most one mask from :func:`random_masks`. The result is not
    re-randomised.
    """
    k = len(cts)
    if k == 0:
        raise ParameterError("nothing to pack: no ciphertexts")
    if k > layout.capacity:
        raise LayoutError(f"{k} ciphertexts do not fit {layout.capacity} slots")
    bits = layout.slot_bits
    acc = cts[-1]
    for i in range(k - 2, -1, -1):
        acc = _shift_left(acc, bits) + cts[i]
    return acc


def pack_ciphertexts_many(layout: SlotLayout, cts: Sequence[C]) -> list[C]:
    """pack_ciphertexts() over consecutive chunks of ``capacity`` ciphertexts."""
    return [pack_ciphertexts(layout, chunk) for chunk in layout.chunks(cts)]
