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
3. ``ot-key`` (SP -> PSP), ``shuffle-key`` (PSP -> SP): the servers' base-OT keys.
4. ``shuffle``, ``shuffle.pads``: an oblivious permute-and-share
   (:mod:`mpc.comparison.shuffle`): the PSP's y_B go through a Benes network
   set by the SP for a fresh random order (A last, at position n - 1); the PSP
   ends with fresh coins Y_j, the SP with c_j, Y_j + c_j = y_perm(j), hence
   X_j = Y_j - M_j with M_j = m_perm(j) - c_j: the anonymous values, shared.
5. ``reshuffle``, ``reshuffle.pads``: the same with the roles swapped: the PSP
   permutes the positions by a sigma of its own and the SP holds M_j; the SP
   ends with fresh coins M'_k, the PSP with Y'_k, X'_k = X_sigma(k) = Y'_k - M'_k.
   Without it the SP, which knows perm, would map the pairs of step 6 to
   users and, as each round's pairs depend on the last outcomes, learn the
   neighbours.
6. Selection, in rounds ``q<i>`` (PSP -> SP: pairs of positions to compare)
   and ``r<i>-choices``, ``r<i>-garbled`` (the garbled comparison of
   Y'_a - Y'_b, the PSP's, with M'_a - M'_b, the SP's, output revealed to the
   PSP; no decryption): selection (:class:`SampleSelect`) driven by the PSP on
   comparison outcomes it may see. The last ``q<i>`` is empty.
7. ``unshuffle``, ``unshuffle.pads``: the PSP's selection bits, put back in the
   SP's order through sigma, back through the inverse permutation, shared:
   z_B (the PSP's coins) and rho_B = z_B - b_B (the SP's), in user order.
8. ``aggregate``: as in "recommend", from those shares.

Leakage: the PSP learns the order relations it asked for among the
anonymous, freshly permuted values of this one query (the
order of a random subset of pairs, never a value); it cannot link a position
to a user or to another query. The SP learns nothing beyond sizes: the pairs
it sees are positions of the PSP's order. See
docs/protocols/recommend.md.
"""

from __future__ import annotations

import math
import secrets
import struct
from collections.abc import Callable, Sequence
from typing import ClassVar

from crm.recommender.private import (
    RecLayout,
    UserRecord,
)
from crm.recommender.protocol import (
    batch_message,
    check_mode,
    open_steps,
    psp_aggregate_shares,
    psp_open,
    psp_similarities,
    read_batch,
    sp_aggregate_shares,
    sp_open,
    sp_similarities,
)
from mpc.comparison import shuffle
from mpc.comparison.ot import PUBLIC_BYTES
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, KeyShare, PublicKey
from mpc.errors import EncodingError, ParameterError, ProtocolError
from mpc.packing import SlotLayout, pack_bits, pack_masks, random_masks
from mpc.protocol import (
    ProtocolSpec,
    RoleFactory,
    RunCrypto,
    SessionContext,
    Step,
    register_protocol,
    run_inline,
)
from mpc.protocols import compare, shuffling

MAX_ROUNDS = 48


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


def shuffle_order(n_users: int, target: int) -> list[int]:
    """The SP's fresh permutation of the shuffle's wires (:func:`mpc.comparison.shuffle.size_for`):
    positions 0 .. n-2 hold the users other than A in a uniformly random order, position
    n - 1 holds A, the padding wires stay where they are."""
    users = [u for u in range(n_users) if u != target]
    for i in range(len(users) - 1, 0, -1):  # Fisher-Yates with a CSPRNG
        j = secrets.randbelow(i + 1)
        users[i], users[j] = users[j], users[i]
    return [*users, target, *range(n_users, shuffle.size_for(n_users))]


def inverse(perm: Sequence[int]) -> list[int]:
    out = [0] * len(perm)
    for j, u in enumerate(perm):
        out[u] = j
    return out


def share_bits(layout: RecLayout) -> int:
    """Bits of the PSP's shares of the shuffled values: y_B < 2^(mask bits + 1), plus kappa."""
    return share_layout(layout).mask_bits + 1 + layout.kappa


def held_bits(layout: RecLayout) -> int:
    """Bits of the values compared in a round (:func:`held_values`): after the reshuffle the
    shares are below 2^(K2+1) in absolute value (K2 = :func:`reshuffle_bits`), so their
    differences below 2^(K2+2), with room for the offset."""
    return reshuffle_bits(layout) + 3


