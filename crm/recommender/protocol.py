"""Protocol "recommend": one target user's private recommendations, threshold mode.

Steps (see ``crm.recommender.private`` for the maths and
docs/protocols/recommend.md for the leakage statement):

1. ``target``, ``target.partials`` (SP -> PSP): A's packed dense vector plus
   per-slot masks, then the SP's partial decryption of it (a step of its own,
   so that the PSP computes its partials meanwhile: :func:`sp_open`); the PSP
   reads z = v_A + r.
2. ``sims`` (PSP -> SP): sum_j z_j P_{b,j} per block of users, computed on the
   PSP's own copy and re-randomised; the SP subtracts sum_j r_j P_{b,j} and
   holds E(sim(A, B)) packed per block.
3. ``cmp-*``: the secure comparison (``mpc.protocols.compare``) of every
   sim(A, B) with delta, its first step fed directly with the packed
   similarities; output: E([sim(A, B) >= delta]) at the SP, nobody learns it.
4. ``selection``, ``selection.partials`` (SP -> PSP): E(b_B + rho_B), packed,
   then the SP's partials (A's own bit replaced by an encryption of 0); the
   PSP reads z_B.
5. ``aggregate`` (PSP -> SP): sum_B z_B D_B on the PSP's copy, re-randomised;
   the SP subtracts sum_B rho_B D_B: E(per-item sums and counts) for A, which
   only A decrypts (protocol "deliver").

SP inputs: ``layout``, ``pk``, ``share``, ``records`` (every user's
:class:`UserRecord`, user order), ``blocks`` (``build_blocks``), ``target``
(A's position), ``delta``, optional ``run_crypto``, ``compare_pools``.
PSP inputs: ``layout``, ``pk``, ``share``, ``records``, ``blocks``,
optional ``compare_pools``, ``run_crypto``.
SP result: the aggregate ciphertexts; PSP result: None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar

from crm.recommender.private import (
    RecLayout,
    UserRecord,
    block_products,
    finish_similarities,
    mask_selection,
    mask_target,
    rating_products,
    unmask_selection,
    unmask_target,
)
from mpc.comparison.masking import draw_masks
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, KeyShare, PublicKey, combine_many
from mpc.errors import EncodingError, LayoutError, ParameterError
from mpc.packing import pack_bits, pack_masks
from mpc.protocol import (
    ProtocolSpec,
    RoleFactory,
    RunCrypto,
    SessionContext,
    Step,
    register_protocol,
    run_inline,
)
from mpc.protocols import compare
from mpc.protocols.wire import (
    ciphertext_batch,
    ciphertexts_from_batch,
    element_batch,
    elements_from_batch,
    parse_message,
)
from mpc.v1 import recommend_pb2

CMP = "cmp-"


def compare_params(layout: RecLayout) -> compare.CompareParams:
    """The comparison of every user's similarity with delta: l = sim_bits, encrypted output."""
    return compare.CompareParams(
        layout.sim_bits, layout.n_users, compare.OUTPUT_ENCRYPTED, kappa=layout.kappa
    )


def check_mode(ctx: SessionContext) -> None:
    """PSP: the SP must start the protocol the PSP's own recommender parameters run (input
    ``protocol``, from its RecParams' ``top_n`` and ``selection``): a PSP whose parameters say
    "recommend-rank" (nothing revealed) never plays "recommend-topn" (order relations revealed)."""
    expected = ctx.inputs.get("protocol")
    if expected is not None and expected != ctx.protocol.name:
        raise ParameterError(
            f"the SP started protocol {ctx.protocol.name!r}; this PSP's recommender parameters "
            f"(top_n, selection) run protocol {expected!r}"
        )


def check_compare_layout(layout: RecLayout, pk: PublicKey) -> None:
    """The similarity blocks must be exactly the comparison's packed layout."""
    cl = compare_params(layout).layout(pk)
    if cl.slot_bits != layout.sim_slot_bits or min(cl.capacity, layout.n_users) != layout.users_per_block:
        raise LayoutError(
            f"similarity blocks ({layout.users_per_block} x {layout.sim_slot_bits} bits) do not match "
            f"the comparison layout ({cl.capacity} x {cl.slot_bits} bits)"
        )


# -- pure steps --------------------------------------------------------------------------------
def _masked_ciphertexts(pk: PublicKey, cts: Sequence[Ciphertext]) -> bytes:
    return recommend_pb2.MaskedBatch(ciphertexts=ciphertext_batch(pk, cts)).SerializeToString()


def _masked_partials(pk: PublicKey, share: KeyShare, cts: Sequence[Ciphertext]) -> bytes:
    partials = share.partial_decrypt_many(cts)
    return recommend_pb2.MaskedBatch(partials=element_batch(pk.params, partials)).SerializeToString()


