"""Issue #12: every RPC of both servers, fuzzed from every certificate role.

A real SP and PSP run in this module's event loop (conftest's ``Parties``, 1024-bit
keys) with every service a deployment has: ``UserGateway``, ``Delivery``, ``Peer``,
``Churn`` (a churn tree and a cost file), ``Catalog`` (co-purchase parameters) and the
recommender (``recommender``). The fuzzed methods are not listed here: they are the
ones the servers register (every call of :func:`mpc.parties.rpc.service_handler` is
recorded while they start, with its method -> roles map), and every service in the
descriptors of the ``mpc.v1`` modules must be among them, so a method added later is
fuzzed without editing this file (one test per service).

Every method is called, from each certificate (a user, an admin user, the SP, the PSP, a
front end named in the SP's config, and a certificate of our own
CA naming a role no server knows), with

- raw random bytes (a list of them for client-streaming calls);
- messages hypothesis builds from the request descriptor: every field of its type, with
  huge counts, empty and overlong strings, lengths around every size the servers check,
  any mpc.v1 message inside a bytes field, streams whose header and ``total_size`` agree
  or not;
- mutations of valid requests, made by the project's own clients and recorded on the way
  out (and, for Peer, what each server really sent the other), so that they follow the
  wire format as it changes: bit flips, truncation, a field set to a hostile value, bytes
  flipped inside a bytes field, fresh ids, duplicated, dropped or swapped chunks, a header
  in a later chunk, a ``total_size`` that lies; for Peer.Deliver also into sessions opened
  for the purpose, so that the protocols themselves parse them;
- every valid request replayed under every other certificate, and from its own followed
  by a message over the server's limit.

Each call must end with a clear status: from a role the method does not admit, exactly
PERMISSION_DENIED (UNAUTHENTICATED for the unknown role); otherwise one of ``EXPECTED``,
or OK (never for a non-admin on an admin's method, nor for another certificate's replayed
write or delivery). Never INTERNAL, UNKNOWN, a deadline (a hang), or a crash: no session
or job a fuzzed call started may die of anything but the project's own errors. Afterwards
both servers still serve (a delivery through both decrypts bob's sum), and every table of
every SQLite file of both data directories, and the key files, are as before, except the
rows an accepted (OK) call legitimately owns (``_owned``).

A failure lists every offending call (message, status, the server's log and traceback).
``RPC_FUZZ_DUMP=file.jsonl`` writes every call, one JSON line each.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import pkgutil
import sqlite3
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from conftest import Parties
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import symbol_database
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import mpc.v1
from crm.churn import plan_private as pp
from crm.churn import private as P
from crm.churn.model import TreeModel, encode_row
from crm.churn.service import ChurnClient
from crm.recommender.catalog import (
    PUBLISHED_KEY,
    CatalogClient,
    CopurchaseParams,
    parse_static_table,
)
from crm.recommender.data import build_ratings
from crm.recommender.service import (
    DATA_VERSION_KEY,
    REC_KIND,
    RESULT_KIND,
    RESULT_META_PREFIX,
    RecParams,
    fetch_recommendations,
    upload_ratings,
)
from mpc.comparison.pools import bit_encryption_pool
from mpc.elgamal.proofs import proof_bytes
from mpc.errors import MpcError
from mpc.parties import certs, rpc
from mpc.parties.deploy import write_deployment
from mpc.parties.store import STATIC_VERSION_KEY
from mpc.parties.user import UserClient, UserConfig
from mpc.protocol import registered_protocols
from mpc.v1 import catalog_pb2, peer_pb2, user_pb2

pytestmark = pytest.mark.asyncio(loop_scope="module")

HERE = Path(__file__).resolve().parents[1]
"""The tests/ directory (its data/ folder)."""
KEY_BITS = 1024
DEADLINE_S = 20.0
"""The servers' deadline (a fuzzed session that never gets its messages waits this long)."""
CALL_TIMEOUT_S = 8.0
"""Per fuzzed call: far more than any answer needs; reaching it means the server hung."""
EXAMPLES = 120
"""Hypothesis examples per method and admitted certificate..."""
EXAMPLES_DENIED = 15
"""... and per method and certificate the method refuses (the role check comes first)."""
EXAMPLES_OF = {"StartScoring": 40, "StartPlanning": 40, "PublishCopurchase": 40}
"""Methods whose accepted requests start real jobs with the PSP: fewer examples."""

USERS = ("alice", "bob", "carol", "admin")
"""alice fuzzes as a user; bob and carol own data that is never touched; admin is the admin."""
ADMIN = "admin"
FRONTEND = "shopfront"
INTRUDER = "intruder"
"""A certificate of our CA whose URI names a role no server knows."""
ITEMS = tuple(f"m{k}" for k in range(5))
PRODUCTS = tuple(f"p{k:02d}" for k in range(6))
CUSTOMERS = ("c00", "c01", "c02", "c03")
FUZZ_IDS = ("fz0", "fz1")
STATIC_CSV = "product,recommended,rank\np00,p01,1\np00,p02,2\np01,p00,1\n"
COSTS = 'profit = "12 * MonthlyCharges"\n[soft.Contract]\n"Month-to-month -> One year" = 120\n'

OK = grpc.StatusCode.OK
EXPECTED = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
})
"""Clear refusals. UNAVAILABLE is not among them: nothing here takes the PSP away, so a
call that needs it and answers UNAVAILABLE hit a timeout or a failure of our own making."""
ADMIN_ONLY = frozenset({
    "/mpc.v1.Churn/StartScoring", "/mpc.v1.Churn/ScoringStatus", "/mpc.v1.Churn/StartPlanning",
    "/mpc.v1.Churn/PlanningStatus", "/mpc.v1.Catalog/SetStaticTable", "/mpc.v1.Catalog/PublishCopurchase",
})
"""Methods the servicer reserves to the config's ``admins``: OK from another user is a finding."""
WRITES = frozenset({
    "/mpc.v1.UserGateway/Upload", "/mpc.v1.Churn/UploadCustomers", "/mpc.v1.Churn/UploadPlanShares",
    "/mpc.v1.Catalog/SetStaticTable", "/mpc.v1.Catalog/PublishCopurchase",
    "/mpc.v1.Churn/StartScoring", "/mpc.v1.Churn/StartPlanning",
})
"""Requests that write or start work on behalf of their sender (the rows they own: ``_owned``)."""
SENDER_BOUND = WRITES | {"/mpc.v1.Delivery/CollectPartials"}
"""A valid request of these replayed under another certificate is never OK: the proofs, the
owner rules, the role checks and the delivery's addressee bind it to its sender."""
KNOWN_METHODS = {
    "/mpc.v1.Peer/StartSession", "/mpc.v1.Peer/Deliver", "/mpc.v1.Peer/Abort", "/mpc.v1.Peer/GetPublicKey",
    "/mpc.v1.UserGateway/GetPublicKey", "/mpc.v1.UserGateway/Upload", "/mpc.v1.UserGateway/Fetch",
    "/mpc.v1.Delivery/GetPublicKey", "/mpc.v1.Delivery/CollectPartials",
    "/mpc.v1.Churn/GetLayout", "/mpc.v1.Churn/UploadCustomers", "/mpc.v1.Churn/GetPlanLayout",
    "/mpc.v1.Churn/UploadPlanShares", *ADMIN_ONLY,
    "/mpc.v1.Catalog/GetStatic", "/mpc.v1.Catalog/GetCopurchaseLayout", "/mpc.v1.Catalog/GetCopurchase",
}