def held_values(values: Sequence[int], pairs: Sequence[tuple[int, int]], bits: int) -> list[int]:
    """values[a] - values[b] + 2^(bits - 1) for each pair: non-negative, below 2^bits.

    The PSP's (values Y) and the SP's (M) sides of a round: X_a >= X_b iff
    Y_a - Y_b >= M_a - M_b, compared by :func:`mpc.protocols.compare.sp_compare_held`.
    """
    n, off = len(values), 1 << (bits - 1)
    for a, b in pairs:
        if not (0 <= a < n and 0 <= b < n) or a == b:
            raise EncodingError(f"pair ({a}, {b}) is not two distinct positions below {n}")
    return [values[a] - values[b] + off for a, b in pairs]


def reshuffle_bits(layout: RecLayout) -> int:
    """Bits of the SP's shares after the PSP's reshuffle: it holds M_j + 2^(K+1) < 2^(K+2)
    (K = :func:`share_bits`), hidden by kappa more."""
    return share_bits(layout) + 2 + layout.kappa


def reshuffle_offset(layout: RecLayout) -> int:
    """What makes the SP's M_j (below 2^(K+1) in absolute value) non-negative for the reshuffle."""
    return 1 << (share_bits(layout) + 1)


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
SHARED_STEPS = (
    *open_steps("target"),
    Step("sims", "psp", "sp"),
    *open_steps("shares"),
)
"""Steps 1-2 of the module docstring, which every top-N protocol starts with."""

RANKED_STEPS = (*SHARED_STEPS, Step("singles", "psp", "sp"))
"""Steps 1-2 and E(y_B) for every user (``singles``), as protocol "recommend-rank" starts."""


async def sp_ranked_shares(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    records: Sequence[UserRecord], blocks: Sequence[Sequence[Ciphertext]], a: int, rc: RunCrypto,
) -> list[int]:
    """SP: the ranked similarities opened to the PSP masked, y_B = value_B + m_B; the masks m_B."""
    sims = await sp_similarities(ctx, layout, pk, share, records, blocks, a, rc)
    shares, masks = await rc(mask_blocks, layout, await rc(ranked_blocks, layout, sims))
    await sp_open(ctx, "shares", pk, share, shares, rc)
    return masks  # type: ignore[no-any-return]


async def psp_ranked_shares(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    blocks: Sequence[Sequence[Ciphertext]], rc: RunCrypto,
) -> list[int]:
    """PSP: y_B = value_B + m_B, in user order, from the masked blocks."""
    await psp_similarities(ctx, layout, pk, share, blocks, rc)
    plains = await psp_open(ctx, "shares", pk, share, len(blocks), "masked values", rc)
    return share_layout(layout).unpack_many(plains, layout.n_users)


async def sp_ranked_singles(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    records: Sequence[UserRecord], blocks: Sequence[Sequence[Ciphertext]], a: int, rc: RunCrypto,
) -> tuple[list[Ciphertext], list[int]]:
    """SP: the ranked similarities, one ciphertext per user: E(value_B + m_B) and the masks m_B."""
    masks = await sp_ranked_shares(ctx, layout, pk, share, records, blocks, a, rc)
    singles = await rc(read_batch, pk, await ctx.receive("psp", "singles"), layout.n_users, "single values")
    return singles, masks


async def psp_ranked_singles(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    blocks: Sequence[Sequence[Ciphertext]], rc: RunCrypto,
) -> None:
    """PSP: reads y_B = value_B + m_B from the masked blocks and sends each back encrypted."""
    ys = await psp_ranked_shares(ctx, layout, pk, share, blocks, rc)
    await ctx.send("sp", "singles", await rc(batch_message, pk, [pk.encrypt_from_pool(y) for y in ys]))