def _read_masked(pk: PublicKey, data: bytes, count: int, what: str, part: str) -> list[Any]:
    msg = parse_message(recommend_pb2.MaskedBatch, data, what)
    if part == "ciphertexts":
        if msg.partials.count or msg.partials.blob:
            raise EncodingError(f"{what}: partial decryptions come in their own step")
        items: list[Any] = ciphertexts_from_batch(pk, msg.ciphertexts, what)
    else:
        if msg.ciphertexts.count or msg.ciphertexts.blob:
            raise EncodingError(f"{what}: the partial decryptions' step carries no ciphertexts")
        items = elements_from_batch(pk.params, msg.partials, what)
    if len(items) != count:
        raise EncodingError(f"{what}: {len(items)} {part}, expected {count}")
    return items


def open_steps(step: str) -> tuple[Step, Step]:
    """The two steps of :func:`sp_open`: the ciphertexts, then the SP's partials."""
    return Step(step, "sp", "psp"), Step(step + ".partials", "sp", "psp")


async def sp_open(
    ctx: SessionContext, step: str, pk: PublicKey, share: KeyShare, cts: Sequence[Ciphertext], rc: RunCrypto
) -> None:
    """Open masked ciphertexts to the PSP: the ciphertexts first, then the SP's partial
    decryptions, so that the PSP computes its own partials meanwhile (steps :func:`open_steps`)."""
    await ctx.send("psp", step, await rc(_masked_ciphertexts, pk, cts))
    await ctx.send("psp", step + ".partials", await rc(_masked_partials, pk, share, cts))


async def psp_open(
    ctx: SessionContext, step: str, pk: PublicKey, share: KeyShare, count: int, what: str, rc: RunCrypto
) -> list[int]:
    """The PSP's side of :func:`sp_open`: the plaintexts of the ``count`` masked ciphertexts."""
    cts = await rc(_read_masked, pk, await ctx.receive("sp", step), count, what, "ciphertexts")
    own = asyncio.ensure_future(rc(share.partial_decrypt_many, cts))
    try:
        theirs = await rc(_read_masked, pk, await ctx.receive("sp", step + ".partials"), count, what, "partials")
        mine = await own
    finally:
        own.cancel()
    return await rc(combine_many, cts, [theirs, mine])


def batch_message(pk: PublicKey, cts: Sequence[Ciphertext]) -> bytes:
    return recommend_pb2.CiphertextBatch(ciphertexts=ciphertext_batch(pk, cts)).SerializeToString()


def read_batch(pk: PublicKey, data: bytes, count: int, what: str) -> list[Ciphertext]:
    msg = parse_message(recommend_pb2.CiphertextBatch, data, what)
    cts = ciphertexts_from_batch(pk, msg.ciphertexts, what)
    if len(cts) != count:
        raise EncodingError(f"{what}: {len(cts)} ciphertexts, expected {count}")
    return cts


def sp_masked_sims(
    layout: RecLayout,
    pk: PublicKey,
    params: compare.CompareParams,
    sims: Sequence[Ciphertext],
    delta: int,
    pools: SpPools | None = None,
) -> tuple[compare.SpState, bytes]:
    """The comparison's first step fed with packed similarities: slot k gets 2^l - delta + r_k.

    Equivalent to ``compare.sp_masked`` with diffs E(sim_B - delta), without
    unpacking: the blocks already have the comparison's slot layout.
    """
    if not 0 <= delta < 1 << layout.sim_bits:
        raise ParameterError(f"delta must be in [0, 2^{layout.sim_bits})")
    cl = params.layout(pk)
    masks = draw_masks(cl, params.count)
    packed = []
    k = cl.capacity
    for b, ct in enumerate(sims):
        n = min(k, params.count - b * k)
        offset = pack_bits([(1 << params.bits) - delta] * n, cl.slot_bits)
        offset += pack_masks(cl, masks[b * k : b * k + n])
        packed.append(pk.rerandomize(ct.add_plain(offset)))
    return compare.sp_message(pk, params, cl, masks, packed, pools)


def selection_bits(pk: PublicKey, results: Sequence[Ciphertext], target: int) -> list[Ciphertext]:
    """E(b_B) for every user; A is never its own neighbour (an encryption of 0 in its place)."""
    out = list(results)
    out[target] = pk.encrypt_from_pool(0)
    return out


# -- the phases both modes share (each party's side, inside a session) ---------------------------
async def sp_similarities(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    records: Sequence[UserRecord], blocks: Sequence[Sequence[Ciphertext]], a: int, rc: RunCrypto,
) -> list[Ciphertext]:
    """Steps ``target`` and ``sims`` at the SP: E(sim(A, B)) packed per block."""
    if not 0 <= a < layout.n_users:
        raise ParameterError(f"target position {a} outside 0..{layout.n_users - 1}")
    masked, r = await rc(mask_target, layout, records[a].target)
    await sp_open(ctx, "target", pk, share, [masked], rc)
    own = await rc(block_products, pk, blocks, r)
    psp = await rc(read_batch, pk, await ctx.receive("psp", "sims"), len(blocks), "similarity blocks")
    return await rc(finish_similarities, psp, own)


