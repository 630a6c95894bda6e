"""The private recommender (threshold mode) on the live SP and PSP.

Public parameters (``RecParams``, one JSON file both servers load through the
``recommender = "rec.json"`` key of their TOML config): the users in user
order, the items, the dense items, ``shift``, ``levels`` (hi - lo + 1), ``lo``,
the threshold ``delta`` and the key size. ``layout_version`` is a 31-bit hash
of them: every upload carries it, so a user encoding for other parameters is
refused.

Upload (kind ``"rec"``): the user encrypts
``user_plaintexts(layout, position, dense_vector, d_row)`` (see
:func:`upload_plaintexts`) and uploads it. The SP refuses a wrong user, count
or layout version (INVALID_ARGUMENT, nothing stored anywhere), then forwards
the record to the PSP (protocol ``"replicate"``: one message, the PSP stores it
in its own SQLite store and acknowledges), and only then stores it itself.
Both servers also keep every user's :class:`UserRecord` in memory and the
similarity blocks P_{b,j}; an upload marks only its own block stale, rebuilt
at the next query.

Compute (protocol ``"recommend"``): when user A fetches kind
``"recommendations"``, the SP runs the protocol for A with the PSP, each on its
own copy, and stores the aggregate as a result of A (``put_result``), which the
generic Fetch then delivers (protocol ``"deliver"``). A second fetch is served
from the store.

Cache invalidation: every result depends on every user's data, so the SP keeps
a global data version in the store's meta table (``rec:data_version``, bumped
*before* each upload is stored) and, next to each result, the data version it
was computed at (``rec:result:<user>``, written after the result). A result is
served only when the two agree; a crash between the two writes costs a
recomputation, never a stale answer.

Concurrency: uploads of kind "rec" (including their replication) and
recommend sessions are serialised by one lock on the SP, so both servers always
compute on the same records. Users missing from the store count as users with
no ratings (a trivial encryption of 0 in their place, identical on both
servers): their similarity is 0 and they add nothing to the sums or counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import gmpy2

import crm.recommender.rank  # (registers "recommend-rank")
import crm.recommender.topn  # noqa: F401  (registers "recommend-topn")
from crm.recommender.plain import Recommendation
from crm.recommender.private import (
    RecLayout,
    UserRecord,
    check_bits,
    check_passed,
    decode_aggregate,
    decode_neighbours,
    psp_check_values,
    sp_check,
    sp_check_values,
    user_plaintexts,
)
from crm.recommender.protocol import compare_params  # importing it registers "recommend"
from mpc.comparison.ot import PUBLIC_BYTES
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, PublicKey, combine_many, sum_ciphertexts
from mpc.elgamal.params import GroupParams
from mpc.elgamal.proofs import UploadContext, open_upload, proof_bytes
from mpc.errors import EncodingError, NotFound, ParameterError, ProtocolError
from mpc.parties.config import load_parameters
from mpc.protocol import (
    ProtocolSpec,
    RoleFactory,
    SessionContext,
    Step,
    register_protocol,
    require_responder,
)
from mpc.protocols import compare
from mpc.protocols.compare import DEFAULT_METHOD, METHOD_DGK, CompareParams
from mpc.protocols.wire import (
    ciphertext_batch,
    ciphertexts_from_batch,
    element_batch,
    elements_from_batch,
    parse_message,
)
from mpc.v1 import peer_pb2, recommend_pb2, steps_pb2, user_pb2

log = logging.getLogger("crm.recommender.service")

REC_KIND = "rec"
RESULT_KIND = "recommendations"
DATA_VERSION_KEY = "rec:data_version"
RESULT_META_PREFIX = "rec:result:"
PRECOMPUTE_FILE = "precompute.json"
"""Progress of the idle-time precomputation, in the SP's data directory (done, total, ...)."""
SELECTIONS = ("shuffle", "rank")
RANK_MAX_USERS = 400
"""Rank selection compares all pairs: 80,000 comparisons a target at 400 users."""
PARALLEL_QUERIES = 2
"""Results computed at once at the SP: two sessions keep both servers busy."""
UPLOAD_SETTLE_S = 2.0
"""Precomputation waits this long after the last upload (each upload makes every result stale)."""