def _v1_services() -> dict[str, Any]:
    """Every service in the descriptors of the ``mpc.v1`` modules, by full name."""
    out: dict[str, Any] = {}
    for mod in pkgutil.iter_modules(mpc.v1.__path__):
        if mod.name.endswith("_pb2"):
            module = importlib.import_module(f"mpc.v1.{mod.name}")
            for svc in module.DESCRIPTOR.services_by_name.values():
                out[svc.full_name] = svc
    return out


SERVICES = _v1_services()
MESSAGES = sorted(
    (m for mod in pkgutil.iter_modules(mpc.v1.__path__) if mod.name.endswith("_pb2")
     for m in importlib.import_module(f"mpc.v1.{mod.name}").DESCRIPTOR.message_types_by_name.values()),
    key=lambda d: d.full_name,
)
"""Every message type of mpc.v1 (hypothesis builds any of them for a bytes field)."""


# -- the world: deployment, registrations, recorded valid requests ---------------------------------
@dataclasses.dataclass
class Seed:
    """A valid request (bytes, or a list of chunks for a stream) and the certificate it is valid for."""

    caller: str
    payload: Any
    note: str


@dataclasses.dataclass
class World:
    parties: Parties
    registered: dict[str, dict[str, tuple[Any, dict[str, frozenset[str]]]]]
    """server role -> service full name -> (descriptor, method -> roles)."""
    callers: dict[str, str | None]
    """certificate name -> role (None: a role no server knows)."""
    extra_certs: Path
    seeds: dict[tuple[str, str], list[Seed]]
    """(server role, method path) -> valid requests."""
    strings: list[str]
    sizes: list[int]
    blobs: list[bytes]
    clients: dict[str, UserClient]
    channels: dict[tuple[str, str], grpc.Channel] = dataclasses.field(default_factory=dict)
    background: list[tuple[str, str, BaseException]] = dataclasses.field(default_factory=list)
    """(server, task, exception) of every background task (sessions the peer started, jobs) that failed."""
    log: list[logging.LogRecord] = dataclasses.field(default_factory=list)

    def channel(self, caller: str, server: str) -> grpc.Channel:
        """A blocking channel (the fuzzing runs in a thread) with ``caller``'s certificate, default
        options: the client sends a message of any size, so the server's own limit is tested.

        Blocking, not ``grpc.aio``: when a server ends a client-streaming call before the client
        has sent everything (a refusal on the first chunk), the aio client reports INTERNAL
        "Internal error from Core" instead of the server's status (grpc/grpc#36066); the
        blocking client reports what the server sent."""
        key = (caller, server)
        if key not in self.channels:
            ca, cert, k = self.parties.tls(caller, self.extra_certs if caller == INTRUDER else None).read()
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=k, certificate_chain=cert)
            self.channels[key] = grpc.secure_channel(self.parties.address(server), creds)
        return self.channels[key]


class _Capture(logging.Handler):
    """Keeps the servers' warnings and errors (with tracebacks) for the failure report."""

    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        self.sink.append(record)
        del self.sink[:-2000]


class _Recorder:
    """Stands in for a :class:`~mpc.parties.rpc.RawStub`: records every request the client
    sends (serialised) and forwards it, except the methods in ``fake``, which are answered
    with an empty reply and never reach the server (valid writes kept for mutation)."""

    def __init__(self, stub: Any, sink: list[tuple[str, str, str, Any]], server: str, service: str,
                 fake: Iterable[str] = ()) -> None:
        self.stub, self.sink, self.server, self.service, self.fake = stub, sink, server, service, set(fake)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stub, name)

    async def call(self, method: str, request: Message, timeout: float = rpc.DEFAULT_DEADLINE_S) -> Any:
        self.sink.append((self.server, self.service, method, request.SerializeToString()))
        if method in self.fake:
            return self.stub._reply[method]()
        return await self.stub.call(method, request, timeout=timeout)

    async def stream(self, method: str, requests: Iterable[Message], timeout: float = rpc.DEFAULT_DEADLINE_S) -> Any:
        reqs = list(requests)
        self.sink.append((self.server, self.service, method, [r.SerializeToString() for r in reqs]))
        if method in self.fake:
            return self.stub._reply[method]()
        return await self.stub.stream(method, reqs, timeout=timeout)


def _intruder_cert(ca_dir: Path, out: Path) -> None:
    """A client certificate signed by our CA for ``urn:mpc-crm:auditor:intruder``: TLS accepts
    it, the servers must not (no such role)."""
    ca = certs.CertAuthority.load(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = ca.cert.not_valid_before_utc
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, INTRUDER)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(ca.cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"{certs.URI_PREFIX}auditor:{INTRUDER}")]),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{INTRUDER}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / f"{INTRUDER}.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _ratings() -> tuple[Any, dict[str, dict[str, int]]]:
    own = {
        "alice": {"m0": 5, "m1": 3, "m2": 4},
        "bob": {"m0": 4, "m1": 2, "m3": 5},
        "carol": {"m0": 1, "m2": 5, "m4": 3},
    }
    return build_ratings([(u, i, r) for u, rs in own.items() for i, r in rs.items()], scale=(1, 5)), own


def _hand_rows() -> list[dict[str, str]]:
    charges = ("80", "20", "70", "118.75")
    return [
        {"customerID": c, "gender": ("Male", "Female")[k % 2], "tenure": str(5 + 10 * k),
         "Contract": ("Month-to-month", "One year")[k % 2], "MonthlyCharges": charges[k]}
        for k, c in enumerate(CUSTOMERS)
    ]


