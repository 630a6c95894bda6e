"""The private recommender's encoding and step functions (DESIGN section 4).

Both servers keep a copy of every user's encrypted upload (under the joint
key). A query for target A never sends stored ciphertexts anywhere: each server
computes on its own copy with exponents that are additive shares of something
secret, and the two results are subtracted.

Similarity (step functions ``mask_target`` ... ``finish_similarities``)::

    SP: Enc2Share of A's packed dense vector -> the PSP learns z = v_A + r,
        the SP keeps r (r_j of s + 1 + kappa bits: z statistically hides v_A)
    PSP: S_b = sum_j z_j * P_{b,j}     (multi-exponentiation, small exponents)
    SP:  T_b = sum_j r_j * P_{b,j}
    E(sims of block b) = S_b - T_b      (exact integer identity, see below)

where P_{b,j} is a packed ciphertext holding v_{B,j} of every user B of block
b in B's slot. Each user uploads its dense values already shifted to its slot
(``E(v_j << slot_bits * slot)``), so a block is a plain sum of its users'
ciphertexts: no packing work on the servers.

Aggregation (``mask_selection`` ... ``finish_aggregate``): the SP holds
encrypted selection bits E(b_B) (1 for a neighbour of A). It sends the PSP
z_B = b_B + rho_B (Enc2Share, packed); the PSP computes sum_B z_B * D_B over
its copy of every user's packed ratings D_B, the SP sum_B rho_B * D_B, and
E(sum_B b_B * D_B) is the difference. Neither server learns which users were
chosen: the SP sees only ciphertexts, the PSP only z_B, which hides b_B
statistically.

Why the difference is exact although intermediate slots overflow: packed
plaintexts are integers, sum_k 2^(w k) x_k. The PSP's value minus the SP's is
sum_k 2^(w k) (x_k^PSP - x_k^SP) and every slot's difference is the small
wanted value, so carries between slots cancel. Only the top slot of the PSP's
value must not leave the plaintext space: each layout keeps headroom for it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from mpc.elgamal import Ciphertext, PublicKey, sum_ciphertexts
from mpc.elgamal.multiexp import multiexp_ciphertexts
from mpc.elgamal.params import GroupParams
from mpc.errors import EncodingError, LayoutError, ParameterError
from mpc.packing import SlotLayout, pack_ciphertexts, pack_masks

KAPPA = 40


def _bits(x: int) -> int:
    return max(1, int(x).bit_length())


@dataclass(frozen=True)
class RecLayout:
    """Every size of the encoding, derived from the public parameters; refuses overflow.

    ``n_users`` and ``n_items`` in the public user and item order; ``dense``
    (R) and ``shift`` (s) as in the plaintext function; ``levels`` = hi - lo + 1
    (d is 1..levels, 0 = not rated); ``max_neighbours`` bounds the sums and
    counts (top-N: N; threshold mode: n_users - 1).
    """

    params: GroupParams
    n_users: int
    n_items: int
    dense: int
    shift: int
    levels: int
    max_neighbours: int
    kappa: int = KAPPA
    tie_bits: int = 0
    """Top-N mode: rank bits appended below each similarity, so that all values differ
    and ties go to the user earlier in user order (0 in threshold mode)."""

    def __post_init__(self) -> None:
        for name in ("n_users", "n_items", "dense", "levels", "max_neighbours"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be at least 1")
        if self.shift < 0:
            raise ParameterError("shift must be >= 0")
        # Each check below raises LayoutError with the numbers if it cannot fit.
        _ = self.target_layout, self.users_per_block, self.items_per_ciphertext, self.selection_layout

    # -- values ---------------------------------------------------------------------
    @property
    def value_bits(self) -> int:
        """Bits of one normalised dense value: v <= 2^shift."""
        return self.shift + 1

    @property
    def sim_bits(self) -> int:
        """Bits of sim(A, B) = sum_j v_A,j v_B,j for ANY upload the servers accept.

        Honest vectors have norm <= 2^(shift + 1), so sim <= 2^(2 shift + 2); but
        the upload check (:func:`sp_check`) shows only that each value is below
        2^value_bits, so a hostile upload reaches R (2^value_bits - 1)^2: the
        bound the masks must cover (docs/security.md)."""
        return max(2 * self.shift + 3, 2 * self.value_bits + _bits(self.dense))

    @property
    def plaintext_bits(self) -> int:
        return self.params.plaintext_bits

    # -- A's dense vector, packed for Enc2Share -------------------------------------
    @property
    def target_layout(self) -> SlotLayout:
        """R slots holding v_A,j + r_j with r_j < 2^(value_bits + kappa)."""
        return SlotLayout(self.value_bits, 1, self.plaintext_bits, kappa=self.kappa, slots=self.dense)

    @property
    def z_bits(self) -> int:
        """Bits of z_j = v_j + r_j: at most value_bits + kappa + 1."""
        return self.value_bits + self.kappa + 1

    # -- similarity blocks ------------------------------------------------------------
    @property
    def ranked_bits(self) -> int:
        """Bits of sim * 2^tie_bits + rank bits (= sim_bits in threshold mode)."""
        return self.sim_bits + self.tie_bits

    @property
    def sim_slot_bits(self) -> int:
        """A similarity slot must take the comparison's masked value 2^l + sim - delta + r
        (threshold mode), or the ranked value plus a mask (top-N mode)."""
        return self.ranked_bits + 1 + self.kappa + 1

    @property
    def sim_top_bits(self) -> int:
        """Largest slot value in the PSP's sum_j z_j v_B,j (the top slot's headroom)."""
        return self.z_bits + self.value_bits + _bits(self.dense)

    @property
    def users_per_block(self) -> int:
        w, top = self.sim_slot_bits, max(self.sim_slot_bits, self.sim_top_bits)
        # The PSP's packed integer is below 2^(w (k - 1) + top + 1): keep it below N.
        k = (self.plaintext_bits - top - 1) // w + 1
        if k < 1:
            raise LayoutError(f"a similarity block does not fit {self.plaintext_bits} plaintext bits")
        return min(k, self.n_users)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_users // self.users_per_block)

    def block_of(self, user: int) -> tuple[int, int]:
        """(block, slot) of the user at position ``user`` in user order."""
        return divmod(user, self.users_per_block)

    # -- ratings, summed over the neighbours -----------------------------------------
    @property
    def sum_bits(self) -> int:
        return _bits(self.max_neighbours * self.levels)

    @property
    def count_bits(self) -> int:
        return _bits(self.max_neighbours)

    @property
    def rating_slot_bits(self) -> int:
        """One item: the neighbours' sum of d in the low bits, their count above."""
        return self.sum_bits + self.count_bits

    @property
    def rating_top_bits(self) -> int:
        """Headroom of the PSP's sum_B z_B D_B in the top slot.

        z_B = b_B + rho_B < 2^(kappa + 2) and one user's slot is below
        2^(sum_bits + 1), summed over n_users.
        """
        return self.sum_bits + 1 + self.kappa + 2 + _bits(self.n_users)

    @property
    def items_per_ciphertext(self) -> int:
        w, top = self.rating_slot_bits, max(self.rating_slot_bits, self.rating_top_bits)
        k = (self.plaintext_bits - top - 1) // w + 1
        if k < 1:
            raise LayoutError("a rating ciphertext does not fit one item slot")
        return min(k, self.n_items)

    @property
    def n_rating_ciphertexts(self) -> int:
        return -(-self.n_items // self.items_per_ciphertext)

    @property
    def n_result_ciphertexts(self) -> int:
        """A target's result: the packed sums and counts, then the number of neighbours."""
        return self.n_rating_ciphertexts + 1

    # -- selection bits, masked for the PSP --------------------------------------------
    @property
    def selection_layout(self) -> SlotLayout:
        """Slots holding b_B + rho_B, rho_B < 2^(1 + kappa)."""
        return SlotLayout(1, 1, self.plaintext_bits, kappa=self.kappa)

    # -- the upload ------------------------------------------------------------------
    @property
    def upload_count(self) -> int:
        """Ciphertexts per user: packed target vector, R shifted dense values, the ratings."""
        return 1 + self.dense + self.n_rating_ciphertexts

    def describe(self) -> dict[str, int]:
        return {
            "users_per_block": self.users_per_block,
            "blocks": self.n_blocks,
            "sim_slot_bits": self.sim_slot_bits,
            "items_per_ciphertext": self.items_per_ciphertext,
            "rating_ciphertexts": self.n_rating_ciphertexts,
            "rating_slot_bits": self.rating_slot_bits,
            "upload_ciphertexts": self.upload_count,
        }


# -- user side ------------------------------------------------------------------------------
def user_plaintexts(layout: RecLayout, position: int, dense: Sequence[int], d_row: Sequence[int]) -> list[int]:
    """The plaintexts a user encrypts and uploads, in upload order.

    ``position`` is the user's place in user order, ``dense`` its normalised
    dense vector v (R values <= 2^shift), ``d_row`` its shifted ratings for every
    item (0 = not rated).
    """
    if len(dense) != layout.dense or len(d_row) != layout.n_items:
        raise ParameterError("dense vector or rating row of the wrong length for this layout")
    if any(not 0 <= v <= 1 << layout.shift for v in dense):
        raise ParameterError("a dense value is outside 0..2^shift")
    if any(not 0 <= d <= layout.levels for d in d_row):
        raise ParameterError("a rating is outside 0..levels")
    _, slot = layout.block_of(position)
    out = [layout.target_layout.pack(list(dense))]
    out += [v << (layout.sim_slot_bits * slot) for v in dense]
    return out + packed_ratings(layout, d_row)


def packed_ratings(layout: RecLayout, d_row: Sequence[int]) -> list[int]:
    """The rating ciphertexts' plaintexts: per item, d in the low bits and a count bit above."""
    if len(d_row) != layout.n_items or any(not 0 <= d <= layout.levels for d in d_row):
        raise ParameterError("a rating row of the wrong length, or a rating outside 0..levels")
    out = []
    w, per = layout.rating_slot_bits, layout.items_per_ciphertext
    for start in range(0, layout.n_items, per):
        x = 0
        for k, d in enumerate(d_row[start : start + per]):
            if d:
                x |= (d | (1 << layout.sum_bits)) << (w * k)
        out.append(x)
    return out


@dataclass
class UserRecord:
    """One user's uploaded ciphertexts, split by purpose."""

    target: Ciphertext
    dense: list[Ciphertext]
    ratings: list[Ciphertext]

    @classmethod
    def split(cls, layout: RecLayout, cts: Sequence[Ciphertext]) -> UserRecord:
        if len(cts) != layout.upload_count:
            raise ParameterError(
                f"a recommender upload has {layout.upload_count} ciphertexts for this layout, got {len(cts)}"
            )
        r = layout.dense
        return cls(cts[0], list(cts[1 : 1 + r]), list(cts[1 + r :]))


# -- the upload check ------------------------------------------------------------------------
# A proof of knowledge says nothing of the plaintext, and a value out of range, or anything in a
# slot, guard bit or headroom the PSP later decrypts unmasked, leaks to the PSP (docs/security.md).
# So before either server keeps an upload, they check with the PSP, on masked values, that its
# target vector is sum_j v_j 2^(offset_j) and each dense ciphertext v_j 2^(w slot), every v_j in
# [0, 2^value_bits): the PSP decrypts the masked values (z = v + m, m of value_bits + kappa bits),
# checks that nothing lies outside their fields, and two garbled comparisons per value on the
# shares (z, m) show m <= z < m + 2^value_bits.


def _check_offsets(layout: RecLayout, position: int) -> tuple[list[int], int]:
    """(the target vector's slot offsets, the offset of the user's dense values)."""
    w = layout.target_layout.slot_bits
    _, slot = layout.block_of(position)
    return [w * j for j in range(layout.dense)], layout.sim_slot_bits * slot


def check_bits(layout: RecLayout) -> int:
    """Width of the compared values: z < 2^(value_bits + kappa + 1), m + 2^value_bits below that too."""
    return layout.value_bits + layout.kappa + 2


def sp_check(layout: RecLayout, position: int, record: UserRecord) -> tuple[list[Ciphertext], list[int]]:
    """SP: the upload's R + 1 dense ciphertexts with a fresh mask per value, re-randomised,
    and the 2R masks (target slots first, then the dense values)."""
    offsets, off = _check_offsets(layout, position)
    bits = layout.value_bits + layout.kappa
    masks = [secrets.randbits(bits) for _ in range(2 * layout.dense)]
    pk = record.target.pk
    target = record.target.add_plain(sum(m << t for m, t in zip(masks[: layout.dense], offsets, strict=True)))
    dense = [c.add_plain(m << off) for c, m in zip(record.dense, masks[layout.dense :], strict=True)]
    return [pk.rerandomize(c) for c in (target, *dense)], masks


def sp_check_values(layout: RecLayout, masks: Sequence[int]) -> list[int]:
    """SP: its side of the comparisons, m_k then m_k + 2^value_bits."""
    return [*masks, *(m + (1 << layout.value_bits) for m in masks)]


def psp_check_values(layout: RecLayout, position: int, plains: Sequence[int]) -> list[int] | None:
    """PSP: z_k from the decrypted masked values (its side of the comparisons, twice), or None
    when something lies outside the fields (the upload is refused: what the PSP sees then is
    the uploader's own value plus masks)."""
    if len(plains) != layout.dense + 1:
        raise ParameterError(f"{len(plains)} masked values to check, expected {layout.dense + 1}")
    offsets, off = _check_offsets(layout, position)
    limit = 1 << (layout.value_bits + layout.kappa + 1)
    w = layout.target_layout.slot_bits
    zs = [(plains[0] >> t) & ((1 << w) - 1) for t in offsets]
    if any(z >= limit for z in zs) or sum(z << t for z, t in zip(zs, offsets, strict=True)) != plains[0]:
        return None
    for x in plains[1:]:
        if x & ((1 << off) - 1) or x >> off >= limit:
            return None
        zs.append(x >> off)
    return zs + zs


def check_passed(layout: RecLayout, results: Sequence[int]) -> bool:
    """PSP: the comparisons [z_k >= m_k] (all 1) and [z_k >= m_k + 2^value_bits] (all 0)."""
    n = 2 * layout.dense
    return len(results) == 2 * n and all(results[:n]) and not any(results[n:])


def build_blocks(layout: RecLayout, records: Sequence[UserRecord]) -> list[list[Ciphertext]]:
    """P_{b,j}: for each block, the sum over its users of their shifted dense ciphertexts."""
    blocks = []
    k = layout.users_per_block
    for b in range(layout.n_blocks):
        members = records[b * k : (b + 1) * k]
        blocks.append([sum_ciphertexts([rec.dense[j] for rec in members]) for j in range(layout.dense)])
    return blocks


# -- similarity -----------------------------------------------------------------------------
def mask_target(layout: RecLayout, target: Ciphertext) -> tuple[Ciphertext, list[int]]:
    """SP: A's packed dense vector plus one fresh mask per slot, re-randomised."""
    masks = [secrets.randbits(layout.value_bits + layout.kappa) for _ in range(layout.dense)]
    masked = target.add_plain(pack_masks(layout.target_layout, masks))
    return target.pk.rerandomize(masked), masks


def unmask_target(layout: RecLayout, plain: int) -> list[int]:
    """PSP: the z_j = v_j + r_j from the decrypted masked vector."""
    return layout.target_layout.unpack(plain, layout.dense)


def block_products(pk: PublicKey, blocks: Sequence[Sequence[Ciphertext]], exps: Sequence[int]) -> list[Ciphertext]:
    """sum_j exps_j * P_{b,j} for every block b (both servers run this on their own copy)."""
    return [multiexp_ciphertexts(pk, row, exps) for row in blocks]


def finish_similarities(psp_part: Sequence[Ciphertext], sp_part: Sequence[Ciphertext]) -> list[Ciphertext]:
    """SP: E(sims) per block = the PSP's products minus its own."""
    if len(psp_part) != len(sp_part):
        raise ParameterError(f"the PSP sent {len(psp_part)} blocks, expected {len(sp_part)}")
    return [a - b for a, b in zip(psp_part, sp_part, strict=True)]


# -- aggregation ----------------------------------------------------------------------------
def mask_selection(layout: RecLayout, bits: Sequence[Ciphertext]) -> tuple[list[Ciphertext], list[int]]:
    """SP: E(b_B + rho_B) for every user, packed, re-randomised; returns (packed, rho)."""
    sel = layout.selection_layout
    rho = [secrets.randbits(1 + layout.kappa) for _ in bits]
    masked = [c.add_plain(m) for c, m in zip(bits, rho, strict=True)]
    packed = [pack_ciphertexts(sel, masked[i : i + sel.slots]) for i in range(0, len(masked), sel.slots)]
    pk = bits[0].pk
    return [pk.rerandomize(c) for c in packed], rho


def unmask_selection(layout: RecLayout, plains: Sequence[int], n: int) -> list[int]:
    """PSP: the z_B = b_B + rho_B, in user order."""
    sel = layout.selection_layout
    out: list[int] = []
    for x in plains:
        out += sel.unpack(x)
    return out[:n]


def rating_products(pk: PublicKey, ratings: Sequence[Sequence[Ciphertext]], exps: Sequence[int]) -> list[Ciphertext]:
    """sum_B exps_B * D_B[i] for every rating ciphertext position i."""
    n = len(ratings[0])
    return [multiexp_ciphertexts(pk, [row[i] for row in ratings], exps) for i in range(n)]


def decode_aggregate(layout: RecLayout, plains: Sequence[int]) -> tuple[list[int], list[int]]:
    """User: per-item (sum, count) from the decrypted aggregate (its first
    ``n_rating_ciphertexts`` plaintexts; a result's last one is the neighbour count)."""
    w, per = layout.rating_slot_bits, layout.items_per_ciphertext
    mask_s, mask_w = (1 << layout.sum_bits) - 1, (1 << w) - 1
    sums, counts = [], []
    for i, x in enumerate(plains[: layout.n_rating_ciphertexts]):
        n = min(per, layout.n_items - i * per)
        for k in range(n):
            slot = (x >> (w * k)) & mask_w
            sums.append(slot & mask_s)
            counts.append(slot >> layout.sum_bits)
    return sums, counts


def decode_neighbours(layout: RecLayout, plains: Sequence[int]) -> int:
    """User: the number of its neighbours, the last plaintext of a decrypted result."""
    if len(plains) != layout.n_result_ciphertexts:
        raise EncodingError(f"{len(plains)} result ciphertexts, expected {layout.n_result_ciphertexts}")
    n = int(plains[-1])
    if not 0 <= n < layout.n_users:
        raise EncodingError(f"neighbour count {n} outside 0..{layout.n_users - 1}: a malformed result")
    return n
