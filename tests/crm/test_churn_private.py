"""Private churn scoring: the maths in memory, the protocol, the SP's Churn service on live servers.

Correctness is against the plaintext model (model.json walked on the raw or the
encoded values); security checks look at exactly what the PSP receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.churn import private as P
from crm.churn.model import TreeModel, encode_row
from crm.churn.protocol import aad, psp_inputs, sp_prepare
from mpc.comparison import ec
from mpc.comparison.pools import bit_encryption_pool
from mpc.elgamal.curve import CurvePrivateKey
from mpc.errors import AuthorizationError, EncodingError, NotFound, ParameterError, ProtocolError
from mpc.protocol import run_local
from mpc.v1 import churn_pb2

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
TELCO = DATA / "telco-churn.csv"

PSP_KEY = CurvePrivateKey.generate()
PSP_PUB = PSP_KEY.public_key.to_bytes()
POOL = bit_encryption_pool(PSP_PUB)
RND = P.SpRandomness(PSP_PUB)

FEATURES = ["age", "spend", "plan=basic", "plan=gold", "plan=pro"]
ENCODING = {"age": {"scale": 1, "bits": 7}, "spend": {"scale": 100, "bits": 14}}
MAXV = {"age": (1 << 7) - 2, "spend": (1 << 14) - 2}


def _model(nodes: list[dict[str, Any]]) -> TreeModel:
    return TreeModel.from_dict(
        {"format": "mpc-crm/churn-tree", "version": 1, "target": "loyal", "features": FEATURES,
         "encoding": ENCODING, "root": 0, "nodes": nodes}
    )


def _random_tree(rng: random.Random, max_depth: int) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []

    def grow(depth: int) -> int:
        i = len(nodes)
        nodes.append({})
        if depth == max_depth or (depth > 0 and rng.random() < 0.3):
            loyal, churn = rng.randrange(60), rng.randrange(60)
            nodes[i] = {"loyal": loyal, "churn": churn, "p_loyal": (loyal + 1) / (loyal + churn + 2)}
            return i
        f = rng.choice(FEATURES)
        if f in ENCODING:
            scale = ENCODING[f]["scale"]
            edge = rng.choice([-1, 0, MAXV[f] - 1, MAXV[f], MAXV[f] + 5, rng.randrange(MAXV[f])])
            t = (edge + 0.5) / scale
        else:
            t = 0.5
        left, right = grow(depth + 1), grow(depth + 1)
        nodes[i] = {"feature": f, "threshold": t, "left": left, "right": right}
        return i

    grow(0)
    return nodes


def _customer(rng: random.Random) -> dict[str, int]:
    plan = rng.choice(["basic", "gold", "pro", "none"])
    out = {f"plan={p}": int(plan == p) for p in ("basic", "gold", "pro")}
    for f, top in MAXV.items():
        out[f] = rng.choice([0, 1, top, top - 1, rng.randrange(top + 1)])
    return out


def _score(model: TreeModel, customers: list[dict[str, int]]) -> tuple[list[Fraction], dict[str, Any]]:
    """Upload, SP, PSP and admin steps in memory; also returns what the PSP saw."""
    layout = P.UploadLayout.from_model(model)
    spec = P.TreeSpec.from_model(model, layout)
    records = [P.encrypt_record(layout, c, POOL) for c in customers]
    seed = P.new_seed()
    nodes, tables = sp_prepare(spec, layout, records, seed, RND)
    results = P.psp_walk_many(spec.depth, layout.max_terms, len(records), nodes, tables, PSP_KEY)
    admin = X25519PrivateKey.generate()
    box = P.seal(P.admin_key_bytes(admin), results, aad("c", len(records)))
    opened = P.open_scores(P.unseal(admin, box, aad("c", len(records))), seed, len(records), spec.depth)
    return opened, {"nodes": nodes, "tables": tables, "results": results, "spec": spec, "layout": layout}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), depth=st.integers(1, 4))
def test_private_score_equals_the_tree_on_random_trees_and_edge_values(seed: int, depth: int) -> None:
    rng = random.Random(seed)
    model = _model(_random_tree(rng, depth))
    customers = [_customer(rng) for _ in range(4)]
    got, _ = _score(model, customers)
    assert got == [model.p_loyal_exact(model.leaf_of_encoded(c)) for c in customers]


@pytest.fixture(scope="module")
def telco_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[TreeModel, Path]:
    from crm.churn.data import load_customers
    from crm.churn.model import train

    model = train(load_customers(TELCO)).model
    path = tmp_path_factory.mktemp("churn") / "model.json"
    model.save(path)
    return TreeModel.load(path), path


def test_telco_slice_equals_model_json(telco_model: tuple[TreeModel, Path]) -> None:
    from crm.churn.data import load_customers

    model, _ = telco_model
    cs = load_customers(TELCO)
    rows = cs.rows[:40]
    got, seen = _score(model, [encode_row(model, r) for r in rows])
    assert got == [model.p_loyal_exact(model.leaf_of(r)) for r in rows]
    assert seen["spec"].depth == model.depth


def test_upload_layout_has_no_thresholds_and_a_stable_version(telco_model: tuple[TreeModel, Path]) -> None:
    model, _ = telco_model
    layout = P.UploadLayout.from_model(model)
    text = repr(layout.to_dict())
    assert "threshold" not in text
    assert P.UploadLayout.from_dict(layout.to_dict()).version == layout.version
    other = dataclasses.replace(layout, digit_bits=2)
    assert other.version != layout.version


# -- what the PSP sees -------------------------------------------------------------------


def _nodes_of(blob: bytes, layout: P.UploadLayout) -> list[list[bytes]]:
    per = layout.max_terms * P.W
    return [[blob[o + k * P.W : o + (k + 1) * P.W] for k in range(layout.max_terms)] for o in range(0, len(blob), per)]


def _plaintext_point(term: bytes) -> bytes:
    """C2 - x*C1 under the PSP's key (the PSP could compute it): the term's value times G."""
    x = int.from_bytes(PSP_KEY.to_bytes(), "big")
    c1, c2 = ec.parse(term[:65]), ec.parse(term[65:])
    try:
        return ec.serialize(ec.add([c2, ec.neg(ec.mul(c1, x))]))
    except Exception:  # the point at infinity: the term encrypts zero
        return b"zero"


def test_psp_decrypts_only_zero_or_uniform_points_and_sees_no_shape() -> None:
    rng = random.Random(7)
    model = _model(_random_tree(rng, 3))
    layout = P.UploadLayout.from_model(model)
    _, seen = _score(model, [_customer(rng) for _ in range(3)])
    small = {ec.serialize(ec.small_multiple(k)) for k in range(-12, 13) if k}
    nodes = _nodes_of(seen["nodes"], layout)
    assert len(nodes) == 3 * seen["spec"].internal  # every customer: the complete tree, same size
    for terms in nodes:
        values = [_plaintext_point(t) for t in terms]
        assert values.count(b"zero") <= 1
        # Non-zero terms are blinded: never a small multiple of G (a bit, a DGK sum, a constant).
        assert not small.intersection(values)


def test_psp_positions_and_bits_are_uniform_and_no_ciphertext_repeats() -> None:
    """One customer scored again and again: the PSP's leaf position is spread over the
    whole tree, each node's bit is a coin, and no point is ever sent twice."""
    rng = random.Random(3)
    model = _model(_random_tree(rng, 3))
    layout = P.UploadLayout.from_model(model)
    spec = P.TreeSpec.from_model(model, layout)
    record = P.encrypt_record(layout, _customer(rng), POOL)
    positions: list[int] = []
    root_bits = 0
    points: set[bytes] = set()
    runs = 160
    for _ in range(runs):
        nodes, table = P.sp_nodes(spec, layout, record, RND)
        q, _entry = P.psp_walk(spec.depth, layout.max_terms, nodes, P.mask_table(table, P.new_seed(), 0), PSP_KEY)
        positions.append(q)
        root_bits += sum(_plaintext_point(t) == b"zero" for t in _nodes_of(nodes, layout)[0])
        for o in range(0, len(nodes), 65):
            points.add(nodes[o : o + 65])
    assert len(points) == runs * len(nodes) // 65
    counts = [positions.count(q) for q in range(1 << spec.depth)]
    expected = runs / (1 << spec.depth)
    assert min(counts) > 0 and max(counts) < 2 * expected + 10
    assert 50 < root_bits < 110  # the root's lambda: a fair coin (80 expected)