async def _wait(poll: Callable[[], Any], what: str, limit_s: float = 90.0) -> Any:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        st_ = await poll()
        if st_.finished:
            assert not st_.error, f"{what}: {st_.error}"
            return st_
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not finish in {limit_s} s")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("fuzz")
    ratings, own = _ratings()
    rec = RecParams.from_ratings(ratings, ("m0", "m1", "m2"), 6, 0, KEY_BITS)
    rec.save(root / "rec.json")
    CopurchaseParams(PRODUCTS, customers=6, min_changes=2).save(root / "copurchase.json")
    (root / "costs.toml").write_text(COSTS)
    model_path = HERE / "data" / "churn_hand_model.json"
    dep = write_deployment(
        root / "dep", list(USERS), key_bits=KEY_BITS, deadline_s=DEADLINE_S, workers=1,
        recommender=root / "rec.json", churn_model=model_path, churn_costs=root / "costs.toml",
        copurchase=root / "copurchase.json", admins=[ADMIN], frontends=[FRONTEND],
    )
    _intruder_cert(dep.root / "certs", root / "extra")
    callers: dict[str, str | None] = {
        "alice": "user", ADMIN: "user", FRONTEND: "frontend", "sp": "sp", "psp": "psp", INTRUDER: None,
    }

    log: list[logging.LogRecord] = []
    capture = _Capture(log)
    logging.getLogger().addHandler(capture)
    registered: dict[str, dict[str, tuple[Any, dict[str, frozenset[str]]]]] = {"sp": {}, "psp": {}}
    starting: list[str] = []
    original = rpc.service_handler

    def recording(service: Any, servicer: object, allowed: dict[str, Iterable[str]], traffic: Any = None) -> Any:
        registered[starting[-1]][service.full_name] = (
            service, {m.name: frozenset(allowed.get(m.name, ())) for m in service.methods}
        )
        return original(service, servicer, allowed, traffic)

    async with Parties(dep) as p:
        p.changes["psp"] = {"aggregate_min_contributors": 2}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(rpc, "service_handler", recording)
            for role in ("psp", "sp"):
                starting.append(role)
                await p.start(role, wait_key=False)
        await p.wait_key()

        # What each server sends its peer in real sessions: the valid requests of Peer.
        peer_sent: dict[str, list[tuple[str, str, str, Any]]] = {"sp": [], "psp": []}
        for role in ("sp", "psp"):
            server = p.servers[role]
            server.peer_stub = server.transport.stub = _Recorder(
                server.peer_stub, peer_sent[role], server.config.peer_role, "mpc.v1.Peer"
            )

        clients = {u: p.user(u, deadline_s=DEADLINE_S) for u in USERS}
        pk = await clients["alice"].public_key()
        for k, u in enumerate(USERS[:3]):
            await clients[u].upload("values", [3 + k, 1, 4])
        for u in ("alice", "bob", "carol"):
            await upload_ratings(clients[u], rec, own[u])
        await fetch_recommendations(clients["alice"], rec, own["alice"])  # computed once, then cached
        for u, basket in (("bob", ("p00", "p01")), ("carol", ("p00", "p02", "p03"))):
            await CatalogClient(clients[u]).contribute([basket])
        admin_catalog = CatalogClient(clients[ADMIN])
        await admin_catalog.publish()
        await admin_catalog.set_static_table(STATIC_CSV, "fuzz.csv")

        # Churn: the layouts, the customers' records, one scoring and one planning job.
        front = ChurnClient(dataclasses.replace(UserConfig.load(dep.frontend_configs[FRONTEND]), deadline_s=DEADLINE_S))
        admin_churn = ChurnClient(p.user_config(ADMIN, deadline_s=DEADLINE_S))
        model = TreeModel.load(model_path)
        key = await front.scoring_key()
        layout, version = await front.layout()
        plan_layout, plan_version = await front.plan_layout()
        pool = bit_encryption_pool(key)

        def records(ids: Iterable[str], rows: list[dict[str, str]]) -> tuple[list[bytes], list[bytes]]:
            scores, plans = [], []
            for cid, row in zip(ids, rows, strict=True):
                ints = encode_row(model, row)
                scores.append(P.encrypt_record(layout, ints, pool))
                plans.append(pp.customer_record(plan_layout, plan_version, key, cid,
                                                pp.layout_bits(plan_layout, row, ints)))
            return scores, plans

        rows = _hand_rows()
        scores, plans = records(CUSTOMERS, rows)
        await front.upload_customers(version, list(CUSTOMERS), scores)
        await front.upload_plan_shares(plan_version, list(CUSTOMERS), plans)
        admin_key = P.admin_key_bytes(X25519PrivateKey.generate())
        job = await admin_churn.start_scoring(admin_key)
        await _wait(lambda: admin_churn.scoring_status(job.job), "scoring")
        plan_job = await admin_churn.start_planning(admin_key, "1/2", ["c00"])
        await _wait(lambda: admin_churn.planning_status(plan_job.job), "planning")
        reply = await clients["alice"].sp.call("Fetch", user_pb2.FetchRequest(kind="values"), timeout=DEADLINE_S)
        delivery_id = reply.delivery_id

        # Valid requests of every user-facing method, recorded on their way out; the writes
        # among them are recorded only (``fake``), never sent as they are.
        sent: dict[str, list[tuple[str, str, str, Any]]] = {}

        def recorder(who: str, stub: rpc.RawStub, service: str, fake: Iterable[str] = (), server: str = "sp") -> _Recorder:
            return _Recorder(stub, sent.setdefault(who, []), server, service, fake)

        alice = p.user("alice", deadline_s=DEADLINE_S)
        alice.sp = recorder("alice", alice.sp, "mpc.v1.UserGateway", {"Upload"})
        alice.psp = recorder("alice", alice.psp, "mpc.v1.Delivery", server="psp")
        await alice.public_key()
        await alice.upload("fuzz", [5, 6, 7])
        await upload_ratings(alice, rec, own["alice"])
        alice_catalog = CatalogClient(alice)
        alice_catalog.stub = recorder("alice", alice_catalog.stub, "mpc.v1.Catalog")
        await alice_catalog.contribute([("p01", "p02")])
        await alice.sp.call("Fetch", user_pb2.FetchRequest(kind="sum"), timeout=DEADLINE_S)
        await alice.psp.call("CollectPartials", user_pb2.CollectRequest(delivery_id=delivery_id), timeout=DEADLINE_S)
        await alice_catalog.static("p00")
        await alice_catalog.copurchase(["p00", "p01"], k=3, counts=True)
        admin_catalog.stub = recorder(ADMIN, admin_catalog.stub, "mpc.v1.Catalog", {"SetStaticTable", "PublishCopurchase"})
        await admin_catalog.set_static_table(STATIC_CSV.replace("p02,2", "p03,2"), "again.csv")
        await admin_catalog.publish()
        front.churn = recorder(FRONTEND, front.churn, "mpc.v1.Churn", {"UploadCustomers", "UploadPlanShares"})
        fz_scores, fz_plans = records(FUZZ_IDS, rows[:2])
        await front.layout()
        await front.plan_layout()
        await front.upload_customers(version, list(FUZZ_IDS), fz_scores)
        await front.upload_plan_shares(plan_version, list(FUZZ_IDS), fz_plans)
        admin_churn.churn = recorder(ADMIN, admin_churn.churn, "mpc.v1.Churn", {"StartScoring", "StartPlanning"})
        await admin_churn.start_scoring(admin_key, ["c00", "c01"])
        await admin_churn.scoring_status(job.job)
        await admin_churn.start_planning(admin_key, "1/3", ["c00"])
        await admin_churn.planning_status(plan_job.job)

        for server in p.servers.values():  # stop recording the peers' traffic
            server.peer_stub = server.transport.stub = server.peer_stub.stub
        background: list[tuple[str, str, BaseException]] = []
        for server in p.servers.values():
            _watch_background(server, background)

        seeds: dict[tuple[str, str], list[Seed]] = {}

        def add(server: str, who: str, service: str, method: str, payload: Any, note: str) -> None:
            desc = registered[server][service][0].methods_by_name[method]
            out = seeds.setdefault((server, f"/{service}/{method}"), [])
            out.append(Seed(who, payload, note))
            if desc.client_streaming and len(payload) == 1:
                # The same request in three chunks (any cut is valid): chunk-level mutations need some.
                out.append(Seed(who, _rechunk(desc.input_type, payload[0]), note + ", in three chunks"))

        for who, items in sent.items():
            for target, service, method, payload in items:
                add(target, who, service, method, payload, f"{method} as made by the client")
        for role, items in peer_sent.items():
            for target, service, method, payload in items:
                if method == "Deliver" and _is_replica(payload):
                    # A replica delivered into an open "replicate" session is a write the SP may
                    # legitimately make: kept out, so that any write on the PSP is a finding.
                    continue
                add(target, role, service, method, payload, f"{method} as the {role} sent it in a real session")
        fetch = "mpc.v1.UserGateway"
        add("sp", "alice", fetch, "Fetch", user_pb2.FetchRequest(kind=RESULT_KIND).SerializeToString(), "cached result")
        add("sp", "alice", fetch, "Fetch", user_pb2.FetchRequest(kind="values").SerializeToString(), "own record")
        for server, peer in (("sp", "psp"), ("psp", "sp")):
            add(server, peer, "mpc.v1.Peer", "Abort", _serialise("mpc.v1.SessionAbort", session="0" * 32, reason="x"),
                "an unknown session")

        strings = sorted({
            *USERS, "sp", "psp", FRONTEND, "values", "sum", "fuzz", REC_KIND, RESULT_KIND, "copurchase",
            *registered_protocols(), *(s.name for spec in registered_protocols().values() for s in spec.steps[:6]),
            *ITEMS, *PRODUCTS, *CUSTOMERS, *FUZZ_IDS, job.job, plan_job.job, delivery_id, "1/2", "0", "1", "0.5",
            "-1", "1/0", "nan", "1e999", "", " ", "a" * 33, "a" * 65, "a" * 129, "a" * 201, "x" * 5000, "\x00",
            "é", "\U0001f600", "../../etc/passwd", "%s%n", "'; DROP TABLE records; --", "\r\n", "p00,p00,1",
            "product,recommended,rank\np00,p01,0", "{}", "[]", "null", json.dumps({"format": "x"}),
        })
        widths = [pk.ciphertext_bytes, pk.params.element_bytes, layout.record_bytes,
                  pp.record_bytes(plan_layout), 16, 32, 33, 64, 66]
        widths += [proof_bytes(pk.params), pk.ciphertext_bytes + proof_bytes(pk.params)]
        sizes = sorted({s + d for w in widths for s in (w, 2 * w, 3 * w) for d in (-1, 0, 1)} | {0, 1, 2})
        blobs = [pk.to_bytes(), key, admin_key, pk.ciphertexts_to_bytes([pk.encrypt(1)]), scores[0], plans[0]]
        w = World(p, registered, callers, root / "extra", seeds, strings, sizes, blobs, clients, log=log,
                  background=background)
        try:
            yield w
        finally:
            logging.getLogger().removeHandler(capture)
            for channel in w.channels.values():
                channel.close()
            await front.close()
            await admin_churn.close()


