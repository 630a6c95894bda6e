"""Protocol "recommend-rank": the N most similar users with nothing revealed to anyone.

The leak-free alternative to shuffle-then-select (``crm.recommender.topn``):
no comparison outcome is ever revealed, so the PSP learns no order at all. It
counts ranks under encryption, a comparison network of depth two:

1. ``target`` / ``sims`` / ``shares`` / ``singles``: as in "recommend-topn",
   the SP ends up with E(X_B) for every user B, X_B = sim(A, B) * 2^t plus B's
   rank bits (all distinct; a tie goes to the user earlier in user order).
2. ``p-*``: one batch of the secure comparison with **encrypted output** for
   every pair of users other than A: E([X_C >= X_B]).
3. The SP sums, for each B, E(rank_B) = E(number of users C with X_C > X_B).
4. ``s-*``: one more batch with encrypted output: E(b_B) = E([N - 1 >= rank_B]),
   B is a neighbour iff fewer than N users are above it.
5. ``selection`` / ``aggregate``: as in "recommend".

Leakage: what the threshold mode leaks, nothing more: both batches' outputs
stay encrypted under the joint key, every value the PSP decrypts in them is
masked (docs/protocols/compare.md), and the number of comparisons depends on
n only. Cost: n(n - 1)/2 + n comparisons for n - 1 other users: quadratic,
so for small groups (some 100 users: 5,000 comparisons) or as the reference a
faster leak-free selection is measured against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from crm.recommender.private import RecLayout, UserRecord
from crm.recommender.protocol import AGGREGATE_STEPS, check_mode, psp_aggregate, sp_aggregate
from crm.recommender.topn import RANKED_STEPS, psp_ranked_singles, sp_ranked_singles, topn_layout
from mpc.comparison.pools import PspPools
from mpc.elgamal import Ciphertext, KeyShare, PublicKey, sum_ciphertexts
from mpc.errors import ParameterError
from mpc.protocol import (
    ProtocolSpec,
    RoleFactory,
    RunCrypto,
    SessionContext,
    register_protocol,
    run_inline,
)
from mpc.protocols import compare

__all__ = ["RecommendRank", "pairs_of", "rank_bits", "ranks_from_outcomes"]


def pairs_of(n: int, target: int) -> list[tuple[int, int]]:
    """Every unordered pair (c, b), c < b, of users other than ``target``."""
    others = [u for u in range(n) if u != target]
    return [(others[i], others[j]) for i in range(len(others)) for j in range(i + 1, len(others))]


def rank_bits(n: int) -> int:
    """Bits of the rank comparison: ranks and N - 1 are below n."""
    return max(1, n.bit_length())


def ranks_from_outcomes(
    pk: PublicKey, n: int, target: int, pairs: Sequence[tuple[int, int]], ge: Sequence[Ciphertext]
) -> dict[int, Ciphertext]:
    """E(rank_B) for every user B != target from E([X_c >= X_b]) per pair (c, b).

    rank_B counts the users above B: for a pair (c, b) the first is above the
    second iff the bit is 1, the second is above the first iff it is 0.
    """
    one = pk.encrypt_from_pool(1)
    above: dict[int, list[Ciphertext]] = {u: [] for u in range(n) if u != target}
    for (c, b), bit in zip(pairs, ge, strict=True):
        above[b].append(bit)
        above[c].append(one - bit)
    zero = Ciphertext(pk, 1, 1)  # deterministic E(0): the first user has nobody above it yet
    return {u: sum_ciphertexts([zero, *cts]) for u, cts in above.items()}


class SpRank:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: RecLayout = topn_layout(i["layout"])
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        records: list[UserRecord] = i["records"]
        a: int = i["target"]
        top_n: int = i["top_n"]
        n = layout.n_users
        if top_n < 1:
            raise ParameterError(f"top_n must be at least 1, got {top_n}")
        rc: RunCrypto = i.get("run_crypto") or run_inline
        pools = i.get("compare_pools")
        singles, masks = await sp_ranked_singles(ctx, layout, pk, share, records, i["blocks"], a, rc)
        xs = [c.add_plain(-m) for c, m in zip(singles, masks, strict=True)]

        pairs = pairs_of(n, a)
        ge: list[Ciphertext] = []
        if pairs:
            ge = await compare.sp_compare(  # type: ignore[assignment]
                ctx, pk=pk, share=share,
                params=compare.CompareParams(layout.ranked_bits, len(pairs), output=compare.OUTPUT_ENCRYPTED, chunks=compare.PIPELINE),
                diffs=[xs[c] - xs[b] for c, b in pairs], pools=pools, run_crypto=rc, prefix="p-",
            )
        ranks = await rc(ranks_from_outcomes, pk, n, a, pairs, ge)
        others = sorted(ranks)
        limit = pk.encrypt_from_pool(min(top_n, n - 1) - 1)
        chosen = await compare.sp_compare(
            ctx, pk=pk, share=share,
            params=compare.CompareParams(rank_bits(n), len(others), output=compare.OUTPUT_ENCRYPTED, chunks=compare.PIPELINE),
            xs=[limit] * len(others), ys=[ranks[u] for u in others], pools=pools, run_crypto=rc, prefix="s-",
        )
        bits: list[Ciphertext] = [Ciphertext(pk, 1, 1)] * n
        for u, bit in zip(others, chosen, strict=True):  # type: ignore[arg-type]
            bits[u] = bit
        bits[a] = pk.encrypt_from_pool(0)
        return await sp_aggregate(ctx, layout, pk, share, records, bits, rc)


class PspRank:
    async def run(self, ctx: SessionContext) -> object:
        check_mode(ctx)
        i = ctx.inputs
        layout: RecLayout = topn_layout(i["layout"])
        pk: PublicKey = i["pk"]
        share: KeyShare = i["share"]
        rc: RunCrypto = i.get("run_crypto") or run_inline
        pools = i.get("compare_pools") or PspPools()
        n = layout.n_users

        await psp_ranked_singles(ctx, layout, pk, share, i["blocks"], rc)
        count = (n - 1) * (n - 2) // 2
        if count:
            await compare.psp_compare(
                ctx, pk=pk, share=share, pools=pools, run_crypto=rc, prefix="p-",
                params=compare.CompareParams(layout.ranked_bits, count, output=compare.OUTPUT_ENCRYPTED, chunks=compare.PIPELINE),
            )
        await compare.psp_compare(
            ctx, pk=pk, share=share, pools=pools, run_crypto=rc, prefix="s-",
            params=compare.CompareParams(rank_bits(n), n - 1, output=compare.OUTPUT_ENCRYPTED, chunks=compare.PIPELINE),
        )
        await psp_aggregate(ctx, layout, pk, share, i["records"], rc)
        return None


@register_protocol
class RecommendRank(ProtocolSpec):
    name = "recommend-rank"
    roles = ("sp", "psp")
    steps = (
        *RANKED_STEPS,
        *compare.compare_steps("p-", chunks=compare.PIPELINE),
        *compare.compare_steps("s-", chunks=compare.PIPELINE),
        *AGGREGATE_STEPS,
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpRank, "psp": PspRank}