def test_table_entries_are_masked_and_open_only_with_the_seed() -> None:
    rng = random.Random(5)
    model = _model(_random_tree(rng, 2))
    layout = P.UploadLayout.from_model(model)
    spec = P.TreeSpec.from_model(model, layout)
    _nodes, table = P.sp_nodes(spec, layout, P.encrypt_record(layout, _customer(rng), POOL), RND)
    entries = {P.mask_table(table, P.new_seed(), 0) for _ in range(50)}
    assert len(entries) == 50
    seed = P.new_seed()
    masked = P.mask_table(table, seed, 0)
    result = b"\x00\x00" + masked[:8]
    assert P.open_scores(result, seed, 1, spec.depth) == [P.leaf_value(table[0])]
    for _ in range(20):  # another seed: garbage (often not even a probability), never the value
        with contextlib.suppress(ProtocolError):
            assert P.open_scores(result, P.new_seed(), 1, spec.depth) != [P.leaf_value(table[0])]


def test_sealed_box_opens_only_for_the_admin_and_its_chunk() -> None:
    admin, other = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    box = P.seal(P.admin_key_bytes(admin), b"results", aad("job/0", 1))
    assert P.unseal(admin, box, aad("job/0", 1)) == b"results"
    with pytest.raises(EncodingError):
        P.unseal(other, box, aad("job/0", 1))
    with pytest.raises(EncodingError):
        P.unseal(admin, box, aad("job/1", 1))
    with pytest.raises(EncodingError):
        P.unseal(admin, box[:-1] + bytes([box[-1] ^ 1]), aad("job/0", 1))
    with pytest.raises(EncodingError):
        P.seal(b"short", b"x", b"")