def _oversize(desc: Any, payload: Any, streaming: bool) -> Any:
    """A valid request followed by a chunk over the server's message limit (a stream), or with
    an unknown field that makes it too large (a unary call): refused whole, or accepted whole;
    never an error status with the valid part stored."""
    big = b"\0" * (rpc.MAX_GRPC_MESSAGE + 1)
    if streaming:
        cls = symbol_database.Default().GetSymbol(desc.full_name)
        return [*payload, cls(data=big).SerializeToString() if "data" in desc.fields_by_name else big]
    n, length = len(big), b""
    while True:
        length += bytes([(n & 0x7F) | (0x80 if n > 0x7F else 0)])
        n >>= 7
        if not n:
            break
    return payload + b"\xba\x3e" + length + big  # field 999, length-delimited


def _watch_background(server: Any, sink: list[tuple[str, str, BaseException]]) -> None:
    """Keep the exception of every background task the server spawns from now on (a session the
    peer started, a job): they fail often under fuzzing, but only ever with the project's errors."""
    spawn = server._spawn

    def watched(coro: Any, what: str) -> asyncio.Task[Any]:
        task = spawn(coro, what)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                sink.append((server.role, what, t.exception()))

        task.add_done_callback(done)
        return task

    server._spawn = watched


def _live_sessions(w: World, server: str, copies: int = 16) -> tuple[list[Seed], list[str]]:
    """Open, as the peer, fresh sessions of every protocol the peer really started on ``server``
    (``copies`` of each) and return the first message the peer sent in each real session,
    re-addressed to them: the one the responder waits for first, so that mutations of it
    reach the protocol's own parsing, not only the mailbox's checks (a session whose role
    failed on one refuses the rest: SessionClosed)."""
    peer = "sp" if server == "psp" else "psp"
    renamed: dict[str, list[str]] = {}
    for s in w.seeds.get((server, "/mpc.v1.Peer/StartSession"), []):
        start = peer_pb2.SessionStart.FromString(s.payload)
        old = start.session
        for _ in range(copies if old not in renamed else 0):
            start.session = os.urandom(16).hex()
            code, details = _send(w, server, "/mpc.v1.Peer/StartSession", False, peer, start.SerializeToString())
            assert code is OK, f"a fresh {start.protocol} session on the {server}: {code.name}: {details}"
            renamed.setdefault(old, []).append(start.session)
    out, first = [], set()
    for d in w.seeds.get((server, "/mpc.v1.Peer/Deliver"), []):
        head = peer_pb2.Chunk.FromString(d.payload[0])
        if head.session in first or "three chunks" in d.note:
            continue
        first.add(head.session)
        for new in renamed.get(head.session, []):
            head.session = new
            out.append(Seed(d.caller, [head.SerializeToString(), *d.payload[1:]], d.note + ", into a live session"))
    return out, [s for ids in renamed.values() for s in ids]


def _abort_sessions(w: World, server: str, sessions: list[str]) -> None:
    """End the sessions :func:`_live_sessions` opened, as the peer would (their roles fail now)."""
    peer = "sp" if server == "psp" else "psp"
    for sid in sessions:
        msg = _serialise("mpc.v1.SessionAbort", session=sid, reason="fuzzing done")
        code, details = _send(w, server, "/mpc.v1.Peer/Abort", False, peer, msg)
        assert code is OK, f"Abort of a live session: {code.name}: {details}"


def _rechunk(desc: Any, first: bytes) -> list[bytes]:
    cls = symbol_database.Default().GetSymbol(desc.full_name)
    head = cls.FromString(first)
    data = bytes(head.data)
    if len(data) < 3:
        return [first]
    a, b = len(data) // 3, 2 * len(data) // 3
    head.data = data[:a]
    return [head.SerializeToString(), cls(data=data[a:b]).SerializeToString(), cls(data=data[b:]).SerializeToString()]


def _serialise(full_name: str, **fields: Any) -> bytes:
    return symbol_database.Default().GetSymbol(full_name)(**fields).SerializeToString()


def _is_replica(chunks: Any) -> bool:
    try:
        first = peer_pb2.Chunk.FromString(chunks[0])
    except Exception:
        return False
    return first.step == "record"


# -- message strategies ---------------------------------------------------------------------------
U32 = (0, 1, 2, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 1000, 4095, 4096, 4097,
       65535, 65536, 100_000, 100_001, 1 << 20, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1)
