"""Tests of ``mpc-crm churn report``: the HTML page, its SVG, escaping, totals and bad inputs.

A hand-made tree on ``tests/data/churn_small.csv``, a real plan from ``churn plan``
and scores made from the tree: no servers, well under a second.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from crm.churn.data import Customers, load_customers
from crm.churn.errors import DataError, ModelError
from crm.churn.model import TreeModel
from crm.churn.report import (
    MAX_MISMATCHES,
    MAX_SETS,
    build_report,
    histogram_chart,
    parse_plan,
    parse_scores,
    segment_groups,
)
from mpc import cli as mpc_cli
from mpc.errors import MpcError

HERE = Path(__file__).resolve().parents[1]
"""The tests/ directory (its data/ folder)."""
SMALL = HERE / "data" / "churn_small.csv"
NASTY = "<script>&\"'"
DATE = "2025-03-04"

# The hand-made tree of test_churn_plain (tests/data/churn_hand_model.json), with a
# smaller last leaf and training figures, so that every number in the report is distinct.
MODEL = json.loads((HERE / "data" / "churn_hand_model.json").read_text())
MODEL["nodes"][6] = {"loyal": 10, "churn": 30, "p_loyal": 11 / 42}
MODEL["metrics"] = {"test_accuracy": 0.7912, "test_auc": 0.8451, "cv_auc": 0.83, "n_train": 36, "n_test": 12}
COSTS = (
    'profit = "12 * MonthlyCharges"\n'
    '[soft.Contract]\n"Month-to-month -> One year" = 300\n'
    "[soft.MonthlyCharges]\ndown = 12\n"
)


def _main(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.setattr(sys, "argv", ["mpc-crm"])
    return mpc_cli.main(list(argv))


def _scores(model: TreeModel, customers: Customers, threshold: float = 0.5) -> dict[str, Any]:
    """scores.json as ``churn score`` writes it, every private score equal to the plain one."""
    out = {}
    for cid, row in zip(customers.ids, customers.rows, strict=True):
        p = model.p_loyal(model.leaf_of(row))
        out[cid] = {
            "p_loyal": p,
            "p_loyal_plain": p,
            "segment": "loyal" if p >= threshold else "unloyal",
            "match": True,
        }
    return {"ok": True, "params": {"segment_threshold": threshold}, "customers": out}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model.json, scores.json, a real plan.json (two action sets, one served) and the data.

    The plan: 17 customers move to a one-year contract (served), one gets a discount to
    70.00 (not served: ``--max-action-sets 1``).
    """
    d = tmp_path_factory.mktemp("report")
    model = TreeModel.from_dict(MODEL)
    paths = {"model": d / "model.json", "scores": d / "scores.json", "plan": d / "plan.json"}
    paths["model"].write_text(json.dumps(MODEL))
    paths["scores"].write_text(json.dumps(_scores(model, load_customers(SMALL))))
    (d / "costs.toml").write_text(COSTS)
    mp = pytest.MonkeyPatch()
    try:
        args = ["churn", "plan", "--data", str(SMALL), "--model", str(paths["model"])]
        args += ["--costs", str(d / "costs.toml"), "--max-action-sets", "1"]
        assert _main(mp, *args, "--out", str(paths["plan"])) == 0
    finally:
        mp.undo()
    paths["data"] = SMALL
    return paths


def _doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _svgs(html: str) -> list[ET.Element]:
    blocks = re.findall(r"<svg\b.*?</svg>", html, re.S)
    return [ET.fromstring(b) for b in blocks]


def _texts(svg: ET.Element) -> list[str]:
    """The visible text of an SVG (text elements without their tooltips)."""
    ns = "{http://www.w3.org/2000/svg}"
    return [(t.text or "") for t in svg.iter(f"{ns}text")]


def _report(files: dict[str, Path], **changes: Any) -> str:
    scores = parse_scores(changes.pop("scores", _doc(files["scores"])), "scores.json")
    plan = changes.pop("plan", _doc(files["plan"]))
    return build_report(
        scores,
        date=DATE,
        plan=None if plan is None else parse_plan(plan, "plan.json"),
        model=changes.pop("model", TreeModel.load(files["model"])),
        customers=changes.pop("customers", load_customers(files["data"])),
        **changes,
    )


