"""Private churn scoring across the parties: the SP's Churn service, its store, the client.

The SP (with ``churn_model`` in its config) keeps customers' encrypted
attributes in ``churn.sqlite`` in its data directory, serves the public upload
layout, and, when an admin asks, scores every stored customer with the PSP
(protocol ``churn-score``, :mod:`crm.churn.protocol`) in chunks: the heavy
part, preparing each customer's flipped tree, runs in worker processes while
the PSP walks the previous chunk. The admin polls the job and receives, per
chunk, the PSP's sealed results and the SP's mask seed; it alone can open
them (:func:`crm.churn.private.open_scores`).

Every stored record is bound to the certificate that wrote it (``writer``,
``"role:name"``). Records are created by the front ends the SP's config names
(``frontends``, certificates of role ``"frontend"``), which may write any
customer's; a customer's own ``"user"`` certificate (its name is the customer
id) may only replace its own existing record, in each store separately. An
upload with one record the caller may not write is refused as a whole
(PERMISSION_DENIED) before anything is stored. A job (scoring or planning)
belongs to the admin who started it: only that admin reads it.

The PSP needs nothing but its curve key (:attr:`PartyServer.curve_key`), whose
public half customers and front ends read from the PSP's ``GetPublicKey``;
creating this service there only registers the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from crm.churn import plan_private, private
from crm.churn.protocol import sp_prepare, start_inputs
from mpc.errors import AuthorizationError, EncodingError, NotFound, ParameterError, TransportError
from mpc.parties import rpc
from mpc.parties.user import UserClient
from mpc.v1 import churn_pb2, peer_pb2, user_pb2

log = logging.getLogger("crm.churn.service")

__all__ = ["ChurnClient", "ChurnService", "CustomerStore", "check_writer"]

CHUNK = 128
"""Customers per session: big enough to amortise a round trip, small enough to pipeline."""
PRECOMPUTE_CAP = 2000
"""Customers' worth of randomness a worker process keeps in stock (some 130 MB)."""
WARM_STEP = 32
"""Customers' worth a worker precomputes per idle-time task (so a query waits little)."""
MAX_UPLOAD_BYTES = 96 * 1024 * 1024
"""One UploadCustomers call at most (some 3,500 customers of the Telco layout)."""
UPLOAD_BATCH = 500
"""Customers per UploadCustomers call from :class:`ChurnClient`."""