# -- bad input ----------------------------------------------------------------------------


def test_malformed_records_nodes_and_inputs_are_refused() -> None:
    rng = random.Random(11)
    model = _model(_random_tree(rng, 2))
    layout = P.UploadLayout.from_model(model)
    spec = P.TreeSpec.from_model(model, layout)
    record = P.encrypt_record(layout, _customer(rng), POOL)
    with pytest.raises(EncodingError, match="bytes, expected"):
        P.sp_nodes(spec, layout, record[:-1], RND)
    with pytest.raises(EncodingError, match="uncompressed"):
        P.sp_nodes(spec, layout, b"\x05" + record[1:], RND)
    with pytest.raises(ParameterError, match="outside"):
        P.encrypt_record(layout, {**_customer(rng), "age": MAXV["age"] + 1}, POOL)
    with pytest.raises(ParameterError, match="0 or 1"):
        P.encrypt_record(layout, {**_customer(rng), "plan=gold": 2}, POOL)
    nodes, table = P.sp_nodes(spec, layout, record, RND)
    tables = P.mask_table(table, P.new_seed(), 0)
    with pytest.raises(EncodingError):
        P.psp_walk(spec.depth, layout.max_terms, nodes[:-1], tables, PSP_KEY)
    with pytest.raises(EncodingError):
        P.psp_walk(spec.depth, layout.max_terms, nodes, tables[:-1], PSP_KEY)
    # A root with two encryptions of zero: a cheating or broken SP is caught.
    zero = ec.serialize_pair(*RND.randomizers.draw_one())
    bad = zero + zero + nodes[2 * P.W :]
    with pytest.raises(ProtocolError, match="zero terms"):
        P.psp_walk(spec.depth, layout.max_terms, bad, tables, PSP_KEY)
    good = churn_pb2.ChurnScoreInputs(depth=3, terms=7, count=5, admin_key=bytes(32), chunk="c")
    assert psp_inputs(good.SerializeToString())["count"] == 5
    for change, err in (({"depth": 0}, ParameterError), ({"depth": 17}, ParameterError),
                        ({"terms": 0}, ParameterError), ({"count": 0}, ParameterError),
                        ({"count": 100000}, ParameterError), ({"admin_key": b"x"}, EncodingError),
                        ({"chunk": ""}, EncodingError)):
        msg = churn_pb2.ChurnScoreInputs()
        msg.CopyFrom(good)
        for k, v in change.items():
            setattr(msg, k, v)
        with pytest.raises(err):
            psp_inputs(msg.SerializeToString())
    with pytest.raises(EncodingError):
        psp_inputs(b"\xff\xff\xff")


