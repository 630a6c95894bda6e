"""The SP's catalogue service: static recommendations and private co-purchase counts, live.

Two kinds of recommendations (DESIGN 4), both served by the SP through the
``mpc.v1.Catalog`` gRPC service (``proto/mpc/v1/catalog.proto``):

**Static**: a product-to-product table an admin sets from CSV
(:func:`parse_static_table`: ``product,recommended,rank``), stored in the SP's
SQLite store as it is and served as it is. Only a user (a certificate of role
``"user"``) whose name is in the SP's ``admins`` config list may set it (the
default list is empty); any user may read it. It is public data: nothing is
encrypted. Front ends (role ``"frontend"``) call nothing here.

**Dynamic** (co-purchase, docs/protocols/copurchase.md): the public
parameters (:class:`CopurchaseParams`, the ``copurchase = "copurchase.json"``
key of the SP's config) fix the catalogue and the slot layout. Each customer
encodes its own basket(s) on its device, encrypts the packed contribution and
uploads it as record kind ``"copurchase"`` (``UserGateway.Upload``); the SP
refuses a wrong layout version or count, and a customer beyond the layout's
bound, before anything is stored. A customer's new upload replaces its
previous one: the SP keeps one record per customer and sums the stored
records when an admin publishes (``PublishCopurchase``), then decrypts the sum
jointly with the PSP (protocol ``aggregate-decrypt``; the aggregate is
re-randomised before it leaves the SP). Nothing else is ever decrypted. The
decrypted counts are stored and served to anyone (``GetCopurchase``).

Publication policy (against differencing, see the leakage statement): after
the first publication, the SP publishes again only once at least
``min_changes`` customers have a new or replaced upload; the PSP refuses any
sum of fewer than its ``min_contributors`` (10) uploads.

:class:`CatalogService` is the SP's side (no gRPC import: the party registers
its servicer); :class:`CatalogClient` wraps a
:class:`~mpc.parties.user.UserClient` for customers and admins.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crm.recommender.copurchase import Cooccurrence, pair_count
from crm.recommender.errors import DataError
from crm.recommender.private_copurchase import (
    KIND,
    Aggregator,
    CopurchaseLayout,
    counts_from_plaintexts,
    customer_contribution,
    upload_plaintexts,
)
from mpc.elgamal import PublicKey
from mpc.errors import (
    AuthorizationError,
    EncodingError,
    LayoutError,
    NotFound,
    ParameterError,
    ProtocolError,
)
from mpc.parties.config import load_parameters
from mpc.protocols import aggregate_decrypt as ad
from mpc.v1 import catalog_pb2

__all__ = [
    "KIND",
    "MAX_STATIC_ENTRIES",
    "PUBLISHED_KEY",
    "CatalogClient",
    "CatalogService",
    "CopurchaseParams",
    "Published",
    "parse_static_table",
]

log = logging.getLogger("crm.recommender.catalog")

CATALOG = catalog_pb2.DESCRIPTOR.services_by_name["Catalog"]
PUBLISHED_KEY = "copurchase:published"
"""Store meta key of the last publication (JSON: counts, sizes, the uploads' versions)."""
STATIC_COLUMNS = ("product", "recommended", "rank")
MAX_STATIC_ENTRIES = 100_000
MAX_NAME_CHARS = 200
MAX_RANK = 1_000_000
MAX_PRODUCTS_PER_REQUEST = 1_000
_DIGITS = re.compile(r"[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- public parameters of the co-purchase counts ---------------------------------------------
@dataclass(frozen=True)
class CopurchaseParams:
    """The co-purchase deployment's public parameters (the SP's ``copurchase.json``).

    ``items``: the catalogue; ``customers``: the most contributions the SP
    will sum (sizes the slots: 9,835 gives 15-bit slots at 2048 bits);
    ``max_baskets``: baskets a customer may fold into one contribution;
    ``min_changes``: new or replaced uploads needed before publishing again.
    The layout (and its version) also depends on the joint key's N, so it is
    built once the key exists (:meth:`layout`).
    """

    items: tuple[str, ...]
    customers: int
    max_baskets: int = 1
    min_changes: int = 10

    def __post_init__(self) -> None:
        items = tuple(sorted(set(self.items)))
        if len(items) != len(self.items):
            raise ParameterError("co-purchase parameters: an item is listed twice")
        object.__setattr__(self, "items", items)
        for name in ("customers", "max_baskets", "min_changes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"co-purchase parameters: {name} must be an integer >= 1, got {v!r}")

    def layout(self, pk: PublicKey) -> CopurchaseLayout:
        return CopurchaseLayout.for_key(pk, self.items, self.customers, self.max_baskets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": list(self.items),
            "customers": self.customers,
            "max_baskets": self.max_baskets,
            "min_changes": self.min_changes,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CopurchaseParams:
        unknown = set(raw) - {"items", "customers", "max_baskets", "min_changes"}
        if unknown:
            raise ParameterError(f"co-purchase parameters: unknown keys {', '.join(sorted(unknown))}")
        try:
            items = raw["items"]
            if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
                raise ParameterError("co-purchase parameters: items must be a list of names")
            return cls(
                items=tuple(items),
                customers=raw["customers"],
                max_baskets=raw.get("max_baskets", 1),
                min_changes=raw.get("min_changes", 10),
            )
        except KeyError as exc:
            raise ParameterError(f"co-purchase parameters: missing {exc.args[0]!r}") from None

    @classmethod
    def load(cls, path: str | Path) -> CopurchaseParams:
        return cls.from_dict(load_parameters(path, "co-purchase parameters"))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


# -- the static table ---------------------------------------------------------------------------
def _check_name(source: str, value: str, lineno: int, col: int) -> None:
    name = STATIC_COLUMNS[col - 1]
    if not value:
        raise DataError(source, "missing", line=lineno, column=col, column_name=name)
    if len(value) > MAX_NAME_CHARS:
        raise DataError(
            source, f"longer than {MAX_NAME_CHARS} characters", line=lineno, column=col, column_name=name
        )
    if _CONTROL.search(value):
        raise DataError(source, "holds a control character", line=lineno, column=col, column_name=name)


def parse_static_table(text: str, source: str = "<static table>") -> list[tuple[str, int, str]]:
    """The ``(product, rank, recommended)`` entries of a static table in CSV, checked.

    Format: one entry a line, ``product,recommended,rank`` (CSV: a name with a
    comma is quoted). Line 1 may be the header ``product,recommended,rank``.
    Names are stripped of surrounding blanks, 1..200 characters, no control
    characters; ``rank`` is an integer 1..1,000,000 (digits only). Refused,
    naming the line: another number of columns, a missing name, a bad rank,
    a product recommending itself, the same (product, rank) twice or the same
    (product, recommended) twice (naming both lines). Blank lines are
    skipped; a table without entries is refused (a table is set as a whole).
    Any error is a :class:`~crm.recommender.errors.DataError`.
    """
    entries: list[tuple[str, int, str]] = []
    by_rank: dict[tuple[str, int], int] = {}
    by_item: dict[tuple[str, str], int] = {}
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        if not line.strip():
            continue
        try:
            fields = [f.strip() for f in next(csv.reader([line], skipinitialspace=True, strict=True))]
        except csv.Error as exc:
            raise DataError(source, f"not valid CSV ({exc})", line=lineno) from None
        if lineno == 1 and [f.lower() for f in fields] == list(STATIC_COLUMNS):
            continue
        if len(fields) != 3:
            raise DataError(
                source, f"expected 3 columns product,recommended,rank, got {len(fields)}", line=lineno
            )
        product, recommended, rank_text = fields
        _check_name(source, product, lineno, 1)
        _check_name(source, recommended, lineno, 2)
        if not _DIGITS.fullmatch(rank_text) or not 1 <= int(rank_text) <= MAX_RANK:
            raise DataError(
                source,
                f"{rank_text!r} is not a rank (an integer 1..{MAX_RANK})",
                line=lineno,
                column=3,
                column_name="rank",
            )
        rank = int(rank_text)
        if recommended == product:
            raise DataError(
                source, "a product cannot recommend itself", line=lineno, column=2, column_name="recommended"
            )
        if (product, rank) in by_rank:
            raise DataError(
                source,
                f"rank {rank} of {product!r} is also on line {by_rank[product, rank]}",
                line=lineno,
                column=3,
                column_name="rank",
            )
        if (product, recommended) in by_item:
            raise DataError(
                source,
                f"{recommended!r} is already recommended for {product!r} on line "
                f"{by_item[product, recommended]}",
                line=lineno,
                column=2,
                column_name="recommended",
            )
        by_rank[product, rank] = by_item[product, recommended] = lineno
        entries.append((product, rank, recommended))
        if len(entries) > MAX_STATIC_ENTRIES:
            raise DataError(source, f"more than {MAX_STATIC_ENTRIES} entries", line=lineno)
    if not entries:
        raise DataError(source, "no entries (a table is set as a whole; an empty one is refused)")
    return entries


# -- the published counts -----------------------------------------------------------------------
@dataclass(frozen=True)
class Published:
    """One publication: the decrypted counts, and which upload versions were in the sum."""

    epoch: int
    layout_version: int
    contributors: int
    published_at: float
    counts: Cooccurrence
    versions: dict[str, int]

    def to_json(self) -> str:
        return json.dumps(
            {
                "epoch": self.epoch,
                "layout_version": self.layout_version,
                "contributors": self.contributors,
                "published_at": self.published_at,
                "items": self.counts.items,
                "baskets": self.counts.baskets,
                "counts": self.flat_counts(),
                "versions": self.versions,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Published:
        raw = json.loads(text)
        counts = counts_from_flat(raw["items"], raw["counts"], raw["baskets"])
        return cls(
            raw["epoch"], raw["layout_version"], raw["contributors"], raw["published_at"], counts, raw["versions"]
        )

    def flat_counts(self) -> list[int]:
        co = self.counts
        iu, ju = np.triu_indices(len(co.items), k=1)
        return [*co.matrix[iu, ju].tolist(), *np.diag(co.matrix).tolist()]


def counts_from_flat(items: Sequence[str], flat: Sequence[int], baskets: int) -> Cooccurrence:
    """A :class:`Cooccurrence` from the wire form: upper triangle row by row, then the diagonal."""
    items = list(items)
    n = len(items)
    if items != sorted(set(items)):
        raise EncodingError("co-purchase counts: the items must be sorted and distinct")
    if len(flat) != pair_count(n) + n:
        raise EncodingError(f"co-purchase counts: {len(flat)} counts for {n} items, expected {pair_count(n) + n}")
    v = np.asarray(list(flat), dtype=np.int64)
    matrix = np.zeros((n, n), dtype=np.int64)
    iu, ju = np.triu_indices(n, k=1)
    matrix[iu, ju] = v[: pair_count(n)]
    matrix[ju, iu] = v[: pair_count(n)]
    matrix[np.arange(n), np.arange(n)] = v[pair_count(n) :]
    return Cooccurrence(items, {x: k for k, x in enumerate(items)}, matrix, int(baskets))


def _time_left(ctx: Any, margin: float = 1.0) -> float | None:
    left = ctx.time_remaining() if ctx is not None and hasattr(ctx, "time_remaining") else None
    return None if left is None else max(0.1, left - margin)


# -- the SP's side ------------------------------------------------------------------------------
class CatalogService:
    """The SP's catalogue: the static table, co-purchase uploads, publications, reads.

    Created by the SP's :class:`~mpc.parties.server.PartyServer`; registers
    the ``Catalog`` gRPC service (through ``party.grpc_services``) and, when
    co-purchase parameters are configured, the upload handler of kind
    ``"copurchase"``.
    """

    def __init__(self, party: Any, copurchase: str | Path | None = None) -> None:
        self.party = party
        self.params = CopurchaseParams.load(copurchase) if copurchase is not None else None
        self._layout: CopurchaseLayout | None = None
        self._customers: set[str] | None = None
        self._published: Published | None = None
        self.upload_lock = asyncio.Lock()
        self.publish_lock = asyncio.Lock()
        self.stats: dict[str, Any] = {"contributions": 0, "refused": 0, "publications": 0}
        party.stats["catalog"] = self.stats
        allowed = {m.name: ["user"] for m in CATALOG.methods}  # no front end: it has nothing here
        party.grpc_services.append((CATALOG, CatalogServicer(self), allowed))
        if self.params is not None:
            party.upload_handlers[KIND] = self.upload

    @property
    def store(self) -> Any:
        return self.party.store

    def require_admin(self, user: str, what: str, *, role: str) -> None:
        """Admins are certificates of role "user" named in the config's ``admins``."""
        if role != "user" or user not in self.party.config.admins:
            raise AuthorizationError(f"{user!r} may not {what}: only the SP's admins may")

    def layout(self) -> CopurchaseLayout:
        if self.params is None:
            raise ProtocolError("this SP has no co-purchase counts configured (config key 'copurchase')")
        if self._layout is None:
            pk, _ = self.party.require_key()
            self._layout = self.params.layout(pk)
        return self._layout

    # -- static table ----------------------------------------------------------------------
    async def set_static(self, user: str, text: str, source: str, *, role: str) -> tuple[int, int, int]:
        """Admin: parse and store a whole table; returns (version, products, entries)."""
        self.require_admin(user, "set the static recommendations", role=role)
        try:
            entries = parse_static_table(text, source or "<static table>")
        except DataError as exc:
            raise ParameterError(str(exc)) from None
        version = await self.party.run_crypto(self.store.replace_static, entries)
        products = len({p for p, _, _ in entries})
        log.info("sp: %s set the static table (version %d, %d entries)", user, version, len(entries))
        return version, products, len(entries)

    # -- co-purchase: uploads ----------------------------------------------------------------
    def _current_customers(self) -> set[str]:
        """Customers with an upload for the current layout (read once, then kept up to date)."""
        if self._customers is None:
            lay = self.layout()
            self._customers = {
                u
                for u, (_, lv, count) in self.store.record_versions(KIND).items()
                if lv == lay.version and count == lay.ciphertexts
            }
        return self._customers

    async def upload(self, user: str, header: Any, cts: list[Any], blob: bytes, proofs: bytes = b"") -> int:
        """UserGateway.Upload of kind "copurchase" (every proof already verified): check the
        layout, then replace the record."""
        lay = self.layout()
        try:
            if header.layout_version != lay.version:
                raise ParameterError(
                    f"co-purchase upload for layout version {header.layout_version}; the SP's layout is "
                    f"version {lay.version} (read it with GetCopurchaseLayout)"
                )
            if header.count != lay.ciphertexts:
                raise ParameterError(
                    f"a co-purchase contribution has {lay.ciphertexts} ciphertexts for this layout, "
                    f"not {header.count}"
                )
            async with self.upload_lock:
                customers = await self.party.run_crypto(self._current_customers)
                if user not in customers and len(customers) >= lay.customers:
                    raise LayoutError(
                        f"the co-purchase layout counts at most {lay.customers} customers and all have "
                        f"uploaded; refusing a new customer {user!r}"
                    )
                width = len(blob) // lay.ciphertexts  # checked by Upload: count x ciphertext width
                version = await self.party.run_crypto(
                    self.store.put_record, user, KIND, lay.version, lay.ciphertexts, width, blob
                )
                customers.add(user)
        except Exception:
            self.stats["refused"] += 1
            raise
        self.stats["contributions"] += 1
        log.info("sp: %s uploaded a co-purchase contribution (version %d)", user, version)
        return int(version)

    # -- co-purchase: publication ------------------------------------------------------------
    def published(self) -> Published | None:
        if self._published is None:
            text = self.store.get_meta(PUBLISHED_KEY)
            if text is not None:
                self._published = Published.from_json(text)
        return self._published

    def _sum_sync(self, lay: CopurchaseLayout) -> tuple[Any, dict[str, int], int]:
        """Sum every stored upload of the current layout: (aggregate, version of each, stale ones)."""
        pk, _ = self.party.require_key()
        agg = Aggregator(pk, lay)
        versions: dict[str, int] = {}
        stale = 0
        for user in self.store.record_versions(KIND):
            rec = self.store.get_record(user, KIND)
            if rec is None:
                continue
            if rec.layout_version != lay.version or rec.count != lay.ciphertexts:
                stale += 1  # uploaded for another catalogue or key: never summed
                continue
            agg.add_stored(rec.blob, f"the upload of {user!r}")
            versions[user] = rec.version
        if not versions:
            raise NotFound("no co-purchase contributions are stored for the current layout")
        return agg.result(), versions, stale

    async def publish(
        self, user: str, time_left: float | None = None, *, role: str
    ) -> catalog_pb2.PublishReply:
        """Admin: sum the stored uploads, decrypt the sum with the PSP, store and serve the counts."""
        self.require_admin(user, "publish co-purchase counts", role=role)
        lay = self.layout()
        async with self.publish_lock:
            pk, share = self.party.require_key()
            t0 = time.perf_counter()
            agg, versions, stale = await self.party.run_crypto(self._sum_sync, lay)
            sum_s = time.perf_counter() - t0
            prev = await self.party.run_crypto(self.published)
            changed = len(versions)
            if prev is not None:
                changed = sum(1 for u, v in versions.items() if prev.versions.get(u) != v)
                changed += sum(1 for u in prev.versions if u not in versions)
                assert self.params is not None
                if changed < self.params.min_changes:
                    raise ProtocolError(
                        f"only {changed} customer(s) uploaded since publication {prev.epoch}; the SP publishes "
                        f"again after at least {self.params.min_changes} (fewer would expose their baskets "
                        "as the difference of two publications)"
                    )
            t1 = time.perf_counter()
            fresh = await self.party.run_crypto(lambda: [pk.rerandomize(c) for c in agg.ciphertexts])
            plain = await self.party.start_session(
                ad.AggregateDecrypt.name,
                ad.start_message(KIND, agg.contributors, len(fresh)),
                {"pk": pk, "share": share, "ciphertexts": fresh, "run_crypto": self.party.run_crypto},
                timeout=time_left,
            )
            counts = await self.party.run_crypto(counts_from_plaintexts, lay, plain, agg.contributors)
            decrypt_s = time.perf_counter() - t1
            pub = Published(
                epoch=(prev.epoch if prev else 0) + 1,
                layout_version=lay.version,
                contributors=agg.contributors,
                published_at=time.time(),
                counts=counts,
                versions=versions,
            )
            await self.party.run_crypto(self.store.set_meta, PUBLISHED_KEY, pub.to_json())
            self._published = pub
        self.stats["publications"] += 1
        self.stats["last_publication"] = {
            "epoch": pub.epoch, "contributors": pub.contributors, "changed": changed, "stale": stale,
            "sum_s": sum_s, "decrypt_s": decrypt_s,
        }
        log.info(
            "sp: co-purchase counts published (epoch %d, %d contributors, %d changed; sum %.2f s, "
            "decryption %.2f s)", pub.epoch, pub.contributors, changed, sum_s, decrypt_s,
        )
        return catalog_pb2.PublishReply(
            epoch=pub.epoch,
            contributors=pub.contributors,
            baskets=counts.baskets,
            changed=changed,
            sum_s=sum_s,
            decrypt_s=decrypt_s,
        )

    # -- co-purchase: reading --------------------------------------------------------------------
    def read(self, req: catalog_pb2.CopurchaseRequest) -> catalog_pb2.CopurchaseReply:
        pub = self.published()
        if pub is None:
            raise NotFound("no co-purchase counts have been published yet (an admin publishes them)")
        if len(req.products) > MAX_PRODUCTS_PER_REQUEST:
            raise ParameterError(f"at most {MAX_PRODUCTS_PER_REQUEST} products a request")
        co = pub.counts
        out = catalog_pb2.CopurchaseReply(
            epoch=pub.epoch,
            contributors=pub.contributors,
            baskets=co.baskets,
            published_at=pub.published_at,
            layout_version=pub.layout_version,
        )
        for product in req.products:
            recs = co.recommend_for(product, int(req.k))
            out.products.add(
                product=product,
                baskets_with=co.support(product),
                recommendations=[catalog_pb2.Recommended(item=y, count=c) for y, c in recs],
            )
        if req.counts:
            out.items.extend(co.items)
            out.counts.extend(pub.flat_counts())
        return out


class CatalogServicer:
    """The ``mpc.v1.Catalog`` methods (registered by the party; callers are user certificates)."""

    def __init__(self, service: CatalogService) -> None:
        self.s = service

    async def SetStaticTable(self, req: Any, ident: Any, ctx: Any) -> catalog_pb2.StaticTableReply:
        version, products, entries = await self.s.set_static(ident.name, req.csv, req.source, role=ident.role)
        return catalog_pb2.StaticTableReply(version=version, products=products, entries=entries)

    async def GetStatic(self, req: Any, ident: Any, ctx: Any) -> catalog_pb2.StaticReply:
        if not req.product or len(req.product) > MAX_NAME_CHARS:
            raise ParameterError(f"a product name has 1..{MAX_NAME_CHARS} characters")
        version, rows = await self.s.party.run_crypto(self.s.store.static_for, req.product)
        return catalog_pb2.StaticReply(
            product=req.product,
            entries=[catalog_pb2.StaticEntry(recommended=x, rank=r) for r, x in rows],
            version=version,
        )

    async def GetCopurchaseLayout(self, req: Any, ident: Any, ctx: Any) -> catalog_pb2.CopurchaseLayoutInfo:
        lay = self.s.layout()
        return catalog_pb2.CopurchaseLayoutInfo(
            items=lay.items,
            customers=lay.customers,
            max_baskets=lay.max_baskets,
            layout_version=lay.version,
            ciphertexts=lay.ciphertexts,
        )

    async def PublishCopurchase(self, req: Any, ident: Any, ctx: Any) -> catalog_pb2.PublishReply:
        return await self.s.publish(ident.name, _time_left(ctx), role=ident.role)

    async def GetCopurchase(self, req: Any, ident: Any, ctx: Any) -> catalog_pb2.CopurchaseReply:
        return await self.s.party.run_crypto(self.s.read, req)


# -- the user's side ------------------------------------------------------------------------------
class CatalogClient:
    """Catalogue calls for one user (a :class:`~mpc.parties.user.UserClient`): customer or admin."""

    def __init__(self, user: Any) -> None:
        self.user = user
        self.stub = user.sp_service(CATALOG)

    @property
    def _deadline(self) -> float:
        return float(self.user.config.deadline_s)

    async def set_static_table(self, text: str, source: str = "") -> catalog_pb2.StaticTableReply:
        """Admin: replace the static table with ``text`` (CSV, see :func:`parse_static_table`)."""
        return await self.stub.call(
            "SetStaticTable", catalog_pb2.StaticTableUpload(csv=text, source=source), timeout=self._deadline
        )

    async def static(self, product: str) -> tuple[int, list[tuple[int, str]]]:
        """(table version, ``[(rank, recommended), ...]``) for ``product``."""
        reply = await self.stub.call("GetStatic", catalog_pb2.StaticRequest(product=product), timeout=self._deadline)
        return int(reply.version), [(int(e.rank), e.recommended) for e in reply.entries]

    async def layout(self, pk: PublicKey | None = None) -> CopurchaseLayout:
        """The SP's co-purchase layout, rebuilt here and checked against the SP's version."""
        pk = pk or await self.user.public_key()
        info = await self.stub.call(
            "GetCopurchaseLayout", catalog_pb2.CopurchaseLayoutRequest(), timeout=self._deadline
        )
        lay = CopurchaseLayout.for_key(pk, list(info.items), int(info.customers), int(info.max_baskets))
        if lay.version != info.layout_version or lay.ciphertexts != info.ciphertexts:
            raise EncodingError(
                "the SP's co-purchase layout does not match its own version for this key "
                f"(version {info.layout_version} announced, {lay.version} computed)"
            )
        return lay

    async def contribute(
        self,
        baskets: Sequence[Iterable[str]],
        *,
        pk: PublicKey | None = None,
        layout: CopurchaseLayout | None = None,
    ) -> int:
        """Customer: encode its own baskets, encrypt every plaintext here, upload; the record version."""
        pk = pk or await self.user.public_key(precompute=True)
        lay = layout or await self.layout(pk)
        packed = customer_contribution([tuple(b) for b in baskets], lay)
        return int(await self.user.upload(KIND, upload_plaintexts(pk, packed, lay), lay.version, pk=pk))

    async def publish(self) -> catalog_pb2.PublishReply:
        """Admin: ask the SP to sum and jointly decrypt the stored contributions now."""
        return await self.stub.call(
            "PublishCopurchase", catalog_pb2.PublishRequest(), timeout=2 * self._deadline + 5.0
        )

    async def copurchase(
        self, products: Sequence[str] = (), k: int = 10, counts: bool = False
    ) -> catalog_pb2.CopurchaseReply:
        """The published counts: top-``k`` lists of ``products`` (and every count with ``counts``)."""
        return await self.stub.call(
            "GetCopurchase",
            catalog_pb2.CopurchaseRequest(products=list(products), k=k, counts=counts),
            timeout=self._deadline,
        )

    async def cooccurrence(self) -> tuple[Cooccurrence, catalog_pb2.CopurchaseReply]:
        """Every published count as a :class:`Cooccurrence` (and the reply's sizes)."""
        reply = await self.copurchase(counts=True)
        return counts_from_flat(list(reply.items), list(reply.counts), int(reply.baskets)), reply