class CustomerStore:
    """The SP's customer records (SQLite, WAL): id -> (layout version, record).

    ``table`` "customers": the encrypted attributes for scoring; "plan_shares": the
    XOR shares for planning (a seed and the PSP's sealed share). Each row also keeps
    its ``writer``, the identity (``"role:name"``) of the certificate that wrote it."""

    def __init__(self, path: Path, table: str = "customers") -> None:
        if table not in ("customers", "plan_shares"):
            raise ParameterError(f"no customer table {table!r}")
        self.path, self.table = path, table
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, layout INTEGER NOT NULL, "
            "record BLOB NOT NULL, updated REAL NOT NULL, writer TEXT NOT NULL DEFAULT '')"
        )
        columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
        if "writer" not in columns:  # a store from before writers were kept: theirs is unknown
            self._db.execute(f"ALTER TABLE {table} ADD COLUMN writer TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self._db.close()

    def put_many(
        self, layout: int, items: Sequence[tuple[str, bytes]], writer: str, *, replace_only: bool = False
    ) -> None:
        """Store (or replace) every record in one transaction, as written by ``writer``: all or
        nothing. ``replace_only``: every id must already be stored (else
        :class:`AuthorizationError`, nothing written), checked inside the same transaction."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if replace_only:
                    for cid, _ in items:
                        if self._db.execute(f"SELECT 1 FROM {self.table} WHERE id = ?", (cid,)).fetchone() is None:
                            raise AuthorizationError(
                                f"customer {cid!r} has no record here to replace: {writer} may only replace "
                                "its own record, which a front end creates"
                            )
                self._db.executemany(
                    f"INSERT OR REPLACE INTO {self.table} (id, layout, record, updated, writer) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(cid, layout, rec, now, writer) for cid, rec in items],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def ids(self, layout: int) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM {self.table} WHERE layout = ? ORDER BY id", (layout,)
            )
            return [r[0] for r in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def writer(self, cid: str) -> str | None:
        """Who wrote customer ``cid``'s record (``"role:name"``), None if it has none."""
        with self._lock:
            row = self._db.execute(f"SELECT writer FROM {self.table} WHERE id = ?", (cid,)).fetchone()
            return None if row is None else str(row[0])

    def records(self, ids: Sequence[str], layout: int) -> list[bytes]:
        with self._lock:
            out = []
            for cid in ids:
                row = self._db.execute(
                    f"SELECT layout, record FROM {self.table} WHERE id = ?", (cid,)
                ).fetchone()
                if row is None:
                    raise NotFound(f"no stored record for customer {cid!r}")
                if row[0] != layout:
                    raise NotFound(
                        f"customer {cid!r} uploaded for another layout; ask for a re-upload"
                    )
                out.append(bytes(row[1]))
            return out


# -- worker processes ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _worker_init(spec: private.TreeSpec, layout_raw: dict[str, Any], psp_key: bytes) -> None:
    _WORKER["spec"] = spec
    _WORKER["layout"] = private.UploadLayout.from_dict(layout_raw)
    _WORKER["rnd"] = private.SpRandomness(psp_key)


def _worker_prepare(records: list[bytes], seed: bytes) -> tuple[bytes, bytes]:
    return sp_prepare(_WORKER["spec"], _WORKER["layout"], records, seed, _WORKER["rnd"])


def randomness_per_customer(spec: private.TreeSpec, layout: private.UploadLayout) -> tuple[int, int]:
    """(randomizers, dummies) one customer's nodes draw at most (every term of a node is one or the other)."""
    randomizers = 0
    for node in spec.nodes:
        randomizers += layout.plans[node[1]].terms if node[0] == "num" else 1
    return randomizers, spec.internal * layout.max_terms


def _worker_warm(customers: int, cap: int) -> tuple[int, int]:
    """Idle time: stock this worker with randomness for ``customers`` more (at most ``cap``).

    Returns (pid, customers' worth now in stock). Everything drawn is fresh and used once.
    """
    import os

    per_r, per_d = randomness_per_customer(_WORKER["spec"], _WORKER["layout"])
    rnd: private.SpRandomness = _WORKER["rnd"]
    stock = min(len(rnd.randomizers) // per_r, len(rnd.dummies) // per_d)
    want = min(cap, stock + customers)
    rnd.randomizers.fill(max(0, want * per_r - len(rnd.randomizers)))
    rnd.dummies.fill(max(0, want * per_d - len(rnd.dummies)))
    return os.getpid(), min(len(rnd.randomizers) // per_r, len(rnd.dummies) // per_d)


@dataclass
class Job:
    """An admin's scoring or planning job: its customers, progress, and results by chunk."""

    job: str
    ids: list[str]
    admin_key: bytes
    owner: str  # the admin who started it, the only one who reads it
    threshold: str = ""  # planning: the segment threshold
    done: int = 0
    error: str = ""
    finished: bool = False
    chunks: dict[int, Any] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0


async def _run_job(job: Job, work: Any, what: str) -> None:
    """Await a job's work; its first failure becomes the job's error, which the admin reads."""
    try:
        await work
    except Exception as exc:
        while isinstance(exc, ExceptionGroup):  # from a TaskGroup: the first failure says why
            exc = exc.exceptions[0]
        job.error = f"{type(exc).__name__}: {exc}"
        log.warning("sp: churn %s %s failed: %s", what, job.job[:8], job.error)
    finally:
        job.finished = True
        job.seconds = time.perf_counter() - job.t0


def _check_admin_key(admin_key: bytes) -> None:
    if len(admin_key) != 32:
        raise EncodingError(f"admin key of {len(admin_key)} bytes; an X25519 key has 32")


def _split_upload(header: churn_pb2.CustomerChunk, blob: bytes, size: int, check: Any) -> list[tuple[str, bytes]]:
    """An upload's (id, record) pairs: ids distinct and 1..64 characters, every record checked
    (``check(record, who)``) before anything is stored."""
    ids = list(header.customer_ids)
    if len(set(ids)) != len(ids):
        raise EncodingError("a customer id appears twice in one upload")
    for cid in ids:
        if not 0 < len(cid) <= 64:
            raise EncodingError(f"customer id {cid[:70]!r} must be 1..64 characters")
    records = [blob[k * size : (k + 1) * size] for k in range(len(ids))]
    for cid, rec in zip(ids, records, strict=True):
        check(rec, f"customer {cid}")
    return list(zip(ids, records, strict=True))


def _choose(store: CustomerStore, version: int, ids: Sequence[str], what: str) -> list[str]:
    """The customers of a job: those asked for (each must have ``what``), or everyone stored."""
    stored = store.ids(version)
    if ids:
        missing = sorted(set(ids) - set(stored))
        if missing:
            raise NotFound(f"{len(missing)} customer(s) have no {what}, e.g. {missing[0]!r}")
        return list(ids)
    if not stored:
        raise NotFound(f"no {what} uploaded yet")
    return stored


def check_writer(ident: Any, frontends: Sequence[str], ids: Sequence[str], what: str) -> bool:
    """May the certificate ``ident`` write the records of customers ``ids``? If not,
    :class:`AuthorizationError` naming the first one it may not write.

    A front end named in ``frontends`` may write anyone's; a user only its own (the id is its
    certificate's name), and only over an existing record: returns True when every record
    must already be stored (the store checks that in the write's transaction)."""
    if ident.role == "frontend":
        if ident.name not in frontends:
            raise AuthorizationError(
                f"front end {ident.name!r} is not among this SP's frontends: it may write no {what}"
            )
        return False
    if ident.role != "user":
        raise AuthorizationError(f"a {ident.role!r} certificate writes no {what}")
    for cid in ids:
        if cid != ident.name:
            raise AuthorizationError(
                f"user {ident.name!r} may write only its own {what}, not those of customer {cid[:70]!r}"
            )
    return True


def _upload_size_check(size: int, what: str, authorise: Any) -> Any:
    """The check of an upload's first message, before anything is buffered: the number of
    records and their total size, then ``authorise(ids)`` (who may write them)."""

    def check(h: churn_pb2.CustomerChunk) -> None:
        n = len(h.customer_ids)
        if not 0 < n <= MAX_UPLOAD_BYTES // size:
            raise EncodingError(f"an upload holds 1..{MAX_UPLOAD_BYTES // size} customers, not {n}")
        if h.total_size != n * size:
            raise EncodingError(f"{n} {what} of {size} bytes make {n * size} bytes, not {h.total_size}")
        authorise(list(h.customer_ids))

    return check


class ChurnService:
    """The churn plug-in of one server (see the module docstring)."""

    def __init__(self, party: Any, model_path: Path | None) -> None:
        self.party = party
        self.jobs: dict[str, Job] = {}
        self._executor: ProcessPoolExecutor | None = None
        self._warming: asyncio.Task[None] | None = None
        self._psp_key: bytes | None = None
        self.stock: dict[int, int] = {}
        """Worker pid -> customers' worth of randomness in stock (idle-time precomputation)."""
        if party.role != "sp":
            return
        if model_path is None:
            raise ParameterError("the SP's churn service needs churn_model in its config")
        from crm.churn.model import TreeModel

        self.model = TreeModel.load(model_path)
        self.layout = private.UploadLayout.from_model(self.model)
        self.spec = private.TreeSpec.from_model(self.model, self.layout)
        party.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = CustomerStore(party.config.data_dir / "churn.sqlite")
        self.planning: Planning | None = None
        if party.config.churn_costs is not None:
            self.planning = Planning(party, self.model, party.config.churn_costs)
        # Who may call what (each method checks the rest: which records, which jobs).
        writers = ["user", "frontend"]  # the public layouts; uploads (check_writer)
        admins = ["user"]  # and named in the config's admins (check_admin)
        allowed = {
            "GetLayout": writers, "UploadCustomers": writers,
            "GetPlanLayout": writers, "UploadPlanShares": writers,
            "StartScoring": admins, "ScoringStatus": admins,
            "StartPlanning": admins, "PlanningStatus": admins,
        }
        party.grpc_services.append(
            (churn_pb2.DESCRIPTOR.services_by_name["Churn"], ChurnGateway(self), allowed)
        )
        log.info(
            "sp: churn tree of depth %d, %d comparisons a customer, %d ciphertexts an upload",
            self.spec.depth,
            self.spec.comparisons(),
            self.layout.ciphertexts,
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.party.role == "sp":
            self.store.close()
            if self.planning is not None:
                self.planning.store.close()

    def check_admin(self, ident: Any) -> None:
        """Admins are "user" certificates named in the config's ``admins`` (never a front end
        that bears an admin's name)."""
        if ident.role != "user" or ident.name not in self.party.config.admins:
            raise AuthorizationError(f"{ident.role} {ident.name!r} is not an admin of this SP")

    def check_writer(self, ident: Any, ids: Sequence[str], what: str) -> bool:
        """:func:`check_writer` with this SP's ``frontends``."""
        return check_writer(ident, self.party.config.frontends, ids, what)

    async def psp_curve_key(self) -> bytes:
        """The PSP's curve public key (asked once, then kept: the PSP reloads the same key)."""
        if self._psp_key is None:
            delay = 0.2
            for attempt in range(5):  # a PSP just (re)started: the channel may still back off
                try:
                    info = await self.party.peer_stub.call(
                        "GetPublicKey", peer_pb2.PublicKeyRequest(), timeout=30.0
                    )
                    break
                except TransportError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(delay)
                    delay *= 2
            if not info.curve_key:
                raise TransportError("the PSP did not publish a curve key")
            self._psp_key = bytes(info.curve_key)
        return self._psp_key

    def _pool(self, psp_key: bytes) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=max(1, self.party.config.workers),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
                initargs=(self.spec, self.layout.to_dict(), psp_key),
            )
        return self._executor

    def _busy(self) -> bool:
        return any(not j.finished for j in self.jobs.values())

    def warm_up(self) -> None:
        """Start precomputing in idle time (once the PSP is reachable): called on uploads."""
        if self._warming is None or self._warming.done():
            self._warming = self.party._spawn(self._warm(), "churn precomputation")

    async def _warm(self) -> None:
        """Keep every worker stocked while no scoring job runs; stop when the stock is full."""
        loop = asyncio.get_running_loop()
        try:
            pool = self._pool(await self.psp_curve_key())
        except TransportError as exc:
            log.info("sp: churn precomputation waits for the PSP: %s", exc)
            return
        workers = max(1, self.party.config.workers)
        target = min(PRECOMPUTE_CAP, -(-max(1, self.store.count()) // workers))
        try:
            while not self._busy():
                if len(self.stock) >= workers and min(self.stock.values()) >= target:
                    return
                tasks = [loop.run_in_executor(pool, _worker_warm, WARM_STEP, target) for _ in range(workers)]
                for pid, stock in await asyncio.gather(*tasks):
                    self.stock[pid] = stock
        except Exception as exc:  # the workers were shut down (server stopping): nothing lost
            log.info("sp: churn precomputation stopped: %s", exc)

    # -- uploads -------------------------------------------------------------------
    async def upload(self, header: churn_pb2.CustomerChunk, blob: bytes, ident: Any) -> int:
        """Store an upload's records as written by ``ident``, all or none (see :func:`check_writer`)."""
        replace_only = self.check_writer(ident, header.customer_ids, "churn records")
        if header.layout_version != self.layout.version:
            raise EncodingError(
                f"upload made for layout {header.layout_version}, the SP scores layout "
                f"{self.layout.version}: fetch the layout again"
            )
        items = _split_upload(
            header, blob, self.layout.record_bytes, lambda rec, who: private.check_record(self.layout, rec, who)
        )
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.put_many(self.layout.version, items, str(ident), replace_only=replace_only)
        )
        self.warm_up()
        return len(items)

    # -- scoring -------------------------------------------------------------------
    def start(self, admin_key: bytes, ids: Sequence[str], owner: str) -> Job:
        _check_admin_key(admin_key)
        chosen = _choose(self.store, self.layout.version, ids, "record")
        job = Job(job=uuid.uuid4().hex, ids=chosen, admin_key=admin_key, owner=owner)
        self.jobs[job.job] = job
        self.party._spawn(self._run(job), f"churn scoring {job.job[:8]}")
        return job

    async def _run(self, job: Job) -> None:
        try:
            await _run_job(job, self._score(job), "scoring")
        finally:
            self.stock.clear()  # drawn from during the job: ask the workers again
            self.warm_up()

    async def _score(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        pool = self._pool(await self.psp_curve_key())
        chunks = [job.ids[i : i + CHUNK] for i in range(0, len(job.ids), CHUNK)]
        ahead = asyncio.Semaphore(max(1, self.party.config.workers) + 1)
        in_flight = asyncio.Semaphore(2)

        async def one(index: int, ids: list[str]) -> None:
            async with ahead:
                records = await loop.run_in_executor(
                    None, self.store.records, ids, self.layout.version
                )
                seed = private.new_seed()
                prepared = await loop.run_in_executor(pool, _worker_prepare, records, seed)
                name = f"{job.job}/{index}"
                async with in_flight:
                    box = await self.party.start_session(
                        "churn-score",
                        start_inputs(self.spec, self.layout, len(ids), job.admin_key, name),
                        {"prepared": prepared},
                    )
            job.chunks[index] = churn_pb2.ScoredChunk(
                chunk=name, customer_ids=ids, seed=seed, sealed=box
            )
            job.done += len(ids)

        async with asyncio.TaskGroup() as group:  # the first failure cancels the other chunks
            for i, c in enumerate(chunks):
                group.create_task(one(i, c))

    def status(self, job_id: str, owner: str) -> churn_pb2.ScoreStatus:
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:  # another admin's job is no more found than none
            raise NotFound(f"no scoring job {job_id[:40]!r} of {owner!r}")
        out = churn_pb2.ScoreStatus(
            done=job.done,
            total=len(job.ids),
            finished=job.finished,
            error=job.error,
            depth=self.spec.depth,
            seconds=job.seconds or time.perf_counter() - job.t0,
        )
        if job.finished and not job.error:
            out.chunks.extend(job.chunks[i] for i in sorted(job.chunks))
        return out


PLAN_CHUNK = 256
"""Customers per planning session (about 30 MB of messages each way)."""
PAGE_BYTES = 3 * 1024 * 1024
"""Planning results per PlanningStatus reply (a chunk of 256 is some 330 KB)."""


class Planning:
    """The SP's private action planning (protocol "churn-plan"): the compiled search for its
    tree and cost file, the customers' plan shares, the admin's jobs."""

    def __init__(self, party: Any, model: Any, costs_path: Path) -> None:
        from crm.churn.costs import load_costs
        from crm.churn.plan_forms import compile_plan
        from mpc.comparison.pools import SpPools

        self.party, self.model = party, model
        self.costs = load_costs(costs_path, None)
        forms = compile_plan(model, self.costs)
        self.layout = plan_private.layout_of(forms)
        self.version = plan_private.layout_version(self.layout)
        self._forms: dict[Fraction, tuple[Any, plan_private.SpPlan]] = {
            forms.segment_threshold: (forms, plan_private.SpPlan.of(forms, self.layout))
        }
        self.pools = SpPools(party.curve_key)
        self.store = CustomerStore(party.config.data_dir / "churn.sqlite", table="plan_shares")
        self.jobs: dict[str, Job] = {}
        log.info(
            "sp: churn planning with %d contenders, %d bits a customer uploads, keys of %d bits",
            self.layout.contenders, len(self.layout.inputs), self.layout.modulus_bits,
        )

    def forms(self, threshold: Fraction) -> tuple[Any, plan_private.SpPlan]:
        from crm.churn.plan_forms import compile_plan

        if threshold not in self._forms:
            forms = compile_plan(self.model, self.costs, segment_threshold=threshold)
            if plan_private.layout_of(forms) != self.layout:
                raise ParameterError("the segment threshold changed the upload layout")
            self._forms[threshold] = (forms, plan_private.SpPlan.of(forms, self.layout))
        return self._forms[threshold]

    async def upload(self, header: churn_pb2.CustomerChunk, blob: bytes, ident: Any) -> int:
        """Store an upload's plan records as written by ``ident``, all or none."""
        replace_only = check_writer(ident, self.party.config.frontends, header.customer_ids, "plan shares")
        if header.layout_version != self.version:
            raise EncodingError(
                f"plan shares made for layout {header.layout_version}, the SP plans with layout "
                f"{self.version}: fetch the plan layout again"
            )
        items = _split_upload(
            header, blob, plan_private.record_bytes(self.layout),
            lambda rec, who: plan_private.check_record(self.layout, rec, who),
        )
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.put_many(self.version, items, str(ident), replace_only=replace_only)
        )
        return len(items)

    def start(self, admin_key: bytes, ids: Sequence[str], threshold: str, owner: str) -> Job:
        from crm.churn.plan import to_fraction

        _check_admin_key(admin_key)
        t = to_fraction(threshold)
        if not 0 <= t <= 1:
            raise ParameterError(f"segment threshold {threshold}: not in 0..1")
        self.forms(t)
        chosen = _choose(self.store, self.version, ids, "plan shares")
        job = Job(job=uuid.uuid4().hex, ids=chosen, admin_key=admin_key, owner=owner, threshold=str(t))
        self.jobs[job.job] = job
        self.party._spawn(self._run(job, t), f"churn planning {job.job[:8]}")
        return job

    async def _run(self, job: Job, threshold: Fraction) -> None:
        await _run_job(job, self._plan(job, threshold), "planning")

    async def _plan(self, job: Job, threshold: Fraction) -> None:
        forms, sp_plan = self.forms(threshold)
        loop = asyncio.get_running_loop()
        in_flight = asyncio.Semaphore(2)

        async def one(index: int, ids: list[str]) -> None:
            async with in_flight:
                records = await loop.run_in_executor(None, self.store.records, ids, self.version)
                shares, boxes = plan_private.sp_shares(self.layout, records)
                name = f"{job.job}/{index}"
                part, sealed = await self.party.start_session(
                    "churn-plan",
                    plan_private.start_inputs(self.layout, self.version, ids, boxes, job.admin_key, name),
                    {"forms": forms, "layout": self.layout, "shares": shares, "sp_plan": sp_plan,
                     "compare_pools": self.pools, "run_crypto": self.party.run_crypto, "sealed_result": True},
                )
            job.chunks[index] = churn_pb2.PlannedChunk(
                chunk=name, customer_ids=ids, sp_part=part.to_bytes(self.layout), psp_sealed=sealed
            )
            job.done += len(ids)

        async with asyncio.TaskGroup() as group:  # the first failure cancels the other chunks
            for i in range(0, len(job.ids), PLAN_CHUNK):
                group.create_task(one(i // PLAN_CHUNK, job.ids[i : i + PLAN_CHUNK]))

    def status(self, job_id: str, owner: str, from_chunk: int = 0) -> churn_pb2.PlanStatus:
        """Progress, and once finished a page of results from ``from_chunk`` (at most
        :data:`PAGE_BYTES`, at least one chunk); only to the admin who started the job."""
        job = self.jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFound(f"no planning job {job_id[:40]!r} of {owner!r}")
        out = churn_pb2.PlanStatus(
            done=job.done, total=len(job.ids), finished=job.finished, error=job.error,
            seconds=job.seconds or time.perf_counter() - job.t0, segment_threshold=job.threshold,
        )
        if job.finished and not job.error:
            out.chunks_total = len(job.chunks)
            size, k = 0, from_chunk
            while k < len(job.chunks) and (k == from_chunk or size + job.chunks[k].ByteSize() <= PAGE_BYTES):
                size += job.chunks[k].ByteSize()
                out.chunks.append(job.chunks[k])
                k += 1
            out.next_chunk = k
        return out


class ChurnGateway:
    """The gRPC methods: layouts and uploads for front ends and customers (each upload checked
    record by record, :func:`check_writer`); scoring and planning for the configured admins,
    each reading only its own jobs."""

    def __init__(self, service: ChurnService) -> None:
        self.s = service

    async def GetLayout(self, req: Any, ident: Any, ctx: Any) -> churn_pb2.ChurnLayout:
        return churn_pb2.ChurnLayout(
            layout_json=json.dumps(self.s.layout.to_dict()), layout_version=self.s.layout.version
        )

    async def UploadCustomers(
        self, chunks: AsyncIterator[churn_pb2.CustomerChunk], ident: Any, ctx: Any
    ) -> churn_pb2.CustomerUploadReply:
        check = _upload_size_check(
            self.s.layout.record_bytes, "records", lambda ids: self.s.check_writer(ident, ids, "churn records")
        )
        header, blob = await rpc.reassemble(
            chunks,
            check,
            lambda c: bool(c.customer_ids or c.total_size or c.layout_version),
            "customer upload",
        )
        stored = await self.s.upload(header, blob, ident)
        return churn_pb2.CustomerUploadReply(stored=stored, customers=self._count(self.s.store, ident))

    @staticmethod
    def _count(store: CustomerStore, ident: Any) -> int:
        """How many customers the SP holds: a front end's business, not a customer's."""
        return store.count() if ident.role == "frontend" else 0

    async def StartScoring(
        self, req: churn_pb2.ScoreRequest, ident: Any, ctx: Any
    ) -> churn_pb2.ScoreJob:
        self.s.check_admin(ident)
        job = self.s.start(bytes(req.admin_key), list(req.customer_ids), ident.name)
        return churn_pb2.ScoreJob(job=job.job, customers=len(job.ids))

    async def ScoringStatus(
        self, req: churn_pb2.ScoreJobRequest, ident: Any, ctx: Any
    ) -> churn_pb2.ScoreStatus:
        self.s.check_admin(ident)
        return self.s.status(req.job, ident.name)

    def _planning(self) -> Planning:
        if self.s.planning is None:
            raise NotFound("this SP plans nothing: it has no churn_costs in its config")
        return self.s.planning

    async def GetPlanLayout(self, req: Any, ident: Any, ctx: Any) -> churn_pb2.ChurnLayout:
        pl = self._planning()
        return churn_pb2.ChurnLayout(layout_json=json.dumps(plan_private.layout_to_dict(pl.layout)), layout_version=pl.version)

    async def UploadPlanShares(
        self, chunks: AsyncIterator[churn_pb2.CustomerChunk], ident: Any, ctx: Any
    ) -> churn_pb2.CustomerUploadReply:
        pl = self._planning()
        check = _upload_size_check(
            plan_private.record_bytes(pl.layout), "plan records",
            lambda ids: self.s.check_writer(ident, ids, "plan shares"),
        )
        header, blob = await rpc.reassemble(
            chunks, check, lambda c: bool(c.customer_ids or c.total_size or c.layout_version), "plan share upload"
        )
        stored = await pl.upload(header, blob, ident)
        return churn_pb2.CustomerUploadReply(stored=stored, customers=self._count(pl.store, ident))

    async def StartPlanning(self, req: churn_pb2.PlanRequest, ident: Any, ctx: Any) -> churn_pb2.ScoreJob:
        self.s.check_admin(ident)
        job = self._planning().start(
            bytes(req.admin_key), list(req.customer_ids), req.segment_threshold or "1/2", ident.name
        )
        return churn_pb2.ScoreJob(job=job.job, customers=len(job.ids))

    async def PlanningStatus(self, req: churn_pb2.PlanJobRequest, ident: Any, ctx: Any) -> churn_pb2.PlanStatus:
        self.s.check_admin(ident)
        return self._planning().status(req.job, ident.name, req.from_chunk)


# -- the client side --------------------------------------------------------------------------


class ChurnClient(UserClient):
    """A customer front end (a "frontend" certificate), a customer or the admin (a "user"
    certificate): the PSP's key, layouts, uploads, scoring and planning."""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.churn = rpc.RawStub(
            self._sp_channel,
            churn_pb2.DESCRIPTOR.services_by_name["Churn"],
            "sp",
            self.traffic,
            config.sp,
        )

    async def layout(self) -> tuple[private.UploadLayout, int]:
        reply = await self.churn.call(
            "GetLayout", churn_pb2.ChurnLayoutRequest(), timeout=self.config.deadline_s
        )
        layout = private.UploadLayout.from_dict(json.loads(reply.layout_json))
        if layout.version != reply.layout_version:
            raise EncodingError("the SP's layout does not match its version")
        return layout, reply.layout_version

    async def scoring_key(self, wait_s: float = 0.0) -> bytes:
        """The PSP's curve public key, read from the PSP itself (customers and front ends
        encrypt under it); ``wait_s`` > 0 keeps retrying while the PSP is starting."""
        await self.public_key(wait_s=wait_s)  # both servers serve the same joint key
        info = await self.psp.call("GetPublicKey", user_pb2.KeyRequest(), timeout=self.config.deadline_s)
        if not info.curve_key:
            raise TransportError("the PSP does not publish a curve key")
        return bytes(info.curve_key)

    async def _upload(self, method: str, layout_version: int, ids: Sequence[str], records: Sequence[bytes]) -> int:
        stored = 0
        for i in range(0, len(ids), UPLOAD_BATCH):
            blob = b"".join(records[i : i + UPLOAD_BATCH])
            pieces = rpc.chunks(blob)
            requests = [
                churn_pb2.CustomerChunk(
                    layout_version=layout_version,
                    customer_ids=list(ids[i : i + UPLOAD_BATCH]),
                    total_size=len(blob),
                    data=bytes(pieces[0]),
                ),
                *(churn_pb2.CustomerChunk(data=bytes(p)) for p in pieces[1:]),
            ]
            reply = await self.churn.stream(method, requests, timeout=self.config.deadline_s)
            stored += reply.stored
        return stored

    async def upload_customers(
        self, layout_version: int, ids: Sequence[str], records: Sequence[bytes]
    ) -> int:
        """Upload already encrypted records, one call per batch of :data:`UPLOAD_BATCH`."""
        return await self._upload("UploadCustomers", layout_version, ids, records)

    async def start_scoring(self, admin_key: bytes, ids: Sequence[str] = ()) -> churn_pb2.ScoreJob:
        return await self.churn.call(
            "StartScoring",
            churn_pb2.ScoreRequest(admin_key=admin_key, customer_ids=list(ids)),
            timeout=self.config.deadline_s,
        )

    async def scoring_status(self, job: str) -> churn_pb2.ScoreStatus:
        return await self.churn.call(
            "ScoringStatus", churn_pb2.ScoreJobRequest(job=job), timeout=self.config.deadline_s
        )

    async def plan_layout(self) -> tuple[plan_private.PlanLayout, int]:
        reply = await self.churn.call("GetPlanLayout", churn_pb2.ChurnLayoutRequest(), timeout=self.config.deadline_s)
        layout = plan_private.layout_from_dict(json.loads(reply.layout_json))
        if plan_private.layout_version(layout) != reply.layout_version:
            raise EncodingError("the SP's plan layout does not match its version")
        return layout, reply.layout_version

    async def upload_plan_shares(self, layout_version: int, ids: Sequence[str], records: Sequence[bytes]) -> int:
        """Upload customers' plan records (:func:`crm.churn.plan_private.customer_record`)."""
        return await self._upload("UploadPlanShares", layout_version, ids, records)

    async def start_planning(self, admin_key: bytes, segment_threshold: str = "", ids: Sequence[str] = ()) -> churn_pb2.ScoreJob:
        return await self.churn.call(
            "StartPlanning",
            churn_pb2.PlanRequest(admin_key=admin_key, customer_ids=list(ids), segment_threshold=segment_threshold),
            timeout=self.config.deadline_s,
        )

    async def planning_status(self, job: str, from_chunk: int = 0) -> churn_pb2.PlanStatus:
        return await self.churn.call(
            "PlanningStatus", churn_pb2.PlanJobRequest(job=job, from_chunk=from_chunk), timeout=self.config.deadline_s
        )

    async def planning_results(self, job: str) -> list[churn_pb2.PlannedChunk]:
        """Every chunk of a finished job, page by page."""
        out: list[churn_pb2.PlannedChunk] = []
        while True:
            st = await self.planning_status(job, len(out))
            if not st.finished or st.error:
                raise ParameterError(st.error or "the planning job has not finished")
            out.extend(st.chunks)
            if len(out) >= st.chunks_total or not st.chunks:
                return out