async def test_protocol_in_one_event_loop() -> None:
    rng = random.Random(2)
    model = _model(_random_tree(rng, 3))
    layout = P.UploadLayout.from_model(model)
    spec = P.TreeSpec.from_model(model, layout)
    customers = [_customer(rng) for _ in range(5)]
    records = [P.encrypt_record(layout, c, POOL) for c in customers]
    admin = X25519PrivateKey.generate()
    seed = P.new_seed()
    out = await run_local(
        "churn-score",
        {
            "sp": {"spec": spec, "layout": layout, "records": records, "seed": seed, "rnd": RND},
            "psp": {"curve_key": PSP_KEY, "depth": spec.depth, "terms": layout.max_terms, "count": 5,
                    "admin_key": P.admin_key_bytes(admin), "chunk": "c0"},
        },
    )
    results = P.unseal(admin, out["sp"], aad("c0", 5))
    got = P.open_scores(results, seed, 5, spec.depth)
    assert got == [model.p_loyal_exact(model.leaf_of_encoded(c)) for c in customers]


# -- live servers -----------------------------------------------------------------------------


async def _wait_job(client: Any, job: str) -> Any:
    for _ in range(600):
        st = await client.scoring_status(job)
        if st.finished:
            return st
        await asyncio.sleep(0.1)
    raise AssertionError("scoring did not finish in 60 s")


async def _score_live(client: Any, admin: X25519PrivateKey) -> dict[str, Fraction]:
    job = await client.start_scoring(P.admin_key_bytes(admin))
    st = await _wait_job(client, job.job)
    assert st.finished and not st.error, st.error
    got: dict[str, Fraction] = {}
    for ch in st.chunks:
        res = P.unseal(admin, ch.sealed, aad(ch.chunk, len(ch.customer_ids)))
        got.update(zip(ch.customer_ids, P.open_scores(res, ch.seed, len(ch.customer_ids), st.depth), strict=True))
    assert len(got) == job.customers
    return got


def _frontend_config(parties: Any, name: str) -> Any:
    """The client config of a front end ``name``: a "frontend" certificate from the deployment's CA."""
    from mpc.parties import rpc
    from mpc.parties.certs import CertAuthority

    got = CertAuthority.load(parties.dep.root / "certs").issue("frontend", name)
    cfg = parties.user_config("alice")
    return dataclasses.replace(cfg, name=name, tls=rpc.TlsFiles(cfg.tls.ca, got.cert_path, got.key_path))