U64 = (*U32, 2**32, 2**40, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1)
S64 = (*(v for v in U64 if v < 2**63), -1, -2, -(2**31), -(2**31) - 1, -(2**63))
INT_RANGE = {
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1, U32), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1, U32),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1, U64), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1, U64),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1, tuple(v for v in S64 if -(2**31) <= v < 2**31)),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1, tuple(v for v in S64 if -(2**31) <= v < 2**31)),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1, tuple(v for v in S64 if -(2**31) <= v < 2**31)),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1, S64), FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1, S64),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1, S64),
}
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


class Strategies:
    """Hypothesis strategies for the requests of one deployment (its sizes, names and blobs)."""

    def __init__(self, w: World) -> None:
        self.strings = st.one_of(st.sampled_from(w.strings), TEXT)
        self.lengths = st.one_of(st.sampled_from(w.sizes), st.integers(0, 80))
        self._messages: dict[tuple[str, int], st.SearchStrategy[Message]] = {}
        # A bytes field often carries a message (a session's inputs, a step's payload): one of
        # any mpc.v1 type, which protobuf's leniency parses into many others.
        nested = st.sampled_from(MESSAGES).flatmap(lambda d: self.message(d, 2)).map(lambda m: m.SerializeToString())
        self.bytes = st.one_of(
            self.lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n)),
            st.sampled_from(w.blobs),
            st.sampled_from(w.blobs).flatmap(lambda b: st.integers(0, len(b)).map(lambda k: b[:k])),
            st.deferred(lambda: nested),
        )

    def scalar(self, f: Any, depth: int) -> st.SearchStrategy[Any]:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            return self.message(f.message_type, depth + 1)
        if f.type == FieldDescriptor.TYPE_STRING:
            if f.name == "csv":  # give the static table's parser something table-like as well
                line = st.tuples(self.strings, self.strings, st.sampled_from(("1", "2", "0", "x", "1000001")))
                csvs = st.lists(line, max_size=5).map(lambda ls: "\n".join(",".join(t) for t in ls))
                return st.one_of(self.strings, csvs)
            return self.strings
        if f.type == FieldDescriptor.TYPE_BYTES:
            return self.bytes
        if f.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return st.floats(width=64 if f.type == FieldDescriptor.TYPE_DOUBLE else 32)
        if f.type == FieldDescriptor.TYPE_ENUM:
            return st.integers(-3, 8)
        lo, hi, special = INT_RANGE[f.type]
        return st.one_of(st.sampled_from(special), st.integers(lo, hi))

    def field(self, f: Any, depth: int) -> st.SearchStrategy[Any]:
        one = self.scalar(f, depth)
        if not _repeated(f):
            return one
        return st.one_of(
            st.lists(one, max_size=6),
            st.tuples(one, st.sampled_from((100, 3000))).map(lambda t: [t[0]] * t[1]),  # huge counts
        )

    def message(self, desc: Any, depth: int = 0) -> st.SearchStrategy[Message]:
        key = (desc.full_name, depth)
        if key not in self._messages:
            cls = symbol_database.Default().GetSymbol(desc.full_name)
            if depth > 3:
                return st.just(cls())
            optional = {f.name: st.deferred(lambda f=f: self.field(f, depth)) for f in desc.fields}
            self._messages[key] = st.fixed_dictionaries({}, optional=optional).map(lambda kw: _build(cls, kw))
        return self._messages[key]

    def built(self, desc: Any, streaming: bool) -> st.SearchStrategy[Any]:
        msg = self.message(desc)
        if not streaming:
            return msg.map(lambda m: m.SerializeToString())
        plain = st.lists(msg.map(lambda m: m.SerializeToString()), max_size=4)
        if "data" not in desc.fields_by_name or "total_size" not in desc.fields_by_name:
            return plain
        cls = symbol_database.Default().GetSymbol(desc.full_name)

        @st.composite
        def framed(draw: Any) -> list[bytes]:
            """A header, then data-only chunks, with a total_size that agrees or lies."""
            header = draw(msg)
            header.data = b""
            datas = draw(st.lists(self.bytes, min_size=1, max_size=3))
            total = sum(len(d) for d in datas)
            header.total_size = draw(st.sampled_from((total, total, total - 1 if total else 1, total + 1, 0, 2**64 - 1)))
            header.data = datas[0]
            return [header.SerializeToString(), *(cls(data=d).SerializeToString() for d in datas[1:])]

        return st.one_of(plain, framed())

    def raw(self, streaming: bool) -> st.SearchStrategy[Any]:
        one = st.one_of(st.binary(max_size=300), self.lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n)))
        return st.lists(one, max_size=3) if streaming else one

    def mutated(self, seeds: list[Seed], desc: Any, streaming: bool, live: bool = False) -> st.SearchStrategy[Any]:
        """Mutations of valid requests: mostly of one field or inside one bytes field (the
        envelope still parses, so the message reaches the servicer's checks), some of the bytes
        on the wire, and for streams of the chunking. ``live``: messages into open sessions,
        mostly flipped inside their payload (size kept) so that the protocol parses them."""
        cls = symbol_database.Default().GetSymbol(desc.full_name)
        fields = list(desc.fields)
        if live:
            ops = ["inner-flip"] * 6 + ["field", "lie-total", "dup-chunk", "header-later"]
        else:
            ops = ["flip", "truncate", "extend", "splice", "renew"] + ["field"] * 3 + ["inner"] * 3
            if streaming:
                ops += ["dup-chunk", "drop-chunk", "swap-chunks"] + ["header-later", "lie-total"] * 2

        @st.composite
        def mutate(draw: Any) -> Any:
            s = draw(st.sampled_from(seeds))
            original = [bytes(c) for c in s.payload] if streaming else [bytes(s.payload)]
            chunks = original
            for op in draw(st.lists(st.sampled_from(ops), min_size=1, max_size=2)):
                chunks = self._apply(draw, op, chunks, cls, fields)
            if chunks == original:  # a mutation that changed nothing (the same value drawn): flip a bit
                chunks = self._apply(draw, "flip", chunks, cls, fields) if any(original) else [b"\xff", *chunks]
            return chunks if streaming else chunks[0]

        return mutate()

    def _apply(self, draw: Any, op: str, chunks: list[bytes], cls: Any, fields: list[Any]) -> list[bytes]:
        if op in ("dup-chunk", "drop-chunk", "swap-chunks") and not chunks:
            return chunks
        k = draw(st.integers(0, max(0, len(chunks) - 1)))
        b = chunks[k] if chunks else b""
        if op == "flip" and b:
            arr = bytearray(b)
            for pos in draw(st.lists(st.integers(0, 8 * len(b) - 1), min_size=1, max_size=8)):
                arr[pos // 8] ^= 1 << (pos % 8)
            return [*chunks[:k], bytes(arr), *chunks[k + 1:]]
        if op == "truncate":
            return [*chunks[:k], b[: draw(st.integers(0, max(0, len(b) - 1)))], *chunks[k + 1:]]
        if op == "extend":
            return [*chunks[:k], b + draw(st.binary(min_size=1, max_size=16)), *chunks[k + 1:]]
        if op == "splice" and b:
            i = draw(st.integers(0, len(b)))
            j = draw(st.integers(i, len(b)))
            return [*chunks[:k], b[:j] + b[i:j] + b[j:], *chunks[k + 1:]]
        if op == "field" and fields:
            try:
                m = cls.FromString(b)
                f = draw(st.sampled_from(fields))
                m.ClearField(f.name)
                _set(m, f.name, draw(self.field(f, 0)))
                return [*chunks[:k], m.SerializeToString(), *chunks[k + 1:]]
            except Exception:
                return chunks
        if op in ("inner", "inner-flip") and b:  # a mutation inside one bytes field: the framing stays valid
            try:
                m = cls.FromString(b)
            except Exception:
                return chunks
            blobs = [f.name for f in fields if f.type == FieldDescriptor.TYPE_BYTES and not _repeated(f) and getattr(m, f.name)]
            if not blobs:
                return chunks
            name = draw(st.sampled_from(blobs))
            inner = getattr(m, name)
            how = "flip" if op == "inner-flip" else draw(st.sampled_from(("flip", "truncate", "extend", "splice")))
            setattr(m, name, self._apply(draw, how, [inner], cls, [])[0])
            return [*chunks[:k], m.SerializeToString(), *chunks[k + 1:]]
        if op == "renew" and b:  # fresh ids: the request names a session (or job) nobody used yet
            try:
                m = cls.FromString(b)
            except Exception:
                return chunks
            names = [f.name for f in fields if f.name in ("session", "delivery_id", "job", "chunk") and getattr(m, f.name)]
            if not names:
                return chunks
            setattr(m, draw(st.sampled_from(names)), draw(st.binary(min_size=16, max_size=16)).hex())
            return [*chunks[:k], m.SerializeToString(), *chunks[k + 1:]]
        if op == "dup-chunk":
            return [*chunks[: k + 1], chunks[k], *chunks[k + 1:]]
        if op == "drop-chunk":
            return [*chunks[:k], *chunks[k + 1:]]
        if op == "swap-chunks" and len(chunks) > 1:
            j = draw(st.integers(0, len(chunks) - 1))
            out = list(chunks)
            out[k], out[j] = out[j], out[k]
            return out
        if op in ("header-later", "lie-total") and chunks:
            try:
                head = cls.FromString(chunks[0])
            except Exception:
                return chunks
            if op == "lie-total" and "total_size" in cls.DESCRIPTOR.fields_by_name:
                t = head.total_size
                head.total_size = draw(st.sampled_from([v for v in (t - 1, t + 1, 0, 2 * t, 2**64 - 1) if 0 <= v < 2**64]))
                return [head.SerializeToString(), *chunks[1:]]
            if op == "header-later":
                if len(chunks) == 1 and "data" in cls.DESCRIPTOR.fields_by_name and len(head.data) > 1:
                    cut = draw(st.integers(1, len(head.data) - 1))
                    tail = cls(data=head.data[cut:])
                    head.data = head.data[:cut]
                    chunks = [head.SerializeToString(), tail.SerializeToString()]
                if len(chunks) > 1:
                    j = draw(st.integers(1, len(chunks) - 1))
                    later = cls.FromString(chunks[j]) if _parses(cls, chunks[j]) else cls()
                    header_only = cls()
                    header_only.CopyFrom(head)
                    if "data" in cls.DESCRIPTOR.fields_by_name:
                        header_only.ClearField("data")
                    later.MergeFrom(header_only)
                    return [*chunks[:j], later.SerializeToString(), *chunks[j + 1:]]
        return chunks


def _repeated(f: Any) -> bool:
    return bool(getattr(f, "is_repeated", None)) if hasattr(f, "is_repeated") else f.label == FieldDescriptor.LABEL_REPEATED


def _parses(cls: Any, data: bytes) -> bool:
    try:
        cls.FromString(data)
    except Exception:
        return False
    return True


def _set(m: Message, name: str, value: Any) -> None:
    field = getattr(m, name)
    if isinstance(value, list):
        for v in value:
            if isinstance(v, Message):
                field.add().CopyFrom(v)
            else:
                field.append(v)
    elif isinstance(value, Message):
        field.CopyFrom(value)
    else:
        setattr(m, name, value)


def _build(cls: Any, kw: dict[str, Any]) -> Message:
    m = cls()
    for name, value in kw.items():
        _set(m, name, value)
    return m


# -- calls, expectations, the store ---------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    server: str
    path: str
    caller: str
    source: str
    payload: Any
    code: grpc.StatusCode
    details: str
    log: list[logging.LogRecord]

    def report(self) -> str:
        chunks = self.payload if isinstance(self.payload, list) else [self.payload]
        shown = " | ".join(c[:120].hex() + ("..." if len(c) > 120 else "") for c in chunks[:4])
        lines = [
            f"{self.server} {self.path} from {self.caller} ({self.source}): {self.code.name}: {self.details[:300]}",
            f"    message ({len(chunks)} chunk(s), {sum(len(c) for c in chunks)} bytes): {shown}",
        ]
        for r in self.log:
            if r.levelno >= logging.ERROR or self.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                lines.append(f"    log {r.name}: {r.getMessage()[:400]}")
                if r.exc_text:
                    lines.extend("      " + t for t in r.exc_text.splitlines()[-25:])
        return "\n".join(lines)


def _send(w: World, server: str, path: str, streaming: bool, caller: str, payload: Any) -> tuple[Any, str]:
    """One call, from the fuzzing thread; the status and details it ended with."""
    channel = w.channel(caller, server)
    try:
        if streaming:
            channel.stream_unary(path)(iter(list(payload)), timeout=CALL_TIMEOUT_S)
        else:
            channel.unary_unary(path)(payload, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


def _verdict(w: World, server: str, path: str, caller: str, roles: frozenset[str], code: Any, replay: bool) -> str:
    """'' if ``code`` is what the call deserves, else why not."""
    role = w.callers[caller]
    if role is None:
        return "" if code is grpc.StatusCode.UNAUTHENTICATED else "an unknown role must be UNAUTHENTICATED"
    if role not in roles:
        return "" if code is grpc.StatusCode.PERMISSION_DENIED else f"role {role!r} may not call it: PERMISSION_DENIED"
    if code is OK:
        if path in ADMIN_ONLY and caller != ADMIN:
            return "OK for a user who is no admin"
        if replay:
            return "another certificate's valid request was accepted"
        return ""
    return "" if code in EXPECTED else "not a clear refusal"


def _snapshot(w: World) -> dict[tuple[str, str, str], tuple[tuple[str, ...], list[tuple[Any, ...]]]]:
    """Every row of every table of every SQLite file of both servers, and the key files' hashes."""
    out: dict[tuple[str, str, str], tuple[tuple[str, ...], list[tuple[Any, ...]]]] = {}
    for role in ("sp", "psp"):
        d = w.parties.servers[role].config.data_dir
        for path in sorted(d.glob("*.sqlite")):
            with contextlib.closing(sqlite3.connect(path)) as db:
                for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
                    cur = db.execute(f'SELECT * FROM "{table}"')
                    cols = tuple(c[0] for c in cur.description)
                    out[(role, path.name, table)] = (cols, sorted(cur.fetchall(), key=repr))
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".bin", ".json") and p.name != "stats.json")
        out[(role, "files", "")] = (("name", "sha256"), [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in files])
    return out


