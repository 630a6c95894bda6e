"""Protocol "recommend-topn": the N most similar users, by shuffle-then-select.

Like "recommend" (``crm.recommender.protocol``) for the similarities and the
aggregation; the neighbours are the N largest values instead of those above a
threshold. Steps:

1. ``target`` / ``sims``: E(sim(A, B)) packed per block, as in "recommend".
   The SP multiplies each block by 2^t and adds each user's rank bits
   (2^t - 1 - position), so every value differs and a tie goes to the user
   earlier in user order, exactly as the plaintext function says.
2. ``shares``, ``shares.partials`` (SP -> PSP): the blocks plus a fresh mask
   per slot, then the SP's partials; the PSP reads y_B = value_B + m_B
   (statistically hiding).
3. ``singles`` (PSP -> SP): E(y_B) for every user B, one ciphertext each.
   The SP removes its masks, drops A and **permutes** (a fresh random order per
   query): the list X_0 .. X_{n-2} of anonymous values.
4. ``ot-key``, ``reshare<j>``, ``reshare<j>.partials`` (SP -> PSP): the SP's base-OT
   key, then the permuted values plus fresh masks, packed and re-randomised, in
   up to :data:`RESHARE_PARTS` parts opened concurrently:
   the PSP reads Y_j = X_j + M_j, the SP keeps M_j. An additive sharing of
   the anonymous values, made once a query.
5. Selection, in rounds ``q<i>`` (PSP -> SP: pairs of positions to compare)
   and ``r<i>-choices``, ``r<i>-garbled`` (the garbled comparison of
   Y_a - Y_b, the PSP's, with M_a - M_b, the SP's, output revealed to the
   PSP; no decryption): selection (:class:`SampleSelect`) driven by the PSP on
   comparison outcomes it may see. The last ``q<i>`` is empty.
6. ``chosen`` (PSP -> SP): E(1) for the N selected positions and E(0) for the
   others; the SP undoes its permutation: E(b_B) in user order.
7. ``selection`` / ``aggregate``: as in "recommend".

Leakage: the PSP learns the order relations it asked for among the
anonymous, freshly permuted and re-randomised values of this one query (the
order of a random subset of pairs, never a value); it cannot link a position
to a user or to another query. The SP learns nothing beyond sizes. See
docs/protocols/recommend.md.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar

from crm.recommender.private import (
    RecLayout,
    UserRecord,
)
from crm.recommender.protocol import (
    AGGREGATE_STEPS,
    batch_message,
    open_steps,
    psp_aggregate,
    psp_open,
    psp_similarities,
    read_batch,
    sp_aggregate,
    sp_open,
    sp_similarities,
)
from mpc.comparison.ot import PUBLIC_BYTES
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, KeyShare, PublicKey
from mpc.errors import EncodingError, ParameterError, ProtocolError
from mpc.packing import SlotLayout, pack_bits, pack_ciphertexts, pack_masks, random_masks
from mpc.protocol import ProtocolSpec, RoleFactory, SessionContext, Step, register_protocol
from mpc.protocols import compare

RunCrypto = Callable[..., Awaitable[Any]]
MAX_ROUNDS = 48


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def topn_layout(layout: RecLayout) -> RecLayout:
    """Refuse a layout without rank bits wide enough for every user."""
    if layout.tie_bits < max(1, (layout.n_users - 1).bit_length()):
        raise ParameterError(f"top-N needs tie_bits >= {(layout.n_users - 1).bit_length()} for {layout.n_users} users")
    return layout


def share_layout(layout: RecLayout) -> SlotLayout:
    """Slots of the masked ranked values y = value + m (the similarity block's slots)."""
    return SlotLayout(
        layout.ranked_bits, 1, layout.plaintext_bits, kappa=layout.kappa,
        slots=layout.users_per_block, slot_bits=layout.sim_slot_bits,
    )


# -- pure steps: the SP --------------------------------------------------------------------------
def ranked_blocks(layout: RecLayout, sims: Sequence[Ciphertext]) -> list[Ciphertext]:
    """E(sim * 2^t + 2^t - 1 - position) per block: distinct values, ties to the earlier user."""
    t, k = layout.tie_bits, layout.users_per_block
    out = []
    for b, ct in enumerate(sims):
        n = min(k, layout.n_users - b * k)
        ranks = [(1 << t) - 1 - (b * k + s) for s in range(n)]
        out.append(ct.shift_left(t).add_plain(pack_bits(ranks, layout.sim_slot_bits)))
    return out


def mask_blocks(layout: RecLayout, blocks: Sequence[Ciphertext]) -> tuple[list[Ciphertext], list[int]]:
    """Blocks plus one fresh mask per slot (re-randomised); the masks in user order."""
    sl = share_layout(layout)
    masks = random_masks(sl, layout.n_users)
    k = layout.users_per_block
    pk = blocks[0].pk
    out = [pk.rerandomize(c.add_plain(pack_masks(sl, masks[b * k : (b + 1) * k]))) for b, c in enumerate(blocks)]
    return out, masks


def shuffle_values(
    pk: PublicKey, singles: Sequence[Ciphertext], masks: Sequence[int], target: int
) -> tuple[list[Ciphertext], list[int]]:
    """E(value_B) = E(y_B) - m_B, A dropped, in a fresh random order.

    Returns (X, perm) with X[j] the value of user perm[j]. Not re-randomised one by
    one: the PSP made E(y_B) and knows their randomness, but it never sees an X[j]
    again, only packed combinations of them that the comparison re-randomises
    with a fresh encryption of zero of the SP's (``mask_and_pack``), which hides
    every coin it knew. That saves n encryptions of zero a query.
    """
    users = [u for u in range(len(singles)) if u != target]
    perm = users[:]
    for i in range(len(perm) - 1, 0, -1):  # Fisher-Yates with a CSPRNG
        j = secrets.randbelow(i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return [singles[u].add_plain(-masks[u]) for u in perm], perm


def reshare_layout(layout: RecLayout, pk: PublicKey) -> SlotLayout:
    """Slots of the re-shared values Y_j = X_j + M_j (ranked bits, kappa bits of mask)."""
    return SlotLayout.for_modulus(pk.params.n, layout.ranked_bits, 1, kappa=layout.kappa)


def held_bits(layout: RecLayout, pk: PublicKey) -> int:
    """Bits of the values compared in a round: Y_a - Y_b + 2^w with Y < 2^w."""
    return reshare_layout(layout, pk).mask_bits + 2


def reshare(layout: RecLayout, pk: PublicKey, xs: Sequence[Ciphertext]) -> tuple[list[Ciphertext], list[int]]:
    """SP: E(X_j + M_j) packed and re-randomised, and the masks M_j (statistically hiding)."""
    sl = reshare_layout(layout, pk)
    masks = random_masks(sl, len(xs))
    packed = [
        pk.rerandomize(pack_ciphertexts(sl, xs[i : i + sl.capacity]).add_plain(pack_masks(sl, masks[i : i + sl.capacity])))
        for i in range(0, len(xs), sl.capacity)
    ]
    return packed, masks


RESHARE_PARTS = 4
"""The re-sharing is opened in this many parts, so that the SP packs one while the PSP
decrypts another."""


def reshare_parts(layout: RecLayout, pk: PublicKey, n: int) -> list[tuple[int, int]]:
    """[start, stop) of each part of the re-sharing: whole packed ciphertexts, at most
    :data:`RESHARE_PARTS` of them; both servers compute it from the sizes."""
    cap = reshare_layout(layout, pk).capacity
    blocks = -(-n // cap)
    sizes = compare.chunk_sizes(blocks, RESHARE_PARTS, 1)
    out, start = [], 0
    for size in sizes:
        stop = min(n, start + size * cap)
        out.append((start, stop))
        start = stop
    return out


def held_values(values: Sequence[int], pairs: Sequence[tuple[int, int]], bits: int) -> list[int]:
    """values[a] - values[b] + 2^(bits - 1) for each pair: non-negative, below 2^bits.

    The PSP's (values Y) and the SP's (masks M) sides of a round: X_a >= X_b iff
    Y_a - Y_b >= M_a - M_b, compared by :func:`mpc.protocols.compare.sp_compare_held`.
    """
    n, off = len(values), 1 << (bits - 1)
    for a, b in pairs:
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise EncodingError(f"pair ({a}, {b}) is not two distinct positions below {n}")
    return [values[a] - values[b] + off for a, b in pairs]


def unshuffle(bits: Sequence[Ciphertext], perm: Sequence[int], target: int, pk: PublicKey) -> list[Ciphertext]:
    """E(b_B) in user order from E(b_j) in shuffled order; A gets an encryption of 0."""
    out: list[Ciphertext | None] = [None] * (len(perm) + 1)
    for j, u in enumerate(perm):
        out[u] = bits[j]
    out[target] = pk.encrypt_from_pool(0)
    return out  # type: ignore[return-value]


# -- pure steps: the PSP -------------------------------------------------------------------------
class Quickselect:
    """The PSP's selection of the k largest of n anonymous values, on comparison outcomes.

    ``pairs()`` gives the comparisons of the next round (every remaining
    candidate against a random pivot), ``outcome(bits)`` takes [X_a >= X_b]
    for them; ``done`` when the k largest are known (``chosen``). About 2n
    comparisons in O(log n) rounds.
    """

    def __init__(self, n: int, k: int) -> None:
        if not 0 <= k <= n:
            raise ParameterError(f"cannot select {k} of {n}")
        self.candidates = list(range(n))
        self.k = k
        self.chosen: set[int] = set()
        self.pivot: int | None = None
        self._settle()

    @property
    def done(self) -> bool:
        return self.k == 0 or len(self.candidates) == self.k

    def _settle(self) -> None:
        if self.k == len(self.candidates):
            self.chosen.update(self.candidates)
            self.k = 0
            self.candidates = []
        elif self.k == 0:
            self.candidates = []

    def pairs(self) -> list[tuple[int, int]]:
        if self.done:
            return []
        self.pivot = self.candidates[secrets.randbelow(len(self.candidates))]
        return [(c, self.pivot) for c in self.candidates if c != self.pivot]

    def outcome(self, bits: Sequence[int]) -> None:
        p = self.pivot
        if p is None:
            raise ProtocolError("an outcome without a round")
        others = [c for c in self.candidates if c != p]
        if len(bits) != len(others):
            raise ProtocolError(f"{len(bits)} outcomes for {len(others)} comparisons")
        greater = [c for c, b in zip(others, bits, strict=True) if b]
        smaller = [c for c, b in zip(others, bits, strict=True) if not b]
        if len(greater) >= self.k:
            self.candidates = greater
        else:
            self.chosen.update(greater)
            self.chosen.add(p)
            self.k -= len(greater) + 1
            self.candidates = smaller
        self.pivot = None
        self._settle()


class SampleSelect:
    """Top-k selection with a pivot chosen from a sample (after Floyd and Rivest).

    Quickselect's first random pivot keeps about half the values, so it needs
    about 2n comparisons (2,190 on average for k = 20 of 999, 3,400 at the
    90th percentile). Here a random sample of s = 2 sqrt(n) values is searched
    first for its top j = ceil(4 k s / n) (a quickselect on s values), the
    smallest of those becomes the pivot (a tournament over j), every value is
    compared with it once, and the k largest are selected among the ~4k
    above it: about n + 2s + 8k comparisons (1,310 on average, 1,410 at the
    90th percentile, for k = 20 of 999). Should fewer than k - 1 values lie
    above the pivot (probability about 0.5 %), the rest is selected among
    those below: still exact, only slower. Same interface as
    :class:`Quickselect`; what the PSP sees is of the same kind (outcomes of
    comparisons it chose among anonymous values).
    """

    MIN_N = 64
    """Below this, or when k > n / 12, the sample saves nothing: plain quickselect."""

    def __init__(self, n: int, k: int) -> None:
        if not 0 <= k <= n:
            raise ParameterError(f"cannot select {k} of {n}")
        self.n, self.k = n, k
        self.chosen: set[int] = set()
        self.pivot: int | None = None
        if n < self.MIN_N or 12 * k > n or k == 0:
            self._start_final(list(range(n)), k)
            return
        s = min(n, max(16, round(2 * math.sqrt(n))))
        sample = list(range(n))
        for i in range(s):  # the first s of a Fisher-Yates shuffle
            j = i + secrets.randbelow(n - i)
            sample[i], sample[j] = sample[j], sample[i]
        self.phase = "sample"
        self.map = sample[:s]
        self.inner = Quickselect(s, min(s, -(-4 * k * s // n)))

    def _start_final(self, candidates: list[int], k: int) -> None:
        self.phase = "final"
        self.map = candidates
        self.inner = Quickselect(len(candidates), k)
        self._collect()

    def _collect(self) -> None:
        if self.inner.done:
            self.chosen.update(self.map[i] for i in self.inner.chosen)
            self.phase = "done"

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def pairs(self) -> list[tuple[int, int]]:
        if self.phase in ("sample", "final"):
            return [(self.map[a], self.map[b]) for a, b in self.inner.pairs()]
        if self.phase == "min":
            self._pairs = [(self.round[i], self.round[i + 1]) for i in range(0, len(self.round) - 1, 2)]
            return self._pairs
        if self.phase == "pivot":
            return [(c, self.pivot) for c in range(self.n) if c != self.pivot]  # type: ignore[misc]
        return []

    def outcome(self, bits: Sequence[int]) -> None:
        if self.phase == "sample":
            self.inner.outcome(bits)
            if self.inner.done:  # the pivot is the smallest of the sample's top j
                self.phase = "min"
                self.round = [self.map[i] for i in sorted(self.inner.chosen)]
                self._advance_min([])
        elif self.phase == "min":
            if len(bits) != len(self._pairs):
                raise ProtocolError(f"{len(bits)} outcomes for {len(self._pairs)} comparisons")
            self._advance_min([b if bit == 1 else a for (a, b), bit in zip(self._pairs, bits, strict=True)])
        elif self.phase == "pivot":
            p = self.pivot
            others = [c for c in range(self.n) if c != p]
            if len(bits) != len(others):
                raise ProtocolError(f"{len(bits)} outcomes for {len(others)} comparisons")
            above = [c for c, b in zip(others, bits, strict=True) if b]
            below = [c for c, b in zip(others, bits, strict=True) if not b]
            if len(above) >= self.k:
                self._start_final(above, self.k)
            else:  # everything above and the pivot are in; the rest comes from below
                self.chosen.update(above)
                self.chosen.add(p)  # type: ignore[arg-type]
                self._start_final(below, self.k - len(above) - 1)
        elif self.phase == "final":
            self.inner.outcome(bits)
            self._collect()
        else:
            raise ProtocolError("an outcome after the selection is done")

    def _advance_min(self, winners: list[int]) -> None:
        """One tournament round for the minimum: [a >= b] = 1 keeps b; an odd one out goes on."""
        if winners or len(self.round) % 2:
            self.round = winners + (self.round[-1:] if len(self.round) % 2 else [])
        if len(self.round) == 1:
            self.pivot = self.round[0]
            self.phase = "pivot"


SELECTORS: dict[str, Callable[[int, int], Quickselect | SampleSelect]] = {
    "sample": SampleSelect,
    "quickselect": Quickselect,
}
"""The PSP's selection strategies by name (PSP input ``selector``, default "sample")."""


def encode_pairs(pairs: Sequence[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack(">II", a, b) for a, b in pairs)


def decode_pairs(data: bytes) -> list[tuple[int, int]]:
    if len(data) % 8:
        raise EncodingError("pairs must be 8 bytes each")
    return [struct.unpack_from(">II", data, i) for i in range(0, len(data), 8)]


# -- the phases top-N modes share (each party's side, inside a session) ---------------------------
RANKED_STEPS = (
    *open_steps("target"),
    Step("sims", "psp", "sp"),
    *open_steps("shares"),
    Step("singles", "psp", "sp"),
)
"""Steps 1-3 of the module docstring, which every top-N protocol starts with."""


async def sp_ranked_singles(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    records: Sequence[UserRecord], blocks: Sequence[Sequence[Ciphertext]], a: int, rc: RunCrypto,
) -> tuple[list[Ciphertext], list[int]]:
    """SP: the ranked similarities, one ciphertext per user: E(value_B + m_B) and the masks m_B."""
    sims = await sp_similarities(ctx, layout, pk, share, records, blocks, a, rc)
    shares, masks = await rc(mask_blocks, layout, await rc(ranked_blocks, layout, sims))
    await sp_open(ctx, "shares", pk, share, shares, rc)
    singles = await rc(read_batch, pk, await ctx.receive("psp", "singles"), layout.n_users, "single values")
    return singles, masks


async def psp_ranked_singles(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    blocks: Sequence[Sequence[Ciphertext]], rc: RunCrypto,
) -> None:
    """PSP: reads y_B = value_B + m_B from the masked blocks and sends each back encrypted."""
    await psp_similarities(ctx, layout, pk, share, blocks, rc)
    plains = await psp_open(ctx, "shares", pk, share, len(blocks), "masked values", rc)
    ys = share_layout(layout).unpack_many(plains, layout.n_users)
    await ctx.send("sp", "singles", await rc(batch_message, pk, [pk.encrypt_from_pool(y) for y in ys]))


# -- roles ----------------------------------------------------------------------------------------
class SpTopN:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: RecLayout = topn_layout(i["layout"])
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        records: list[UserRecord] = i["records"]
        blocks: list[list[Ciphertext]] = i["blocks"]
        a: int = i["target"]
        rc: RunCrypto = i.get("run_crypto") or _inline
        singles, masks = await sp_ranked_singles(ctx, layout, pk, share, records, blocks, a, rc)
        xs, perm = await rc(shuffle_values, pk, singles, masks, a)
        ot_key = (i.get("compare_pools") or SpPools()).ot
        await ctx.send("psp", "ot-key", ot_key.public())

        async def reshare_part(j: int, start: int, stop: int) -> list[int]:
            packed, part_masks = await rc(reshare, layout, pk, xs[start:stop])
            await sp_open(ctx, f"reshare{j}", pk, share, packed, rc)
            return part_masks

        parts = reshare_parts(layout, pk, len(xs))
        held = [m for ms in await asyncio.gather(*(reshare_part(j, *p) for j, p in enumerate(parts))) for m in ms]
        bits = held_bits(layout, pk)

        for rnd in range(MAX_ROUNDS + 1):
            pairs = decode_pairs(await ctx.receive("psp", f"q{rnd}"))
            if not pairs:
                break
            if rnd == MAX_ROUNDS:
                raise ProtocolError(f"selection did not finish in {MAX_ROUNDS} rounds")
            values = held_values(held, pairs, bits)
            await compare.sp_compare_held(ctx, ot_key=ot_key, values=values, bits=bits, prefix=f"r{rnd}-", run_crypto=rc)
        chosen = await rc(read_batch, pk, await ctx.receive("psp", "chosen"), len(perm), "selection bits")
        # No re-randomisation here either: the PSP sees these bits again only packed and
        # re-randomised by the SP (``mask_selection``), so n encryptions of zero are saved.
        bits = await rc(unshuffle, chosen, perm, a, pk)

        return await sp_aggregate(ctx, layout, pk, share, records, bits, rc)


class PspTopN:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: RecLayout = topn_layout(i["layout"])
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        records: list[UserRecord] = i["records"]
        blocks: list[list[Ciphertext]] = i["blocks"]
        top_n: int = i["top_n"]
        rc: RunCrypto = i.get("run_crypto") or _inline
        pools = i.get("compare_pools") or PspPools()

        await psp_ranked_singles(ctx, layout, pk, share, blocks, rc)

        n = layout.n_users - 1
        sp_key = await ctx.receive("sp", "ot-key")
        if len(sp_key) != PUBLIC_BYTES:
            raise EncodingError(f"the SP's OT key: {len(sp_key)} bytes, expected {PUBLIC_BYTES}")
        sl = reshare_layout(layout, pk)

        async def reshare_part(j: int, start: int, stop: int) -> list[int]:
            count = stop - start
            plains = await psp_open(ctx, f"reshare{j}", pk, share, sl.count_plaintexts(count), "re-shared values", rc)
            return sl.unpack_many(plains, count)

        parts = reshare_parts(layout, pk, n)
        ys = [y for part in await asyncio.gather(*(reshare_part(j, *p) for j, p in enumerate(parts))) for y in part]
        bits = held_bits(layout, pk)
        sel = SELECTORS[i.get("selector", "sample")](n, min(top_n, n))
        rnd = 0
        while not sel.done:
            if rnd == MAX_ROUNDS:
                raise ProtocolError(f"selection did not finish in {MAX_ROUNDS} rounds")
            pairs = sel.pairs()
            await ctx.send("sp", f"q{rnd}", encode_pairs(pairs))
            outcome = await compare.psp_compare_held(
                ctx, pools=pools, sp_ot_key=sp_key, values=held_values(ys, pairs, bits), bits=bits,
                prefix=f"r{rnd}-", run_crypto=rc,
            )
            sel.outcome(outcome)
            rnd += 1
        await ctx.send("sp", f"q{rnd}", b"")
        chosen = [pk.encrypt_from_pool(1 if j in sel.chosen else 0) for j in range(n)]
        await ctx.send("sp", "chosen", await rc(batch_message, pk, chosen))

        await psp_aggregate(ctx, layout, pk, share, records, rc)
        return len(sel.chosen)


def _round_steps() -> tuple[Step, ...]:
    out: list[Step] = []
    for rnd in range(MAX_ROUNDS + 1):
        out.append(Step(f"q{rnd}", "psp", "sp"))
        if rnd < MAX_ROUNDS:
            out.extend(compare.held_steps(f"r{rnd}-"))
    return tuple(out)


@register_protocol
class RecommendTopN(ProtocolSpec):
    name = "recommend-topn"
    roles = ("sp", "psp")
    steps = (
        *RANKED_STEPS,
        Step("ot-key", "sp", "psp"),
        *(step for j in range(RESHARE_PARTS) for step in open_steps(f"reshare{j}")),
        *_round_steps(),
        Step("chosen", "psp", "sp"),
        *AGGREGATE_STEPS,
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpTopN, "psp": PspTopN}