async def test_scoring_over_the_parties_and_bad_uploads(idle_parties: Any, tmp_path: Path) -> None:
    from crm.churn.service import ChurnClient

    rng = random.Random(9)
    model = _model(_random_tree(rng, 3))
    path = tmp_path / "model.json"
    model.save(path)
    idle_parties.changes["sp"] = {"churn_model": path, "admins": ("alice",), "frontends": ("fe0",), "workers": 1}
    await idle_parties.start()
    admin_client = ChurnClient(idle_parties.user_config("alice"))
    front = ChurnClient(_frontend_config(idle_parties, "fe0"))  # only a front end creates customers
    try:
        key = await front.scoring_key()
        assert key == idle_parties.psp.curve_key.public_key.to_bytes()
        layout, version = await front.layout()
        pool = bit_encryption_pool(key)
        customers = {f"c{k:02d}": _customer(rng) for k in range(12)}
        ids = sorted(customers)
        records = [P.encrypt_record(layout, customers[c], pool) for c in ids]
        assert await front.upload_customers(version, ids, records) == 12
        store = idle_parties.sp.plugins["churn"].store
        before = store.count()

        with pytest.raises(EncodingError, match="layout"):  # wrong layout version
            await front.upload_customers(version ^ 1, ["x"], [records[0]])
        with pytest.raises(EncodingError):  # a record one byte short
            await front.upload_customers(version, ["x", "y"], [records[0], records[1][:-1]])
        with pytest.raises(EncodingError, match="uncompressed"):
            await front.upload_customers(version, ["x"], [b"\x07" + records[0][1:]])
        assert store.count() == before and "x" not in store.ids(layout.version)

        adm = X25519PrivateKey.generate()
        with pytest.raises(AuthorizationError):  # a front end is no admin
            await front.start_scoring(P.admin_key_bytes(adm))
        with pytest.raises(NotFound):
            await admin_client.scoring_status("no-such-job")
        with pytest.raises(NotFound):
            await admin_client.start_scoring(P.admin_key_bytes(adm), ["nobody"])

        want = {c: model.p_loyal_exact(model.leaf_of_encoded(customers[c])) for c in ids}
        assert await _score_live(admin_client, adm) == want

        # The PSP goes away: the job fails with a message naming it, the uploads stay.
        await idle_parties.stop("psp")
        job = await admin_client.start_scoring(P.admin_key_bytes(adm))
        st = await _wait_job(admin_client, job.job)
        assert st.error and "psp" in st.error.lower(), st.error
        assert not st.chunks and store.count() == before
        await idle_parties.start("psp")
        for attempt in range(5):  # the SP's channel to the PSP may still be backing off
            job = await admin_client.start_scoring(P.admin_key_bytes(adm))
            st = await _wait_job(admin_client, job.job)
            if not st.error or attempt == 4:
                break
            await asyncio.sleep(0.5)
        assert await _score_live(admin_client, adm) == want
    finally:
        await admin_client.close()
        await front.close()


@pytest.mark.slow
def test_churn_score_command_across_processes(tmp_path: Path) -> None:
    """`mpc-crm churn train` then `churn score` on a slice: processes, mTLS, exact match, JSON shape."""
    import json
    import subprocess
    import sys

    model = tmp_path / "model.json"
    subprocess.run([sys.executable, "-m", "mpc", "churn", "train", "--data", str(TELCO), "--out", str(model)],
                   check=True, capture_output=True, timeout=120)
    out = tmp_path / "scores.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mpc", "churn", "score", "--data", str(TELCO), "--model", str(model),
         "--customers", "200", "--key-bits", "1024", "--workers", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert len(report["customers"]) == 200 and report["total_s"] > 0
    first = report["customers"]["7590-VHVEG"]
    assert set(first) == {"p_loyal", "p_loyal_plain", "segment", "match"}
    assert all(c["match"] and c["p_loyal"] == c["p_loyal_plain"] for c in report["customers"].values())
    assert {c["segment"] for c in report["customers"].values()} <= {"loyal", "unloyal"}


def test_the_service_chunks_fit_the_protocol() -> None:
    from crm.churn.protocol import MAX_CHUNK
    from crm.churn.service import CHUNK

    assert 1 <= CHUNK <= MAX_CHUNK
