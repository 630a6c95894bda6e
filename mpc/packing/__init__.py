"""Slot layouts, pack/unpack, per-slot blinding and homomorphic packing (DESIGN 3.3).

Raw maths: nothing in this package imports networking. See docs/packing.md.
"""

from mpc.packing.layout import (
    DEFAULT_GUARD,
    DEFAULT_KAPPA,
    SignedCodec,
    SlotLayout,
    pack_bits,
    term_bits_for,
    unpack_bits,
)
from mpc.packing.pack import (
    AdditiveCiphertext,
    pack_ciphertexts,
    pack_ciphertexts_many,
    pack_masks,
    pack_masks_many,
    random_masks,
    unblind,
    unblind_packed,
)

__all__ = [
    "DEFAULT_GUARD",
    "DEFAULT_KAPPA",
    "AdditiveCiphertext",
    "SignedCodec",
    "SlotLayout",
    "pack_bits",
    "pack_ciphertexts",
    "pack_ciphertexts_many",
    "pack_masks",
    "pack_masks_many",
    "random_masks",
    "term_bits_for",
    "unblind",
    "unblind_packed",
    "unpack_bits",
]