# -- the page ----------------------------------------------------------------------------------


def test_cli_writes_a_self_contained_page(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "report.html"
    args = ["churn", "report", "--scores", str(files["scores"]), "--plan", str(files["plan"])]
    args += ["--model", str(files["model"]), "--data", str(files["data"]), "--out", str(out)]
    assert _main(monkeypatch, *args, "--date", DATE) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "every private score matches" in said
    html = out.read_text(encoding="utf-8")
    # The whole page is well-formed XML, and so is each chart on its own.
    ET.fromstring(html.split("\n", 1)[1])
    svgs = _svgs(html)
    # split, histogram, 4 segment charts, profit
    assert len(svgs) == 7
    # Nothing to fetch and nothing to run.
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert "@import" not in html and "url(" not in html
    assert re.findall(r"https?://[^\"']*", html) == ["http://www.w3.org/2000/svg"] * 7
    assert f'<h1>Churn report</h1>\n<p class="meta">{DATE} · 48 customers scored' in html
    # Deterministic: the same inputs give the same bytes.
    again = tmp_path / "again.html"
    assert _main(monkeypatch, *args[:-1], str(again), "--date", DATE) == 0
    assert again.read_bytes() == out.read_bytes()
    # --date defaults to today.
    assert _main(monkeypatch, *args[:-1], str(again)) == 0
    assert datetime.date.today().isoformat() in again.read_text(encoding="utf-8")


def test_totals_equal_the_inputs(files: dict[str, Path]) -> None:
    scores, plan = _doc(files["scores"]), _doc(files["plan"])
    html = _report(files)
    split, hist, *segments, profit = _svgs(html)
    n = len(scores["customers"])
    loyal = sum(1 for c in scores["customers"].values() if c["segment"] == "loyal")
    unloyal = n - loyal
    assert 0 < loyal < n
    split_text = _texts(split)
    assert f"{loyal} customers" in split_text and f"{unloyal} customers" in split_text
    assert f"{100 * loyal / n:.1f}%" in split_text and "P(loyal) ≥ 0.5" in split_text
    # The histogram's bar numbers add up to the scored customers; the threshold is marked.
    hist_numbers = [int(t) for t in _texts(hist) if t.isdigit()]
    ns = "{http://www.w3.org/2000/svg}"
    bar_numbers = [int(t.text or "0") for t in hist.iter(f"{ns}text") if t.get("class") == "num"]
    assert sum(bar_numbers) == n and hist_numbers
    assert "threshold 0.5" in _texts(hist)
    # Churn by segment: every group counts every scored customer, unloyal ones the same.
    groups = segment_groups(parse_scores(scores), load_customers(SMALL))
    assert [g for g, _ in groups] == ["Contract", "InternetService", "PaymentMethod", "Tenure"]
    for _, values in groups:
        assert sum(s for _, _, s in values) == n and sum(u for _, u, _ in values) == unloyal
    contract = dict((v, (u, s)) for v, u, s in groups[0][1])
    assert contract["One year"] == (0, 9) and contract["Two year"] == (0, 12)
    u, s = contract["Month-to-month"]
    assert f"{100 * u / s:.1f}% ({u} of {s})" in _texts(segments[0])
    # Profit of actions: the plan's totals and every action set as written.
    t = plan["totals"]
    assert t["served"] > 0 and len(plan["action_sets"]) >= 2
    for label, value in [
        ("served customers", f"{t['served']:,}"),
        ("net profit of the served", f"{t['net_profit']:,.2f}"),
        ("cost of the served", f"{t['cost']:,.2f}"),
        ("unloyal", f"{t['unloyal']:,}"),
        ("action sets served / planned", f"{t['action_sets']} / {len(plan['action_sets'])}"),
        ("limit", "the 1 most profitable action sets"),
    ]:
        assert f'<tr><td>{label}</td><td class="n">{value}</td></tr>' in html
    profit_text = " ".join(_texts(profit))
    for i, s in enumerate(plan["action_sets"]):
        text = "; ".join(f"{a['attribute']} -&gt; {a['to']}" for a in s["actions"])
        assert f"{i + 1}. {text.replace('-&gt;', '->')}" in profit_text
        status = "served" if s["served"] == s["customers"] else "not served"
        customers = f"{s['customers']} customer" + ("s" if s["customers"] != 1 else "")
        assert f"{s['net_profit']:,.2f} · {customers} · {status}" in profit_text
    # The model's numbers.
    assert '<td>held-out accuracy</td><td class="n">0.791</td>' in html
    assert '<td>held-out ROC-AUC</td><td class="n">0.845</td>' in html
    assert '<td>tree: nodes, leaves, depth</td><td class="n">7, 4, 3</td>' in html
    assert "All 48 private scores equal the plaintext model" in html and 'class="bad"' not in html


def test_optional_parts_are_left_out(files: dict[str, Path]) -> None:
    scores = parse_scores(_doc(files["scores"]))
    html = build_report(scores, date=DATE)
    assert len(_svgs(html)) == 2
    assert "Churn by segment" not in html and "Profit of actions" not in html
    assert "The model" not in html


def test_text_is_escaped(files: dict[str, Path]) -> None:
    """Customer ids, attribute values and action texts reach the page only escaped."""
    scores = _doc(files["scores"])
    plan = _doc(files["plan"])
    customers = load_customers(SMALL)
    first = customers.ids[0]
    # A customer with a nasty id whose private score differs, and nasty values in the data.
    scores["customers"][NASTY] = {**scores["customers"].pop(first), "match": False}
    plan["customers"][NASTY] = plan["customers"].pop(first)
    rows = [dict(r) for r in customers.rows]
    rows[0]["PaymentMethod"] = NASTY
    rows[0]["customerID"] = NASTY
    rows[1]["InternetService"] = "bad\x01value"  # not allowed in XML, even escaped
    ids = [NASTY, *customers.ids[1:]]
    nasty_data = Customers(ids, rows, customers.columns, None, source=f"{NASTY}.csv")
    plan["action_sets"][0]["actions"][0]["to"] = NASTY
    html = _report(files, scores=scores, plan=plan, customers=nasty_data)
    assert NASTY not in html and "<script" not in html
    escaped = "&lt;script&gt;&amp;&quot;&#x27;"
    assert f"<code>{escaped}</code>" in html  # in the list of mismatches
    assert f"{escaped}.csv" in html  # the data file's name
    for svg in _svgs(html):  # parses, so every value in it was escaped
        assert NASTY not in ET.tostring(svg, encoding="unicode").replace("&lt;", "<")
    # ... and reads back as the original text.
    texts = [t for svg in _svgs(html) for t in _texts(svg)]
    assert NASTY in texts and "bad\ufffdvalue" in texts
    assert any(NASTY in t for t in texts if t.startswith("1. "))


def test_mismatches_are_prominent(files: dict[str, Path]) -> None:
    scores = _doc(files["scores"])
    ids = list(scores["customers"])
    for cid in ids[: MAX_MISMATCHES + 3]:
        scores["customers"][cid]["match"] = False
    missing = scores["customers"][ids[0]]
    missing.update(p_loyal=None, segment=None)
    html = _report(files, scores=scores)
    assert 'class="bad" role="alert"' in html
    assert f"MISMATCH: {MAX_MISMATCHES + 3} of 48 private scores differ" in html
    assert f"<code>{ids[0]}</code>: no private score" in html
    assert "… and 3 more" in html
    # The customer without a private score is counted apart.
    split = _svgs(html)[0]
    assert "Not scored" in _texts(split) and "1 customer" in _texts(split)


def test_the_plans_privacy_and_agreement_are_shown(files: dict[str, Path]) -> None:
    """plan.json from `churn plan` says the plans were private and equal the oracle; a plan
    with mismatches raises an alert; one computed with --plain says so."""
    plan = _doc(files["plan"])
    assert plan["private"]["ok"] and plan["params"]["private"]
    assert "plans were computed privately and equal the plaintext oracle" in _report(files)
    bad = {**plan, "private": {**plan["private"], "ok": False, "mismatches": 3}}
    html = _report(files, plan=bad)
    assert 'role="alert">✗ MISMATCH: 3 of 48 private plans differ' in html
    plain = {k: v for k, v in plan.items() if k != "private"}
    assert "computed in the clear" in _report(files, plan=plain)
    with pytest.raises(DataError, match=r"private\.ok"):
        parse_plan({**plan, "private": {"mismatches": 0}}, "plan.json")


def test_threshold_and_many_action_sets(files: dict[str, Path]) -> None:
    model = TreeModel.from_dict(MODEL)
    scores = _scores(model, load_customers(SMALL), threshold=0.6)
    plan = _doc(files["plan"])
    template = plan["action_sets"][-1]
    plan["action_sets"] = [
        {**copy.deepcopy(template), "net_profit": 1000.0 - i, "served": 0, "served_net_profit": 0}
        for i in range(MAX_SETS + 5)
    ]
    html = _report(files, scores=scores, plan=plan)
    hist = _svgs(html)[1]
    assert "threshold 0.6" in _texts(hist)
    assert "The plan's segment threshold is 0.5, the scores' 0.6." in html
    profit = " ".join(_texts(_svgs(html)[-1]))
    assert f"{MAX_SETS}. " in profit and f"{MAX_SETS + 1}. " not in profit
    assert "… and 5 more action sets: 4,890.00 net profit" in profit


# -- bad inputs --------------------------------------------------------------------------------


def _scores_doc(files: dict[str, Path], edit: Any) -> Any:
    doc = _doc(files["scores"])
    first = next(iter(doc["customers"]))
    return edit(doc, doc["customers"][first])


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d, c: [d], "top level: expected an object, got list"),
        (lambda d, c: {"scores": {}}, "top level: missing key(s) customers"),
        (lambda d, c: {"customers": {}}, "customers: empty"),
        (lambda d, c: {"customers": []}, "customers: expected an object, got list"),
        (lambda d, c: (c.pop("match"), d)[1], "customer 'S000-TEST': missing key(s) match"),
        (lambda d, c: (c.update(p_loyal="0.5"), d)[1], "p_loyal: expected a number in 0..1, got '0.5'"),
        (lambda d, c: (c.update(p_loyal=1.5), d)[1], "p_loyal: expected a number in 0..1, got 1.5"),
        (lambda d, c: (c.update(p_loyal_plain=True), d)[1], "p_loyal_plain: expected a number"),
        (lambda d, c: (c.update(segment="gold"), d)[1], "segment 'gold', expected 'loyal'"),
        (lambda d, c: (c.update(segment=None), d)[1], "segment None with p_loyal"),
        (lambda d, c: (c.update(match="yes"), d)[1], "match: expected true or false, got 'yes'"),
        (lambda d, c: (c.update(p_loyal=0.1, segment="loyal"), d)[1], "segment 'loyal' but p_loyal 0.1"),
        (lambda d, c: {**d, "params": {"segment_threshold": 2}}, "params.segment_threshold: expected a number in 0..1"),
    ],
)  # fmt: skip
def test_bad_scores(files: dict[str, Path], edit: Any, needle: str) -> None:
    with pytest.raises(DataError) as err:
        parse_scores(_scores_doc(files, edit), "s.json")
    assert str(err.value).startswith("s.json: ")
    assert needle in str(err.value)
    assert "is this the --out of `mpc-crm churn score`?" in str(err.value)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["totals"].pop("served"), "totals: missing key(s) served"),
        (lambda d: d["totals"].update(served=-1), "totals.served: expected a count"),
        (lambda d: d["totals"].update(net_profit="lots"), "totals.net_profit: expected a number"),
        (lambda d: d.update(action_sets={}), "action_sets: expected a list, got dict"),
        (lambda d: d["action_sets"][0].update(actions=[{"to": "x"}]), "action_sets[0].actions"),
        (lambda d: d["action_sets"][1].pop("served"), "action_sets[1]: missing key(s) served"),
        (lambda d: next(iter(d["customers"].values())).update(segment="x"), "segment 'x'"),
        (lambda d: d.update(customers={}), "customers: empty"),
    ],
)
def test_bad_plan(files: dict[str, Path], edit: Any, needle: str) -> None:
    doc = _doc(files["plan"])
    edit(doc)
    with pytest.raises(DataError, match=re.escape(needle)) as err:
        parse_plan(doc, "p.json")
    assert str(err.value).startswith("p.json: ")


