"""Issue #12, an owner for every record: who may write which churn record, as a hostile client sees it.

A customer's churn record and plan shares are written by a front end named in the
SP's ``frontends`` (certificate role "frontend"), or replaced by that customer itself
(a "user" certificate whose name is the customer id) once a front end created them.
Everything else is refused with PERMISSION_DENIED, and a refused upload stores nothing.

The attacker here speaks raw gRPC (hand-built ``CustomerChunk`` messages through
:class:`~mpc.parties.rpc.RawStub`) with her own certificate, signed by the deployment's
CA like everyone's. The stored rows are read straight from the SP's SQLite file, every
column, so "unchanged" means byte for byte, timestamp included.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from crm.churn import plan_private as pp
from crm.churn import private as P
from crm.churn.model import TreeModel, encode_row
from mpc.comparison.pools import bit_encryption_pool
from mpc.errors import AuthorizationError, NotFound
from mpc.parties import rpc
from mpc.parties.certs import CertAuthority, PeerIdentity
from mpc.parties.user import UserConfig
from mpc.v1 import catalog_pb2, churn_pb2

HERE = Path(__file__).resolve().parents[1]
"""The tests/ directory (its data/ folder)."""
HAND_MODEL = HERE / "data" / "churn_hand_model.json"
COSTS = 'profit = "12 * MonthlyCharges"\n[soft.Contract]\n"Month-to-month -> One year" = 150\n'
CHURN = churn_pb2.DESCRIPTOR.services_by_name["Churn"]
TABLES = ("customers", "plan_shares")
ADMINS = ("alice", "bob")
FRONTEND = "fe0"  # named in the SP's frontends
ROGUE = "fe9"  # a front-end certificate from the same CA, not named in the SP's config


def _row(cid: str, tenure: int, charges: str) -> dict[str, str]:
    return {"customerID": cid, "gender": "Female", "tenure": str(tenure),
            "Contract": "Month-to-month", "MonthlyCharges": charges}


@dataclasses.dataclass
class Churn:
    """A running SP (churn model and costs) and PSP, the records anyone could build, the certificates."""

    parties: Any
    model: TreeModel
    extra: Path  # certificates issued for this test (the attacker's among them)
    version: dict[str, int]  # table -> layout version
    psp_key: bytes

    @property
    def db(self) -> Path:
        return self.parties.sp.config.data_dir / "churn.sqlite"

    def rows(self, table: str) -> dict[str, tuple[Any, ...]]:
        """Every stored row of ``table``, every column, by customer id."""
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            return {r[0]: tuple(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")}

    def snapshot(self) -> dict[str, dict[str, tuple[Any, ...]]]:
        return {t: self.rows(t) for t in TABLES}

    def record(self, table: str, cid: str, tenure: int = 5, charges: str = "80") -> bytes:
        """A well-formed record of customer ``cid`` for ``table``, as its own device would make it."""
        row = _row(cid, tenure, charges)
        ints = encode_row(self.model, row)
        churn = self.parties.sp.plugins["churn"]
        if table == "customers":
            return P.encrypt_record(churn.layout, ints, bit_encryption_pool(self.psp_key))
        lay = churn.planning.layout
        return pp.customer_record(lay, self.version[table], self.psp_key, cid, pp.layout_bits(lay, row, ints))

    def stub(self, name: str, to: str = "sp", service: Any = CHURN) -> rpc.RawStub:
        """A raw stub presenting the certificate ``name`` (from this test's extra certificates)."""
        certs = self.extra if (self.extra / f"{name}.pem").exists() else None
        return rpc.RawStub(self.parties.raw_channel(name, to, certs=certs), service, to)

    def client_config(self, name: str) -> UserConfig:
        cfg = self.parties.user_config("alice")
        return dataclasses.replace(
            cfg, name=name,
            tls=rpc.TlsFiles(cfg.tls.ca, self.extra / f"{name}.pem", self.extra / f"{name}.key"),
        )

    async def upload(self, who: str, table: str, records: dict[str, bytes], version: int | None = None) -> Any:
        """A hand-built upload of ``records`` (customer id -> record) into ``table`` as ``who``."""
        blob = b"".join(records.values())
        method = "UploadCustomers" if table == "customers" else "UploadPlanShares"
        first = churn_pb2.CustomerChunk(
            layout_version=self.version[table] if version is None else version,
            customer_ids=list(records), total_size=len(blob), data=blob,
        )
        return await self.stub(who).stream(method, [first], timeout=20.0)


async def _seed(churn: Churn, table: str, records: dict[str, bytes]) -> None:
    """Create customers the way a deployment does: the named front end uploads them."""
    reply = await churn.upload(FRONTEND, table, records)
    assert reply.stored == len(records)


@pytest_asyncio.fixture
async def churn(idle_parties: Any, tmp_path: Path) -> Churn:
    (tmp_path / "costs.toml").write_text(COSTS)
    idle_parties.changes["sp"] = {
        "churn_model": HAND_MODEL, "churn_costs": tmp_path / "costs.toml",
        "admins": ADMINS, "frontends": (FRONTEND,), "workers": 1,
    }
    extra = tmp_path / "extra-certs"
    ca = dataclasses.replace(CertAuthority.load(idle_parties.dep.root / "certs"), out_dir=extra)
    ca.issue("user", "mallory")
    ca.issue("frontend", FRONTEND)
    ca.issue("frontend", ROGUE)
    await idle_parties.start()
    sp = idle_parties.sp.plugins["churn"]
    c = Churn(
        idle_parties, TreeModel.load(HAND_MODEL), extra,
        {"customers": sp.layout.version, "plan_shares": sp.planning.version},
        idle_parties.psp.curve_key.public_key.to_bytes(),
    )
    for table in TABLES:
        await _seed(c, table, {cid: c.record(table, cid) for cid in ("alice", "bob")})
    return c


def _denied(info: pytest.ExceptionInfo[AuthorizationError]) -> None:
    assert getattr(info.value, "status", None) == grpc.StatusCode.PERMISSION_DENIED, info.value


# -- 1: another customer's record ------------------------------------------------------------
async def test_a_user_cannot_replace_another_customers_record(churn: Churn, caplog: Any) -> None:
    before = churn.snapshot()
    assert "alice" in before["customers"]
    forged = churn.record("customers", "alice", tenure=60, charges="20")  # mallory's idea of alice
    with pytest.raises(AuthorizationError) as info:
        await churn.upload("mallory", "customers", {"alice": forged})
    _denied(info)
    assert churn.snapshot() == before  # alice's row byte for byte, timestamp included
    assert any(  # the SP's log says who tried what
        "UploadCustomers" in r.getMessage() and "user:mallory" in r.getMessage() and "PERMISSION_DENIED" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


# -- 2: creating customers -----------------------------------------------------------------
@pytest.mark.parametrize("cid", ["ghost", "mallory"])
async def test_a_user_creates_no_customer(churn: Churn, cid: str) -> None:
    """Neither a made-up id nor her own: only a front end creates a customer."""
    before = churn.snapshot()
    with pytest.raises(AuthorizationError) as info:
        await churn.upload("mallory", "customers", {cid: churn.record("customers", cid)})
    _denied(info)
    assert churn.snapshot() == before and cid not in churn.rows("customers")


# -- 3: the same on the plan shares --------------------------------------------------------------
async def test_a_user_cannot_replace_another_customers_plan_shares(churn: Churn) -> None:
    before = churn.snapshot()
    assert "alice" in before["plan_shares"]
    with pytest.raises(AuthorizationError) as info:
        await churn.upload("mallory", "plan_shares", {"alice": churn.record("plan_shares", "alice", 60, "20")})
    _denied(info)
    assert churn.snapshot() == before


@pytest.mark.parametrize("cid", ["ghost", "mallory"])
async def test_a_user_creates_no_plan_shares(churn: Churn, cid: str) -> None:
    before = churn.snapshot()
    with pytest.raises(AuthorizationError) as info:
        await churn.upload("mallory", "plan_shares", {cid: churn.record("plan_shares", cid)})
    _denied(info)
    assert churn.snapshot() == before and cid not in churn.rows("plan_shares")


async def test_a_customer_with_a_record_creates_no_plan_shares(churn: Churn) -> None:
    """Each store on its own: a churn record created by a front end is no licence to create
    plan shares (and the reverse)."""
    await _seed(churn, "customers", {"carol": churn.record("customers", "carol")})
    await _seed(churn, "plan_shares", {"dave": churn.record("plan_shares", "dave")})
    ca = dataclasses.replace(CertAuthority.load(churn.parties.dep.root / "certs"), out_dir=churn.extra)
    ca.issue("user", "carol")
    ca.issue("user", "dave")
    before = churn.snapshot()
    for who, table in (("carol", "plan_shares"), ("dave", "customers")):
        with pytest.raises(AuthorizationError) as info:
            await churn.upload(who, table, {who: churn.record(table, who)})
        _denied(info)
    assert churn.snapshot() == before


# -- 4: who may write -----------------------------------------------------------------------------
@pytest.mark.parametrize("table", TABLES)
async def test_only_a_named_front_end_writes_for_others_and_a_user_replaces_her_own(churn: Churn, table: str) -> None:
    before = churn.snapshot()
    for records in ({"ghost": churn.record(table, "ghost")}, {"bob": churn.record(table, "bob", 60, "20")}):
        with pytest.raises(AuthorizationError) as info:  # a front end the SP does not name
            await churn.upload(ROGUE, table, records)
        _denied(info)
    assert churn.snapshot() == before

    new_bob, carol = churn.record(table, "bob", 60, "20"), churn.record(table, "carol")
    reply = await churn.upload(FRONTEND, table, {"bob": new_bob, "carol": carol})
    assert reply.stored == 2
    rows = churn.rows(table)
    assert rows["bob"][2] == new_bob and rows["carol"][2] == carol
    assert rows["alice"] == before[table]["alice"]
    store = churn.parties.sp.plugins["churn"].store if table == "customers" else churn.parties.sp.plugins["churn"].planning.store
    assert store.writer("carol") == store.writer("bob") == f"frontend:{FRONTEND}"  # bound to its writer

    own = churn.record(table, "alice", 30, "70")
    reply = await churn.upload("alice", table, {"alice": own})  # alice's own certificate (from conftest)
    assert reply.stored == 1
    after = churn.rows(table)
    assert after["alice"][2] == own and {k: v for k, v in after.items() if k != "alice"} == {
        k: v for k, v in rows.items() if k != "alice"
    }
    assert store.writer("alice") == "user:alice" and store.writer("ghost") is None


async def test_the_front_end_reads_the_layouts_and_the_psps_key(churn: Churn) -> None:
    from crm.churn.service import ChurnClient

    async with ChurnClient(churn.client_config(FRONTEND)) as front:
        assert await front.scoring_key(wait_s=5.0) == churn.psp_key  # from the PSP itself
        assert (await front.layout())[1] == churn.version["customers"]
        assert (await front.plan_layout())[1] == churn.version["plan_shares"]


# -- 5: all or nothing ----------------------------------------------------------------------------
@pytest.mark.parametrize("table", TABLES)
async def test_a_mixed_upload_is_refused_as_a_whole(churn: Churn, table: str) -> None:
    """alice's own record (which she may replace) with bob's, or with a new id: nothing stored."""
    before = churn.snapshot()
    for other in ("bob", "ghost"):
        records = {"alice": churn.record(table, "alice", 30, "70"), other: churn.record(table, other, 60, "20")}
        with pytest.raises(AuthorizationError) as info:
            await churn.upload("alice", table, records)
        _denied(info)
        with pytest.raises(AuthorizationError) as info:  # the other order
            await churn.upload("alice", table, dict(reversed(records.items())))
        _denied(info)
    assert churn.snapshot() == before


# -- the admin methods --------------------------------------------------------------------------
async def test_a_front_end_is_no_admin_even_named_like_one(churn: Churn) -> None:
    ca = dataclasses.replace(CertAuthority.load(churn.parties.dep.root / "certs"), out_dir=churn.extra / "x")
    ca.issue("frontend", "alice")  # a front end named like the admin alice
    key = P.admin_key_bytes(X25519PrivateKey.generate())
    for name, certs in ((FRONTEND, churn.extra), ("alice", churn.extra / "x")):
        stub = rpc.RawStub(churn.parties.raw_channel(name, "sp", certs=certs), CHURN, "sp")
        calls = [
            ("StartScoring", churn_pb2.ScoreRequest(admin_key=key)),
            ("ScoringStatus", churn_pb2.ScoreJobRequest(job="x")),
            ("StartPlanning", churn_pb2.PlanRequest(admin_key=key)),
            ("PlanningStatus", churn_pb2.PlanJobRequest(job="x")),
        ]
        for method, req in calls:
            with pytest.raises(AuthorizationError) as info:
                await stub.call(method, req, timeout=10.0)
            _denied(info)
        cat = rpc.RawStub(churn.parties.raw_channel(name, "sp", certs=certs),
                          catalog_pb2.DESCRIPTOR.services_by_name["Catalog"], "sp")
        with pytest.raises(AuthorizationError) as info:
            await cat.call("SetStaticTable", catalog_pb2.StaticTableUpload(csv="a,b,1\n"), timeout=10.0)
        _denied(info)
    for method, req in calls:  # a user not named in admins
        with pytest.raises(AuthorizationError) as info:
            await churn.stub("mallory").call(method, req, timeout=10.0)
        _denied(info)
    with pytest.raises(AuthorizationError):  # the check itself compares the role too
        churn.parties.sp.plugins["churn"].check_admin(PeerIdentity("frontend", "alice"))
    with pytest.raises(AuthorizationError):
        churn.parties.sp.plugins["catalog"].require_admin("alice", "set the static table", role="frontend")


async def test_an_admin_reads_only_her_own_jobs(churn: Churn) -> None:
    """A job's results are the admin's who started it: another admin gets NOT_FOUND."""
    adm = X25519PrivateKey.generate()
    alice, bob = churn.stub("alice"), churn.stub("bob")
    job = await alice.call("StartScoring", churn_pb2.ScoreRequest(admin_key=P.admin_key_bytes(adm)), timeout=10.0)
    with pytest.raises(NotFound) as info:
        await bob.call("ScoringStatus", churn_pb2.ScoreJobRequest(job=job.job), timeout=10.0)
    assert getattr(info.value, "status", None) == grpc.StatusCode.NOT_FOUND, info.value
    pjob = await alice.call("StartPlanning", churn_pb2.PlanRequest(admin_key=P.admin_key_bytes(adm)), timeout=10.0)
    with pytest.raises(NotFound) as info:
        await bob.call("PlanningStatus", churn_pb2.PlanJobRequest(job=pjob.job), timeout=10.0)
    assert getattr(info.value, "status", None) == grpc.StatusCode.NOT_FOUND, info.value
    for _ in range(300):  # alice's own jobs are hers to read
        st = await alice.call("ScoringStatus", churn_pb2.ScoreJobRequest(job=job.job), timeout=10.0)
        pst = await alice.call("PlanningStatus", churn_pb2.PlanJobRequest(job=pjob.job), timeout=10.0)
        if st.finished and pst.finished:
            break
        await asyncio.sleep(0.1)
    assert st.finished and not st.error and st.total == 2, st.error
    assert pst.finished and not pst.error and pst.total == 2, pst.error


def test_the_sp_config_names_front_ends(tmp_path: Path) -> None:
    from mpc.parties.certs import identity_from_pem
    from mpc.parties.config import PartyConfig
    from mpc.parties.deploy import write_deployment

    dep = write_deployment(tmp_path, ["admin"], frontends=["fe0", "fe1"], admins=["admin"], key_bits=1024)
    sp = PartyConfig.load(dep.sp_config)
    assert sp.frontends == ("fe0", "fe1") and PartyConfig.load(dep.psp_config).frontends == ()
    assert set(dep.frontend_configs) == {"fe0", "fe1"} and set(dep.user_configs) == {"admin"}
    pem = (tmp_path / "certs" / "fe0.pem").read_bytes()
    assert identity_from_pem(pem) == PeerIdentity("frontend", "fe0")
    assert UserConfig.load(dep.frontend_configs["fe0"]).name == "fe0"


def test_front_end_certificates(tmp_path: Path, capsys: Any) -> None:
    """Role "frontend": issued by create_deployment and the certs CLI, client-only, a name of its own."""
    import argparse

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from mpc.errors import ParameterError
    from mpc.parties import certs_cli
    from mpc.parties.certs import create_deployment, identity_from_pem

    issued = create_deployment(tmp_path / "c", ["u0001"], frontends=["fe0"])
    assert issued["fe0"].identity == PeerIdentity("frontend", "fe0")
    cert = x509.load_pem_x509_certificate(issued["fe0"].cert_pem)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    with pytest.raises(ParameterError, match="twice"):  # one name, one pair of files
        create_deployment(tmp_path / "d", ["fe0"], frontends=["FE0"])
    with pytest.raises(ParameterError, match="names a server"):
        PeerIdentity("frontend", "sp")
    with pytest.raises(ParameterError, match="host names"):
        CertAuthority.load(tmp_path / "c").issue("frontend", "fe1", hosts=["localhost"])
    assert not (tmp_path / "d").exists()  # refused before anything was written

    parser = argparse.ArgumentParser()
    certs_cli.add_arguments(parser)
    out = tmp_path / "cli"
    assert certs_cli.run(parser.parse_args(["--out", str(out), "--users", "1", "--frontends", "fe0,fe1"])) == 0
    assert "frontend 'fe1'" in capsys.readouterr().out
    assert identity_from_pem((out / "fe1.pem").read_bytes()) == PeerIdentity("frontend", "fe1")


def test_the_store_keeps_writers_and_replaces_only_whole(tmp_path: Path) -> None:
    """A store from before writers were kept gains the column; a replace-only write with one
    missing id writes nothing."""
    from crm.churn.service import CustomerStore

    path = tmp_path / "churn.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:  # the old schema, one old row
        db.execute("CREATE TABLE customers (id TEXT PRIMARY KEY, layout INTEGER NOT NULL, "
                   "record BLOB NOT NULL, updated REAL NOT NULL)")
        db.execute("INSERT INTO customers VALUES ('alice', 1, x'00', 0)")
        db.commit()
    store = CustomerStore(path)
    try:
        assert store.writer("alice") == ""  # unknown
        with pytest.raises(AuthorizationError, match="'bob'"):
            store.put_many(1, [("alice", b"\x01"), ("bob", b"\x02")], "user:alice", replace_only=True)
        assert store.ids(1) == ["alice"] and store.records(["alice"], 1) == [b"\x00"]
        store.put_many(1, [("alice", b"\x03")], "user:alice", replace_only=True)
        assert store.records(["alice"], 1) == [b"\x03"] and store.writer("alice") == "user:alice"
    finally:
        store.close()