async def psp_similarities(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    blocks: Sequence[Sequence[Ciphertext]], rc: RunCrypto,
) -> None:
    """Steps ``target`` and ``sims`` at the PSP: its block products with z = v_A + r."""
    (z_packed,) = await psp_open(ctx, "target", pk, share, 1, "masked target", rc)
    mine = await rc(block_products, pk, blocks, unmask_target(layout, z_packed))
    await ctx.send("sp", "sims", await rc(batch_message, pk, [pk.rerandomize(c) for c in mine]))


async def sp_aggregate(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    records: Sequence[UserRecord], bits: Sequence[Ciphertext], rc: RunCrypto,
) -> list[Ciphertext]:
    """Steps ``selection`` and ``aggregate`` at the SP: E(sum_B b_B D_B) from E(b_B),
    followed by E(sum_B b_B), the number of neighbours (for the target only)."""
    packed, rho = await rc(mask_selection, layout, bits)
    await sp_open(ctx, "selection", pk, share, packed, rc)
    return await sp_aggregate_shares(ctx, layout, pk, records, rho, rc)


async def sp_aggregate_shares(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, records: Sequence[UserRecord], rho: Sequence[int],
    rc: RunCrypto,
) -> list[Ciphertext]:
    """Step ``aggregate`` at the SP, once the PSP holds z_B = b_B + rho_B and the SP rho_B
    (0 <= rho_B, z_B <= 2^(1 + kappa)): the SP's side of :func:`sp_aggregate` after the opening."""
    own = await rc(rating_products, pk, [rec.ratings for rec in records], rho)
    psp = await rc(read_batch, pk, await ctx.receive("psp", "aggregate"), layout.n_result_ciphertexts, "aggregate")
    # The last one is E(sum_B z_B) = E(count + sum_B rho_B): the number of neighbours.
    return [*(x - y for x, y in zip(psp[:-1], own, strict=True)), psp[-1].add_plain(-sum(rho))]


async def psp_aggregate(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, share: KeyShare,
    records: Sequence[UserRecord], rc: RunCrypto,
) -> None:
    """Steps ``selection`` and ``aggregate`` at the PSP: sum_B z_B D_B on its copy."""
    n_packed = -(-layout.n_users // layout.selection_layout.slots)
    plains = await psp_open(ctx, "selection", pk, share, n_packed, "selection", rc)
    await psp_aggregate_shares(ctx, layout, pk, records, unmask_selection(layout, plains, layout.n_users), rc)


async def psp_aggregate_shares(
    ctx: SessionContext, layout: RecLayout, pk: PublicKey, records: Sequence[UserRecord], zs: Sequence[int],
    rc: RunCrypto,
) -> None:
    """Step ``aggregate`` at the PSP from its z_B (see :func:`sp_aggregate_shares`)."""
    agg = await rc(rating_products, pk, [rec.ratings for rec in records], zs)
    total = pk.encrypt_from_pool(sum(zs))  # count + sum of the SP's masks: hides the count
    await ctx.send("sp", "aggregate", await rc(batch_message, pk, [*(pk.rerandomize(c) for c in agg), total]))


AGGREGATE_STEPS = (*open_steps("selection"), Step("aggregate", "psp", "sp"))
"""The steps of :func:`sp_aggregate` / :func:`psp_aggregate`, which every recommender protocol ends with."""


# -- roles ---------------------------------------------------------------------------------------
class SpRecommend:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: RecLayout = i["layout"]
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        rc: RunCrypto = i.get("run_crypto") or run_inline
        check_compare_layout(layout, pk)
        sims = await sp_similarities(ctx, layout, pk, share, i["records"], i["blocks"], i["target"], rc)

        # The comparison with delta, output encrypted, fed with the packed similarities.
        state, first = await rc(
            sp_masked_sims, layout, pk, compare_params(layout), sims, i["delta"], i.get("compare_pools")
        )
        results = await compare.sp_rounds(ctx, state, first, share, rc, CMP)
        assert results is not None

        chosen = await rc(selection_bits, pk, results, i["target"])
        return await sp_aggregate(ctx, layout, pk, share, i["records"], chosen, rc)


class PspRecommend:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: RecLayout = i["layout"]
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        rc: RunCrypto = i.get("run_crypto") or run_inline
        check_mode(ctx)
        check_compare_layout(layout, pk)
        await psp_similarities(ctx, layout, pk, share, i["blocks"], rc)
        await compare.psp_compare(
            ctx,
            pk=pk,
            share=share,
            params=compare_params(layout),
            pools=i.get("compare_pools") or PspPools(),
            run_crypto=rc,
            prefix=CMP,
        )
        await psp_aggregate(ctx, layout, pk, share, i["records"], rc)
        return None


@register_protocol
class Recommend(ProtocolSpec):
    name = "recommend"
    roles = ("sp", "psp")
    steps = (
        *open_steps("target"),
        Step("sims", "psp", "sp"),
        *compare.compare_steps(CMP),
        *AGGREGATE_STEPS,
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpRecommend, "psp": PspRecommend}