def test_inputs_that_do_not_belong_together(files: dict[str, Path]) -> None:
    # A plan for other customers.
    plan = _doc(files["plan"])
    plan["customers"] = {f"X{cid}": c for cid, c in plan["customers"].items()}
    with pytest.raises(DataError, match=r"plan.json: 48 of the 48 scored customers are not in the "
                       r"plan \('S000-TEST', 'S001-TEST', 'S002-TEST' and 45 more\): a plan for "
                       r"other customers\?"):  # fmt: skip
        _report(files, plan=plan)
    # A plan with more customers is fine (the demo scores 300, plans for all).
    plan = _doc(files["plan"])
    plan["customers"]["EXTRA"] = next(iter(plan["customers"].values()))
    assert "The plan covers 49 customers; of the 48 scored ones" in _report(files, plan=plan)
    # A plan from another model.
    plan = _doc(files["plan"])
    plan["customers"]["S001-TEST"]["p_loyal"] = 0.123
    with pytest.raises(DataError, match=r"customer 'S001-TEST': p_loyal 0.123 in the plan"):
        _report(files, plan=plan)
    # Scores from another model.
    other = copy.deepcopy(MODEL)
    other["nodes"][1] = {"loyal": 91, "churn": 10, "p_loyal": 92 / 103}
    with pytest.raises(DataError, match=r"model.json: customer '\S+': p_loyal_plain .* is no leaf"):
        _report(files, model=TreeModel.from_dict(other))
    # Data without the scored customers.
    customers = load_customers(SMALL)
    few = Customers(customers.ids[:5], customers.rows[:5], customers.columns, None, source="d.csv")
    with pytest.raises(DataError, match=r"d.csv: 43 of the 48 scored customers are not in the"):
        _report(files, customers=few)