Owned = Callable[[str, str, str, dict[str, Any]], bool]


def _owned(w: World, accepted: list[Outcome]) -> Owned:
    """The rows accepted (OK) calls may legitimately have written, as a predicate on
    (server, file, table, row). A fuzzed write can pass: a static table is any well-formed
    CSV, a bit flip in an admin's key (a job), in a customer's record (another point on the
    curve) or in a product name is often another valid request. Such a call was a valid
    request from a certificate allowed to make it; what it owns is excluded, and nothing
    else (an upload's proofs make a fuzzed UserGateway.Upload fail, but were one to pass,
    its rows would be its sender's)."""
    rules: list[Owned] = []
    for o in accepted:
        if o.path not in WRITES and o.path != "/mpc.v1.UserGateway/Fetch":
            continue
        req_cls = _request_class(w, o.server, o.path)
        first = o.payload[0] if isinstance(o.payload, list) else o.payload
        head = req_cls.FromString(first)
        who = o.caller
        if o.path == "/mpc.v1.UserGateway/Upload":
            kind = head.kind
            rules.append(lambda s, f, t, r, who=who, kind=kind: (
                (t == "records" and (r["user_id"], r["kind"]) == (who, kind))
                or (t == "results" and r["user_id"] == who and r.get("source_kind") == kind)
                or (kind == REC_KIND and t == "meta" and r["key"] == DATA_VERSION_KEY)
            ))
        elif o.path == "/mpc.v1.UserGateway/Fetch" and head.kind == RESULT_KIND:
            # A fetch of recommendations recomputes them once the data changed (an accepted upload).
            rules.append(lambda s, f, t, r, who=who: (
                (t == "results" and (r["user_id"], r["kind"]) == (who, RESULT_KIND))
                or (t == "meta" and r["key"] == RESULT_META_PREFIX + who)
            ))
        elif o.path in ("/mpc.v1.Churn/UploadCustomers", "/mpc.v1.Churn/UploadPlanShares"):
            table = "customers" if o.path.endswith("UploadCustomers") else "plan_shares"
            ids = frozenset(head.customer_ids)
            rules.append(lambda s, f, t, r, ids=ids, table=table: f == "churn.sqlite" and t == table and r["id"] in ids)
        elif o.path == "/mpc.v1.Catalog/SetStaticTable":
            rules.append(lambda s, f, t, r: t == "static_recs" or (t == "meta" and r["key"] == STATIC_VERSION_KEY))
        elif o.path == "/mpc.v1.Catalog/PublishCopurchase":
            rules.append(lambda s, f, t, r: t == "meta" and r["key"] == PUBLISHED_KEY)
    return lambda s, f, t, r: any(rule(s, f, t, r) for rule in rules)


