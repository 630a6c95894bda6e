"""Private action planning (protocol "churn-plan") against the plaintext oracle.

The search compiled into linear forms (:mod:`crm.churn.plan_forms`) must give
every customer the plan :func:`crm.churn.plan.plan_customer` gives; the
protocol must give the same from XOR shares only; its building blocks (OLE,
the modular shuffle) must add up and refuse malformed messages.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.churn import plan_private as pp
from crm.churn.costs import load_costs
from crm.churn.data import Customers, load_customers
from crm.churn.errors import ParameterError
from crm.churn.model import TreeModel, train
from crm.churn.plan import Action, plan_customer
from crm.churn.plan_forms import compile_plan
from mpc.comparison import ole, ot, shuffle
from mpc.comparison.pools import PspPools, SpPools
from mpc.errors import EncodingError
from mpc.protocol import run_local

HERE = Path(__file__).resolve().parents[1]
"""The tests/ directory (its data/ folder)."""
ROOT = HERE.parent
TELCO = Path(__file__).resolve().parents[3] / "shared" / "data" / "telco-churn.csv"
EXAMPLE_COSTS = ROOT / "examples" / "telco-costs.toml"
HAND = json.loads((HERE / "data" / "churn_hand_model.json").read_text())
COLUMNS = ["customerID", "gender", "tenure", "Contract", "MonthlyCharges"]
HAND_ROWS = [
    ["a", "Male", "5", "Month-to-month", "80"],
    ["b", "Female", "5", "One year", "80"],
    ["c", "Male", "5", "Two year", "20"],
    ["d", "Female", "30", "Month-to-month", "70"],
    ["e", "Male", "1", "Month-to-month", "70.01"],
    ["f", "Female", "1", "Month-to-month", "118.75"],
]

needs_telco = pytest.mark.skipif(not TELCO.exists(), reason="../shared/data not present")


def _hand(tmp_path: Path, text: str) -> tuple[TreeModel, Any, Customers]:
    data = tmp_path / "hand.csv"
    data.write_text("\n".join(",".join(r) for r in [COLUMNS, *HAND_ROWS]) + "\n")
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in HAND_ROWS]
    customers = Customers([r["customerID"] for r in rows], rows, COLUMNS, None, source=str(data))
    path = tmp_path / "costs.toml"
    path.write_text(text)
    return TreeModel.from_dict(HAND), load_costs(path, customers), customers


def _private(model: TreeModel, costs: Any, customers: Customers, **kw: Any) -> list[Any]:
    import asyncio

    forms = compile_plan(model, costs, **kw)
    layout = pp.layout_of(forms)
    a, b = pp.split_customers(forms, layout, customers.rows)
    out = asyncio.run(run_local(
        "churn-plan",
        {"sp": {"forms": forms, "layout": layout, "shares": a}, "psp": {"layout": layout, "shares": b}},
        timeout=300,
    ))
    p_loyal = [model.p_loyal_exact(model.leaf_of(r)) for r in customers.rows]
    return pp.admin_open(forms, out["sp"], out["psp"], customers.ids, p_loyal)


def _same(got: Any, want: Any) -> bool:
    return (got.target, got.p_target, got.actions, got.net_profit, got.segment, got.p_loyal) == (
        want.target, want.p_target, want.actions, want.net_profit, want.segment, want.p_loyal,
    )


HAND_COSTS = [
    # the cheapest contract; a hard gender makes leaf 6 unreachable
    'hard = ["gender"]\nprofit = "12 * MonthlyCharges"\n'
    '[soft.Contract]\n"Month-to-month -> One year" = 150\n"Month-to-month -> Two year" = 300\n'
    "[soft.MonthlyCharges]\ndown = 12\n",
    # equal costs: the first value
    'profit = "12 * MonthlyCharges"\n[soft.Contract]\n'
    '"Month-to-month -> Two year" = 150\n"Month-to-month -> One year" = 150\n',
    # a discount with gender soft, then nothing profitable, then nothing allowed
    'profit = "12 * MonthlyCharges"\n[soft.MonthlyCharges]\ndown = 12\n[soft.gender]\n"Male -> Female" = 10\n',
    'profit = "12 * MonthlyCharges"\n[soft.Contract]\n"Month-to-month -> One year" = 700\n'
    "[soft.MonthlyCharges]\ndown = 40\n",
    'profit = "12 * MonthlyCharges + 3"\n',
    # moving up, asymmetric costs
    'profit = "MonthlyCharges * 12 - 0"\n[soft.tenure]\nup = 2.5\n[soft.MonthlyCharges]\ndown = 11.5\nup = 1\n',
]


@pytest.mark.parametrize("text", HAND_COSTS)
def test_hand_made_plans_equal_the_oracle(tmp_path: Path, text: str) -> None:
    model, costs, customers = _hand(tmp_path, text)
    got = _private(model, costs, customers)
    forms = compile_plan(model, costs)
    for g, row, cid in zip(got, customers.rows, customers.ids, strict=True):
        want = plan_customer(model, costs, cid, row)
        assert _same(g, want), (cid, g, want)
        env = forms.env(row)  # the forms in the clear say the same
        w = forms.winner(env)
        payload = forms.key_form(forms.contenders[w]).value(env) % (1 << forms.payload_bits)
        assert _same(forms.decode(w, payload, cid, want.p_loyal), want)


def test_hand_made_known_answers(tmp_path: Path) -> None:
    """The private plans are the ones worked out by hand (tests/crm/test_churn_plain.py)."""
    model, costs, customers = _hand(tmp_path, HAND_COSTS[0])
    a = _private(model, costs, customers)[0]
    assert (a.target, a.p_target, a.segment) == (1, Fraction(91, 102), "unloyal")
    assert a.actions == (Action("Contract", "Month-to-month", "One year", Fraction(150)),)
    assert a.net_profit == 960 * Fraction(70, 102) - 150
    model, costs, customers = _hand(tmp_path, HAND_COSTS[2])
    a = _private(model, costs, customers)[0]
    assert a.target == 6 and a.net_profit == 960 * Fraction(50, 102) - 130
    assert a.action_set == (("MonthlyCharges", "70.00"), ("gender", "Female"))
    model, costs, customers = _hand(tmp_path, HAND_COSTS[3])
    plans = _private(model, costs, customers)
    assert plans[0].target is None and plans[0].actions == () and plans[0].net_profit == 0
    assert plans[1].segment == "loyal" and plans[1].target is None


def test_segment_threshold_reaches_the_private_plan(tmp_path: Path) -> None:
    model, costs, customers = _hand(tmp_path, HAND_COSTS[0])
    for threshold in ("0.9", "0.1"):
        got = _private(model, costs, customers, segment_threshold=threshold)
        for g, row, cid in zip(got, customers.rows, customers.ids, strict=True):
            assert _same(g, plan_customer(model, costs, cid, row, segment_threshold=threshold))


def test_profits_the_private_plan_cannot_take_are_refused(tmp_path: Path) -> None:
    model, costs, _ = _hand(tmp_path, 'profit = "12 * MonthlyCharges - 100"\n')
    with pytest.raises(ParameterError, match="cannot be negative"):
        compile_plan(model, costs)
    _, costs, _ = _hand(tmp_path, 'profit = "12 * MonthlyCharges"\n')
    small = TreeModel.from_dict({
        "format": "mpc-crm/churn-tree", "version": 1, "target": "loyal",
        "features": ["tenure", "Contract=Month-to-month"], "encoding": {"tenure": {"scale": 1, "bits": 8}},
        "root": 0, "nodes": [
            {"feature": "tenure", "threshold": 12.5, "left": 1, "right": 2},
            {"loyal": 10, "churn": 30, "p_loyal": 11 / 42}, {"loyal": 50, "churn": 10, "p_loyal": 51 / 62},
        ],
    })
    with pytest.raises(ParameterError, match="'MonthlyCharges' is not one"):
        compile_plan(small, costs)


@pytest.fixture(scope="module")
def telco_world() -> tuple[TreeModel, Any, Customers]:
    customers = load_customers(TELCO)
    model = train(customers, seed=0).model
    return model, load_costs(EXAMPLE_COSTS, customers), customers


@needs_telco
def test_telco_forms_equal_the_oracle_in_the_clear(telco_world: Any) -> None:
    """The compiled search, evaluated in the clear, on 1,500 Telco customers (all 7,043 in
    scripts/bench_churn.py --plan)."""
    model, costs, customers = telco_world
    forms = compile_plan(model, costs)
    for cid, row in list(zip(customers.ids, customers.rows, strict=True))[:1500]:
        want = plan_customer(model, costs, cid, row)
        env = forms.env(row)
        w = forms.winner(env)
        payload = forms.key_form(forms.contenders[w]).value(env) % (1 << forms.payload_bits)
        assert _same(forms.decode(w, payload, cid, want.p_loyal), want), cid


@needs_telco
def test_telco_private_plans_equal_the_oracle(telco_world: Any) -> None:
    model, costs, customers = telco_world
    some = Customers(customers.ids[:160], customers.rows[:160], customers.columns, None, source="telco")
    got = _private(model, costs, some)
    planned = 0
    for g, row, cid in zip(got, some.rows, some.ids, strict=True):
        want = plan_customer(model, costs, cid, row)
        assert _same(g, want), cid
        planned += want.target is not None
    assert planned > 20  # the sample has real plans, not only "none"


# -- building blocks ---------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    customers=st.integers(1, 4), variables=st.integers(1, 9), outputs=st.integers(1, 5),
    limbs=st.integers(1, 4), seed=st.integers(0, 2**32),
)
def test_ole_shares_add_up_to_the_forms(customers: int, variables: int, outputs: int, limbs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = 32 * limbs
    coefs = [[int(rng.integers(-(1 << 62), 1 << 62)) * (1 << (w // 2)) + int(rng.integers(0, 1 << 30))
              for _ in range(outputs)] for _ in range(variables)]
    coefs[0][0] = (1 << w) - 1  # the edges: -1 and 0
    coefs[-1][-1] = 0
    consts = [int(rng.integers(0, 1 << 62)) for _ in range(outputs)]
    x = rng.integers(0, 2, (customers, variables)).astype(np.uint8)
    a = rng.integers(0, 2, (customers, variables)).astype(np.uint8)
    total, _ = _ole(coefs, consts, a, x ^ a, limbs)
    for c in range(customers):
        for o in range(outputs):
            want = (consts[o] + sum(coefs[v][o] * int(x[c, v]) for v in range(variables))) % (1 << w)
            assert total[c][o] == want


def _ole(coefs: list[list[int]], consts: list[int], a: np.ndarray, b: np.ndarray, limbs: int, tamper: Any = None) -> Any:
    sp, psp = SpPools(), PspPools()
    seeds = psp.ot_seeds(sp.ot.public())
    nonce = secrets.token_bytes(ot.NONCE_BYTES)
    v, o = len(coefs), len(consts)
    c = ole.to_limbs([x for row in coefs for x in row], limbs).reshape(v, o, limbs)
    k = ole.to_limbs(consts, limbs)
    columns, labels = ot.extend_choices(seeds, b.reshape(-1), nonce)
    mine, msg = ole.sp_corrections(sp.ot, seeds.point, columns, nonce, c, k, a)
    if tamper:
        msg = tamper(msg)
    theirs = ole.psp_finish(labels, nonce, b, msg, o, limbs)
    total = ole.from_limbs(ole.normalize(mine + theirs))
    return [total[i * o : (i + 1) * o] for i in range(a.shape[0])], ole.from_limbs(theirs)


def test_ole_shares_are_fresh_and_refuse_bad_messages() -> None:
    coefs, consts = [[5, 7], [11, 13]], [1, 2]
    a = np.array([[1, 0]], dtype=np.uint8)
    b = np.array([[0, 0]], dtype=np.uint8)
    (t1, s1), (t2, s2) = _ole(coefs, consts, a, b, 2), _ole(coefs, consts, a, b, 2)
    assert t1 == t2 and s1 != s2  # the same forms, fresh shares: one share alone says nothing
    with pytest.raises(EncodingError, match="bytes of corrections"):
        _ole(coefs, consts, a, b, 2, tamper=lambda m: m[:-4])


def test_modular_shuffle_permutes_and_refuses_bad_pads() -> None:
    import random

    sp, psp = SpPools(), PspPools()
    seeds = sp.shuffle_seeds.get(psp.shuffle_key.public())
    n, limbs = 16, 3
    vals = [[secrets.randbits(96) for _ in range(n)] for _ in range(3)]
    perms = [random.sample(range(n), n) for _ in range(3)]
    swaps = np.array([shuffle.route(p) for p in perms], dtype=np.uint8)
    nonce = secrets.token_bytes(ot.NONCE_BYTES)
    columns, labels = ot.extend_choices(seeds, swaps.reshape(-1), nonce)
    values = ole.to_limbs([v for r in vals for v in r], limbs).reshape(3, n, limbs)
    a, msg = shuffle.holder_pads_mod(psp.shuffle_key, seeds.point, columns, nonce, values)
    c = shuffle.permuter_finish_mod(swaps, labels, nonce, msg, limbs)
    total = ole.from_limbs(ole.normalize(a + c))
    assert total == [vals[b][perms[b][k]] for b in range(3) for k in range(n)]
    a2, _ = shuffle.holder_pads_mod(psp.shuffle_key, seeds.point, columns, nonce, values)
    assert ole.from_limbs(a2) != ole.from_limbs(a)  # the holder's shares are fresh coins
    with pytest.raises(EncodingError, match="shuffle pads"):
        shuffle.permuter_finish_mod(swaps, labels, nonce, msg[:-1], limbs)


def test_tournament_pairs_are_checked() -> None:
    good = np.array([[[0, 1], [2, 3]]], dtype=np.int64)
    assert (pp._read_pairs(pp._pairs_message(good), 1, 2, 4) == good).all()
    with pytest.raises(EncodingError, match="out of range"):
        pp._read_pairs(pp._pairs_message(np.array([[[0, 4]]])), 1, 1, 4)
    with pytest.raises(EncodingError, match="out of range or compared with itself"):
        pp._read_pairs(pp._pairs_message(np.array([[[2, 2]]])), 1, 1, 4)
    with pytest.raises(EncodingError, match="bytes"):
        pp._read_pairs(b"\0" * 3, 1, 1, 4)


# -- live servers and processes ---------------------------------------------------------------
async def test_planning_over_the_parties_and_bad_uploads(idle_parties: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """The SP's service with a cost file: plan layout, plan shares, the admin's job (in chunks of
    two, results one chunk a page); bad uploads and a share sealed for someone else are refused
    with a clear error, nothing stored changes."""
    import dataclasses

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    import crm.churn.service as service
    from crm.churn.model import encode_row
    from crm.churn.private import admin_key_bytes
    from crm.churn.service import ChurnClient
    from mpc.errors import AuthorizationError, NotFound
    from mpc.parties.certs import CertAuthority
    from mpc.parties.rpc import TlsFiles

    monkeypatch.setattr(service, "PLAN_CHUNK", 2)
    monkeypatch.setattr(service, "PAGE_BYTES", 1)
    model, costs, customers = _hand(tmp_path, HAND_COSTS[0])
    (tmp_path / "model.json").write_text(json.dumps(HAND))
    idle_parties.changes["sp"] = {
        "churn_model": tmp_path / "model.json", "churn_costs": tmp_path / "costs.toml",
        "admins": ("alice",), "frontends": ("fe0",), "workers": 1,
    }
    await idle_parties.start()
    admin_client = ChurnClient(idle_parties.user_config("alice"))
    got = CertAuthority.load(idle_parties.dep.root / "certs").issue("frontend", "fe0")  # only a front end
    cfg = idle_parties.user_config("alice")  # creates customers: its own certificate, the same servers
    front = ChurnClient(dataclasses.replace(cfg, name="fe0", tls=TlsFiles(cfg.tls.ca, got.cert_path, got.key_path)))
    try:
        key = await front.scoring_key()
        layout, version = await front.plan_layout()
        rows = dict(zip(customers.ids, customers.rows, strict=True))
        ids = list(customers.ids)
        records = [
            pp.customer_record(layout, version, key, c, pp.layout_bits(layout, rows[c], encode_row(model, rows[c])))
            for c in ids
        ]
        assert await front.upload_plan_shares(version, ids, records) == len(ids)
        store = idle_parties.sp.plugins["churn"].planning.store
        before = store.count()
        with pytest.raises(EncodingError, match="layout"):
            await front.upload_plan_shares(version ^ 1, ["x"], [records[0]])
        with pytest.raises(EncodingError):
            await front.upload_plan_shares(version, ["x", "y"], [records[0], records[1][:-1]])
        with pytest.raises(EncodingError, match="curve point"):
            await front.upload_plan_shares(version, ["x"], [records[0][:16] + b"\x07" + records[0][17:]])
        assert store.count() == before and "x" not in store.ids(version)

        adm = X25519PrivateKey.generate()
        with pytest.raises(AuthorizationError):
            await front.start_planning(admin_key_bytes(adm))
        with pytest.raises(NotFound):
            await admin_client.start_planning(admin_key_bytes(adm), "", ["nobody"])

        st_job: list[str] = []

        async def plan(chosen: list[str]) -> Any:
            job = await admin_client.start_planning(admin_key_bytes(adm), "1/2", chosen)
            st_job[:] = [job.job]
            for _ in range(600):
                st = await admin_client.planning_status(job.job)
                if st.finished:
                    return st
                await asyncio.sleep(0.1)
            raise AssertionError("planning did not finish in 60 s")

        st = await plan(ids)
        assert not st.error, st.error
        forms = compile_plan(model, costs)
        p_loyal = {c: model.p_loyal_exact(model.leaf_of(rows[c])) for c in ids}  # the admin's scores
        chunks = await admin_client.planning_results(st_job[0])
        assert len(st.chunks) == 1 and st.chunks_total == len(chunks) == 3 and st.chunks[0] == chunks[0]
        got = [p for ch in chunks for p in pp.open_chunk(forms, layout, adm, ch, p_loyal)]
        assert [p.customer for p in got] == ids
        for g in got:
            assert _same(g, plan_customer(model, costs, g.customer, rows[g.customer])), g.customer

        # A share sealed for "a" stored under "z": the PSP cannot open it and says whose it is.
        await front.upload_plan_shares(version, ["z"], [records[0]])
        st = await plan([*ids, "z"])
        assert st.error and "customer z" in st.error and not st.chunks, st.error
        assert store.count() == before + 1

        # The PSP goes away: the job fails with a message naming it, the shares stay.
        await idle_parties.stop("psp")
        st = await plan(ids)
        assert st.error and "psp" in st.error.lower() and not st.chunks, st.error
        assert store.count() == before + 1 and set(ids) <= set(store.ids(version))
    finally:
        await admin_client.close()
        await front.close()


@pytest.mark.slow
@needs_telco
def test_churn_plan_command_across_processes(tmp_path: Path) -> None:
    """`mpc-crm churn plan` on a slice: scoring then planning as processes, every plan checked."""
    import subprocess
    import sys

    model = tmp_path / "model.json"
    subprocess.run([sys.executable, "-m", "mpc", "churn", "train", "--data", str(TELCO), "--out", str(model)],
                   check=True, capture_output=True, timeout=120)
    out = tmp_path / "plan.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mpc", "churn", "plan", "--data", str(TELCO), "--model", str(model),
         "--costs", str(EXAMPLE_COSTS), "--customers", "80", "--key-bits", "1024", "--max-action-sets", "3",
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["private"]["ok"] and doc["private"]["mismatches"] == 0 and doc["params"]["private"]
    assert len(doc["customers"]) == 80 and doc["totals"]["action_sets"] <= 3
    assert doc["totals"]["planned"] > 5


def test_session_inputs_and_layouts_are_checked(tmp_path: Path) -> None:
    """What the PSP is sent: a layout that is not one, a version that does not match, boxes of
    the wrong size or for another customer: each refused with a clear error."""
    from mpc.elgamal.curve import CurvePrivateKey

    model, costs, customers = _hand(tmp_path, HAND_COSTS[0])
    forms = compile_plan(model, costs)
    layout = pp.layout_of(forms)
    version = pp.layout_version(layout)
    assert pp.layout_from_dict(json.loads(json.dumps(pp.layout_to_dict(layout)))) == layout
    key = CurvePrivateKey.generate()
    pub = key.public_key.to_bytes()
    rows = customers.rows[:2]
    ids = customers.ids[:2]
    recs = [pp.customer_record(layout, version, pub, c, pp.customer_bits(forms, layout, r)) for c, r in zip(ids, rows, strict=True)]
    shares, boxes = pp.sp_shares(layout, recs)
    admin = b"\1" * 32
    good = pp.start_inputs(layout, version, ids, boxes, admin, "c0").SerializeToString()
    opened = pp.psp_inputs(good, key)
    assert ((opened["shares"] ^ shares) == np.stack([pp.customer_bits(forms, layout, r) for r in rows])).all()
    for bad, needle in [
        (pp.start_inputs(layout, version ^ 1, ids, boxes, admin, "c0"), "does not match its version"),
        (pp.start_inputs(layout, version, ids, [boxes[0], boxes[1][:-1]], admin, "c0"), "bytes of boxes"),
        (pp.start_inputs(layout, version, ids[::-1], boxes, admin, "c0"), f"customer {ids[1]}"),
        (pp.start_inputs(layout, version, ids, boxes, b"short", "c0"), "admin key"),
    ]:
        with pytest.raises((EncodingError, ParameterError), match=needle):
            pp.psp_inputs(bad.SerializeToString(), key)
    other = CurvePrivateKey.generate()
    with pytest.raises(EncodingError, match="does not open"):
        pp.psp_inputs(good, other)
    for doc in [{"format": "x"}, {**pp.layout_to_dict(layout), "contenders": 1},
                {**pp.layout_to_dict(layout), "variables": [["gt", 999]]}, []]:
        with pytest.raises(EncodingError):
            pp.layout_from_dict(doc)


def test_the_sps_cost_file_is_checked_without_the_data(tmp_path: Path) -> None:
    """The SP never sees the customers: its cost file is checked against the data format's
    columns (any value of a categorical column is accepted)."""
    from crm.churn.errors import CostError

    path = tmp_path / "costs.toml"
    path.write_text('profit = "12 * MonthlyCharges"\n[soft.Contract]\n"Weekly -> One year" = 5\n')
    costs = load_costs(path, None)
    assert costs.move_cost("Contract", "Weekly", "One year") == 5
    for text, needle in [
        ('profit = "12 * MonthlyCharges"\n[soft.Shoe]\n"a -> b" = 1\n', "'Shoe' is not a column of the data format"),
        ('profit = "12 * MonthlyCharges"\n[soft.Contract]\n"a -> b" = -1\n', "negative"),
        ('hard = ["Colour"]\nprofit = "1"\n', "'Colour' is not a column"),
    ]:
        path.write_text(text)
        with pytest.raises(CostError, match=needle):
            load_costs(path, None)


def test_what_the_psp_sees_of_one_customer_planned_many_times(tmp_path: Path, monkeypatch: Any) -> None:
    """The same customer 128 times in one batch: the node bits the PSP reads are masked (each
    near half ones) and the winner's position, which the tournament shows the PSP, is spread
    evenly over the positions; the admin still gets the one plan every time."""
    from mpc.protocols import compare

    model, costs, customers = _hand(tmp_path, HAND_COSTS[0])
    forms = compile_plan(model, costs)
    layout = pp.layout_of(forms)
    one = customers.rows[0]
    many = Customers([f"a{k}" for k in range(128)], [one] * 128, customers.columns, None, source="x")
    seen: list[list[int]] = []
    result = compare.psp_held_result

    def spy(labels: Any, payload: bytes) -> list[int]:
        seen.append(out := result(labels, payload))
        return out

    monkeypatch.setattr(compare, "psp_held_result", spy)
    a, b = pp.split_customers(forms, layout, many.rows)
    out = asyncio.run(run_local(
        "churn-plan",
        {"sp": {"forms": forms, "layout": layout, "shares": a}, "psp": {"layout": layout, "shares": b}},
        timeout=300,
    ))
    p_loyal = [model.p_loyal_exact(model.leaf_of(one))] * 128
    want = plan_customer(model, costs, "a0", one)
    assert all(_same(g, want) for g in pp.admin_open(forms, out["sp"], out["psp"], many.ids, p_loyal))
    bits = np.array(seen[0]).reshape(128, len(layout.gt))  # the node bits, XOR the SP's masks
    assert (abs(bits.mean(axis=0) - 0.5) < 0.2).all(), bits.mean(axis=0)  # 128 coins: 0.2 is 4.5 sigma
    counts = np.bincount([k for k, _ in out["psp"].winners], minlength=layout.contenders)
    assert len(counts) == layout.contenders and counts.min() > 0 and counts.max() < 3 * 128 / layout.contenders, counts
    assert (b != a ^ b).any()  # the PSP's shares are not the bits