# -- public parameters ----------------------------------------------------------------------
@dataclass(frozen=True)
class RecParams:
    """The recommender's public parameters, shared by the servers and every user."""

    users: tuple[str, ...]
    items: tuple[str, ...]
    dense_items: tuple[str, ...]
    shift: int
    levels: int
    lo: int
    delta: int
    key_bits: int
    top_n: int = 0
    """Top-N mode with this N (protocol "recommend-topn"); 0: threshold mode with ``delta``."""
    selection: str = "shuffle"
    """Top-N: "shuffle" (shuffle-then-select, the PSP sees anonymous order relations) or
    "rank" (protocol "recommend-rank": nothing revealed, quadratic, up to RANK_MAX_USERS)."""

    def __post_init__(self) -> None:
        if not self.users or len(set(self.users)) != len(self.users):
            raise ParameterError("recommender parameters: users must be a non-empty list without repeats")
        if not self.items or len(set(self.items)) != len(self.items):
            raise ParameterError("recommender parameters: items must be a non-empty list without repeats")
        if not self.dense_items or not set(self.dense_items) <= set(self.items):
            raise ParameterError("recommender parameters: dense items must be items")
        if len(set(self.dense_items)) != len(self.dense_items):
            raise ParameterError("recommender parameters: a dense item is repeated")
        if self.shift < 0 or self.levels < 1 or self.delta < 0 or self.top_n < 0:
            raise ParameterError("recommender parameters: shift >= 0, levels >= 1, delta >= 0 and top_n >= 0")
        if self.selection not in SELECTIONS:
            raise ParameterError(f"recommender parameters: selection must be one of {SELECTIONS}")
        if self.selection == "rank" and self.top_n and len(self.users) > RANK_MAX_USERS:
            raise ParameterError(
                f"rank selection compares every pair of users: at most {RANK_MAX_USERS} users, "
                f"not {len(self.users)} (use the shuffle selection)"
            )

    # -- (de)serialisation ---------------------------------------------------------------
    def core(self) -> dict[str, Any]:
        return {
            "users": list(self.users),
            "items": list(self.items),
            "dense_items": list(self.dense_items),
            "shift": self.shift,
            "levels": self.levels,
            "lo": self.lo,
            "delta": self.delta,
            "key_bits": self.key_bits,
            "top_n": self.top_n,
            # Only when not the default, so that earlier parameters keep their version.
            **({"selection": self.selection} if self.selection != "shuffle" else {}),
        }

    @property
    def layout_version(self) -> int:
        """31-bit hash of the public parameters (tags every upload)."""
        text = json.dumps(self.core(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(b"mpc-crm/recommender/v1|" + text.encode()).digest()
        return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF

    def to_dict(self) -> dict[str, Any]:
        return {**self.core(), "layout_version": self.layout_version}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RecParams:
        try:
            out = cls(
                users=tuple(str(u) for u in raw["users"]),
                items=tuple(str(i) for i in raw["items"]),
                dense_items=tuple(str(i) for i in raw["dense_items"]),
                shift=int(raw["shift"]),
                levels=int(raw["levels"]),
                lo=int(raw["lo"]),
                delta=int(raw["delta"]),
                key_bits=int(raw["key_bits"]),
                top_n=int(raw.get("top_n", 0)),
                selection=str(raw.get("selection", "shuffle")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"recommender parameters: missing or malformed {exc}") from None
        if "layout_version" in raw and int(raw["layout_version"]) != out.layout_version:
            raise ParameterError("recommender parameters: layout_version does not match the parameters")
        return out

    @classmethod
    def load(cls, path: str | Path) -> RecParams:
        return cls.from_dict(load_parameters(path, "recommender parameters"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_ratings(
        cls, r: Any, dense_items: Sequence[str], shift: int, delta: int, key_bits: int, top_n: int = 0,
        selection: str = "shuffle",
    ) -> RecParams:
        """From a :class:`~crm.recommender.data.Ratings` (user and item order as there)."""
        return cls(
            tuple(r.users), tuple(r.items), tuple(dense_items), shift, r.levels, r.lo, delta, key_bits, top_n,
            selection,
        )

    @property
    def protocol(self) -> str:
        """The registered protocol that computes one target's result in this mode."""
        if not self.top_n:
            return "recommend"
        return "recommend-rank" if self.selection == "rank" else "recommend-topn"

    # -- derived --------------------------------------------------------------------------
    def layout(self, group: GroupParams) -> RecLayout:
        if group.bits != self.key_bits:
            raise ParameterError(f"recommender parameters are for {self.key_bits}-bit keys, not {group.bits}")
        return RecLayout(
            group,
            len(self.users),
            len(self.items),
            len(self.dense_items),
            self.shift,
            self.levels,
            max_neighbours=max(1, min(self.top_n, len(self.users) - 1) if self.top_n else len(self.users) - 1),
            tie_bits=max(1, (len(self.users) - 1).bit_length()) if self.top_n else 0,
        )

    def position(self, user: str) -> int:
        try:
            return self._positions()[user]
        except KeyError:
            raise ParameterError(f"user {user!r} is not among the recommender's users") from None

    def _positions(self) -> dict[str, int]:
        cache = self.__dict__.get("_pos")
        if cache is None:
            cache = {u: k for k, u in enumerate(self.users)}
            object.__setattr__(self, "_pos", cache)
        return cache


# -- user side ------------------------------------------------------------------------------
def encode_user(params: RecParams, own: Mapping[str, int]) -> tuple[list[int], list[int]]:
    """A user's dense vector v and shifted rating row d from its own ratings (original scale).

    ``v_j = (d_j << shift) // isqrt(sum d^2)`` over the public dense items (zeros
    when it has rated none of them), as in :func:`crm.recommender.plain.dense_vectors`.
    """
    d: dict[str, int] = {}
    for item, rating in own.items():
        x = int(rating) - params.lo + 1
        if not 1 <= x <= params.levels:
            raise ParameterError(f"rating {rating} of item {item!r} is outside the public scale")
        d[str(item)] = x
    unknown = set(d) - set(params.items)
    if unknown:
        raise ParameterError(f"items not in the public item list: {sorted(unknown)[:5]}")
    d_row = [d.get(i, 0) for i in params.items]
    dd = [d.get(i, 0) for i in params.dense_items]
    q = math.isqrt(sum(x * x for x in dd))
    dense = [(x << params.shift) // q if q else 0 for x in dd]
    return dense, d_row


def upload_plaintexts(params: RecParams, layout: RecLayout, user: str, own: Mapping[str, int]) -> list[int]:
    """What user ``user`` encrypts and uploads as kind "rec"."""
    dense, d_row = encode_user(params, own)
    return user_plaintexts(layout, params.position(user), dense, d_row)


def rank_own(
    params: RecParams, layout: RecLayout, plains: Sequence[int], own: Mapping[str, int], k: int = 0
) -> list[Recommendation]:
    """User: decode the decrypted aggregate and rank the items it has not rated.

    Order as :func:`crm.recommender.plain.rank`: sum/count descending (exactly),
    count descending, item order; the first ``k`` (0: all).
    """
    from fractions import Fraction

    sums, counts = decode_aggregate(layout, plains)
    rated = {str(i) for i in own}
    cand = [i for i, item in enumerate(params.items) if item not in rated and counts[i] > 0]
    cand.sort(key=lambda i: (-Fraction(sums[i], counts[i]), -counts[i], i))
    if k:
        cand = cand[:k]
    return [Recommendation(params.items[i], sums[i], counts[i], params.lo) for i in cand]


async def upload_ratings(client: Any, params: RecParams, own: Mapping[str, int], pk: PublicKey | None = None) -> int:
    """Encrypt a user's recommender upload locally and send it (``client``: a UserClient)."""
    pk = pk or await client.public_key()
    layout = params.layout(pk.params)
    plains = upload_plaintexts(params, layout, client.config.name, own)
    return int(await client.upload(REC_KIND, plains, params.layout_version, pk=pk))


class Fetched(NamedTuple):
    """A user's decrypted result: its ranked recommendations, per-item sums and counts,
    and how many neighbours it has (their identities are never revealed)."""

    ranked: list[Recommendation]
    sums: list[int]
    counts: list[int]
    neighbours: int


async def fetch_recommendations(
    client: Any, params: RecParams, own: Mapping[str, int], k: int = 0
) -> Fetched:
    """Fetch, decrypt (both partials) and rank."""
    plains = await client.fetch(RESULT_KIND)
    pk = await client.public_key()
    layout = params.layout(pk.params)
    neighbours = decode_neighbours(layout, plains)  # checks the count of ciphertexts too
    sums, counts = decode_aggregate(layout, plains)
    return Fetched(rank_own(params, layout, plains, own, k), sums, counts, neighbours)


# -- protocol "replicate" ---------------------------------------------------------------------
class SpReplicate:
    async def run(self, ctx: SessionContext) -> object:
        header: user_pb2.UploadChunk = ctx.inputs["record"]
        pk: PublicKey = ctx.inputs["pk"]
        layout: RecLayout = ctx.inputs["layout"]
        pools: SpPools = ctx.inputs["pools"]
        rc = ctx.inputs["run_crypto"]
        masked: list[Ciphertext] = ctx.inputs["masked"]
        await ctx.send("psp", "record", header.SerializeToString())
        partials = await rc(ctx.inputs["share"].partial_decrypt_many, masked)
        check = recommend_pb2.MaskedBatch(
            ciphertexts=ciphertext_batch(pk, masked), partials=element_batch(pk.params, partials)
        )
        await ctx.send("psp", "ot-key", pools.ot.public())
        await ctx.send("psp", "check", check.SerializeToString())
        await compare.sp_compare_held(
            ctx, ot_key=pools.ot, values=sp_check_values(layout, ctx.inputs["masks"]), bits=check_bits(layout),
            prefix="check-", run_crypto=rc,
        )
        ack = parse_message(steps_pb2.DeliverReady, await ctx.receive("psp", "stored"), "replication acknowledgement")
        if not ack.count:
            raise ParameterError(
                "upload refused: a dense value is out of range or not where it belongs (checked with the "
                "PSP on masked values; docs/security.md)"
            )
        return int(ack.count)


class PspReplicate:
    async def run(self, ctx: SessionContext) -> object:
        service: RecommenderService = ctx.inputs["service"]
        user: str = ctx.inputs["user"]
        msg = parse_message(user_pb2.UploadChunk, await ctx.receive("sp", "record"), "replicated record")
        pos, record, blob = await service.check_replica(user, msg)
        pk, share = service.party.require_key()
        layout = service.layout
        sp_key = await ctx.receive("sp", "ot-key")
        if len(sp_key) != PUBLIC_BYTES:
            raise EncodingError(f"the SP's OT key: {len(sp_key)} bytes, expected {PUBLIC_BYTES}")
        check = parse_message(recommend_pb2.MaskedBatch, await ctx.receive("sp", "check"), "upload check")
        masked = ciphertexts_from_batch(pk, check.ciphertexts, "upload check")
        theirs = elements_from_batch(pk.params, check.partials, "upload check partials")
        if len(masked) != layout.dense + 1 or len(theirs) != len(masked):
            raise ParameterError(f"an upload check has {layout.dense + 1} ciphertexts and partials")
        rc = service.party.run_crypto
        ours = await rc(share.partial_decrypt_many, masked)
        plains = combine_many(masked, [theirs, ours])
        zs = psp_check_values(layout, pos, plains)
        values = zs if zs is not None else [0] * (4 * layout.dense)  # the comparisons still run
        results = await compare.psp_compare_held(
            ctx, pools=service.psp_pools(), sp_ot_key=sp_key, values=values, bits=check_bits(layout),
            prefix="check-", run_crypto=rc,
        )
        version = 0
        if zs is not None and check_passed(layout, results):
            version = await service.keep_replica(user, pos, msg.layout_version, record, blob)
        else:
            log.warning("psp: %s's upload refused: a dense value out of range or out of place", user)
        await ctx.send("sp", "stored", steps_pb2.DeliverReady(count=version).SerializeToString())
        return version


@register_protocol
class Replicate(ProtocolSpec):
    """SP -> PSP: one user's upload (``record``: an UploadChunk with the whole blob and its
    proofs, which the PSP verifies again), then the upload check: the SP's masked dense
    ciphertexts with its partial decryptions (``check``, after its OT key ``ot-key``), two
    garbled comparisons per value (``check-choices``, ``check-garbled``); the PSP keeps the
    record only if every dense value is in range and in place, and answers ``stored`` with
    its version (0: refused, and the SP refuses the upload).

    Start inputs: a DeliverInputs whose ``user_id`` names the user (``delivery_id``
    is a random tag). Leakage: the PSP sees what the SP sees (user id, sizes, the
    ciphertexts under the joint key), the masked values z = v + m (m of value_bits +
    kappa bits: statistically hiding) and whether the upload passed; for a refused
    upload, the uploader's own values plus masks. The SP sees whether it passed.
    """

    name = "replicate"
    roles = ("sp", "psp")
    steps = (
        Step("record", "sp", "psp"),
        Step("ot-key", "sp", "psp"),
        Step("check", "sp", "psp"),
        *compare.held_steps("check-"),
        Step("stored", "psp", "sp"),
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpReplicate, "psp": PspReplicate}

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        require_responder(party, "a replication")
        service = party.plugins.get("recommender")
        if service is None:
            raise ProtocolError("this PSP has no recommender configured (config key 'recommender')")
        start = parse_message(steps_pb2.DeliverInputs, raw, "replicate inputs")
        service.params.position(start.user_id)
        return {"service": service, "user": start.user_id}


# -- the servers' side ---------------------------------------------------------------------------
def _zero(pk: PublicKey) -> Ciphertext:
    """The trivial encryption of 0, (1, 1): the same on both servers, for users with no upload."""
    return Ciphertext(pk, gmpy2.mpz(1), gmpy2.mpz(1))


class RecommenderService:
    """One server's recommender state: records, blocks, the upload, fetch and responder hooks."""

    def __init__(self, party: Any, path: str | Path) -> None:
        self.party = party
        self.params = RecParams.load(path)
        self.layout = self.params.layout(party.params)
        self.records: dict[int, UserRecord] = {}
        self._blocks: list[list[Ciphertext]] | None = None
        self._stale: set[int] = set()
        self._loaded = False
        self.lock = asyncio.Lock()
        """Held while records or blocks change (uploads) and while a query takes its snapshot."""
        self._slots = asyncio.Semaphore(PARALLEL_QUERIES)
        self._user_locks: dict[str, asyncio.Lock] = {}
        self.stats: dict[str, Any] = {"computed": 0, "cache_hits": 0, "compute_s": 0.0, "replicas": 0}
        party.stats["recommender"] = self.stats
        self._last_upload = 0.0
        self._precompute: asyncio.Task[None] | None = None
        # Randomness of the comparisons, precomputed while the server is idle (one query's worth).
        n = self.layout.n_users
        if self.params.top_n:  # SampleSelect: about 1.4n comparisons of ranked values (at most 2n)
            plan, count = CompareParams(self.layout.ranked_bits, 2 * n).plan, 2 * n
            # Shuffle-then-select needs no encryption per user any more (oblivious shuffle, garbled
            # comparisons of shares); rank selection still encrypts every user's value and output.
            joint = 3 * n if self.params.selection == "rank" else 0
        else:
            plan, count, joint = compare_params(self.layout).plan, n, n
        self._per_query = {"levels": count * plan.levels, "terms": count * plan.terms}
        party.pool_target = max(party.pool_target, joint + 4 * self.layout.n_blocks + 64)
        self.sp_pools: SpPools | None = None
        # Method "dgk" precomputes curve work in idle time; method "gc" (the default) needs none.
        self._dgk = DEFAULT_METHOD == METHOD_DGK
        if party.role == "sp":
            party.upload_handlers[REC_KIND] = self.upload
            party.fetch_handlers[RESULT_KIND] = self.ensure_result
            # The SP's zero-test key is kept (mode 0600) in its data directory.
            self.sp_pools = SpPools(party.curve_key)
            if self._dgk:
                self.sp_pools.bits.target = self._per_query["levels"]
                self.sp_pools.bits.start(idle=self._idle)
        else:
            party.responders["recommend"] = self.psp_recommend_inputs
            party.responders["recommend-topn"] = self.psp_recommend_inputs
            party.responders["recommend-rank"] = self.psp_recommend_inputs
            self.psp_pools()
            if self._dgk:
                party._spawn(self._learn_compare_key(), "compare key")

    def _idle(self) -> bool:
        return not self.party.active_sessions and self.party.busy == 0

    def psp_pools(self) -> PspPools:
        """The PSP's pools: dummy terms at once, term randomizers for every SP key known.

        The randomizers depend on the SP's curve key, which the PSP asks for at
        start-up (:meth:`_learn_compare_key`) and sees in every query; each new
        key's pool is refilled in idle time from the next call on.
        """
        pools = getattr(self.party, "compare_pools", None)
        if not isinstance(pools, PspPools):
            pools = PspPools()
            if self._dgk:
                pools.dummies.target = self._per_query["terms"]
                pools.dummies.start(idle=self._idle)
            self.party.compare_pools = pools
        for pool in pools._randomizers.values():
            if pool.target == 0 and self._dgk:
                pool.target = self._per_query["terms"]
                pool.start(idle=self._idle)
        return pools

    async def _learn_compare_key(self) -> None:
        """PSP: ask the SP for its comparisons' zero-test key once the joint key exists, and
        precompute term randomizers for it in idle time (otherwise the first query would)."""
        await self.party.key_ready.wait()
        delay = 0.5
        while True:
            try:
                info = await self.party.peer_stub.call(
                    "GetPublicKey", peer_pb2.PublicKeyRequest(), timeout=self.party.config.deadline_s
                )
                break
            except Exception as exc:  # the SP may not be up yet; it is asked again
                log.debug("psp: the SP's compare key is not available yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(30.0, 2 * delay)
        if info.compare_key:
            self.psp_pools().randomizers(bytes(info.compare_key))  # an empty pool for the key,
            self.psp_pools()  # and its idle-time refill started

    def started(self) -> None:
        """Plugin hook, once the server listens: the SP's idle-time precompute, if configured."""
        if self.party.role == "sp" and self.party.config.precompute:
            self.start_precompute()

    def close(self) -> None:
        """Plugin hook, at shutdown."""
        self.stop_pools()

    def stop_pools(self) -> None:
        pools = [] if self.sp_pools is None else [self.sp_pools.bits]
        psp = getattr(self.party, "compare_pools", None)
        if isinstance(psp, PspPools):
            pools.extend([psp.dummies, *psp._randomizers.values()])
        for pool in pools:
            pool.stop()

    # -- state -------------------------------------------------------------------------
    @property
    def store(self) -> Any:
        return self.party.store

    def _load_sync(self) -> None:
        """Read every stored upload of the current layout (at first use, after a restart)."""
        if self._loaded:
            return
        pk, _ = self.party.require_key()
        lv, n = self.params.layout_version, self.layout.upload_count
        for pos, user in enumerate(self.params.users):
            rec = self.store.get_record(user, REC_KIND)
            if rec is not None and rec.layout_version == lv and rec.count == n:
                self.records[pos] = UserRecord.split(self.layout, pk.ciphertexts_from_bytes(rec.blob, rec.count))
        self._loaded = True
        self._blocks = None

    def _block_row(self, pk: PublicKey, b: int) -> list[Ciphertext]:
        k = self.layout.users_per_block
        members = [self.records[p] for p in range(b * k, min((b + 1) * k, self.layout.n_users)) if p in self.records]
        # Starting from E(0) (deterministic) lets a block with no uploads yet be a sum too.
        return [sum_ciphertexts([_zero(pk), *(rec.dense[j] for rec in members)]) for j in range(self.layout.dense)]

    def _ready_sync(self) -> tuple[list[UserRecord], list[list[Ciphertext]]]:
        """Every user's record (zeros for the missing) and the blocks, stale ones rebuilt."""
        pk, _ = self.party.require_key()
        self._load_sync()
        if self._blocks is None:
            self._blocks = [self._block_row(pk, b) for b in range(self.layout.n_blocks)]
            self._stale.clear()
        for b in sorted(self._stale):
            self._blocks[b] = self._block_row(pk, b)
        self._stale.clear()
        z = _zero(pk)
        empty = UserRecord(z, [z] * self.layout.dense, [z] * self.layout.n_rating_ciphertexts)
        records = [self.records.get(p, empty) for p in range(self.layout.n_users)]
        return records, list(self._blocks)

    async def _ready(self) -> tuple[list[UserRecord], list[list[Ciphertext]]]:
        return await self.party.run_crypto(self._ready_sync)

    def data_version(self) -> int:
        return int(self.store.get_meta(DATA_VERSION_KEY) or 0)

    def _check(self, user: str, layout_version: int, count: int) -> int:
        pos = self.params.position(user)
        if layout_version != self.params.layout_version:
            raise ParameterError(
                f"upload of kind {REC_KIND!r} for layout version {layout_version}; "
                f"the recommender's current parameters have layout version {self.params.layout_version}"
            )
        if count != self.layout.upload_count:
            raise ParameterError(
                f"a recommender upload has {self.layout.upload_count} ciphertexts for these parameters, not {count}"
            )
        return pos

    def _keep_sync(self, user: str, pos: int, layout_version: int, blob: bytes, record: UserRecord) -> int:
        """Store one user's record (durably first), then update memory and mark its block stale."""
        self._load_sync()
        self.store.set_meta(DATA_VERSION_KEY, str(self.data_version() + 1))  # before: never a stale result
        pk = record.target.pk
        version = self.store.put_record(
            user, REC_KIND, layout_version, self.layout.upload_count, pk.ciphertext_bytes, blob
        )
        self.records[pos] = record
        self._stale.add(self.layout.block_of(pos)[0])
        return int(version)

    # -- SP: upload ----------------------------------------------------------------------
    async def upload(
        self, user: str, header: user_pb2.UploadChunk, cts: list[Ciphertext], blob: bytes, proofs: bytes
    ) -> int:
        """A user's upload, its proofs verified by the SP: replicate it (with the proofs, which the
        PSP verifies again) and check its dense values with the PSP, then store it."""
        pos = self._check(user, header.layout_version, header.count)
        record = UserRecord.split(self.layout, cts)
        pk, share = self.party.require_key()
        masked, masks = await self.party.run_crypto(sp_check, self.layout, pos, record)
        async with self.lock:
            t0 = time.perf_counter()
            await self.party.start_session(
                "replicate",
                steps_pb2.DeliverInputs(user_id=user, delivery_id=secrets.token_hex(8)),
                {
                    "record": user_pb2.UploadChunk(
                        kind=REC_KIND,
                        layout_version=header.layout_version,
                        count=header.count,
                        total_size=len(blob) + len(proofs),
                        proof_width=header.proof_width,
                        data=blob + proofs,
                    ),
                    "pk": pk,
                    "share": share,
                    "layout": self.layout,
                    "pools": self.sp_pools,
                    "masked": masked,
                    "masks": masks,
                    "run_crypto": self.party.run_crypto,
                },
            )
            version = await self.party.run_crypto(self._keep_sync, user, pos, header.layout_version, blob, record)
            self.stats["replicas"] += 1
            self._last_upload = time.monotonic()
        log.info("sp: %s uploaded recommender data (version %d, checked and replicated in %.3f s)", user, version,
                 time.perf_counter() - t0)
        return version

    # -- PSP: replica ----------------------------------------------------------------------
    async def check_replica(self, user: str, msg: user_pb2.UploadChunk) -> tuple[int, UserRecord, bytes]:
        """PSP: verify a replicated upload's proofs itself (bound to the user the SP names).

        The PSP does not take the SP's word that the proofs held: it checks them
        against the same statement (joint key, user, kind, layout version,
        position), so no ciphertext enters its store unproven."""
        pk, _ = self.party.require_key()
        if msg.kind != REC_KIND:
            raise ParameterError(f"replicated record of kind {msg.kind!r}, expected {REC_KIND!r}")
        pos = self._check(user, msg.layout_version, msg.count)
        if msg.proof_width != proof_bytes(pk.params) or msg.total_size != len(msg.data):
            raise EncodingError("replicated record: its proofs missing, or its size not as declared")
        statement = UploadContext(pk, user, REC_KIND, msg.layout_version)
        cts, blob, _ = await self.party.run_crypto(open_upload, pk, msg.data, msg.count, statement)
        return pos, UserRecord.split(self.layout, cts), blob

    async def keep_replica(self, user: str, pos: int, layout_version: int, record: UserRecord, blob: bytes) -> int:
        """PSP: keep a replica whose proofs and upload check passed."""
        async with self.lock:
            version = await self.party.run_crypto(self._keep_sync, user, pos, layout_version, blob, record)
            await self._ready()  # rebuild the stale block now: a query's inputs are taken synchronously
            self.stats["replicas"] += 1
        return version

    # -- SP: compute and cache -------------------------------------------------------------
    def _cached_sync(self, user: str, data_version: int | None = None) -> bool:
        """Whether ``user``'s stored result is from the current data (``data_version`` if read already)."""
        res = self.store.get_result(user, RESULT_KIND)
        if res is None:
            return False
        version = self.data_version() if data_version is None else data_version
        return self.store.get_meta(RESULT_META_PREFIX + user) == str(version)

    async def ensure_result(self, user: str, time_left: float | None = None) -> bool:
        """Make ``user``'s stored recommendations current; returns True if they were cached.

        Up to :data:`PARALLEL_QUERIES` users' results are computed at once (so that
        the SP works on one while the PSP works on the other); one user's at most once.
        """
        pos = self.params.position(user)
        async with self._user_locks.setdefault(user, asyncio.Lock()):
            if await self.party.run_crypto(self._cached_sync, user):
                self.stats["cache_hits"] += 1
                return True
            async with self._slots:
                await self._compute(user, pos, time_left)
            return False

    async def _compute(self, user: str, pos: int, time_left: float | None) -> None:
        pk, share = self.party.require_key()
        # A consistent snapshot: an upload after it makes the data version move on, so a
        # result computed from it is stored under the old version and never served.
        async with self.lock:
            data_version = await self.party.run_crypto(self.data_version)
            records, blocks = await self._ready()
            source = await self.party.run_crypto(self.store.get_record, user, REC_KIND)
        if pos not in self.records or source is None:
            raise NotFound(f"{user!r} has not uploaded its recommender data (kind {REC_KIND!r}) yet")
        t0 = time.perf_counter()
        result = await self.party.start_session(
            self.params.protocol,
            recommend_pb2.RecommendInputs(layout_version=self.params.layout_version, comparisons=self.layout.n_users),
            {
                "layout": self.layout,
                "pk": pk,
                "share": share,
                "records": records,
                "blocks": blocks,
                "target": pos,
                "delta": self.params.delta,
                "top_n": self.params.top_n,
                "run_crypto": self.party.run_crypto,
                "compare_pools": self.sp_pools,
            },
            timeout=time_left,
        )
        dt = time.perf_counter() - t0
        self.stats["computed"] += 1
        self.stats["compute_s"] += dt

        def keep() -> None:
            blob = pk.ciphertexts_to_bytes(result)
            if self.store.put_result(
                user, RESULT_KIND, REC_KIND, source.version, len(result), pk.ciphertext_bytes, blob
            ):
                self.store.set_meta(RESULT_META_PREFIX + user, str(data_version))

        await self.party.run_crypto(keep)
        log.info("sp: recommendations for %s computed in %.2f s", user, dt)

    # -- SP: precomputation in idle time ------------------------------------------------------
    def start_precompute(self) -> None:
        """Keep every uploaded user's recommendations current in idle time (config ``precompute``)."""
        if self._precompute is None or self._precompute.done():
            self._precompute = self.party._spawn(self._precompute_loop(), "recommendation precomputation")

    def _stale_users_sync(self) -> list[str]:
        self._load_sync()
        version = self.data_version()
        return [
            u for u in self.params.users if self.params.position(u) in self.records and not self._cached_sync(u, version)
        ]

    def _progress_sync(self, stale: int, seconds: float) -> None:
        uploaded = sum(1 for u in self.params.users if self.params.position(u) in self.records)
        state = {"done": uploaded - stale, "total": uploaded, "data_version": self.data_version(),
                 "computing_s": round(seconds, 3), "computed": self.stats["computed"]}
        path = self.party.config.data_dir / PRECOMPUTE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    async def _precompute_loop(self) -> None:
        """One user at a time, only while no session runs and uploads have settled; a new
        upload makes every result stale (the data version changes), so it starts over."""
        spent = 0.0
        await self.party.key_ready.wait()
        while True:
            quiet = time.monotonic() - self._last_upload >= UPLOAD_SETTLE_S
            if not (quiet and self._idle()):
                await asyncio.sleep(0.2)
                continue
            t0 = time.perf_counter()
            try:
                stale = await self.party.run_crypto(self._stale_users_sync)
                await self.party.run_crypto(self._progress_sync, len(stale), spent)
                if not stale:
                    await asyncio.sleep(1.0)
                    continue
                batch = stale[:PARALLEL_QUERIES]
                outcomes = await asyncio.gather(*(self.ensure_result(u) for u in batch), return_exceptions=True)
                failed = [(u, o) for u, o in zip(batch, outcomes, strict=True) if isinstance(o, BaseException)]
                if failed:
                    raise failed[0][1]
            except Exception as exc:  # the PSP away, a deadline: try again later
                log.warning("sp: precomputing recommendations failed: %s", exc)
                await asyncio.sleep(2.0)
            spent += time.perf_counter() - t0

    async def precompute_all(self, users: Sequence[str] | None = None) -> int:
        """Compute (or confirm cached) recommendations of every uploaded user; returns how many were computed."""
        computed = 0
        for user in users if users is not None else self.params.users:
            pos = self.params.position(user)
            await self.party.run_crypto(self._load_sync)
            if pos in self.records and not await self.ensure_result(user):
                computed += 1
        return computed

    # -- PSP: responder of "recommend" ------------------------------------------------------
    def psp_recommend_inputs(self, raw: bytes) -> dict[str, Any]:
        start = parse_message(recommend_pb2.RecommendInputs, raw, "recommend inputs")
        if start.layout_version != self.params.layout_version or start.comparisons != self.layout.n_users:
            raise ParameterError(
                f"the SP asks for layout_version = {start.layout_version} over comparisons = {start.comparisons} "
                f"users; this PSP's recommender parameters have {self.params.layout_version} over {self.layout.n_users}"
            )
        minimum = compare.required_kappa(self.party)
        if self.layout.kappa < minimum:
            raise ParameterError(
                f"the recommender's layout blinds with kappa = {self.layout.kappa} bits; this PSP's config "
                f"requires kappa >= {minimum}"
            )
        pk, share = self.party.require_key()
        records, blocks = self._ready_sync()  # normally nothing left to do: replicas rebuild their block
        pools = self.psp_pools()
        return {
            "layout": self.layout,
            "pk": pk,
            "share": share,
            "records": records,
            "blocks": blocks,
            "compare_pools": pools,
            "top_n": self.params.top_n,
            "protocol": self.params.protocol,  # the mode of its own parameters: the SP must start it
            "run_crypto": self.party.run_crypto,
        }