def _request_class(w: World, server: str, path: str) -> Any:
    _, service, method = path.split("/")
    desc = w.registered[server][service][0].methods_by_name[method]
    return symbol_database.Default().GetSymbol(desc.input_type.full_name)


def _compare(before: Any, after: Any, owned: Owned) -> list[str]:
    problems = []
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            problems.append(f"{key}: table {'created' if key in after else 'dropped'}")
            continue
        cols, rows_b = before[key]
        cols_a, rows_a = after[key]
        if cols != cols_a:
            problems.append(f"{key}: columns changed")
            continue
        keep = [r for r in rows_b if not owned(*key, dict(zip(cols, r, strict=True)))]
        now = [r for r in rows_a if not owned(*key, dict(zip(cols, r, strict=True)))]
        if keep != now:
            gone = [r for r in keep if r not in now][:3]
            new = [r for r in now if r not in keep][:3]
            problems.append(f"{key}: rows changed; gone {_short(gone)}, new {_short(new)}")
    return problems


def _short(rows: list[tuple[Any, ...]]) -> str:
    return repr([tuple(v[:16] if isinstance(v, bytes) else v for v in r) for r in rows])[:600]


async def _check_static(w: World, accepted: list[Outcome], before: Any, after: Any) -> list[str]:
    """An accepted SetStaticTable is exact: the table is the last accepted CSV, its version
    counts every accepted one."""
    sets = [o for o in accepted if o.path == "/mpc.v1.Catalog/SetStaticTable"]
    if not sets:
        return []
    want = sorted(parse_static_table(catalog_pb2.StaticTableUpload.FromString(sets[-1].payload).csv), key=repr)
    got = after[("sp", "store.sqlite", "static_recs")][1]
    version = {r[0]: r[1] for r in before[("sp", "store.sqlite", "meta")][1]}.get(STATIC_VERSION_KEY, "0")
    version_now = {r[0]: r[1] for r in after[("sp", "store.sqlite", "meta")][1]}.get(STATIC_VERSION_KEY)
    problems = []
    if sorted(got, key=repr) != want:
        problems.append("static_recs is not the last accepted table")
    if int(version_now or 0) != int(version) + len(sets):
        problems.append(f"static table version {version_now}, expected {int(version) + len(sets)}")
    return problems


async def _settle(w: World) -> None:
    """Let the jobs fuzzed calls started finish, then end the sessions fuzzed StartSessions
    opened (as the peer would), so that nothing bleeds into the next test."""
    churn = w.parties.sp.plugins["churn"]

    async def until(done: Callable[[], bool]) -> None:
        t0 = time.monotonic()
        while not done() and time.monotonic() - t0 < DEADLINE_S + 40:
            await asyncio.sleep(0.2)

    await until(lambda: all(
        j.finished for j in (*churn.jobs.values(), *(churn.planning.jobs.values() if churn.planning else ()))
    ))
    for role, server in w.parties.servers.items():
        await asyncio.to_thread(_abort_sessions, w, role, sorted(server.active_sessions))
    await until(lambda: not any(s.active_sessions for s in w.parties.servers.values()))


async def _still_serving(w: World) -> None:
    """Both servers answer, and a delivery through both decrypts bob's untouched record."""
    bob = w.clients["bob"]
    assert await bob.fetch("sum") == [4 + 1 + 4]  # bob uploaded "values" [4, 1, 4]
    for server in ("sp", "psp"):
        info = await w.parties.servers[server].peer_stub.call("GetPublicKey", peer_pb2.PublicKeyRequest(), timeout=5.0)
        assert info.fingerprint


@contextlib.contextmanager
def _quiet(w: World) -> Any:
    """Thousands of refusals are logged while fuzzing: they go to the failure report (the lines of
    each offending call), not to pytest's captured log."""
    loggers = [logging.getLogger(n) for n in ("mpc", "crm", "grpc")]
    handler = _Capture(w.log)
    saved = [(lg, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, propagate in saved:
            lg.removeHandler(handler)
            lg.propagate = propagate


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-12:])


def _error_names() -> frozenset[str]:
    out, todo = set(), [MpcError]
    while todo:
        cls = todo.pop()
        out.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return frozenset(out)


MPC_ERRORS = _error_names()
"""Names of the project's exception classes (a job's error names its class)."""