def test_cli_errors_are_messages(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "r.html"
    base = ["churn", "report", "--out", str(out)]
    bad = tmp_path / "bad.json"
    for text, needle in [
        ("{not json", "bad.json: not JSON"),
        ('{"customers": {"a": 1}}', "bad.json: customer 'a': expected an object, got int"),
        (
            json.dumps(_doc(files["plan"])),
            "params.segment_threshold: expected a number in 0..1, got '0.5'",
        ),
    ]:
        bad.write_text(text)
        assert _main(monkeypatch, *base, "--scores", str(bad)) == 1
        err = capsys.readouterr().err
        assert err.startswith("mpc-crm churn: ") and needle in err and "Traceback" not in err
    assert _main(monkeypatch, *base, "--scores", str(tmp_path / "none.json")) == 1
    assert "none.json: cannot read" in capsys.readouterr().err
    scores = ["--scores", str(files["scores"])]
    assert _main(monkeypatch, *base, *scores, "--date", "4 March") == 1
    assert "--date '4 March': expected YYYY-MM-DD" in capsys.readouterr().err
    bad.write_text("{}")
    assert _main(monkeypatch, *base, *scores, "--model", str(bad)) == 1
    assert "bad.json: model: missing key(s)" in capsys.readouterr().err
    assert _main(monkeypatch, *base, *scores, "--plan", str(files["scores"])) == 1
    assert "missing key(s) totals, action_sets" in capsys.readouterr().err
    assert not out.exists()
    assert issubclass(DataError, MpcError) and issubclass(ModelError, MpcError)


def test_histogram_bins_are_exact() -> None:
    """A score on a bin edge falls in the bin above (0.15 * 20 is not quite 3 in floats)."""
    doc = {
        "customers": {
            str(i): {"p_loyal": p, "p_loyal_plain": p, "segment": s, "match": True}
            for i, (p, s) in enumerate(
                [(0.15, "unloyal"), (0.35, "unloyal"), (0.55, "loyal"), (1.0, "loyal")]
            )
        }
    }
    svg = ET.fromstring(histogram_chart(parse_scores(doc)))
    ns = "{http://www.w3.org/2000/svg}"
    tips = sorted(t.text or "" for r in svg.iter(f"{ns}rect") for t in r.iter(f"{ns}title"))
    assert tips == [
        "P(loyal) 0.15–0.20: 1 unloyal",
        "P(loyal) 0.35–0.40: 1 unloyal",
        "P(loyal) 0.55–0.60: 1 loyal",
        "P(loyal) 0.95–1.00: 1 loyal",
    ]