# -- roles ----------------------------------------------------------------------------------------
class SpTopN:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: RecLayout = topn_layout(i["layout"])
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        records: list[UserRecord] = i["records"]
        a: int = i["target"]
        rc: RunCrypto = i.get("run_crypto") or run_inline
        pools = i.get("compare_pools") or SpPools()
        n = layout.n_users - 1

        masks = await sp_ranked_shares(ctx, layout, pk, share, records, i["blocks"], a, rc)
        await ctx.send("psp", "ot-key", pools.ot.public())
        seeds = await rc(pools.shuffle_seeds.get, await ctx.receive("psp", "shuffle-key"))
        perm = shuffle_order(layout.n_users, a)
        c = await shuffling.permute(ctx, "shuffle", seeds, perm, rc)
        # X_j = y_perm(j) - m_perm(j) = Y_j + c_j - m_perm(j) = Y_j - M_j.
        off = reshuffle_offset(layout)
        held = [masks[perm[j]] - c[j] + off for j in range(n)]
        # The PSP's reshuffle: the SP keeps fresh coins M'_k; the positions the PSP will ask
        # about are in an order the SP does not know.
        width = shuffle.size_for(layout.n_users)
        held = (await shuffling.hold(
            ctx, "reshuffle", pools.ot, [*held, *[0] * (width - n)], reshuffle_bits(layout), rc
        ))[:n]
        bits = held_bits(layout)

        for rnd in range(MAX_ROUNDS + 1):
            pairs = decode_pairs(await ctx.receive("psp", f"q{rnd}"))
            if not pairs:
                break
            if rnd == MAX_ROUNDS:
                raise ProtocolError(f"selection did not finish in {MAX_ROUNDS} rounds")
            if len(pairs) > n - 1:  # a selection round compares the candidates with one pivot
                raise ProtocolError(f"round {rnd}: the PSP asks for {len(pairs)} pairs; a round compares at most {n - 1}")
            values = held_values(held, pairs, bits)
            await compare.sp_compare_held(ctx, ot_key=pools.ot, values=values, bits=bits, prefix=f"r{rnd}-", run_crypto=rc)

        # The selection bits back in user order, shared: b_B = z_B + c_B, z_B at the PSP.
        c = await shuffling.permute(ctx, "unshuffle", seeds, inverse(perm), rc)
        return await sp_aggregate_shares(ctx, layout, pk, records, [-x for x in c[: layout.n_users]], rc)


class PspTopN:
    async def run(self, ctx: SessionContext) -> object:
        check_mode(ctx)
        i = ctx.inputs
        layout: RecLayout = topn_layout(i["layout"])
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        records: list[UserRecord] = i["records"]
        top_n: int = i["top_n"]
        rc: RunCrypto = i.get("run_crypto") or run_inline
        pools = i.get("compare_pools") or PspPools()
        n = layout.n_users - 1
        width = shuffle.size_for(layout.n_users)

        ys = await psp_ranked_shares(ctx, layout, pk, share, i["blocks"], rc)
        sp_key = await ctx.receive("sp", "ot-key")
        if len(sp_key) != PUBLIC_BYTES:
            raise EncodingError(f"the SP's OT key: {len(sp_key)} bytes, expected {PUBLIC_BYTES}")
        await ctx.send("sp", "shuffle-key", pools.shuffle_key.public())
        shuffled = [*ys, *[0] * (width - layout.n_users)]
        held = (await shuffling.hold(ctx, "shuffle", pools.shuffle_key, shuffled, share_bits(layout), rc))[:n]
        # Reshuffle with an order of the PSP's own: X'_k = X_sigma(k) = Y'_k - M'_k.
        sigma = shuffle.random_order(n, width)  # the PSP's own order
        d = await shuffling.permute(ctx, "reshuffle", pools.ot_seeds(sp_key), sigma, rc)
        off = reshuffle_offset(layout)
        held = [held[sigma[k]] - d[k] + off for k in range(n)]
        bits = held_bits(layout)

        sel = SELECTORS[i.get("selector", "sample")](n, min(top_n, n))
        rnd = 0
        while not sel.done:
            if rnd == MAX_ROUNDS:
                raise ProtocolError(f"selection did not finish in {MAX_ROUNDS} rounds")
            pairs = sel.pairs()
            await ctx.send("sp", f"q{rnd}", encode_pairs(pairs))
            outcome = await compare.psp_compare_held(
                ctx, pools=pools, sp_ot_key=sp_key, values=held_values(held, pairs, bits), bits=bits,
                prefix=f"r{rnd}-", run_crypto=rc,
            )
            sel.outcome(outcome)
            rnd += 1
        await ctx.send("sp", f"q{rnd}", b"")

        chosen = [0] * width  # in the SP's order
        for k in sel.chosen:
            chosen[sigma[k]] = 1
        zs = await shuffling.hold(ctx, "unshuffle", pools.shuffle_key, chosen, 1 + layout.kappa, rc)
        await psp_aggregate_shares(ctx, layout, pk, records, zs[: layout.n_users], rc)
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
        *SHARED_STEPS,
        Step("ot-key", "sp", "psp"),
        Step("shuffle-key", "psp", "sp"),
        *shuffling.shuffle_steps("shuffle"),
        *shuffling.shuffle_steps("reshuffle", permuter="psp"),
        *_round_steps(),
        *shuffling.shuffle_steps("unshuffle"),
        Step("aggregate", "psp", "sp"),
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpTopN, "psp": PspTopN}