# -- the tests ------------------------------------------------------------------------------------
async def test_every_registered_method_is_fuzzed(world: World) -> None:
    """The plan is every method the servers registered; it covers every service of mpc.v1 and
    the methods known today, and the services a deployment has are where they belong."""
    reg = world.registered
    paths = {f"/{s}/{m}" for regs in reg.values() for s, (d, _) in regs.items() for m in d.methods_by_name}
    assert paths and paths >= KNOWN_METHODS, sorted(KNOWN_METHODS - paths)
    assert set(SERVICES) == {s for regs in reg.values() for s in regs}, "a service of mpc.v1 no server registers"
    assert {"mpc.v1.Peer", "mpc.v1.UserGateway", "mpc.v1.Churn", "mpc.v1.Catalog"} <= set(reg["sp"])
    assert {"mpc.v1.Peer", "mpc.v1.Delivery"} <= set(reg["psp"])
    # Most methods have valid requests to mutate (those without have only empty requests).
    assert len(world.seeds) >= 20, sorted(world.seeds)


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_fuzz_service(world: World, service: str) -> None:
    w = world
    servers = [s for s in ("sp", "psp") if service in w.registered[s]]
    assert servers, f"{service} is registered by no server"
    strategies = Strategies(w)
    before = _snapshot(w)
    background = len(w.background)
    churn = w.parties.sp.plugins["churn"]
    old_jobs = {*churn.jobs, *(churn.planning.jobs if churn.planning else ())}
    outcomes: list[Outcome] = []
    failures: list[tuple[Outcome, str]] = []
    t0 = time.perf_counter()

    def judge(server: str, path: str, caller: str, roles: frozenset[str], source: str, payload: Any,
              streaming: bool, replay: bool = False, unchanged: bool = False) -> None:
        mark = len(w.log)
        old = _snapshot(w) if unchanged else None
        code, details = _send(w, server, path, streaming, caller, payload)
        o = Outcome(server, path, caller, source, payload, code, details, list(w.log[mark:]))
        outcomes.append(o)
        why = _verdict(w, server, path, caller, roles, code, replay)
        if old is not None and code is not OK:
            time.sleep(0.1)  # a write the handler started in a thread lands within this
            changed = _compare(old, _snapshot(w), lambda *_: False)
            why = why or (f"{code.name}, yet the store changed: {changed[0]}" if changed else "")
        if why:
            failures.append((o, why))

    def fuzz(server: str, method: Any, roles: frozenset[str], caller: str, live: list[Seed]) -> None:
        path = f"/{service}/{method.name}"
        streaming = method.client_streaming
        seeds = w.seeds.get((server, path), [])
        # Weights: raw bytes one part in five (in three without valid requests to mutate), the rest
        # messages built from the descriptor and mutations of valid requests.
        sources = [
            ("raw", strategies.raw(streaming)),
            ("built", strategies.built(method.input_type, streaming)),
            ("built", strategies.built(method.input_type, streaming)),
        ]
        if seeds:
            sources += [("mutated", strategies.mutated(seeds, method.input_type, streaming))] * 2
        admitted = w.callers[caller] in roles
        n = EXAMPLES_OF.get(method.name, EXAMPLES) if admitted else EXAMPLES_DENIED
        runs = [(sources, n)]
        if live:  # messages into the open sessions: a run of their own
            runs.append(([("mutated live", strategies.mutated(live, method.input_type, streaming, live=True))], n))
        for k, (run, examples) in enumerate(runs):

            @seed(zlib.crc32(f"{server}{path}{caller}{k}".encode()))
            @settings(max_examples=examples, deadline=None, database=None, phases=(Phase.generate,),
                      suppress_health_check=list(HealthCheck))
            @given(st.one_of(*(s.map(lambda m, name=name: (name, m)) for name, s in run)))
            def one(example: tuple[str, Any]) -> None:
                judge(server, path, caller, roles, example[0], example[1], streaming)

            one()
        for s in seeds:  # every valid request, as it is, from every other certificate
            if s.caller != caller:
                judge(server, path, caller, roles, f"replay of {s.caller}'s {s.note}", s.payload, streaming,
                      replay=path in SENDER_BOUND)
        for s in [s for s in seeds if s.caller == caller][:2] * 2:  # ... and from its own, then too much
            # gRPC refuses the last message (RESOURCE_EXHAUSTED to the client): then nothing of the
            # valid part before it may be stored, checked call by call (rows that fuzzed writes
            # own are excluded from the comparison at the end, and these would hide among them).
            judge(server, path, caller, roles, f"{s.note}, then a message over the limit",
                  _oversize(method.input_type, s.payload, streaming), streaming, unchanged=streaming)

    def run_all() -> None:
        for server in servers:
            desc, allowed = w.registered[server][service]
            for method in desc.methods:
                live: list[Seed] = []
                sessions: list[str] = []
                if f"/{service}/{method.name}" == "/mpc.v1.Peer/Deliver":
                    live, sessions = _live_sessions(w, server)
                for caller in w.callers:
                    fuzz(server, method, allowed[method.name], caller, live)
                _abort_sessions(w, server, sessions)

    with _quiet(w):
        await asyncio.to_thread(run_all)
    elapsed = time.perf_counter() - t0
    await _settle(w)
    await _still_serving(w)
    after = _snapshot(w)
    accepted = [o for o in outcomes if o.code is OK]
    problems = _compare(before, after, _owned(w, accepted)) + await _check_static(w, accepted, before, after)
    codes: dict[str, int] = {}
    for o in outcomes:
        codes[o.code.name] = codes.get(o.code.name, 0) + 1
    print(f"{service}: {len(outcomes)} calls on {servers} in {elapsed:.1f} s: {codes}")
    table: dict[tuple[str, str, str], dict[str, int]] = {}
    for o in outcomes:
        src = "replay" if o.source.startswith("replay") else o.source
        row = table.setdefault((o.server, o.path, src), {})
        row[o.code.name] = row.get(o.code.name, 0) + 1
    for (server, path, src), row in sorted(table.items()):
        print(f"    {server} {path} {src}: {row}")
    if os.environ.get("RPC_FUZZ_DUMP"):  # every call, one JSON line each, for a closer look
        with open(os.environ["RPC_FUZZ_DUMP"], "a") as fh:
            for o in outcomes:
                chunks = o.payload if isinstance(o.payload, list) else [o.payload]
                fh.write(json.dumps([o.server, o.path, o.caller, o.source, o.code.name, o.details[:300],
                                     [c.hex() for c in chunks]]) + "\n")
    report = "\n".join(f"[{why}]\n{o.report()}" for o, why in failures[:40])
    assert not failures, f"{len(failures)} of {len(outcomes)} calls answered badly:\n{report}"
    crashed = [f"{server}: {what}: {_trace(exc)}" for server, what, exc in w.background[background:]
               if not isinstance(exc, MpcError)]
    jobs = [*churn.jobs.values(), *(churn.planning.jobs.values() if churn.planning else ())]
    crashed += [f"sp: job {j.job[:8]}: {j.error}" for j in jobs
                if j.job not in old_jobs and j.error and j.error.split(":")[0] not in MPC_ERRORS]
    assert not crashed, "background tasks the fuzzed calls started crashed:\n" + "\n".join(crashed)
    assert not problems, "stores changed:\n" + "\n".join(problems)

