"""``mpc-crm churn report``: one self-contained HTML page of charts for the churn admin.

    mpc-crm churn report --scores scores.json [--plan plan.json] [--model model.json]
                         [--data FILE] [--date YYYY-MM-DD] --out report.html

Inline SVG and CSS only (no script, no external resource); the same inputs
give the same bytes (the only date is ``--date``, today by default). Charts:

1. the loyal / unloyal split of the scored customers, with the threshold;
2. a histogram of the private P(loyal), the threshold marked;
3. with ``--data``: the share of unloyal customers per value of Contract,
   InternetService, PaymentMethod and tenure bands;
4. with ``--plan``: the action sets by summed net profit, served or not,
   and the plan's totals;
5. with ``--model``: held-out accuracy and ROC-AUC, tree size.

The header says whether every private score equals the plaintext model's
(``match`` in scores.json) and lists the customers where it does not.

Inputs are checked and cross-checked: a file of the wrong shape, a plan or a
data file without some scored customer, a plan or a model whose P(loyal)
disagrees with the scores' plaintext ones is a
:class:`~crm.churn.errors.DataError` naming the file and the problem.
Customer ids and attribute values are escaped wherever they are written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from html import escape
from pathlib import Path
from typing import Any

from crm.churn.data import Customers, load_customers, numeric_value
from crm.churn.errors import DataError, ParameterError
from crm.churn.model import TreeModel

__all__ = [
    "PlanFile",
    "PlanSet",
    "Score",
    "Scores",
    "add_report_arguments",
    "build_report",
    "load_plan",
    "load_scores",
    "parse_plan",
    "parse_scores",
    "run_report",
]

# Okabe-Ito: distinguishable with every common colour-vision deficiency.
LOYAL = "#0072B2"
UNLOYAL = "#D55E00"
SERVED = "#009E73"
NOT_SERVED = "#B4B4B4"
NOT_SCORED = "#8C8C8C"
TRACK = "#EEEEEE"

WIDTH = 720
"""Width of every chart (px)."""
BINS = 20
"""Histogram bins over 0..1."""
SEGMENT_COLUMNS = ("Contract", "InternetService", "PaymentMethod")
TENURE_BANDS = (
    (12, "0–12 months"),
    (24, "13–24 months"),
    (48, "25–48 months"),
    (72, "49–72 months"),
    (None, "over 72 months"),
)
"""``(upper bound, label)``: a customer is in the first band with ``tenure <= bound``."""
MAX_SETS = 20
"""Action sets drawn; the rest are summed in one line."""
MAX_MISMATCHES = 20
"""Mismatching customers listed by id; the rest are counted."""
CHAR_W = 7.0
"""Estimated width of a character of 12 px text, for layout (SVG does not wrap)."""
BOLD = 1.1
"""How much wider bold text is."""
P_TOLERANCE = 1e-9
"""How far two P(loyal) written by different commands may be apart and still be the same."""


# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One customer of scores.json; ``p_loyal`` is ``None`` when the private score is missing."""

    customer: str
    p_loyal: float | None
    p_loyal_plain: float
    segment: str | None
    match: bool


@dataclass(frozen=True)
class Scores:
    """scores.json: customers in file order and the segment threshold (0.5 when not written)."""

    source: str
    customers: dict[str, Score]
    threshold: float
    threshold_written: bool

    def count(self, segment: str | None) -> int:
        return sum(1 for s in self.customers.values() if s.segment == segment)

    @property
    def mismatches(self) -> list[Score]:
        return [s for s in self.customers.values() if not s.match]


@dataclass(frozen=True)
class PlanSet:
    """One action set of plan.json."""

    text: str
    customers: int
    net_profit: float
    served: int
    served_net_profit: float


@dataclass(frozen=True)
class PlanCustomer:
    p_loyal: float
    segment: str
    net_profit: float
    served: bool


@dataclass(frozen=True)
class PlanFile:
    """plan.json: what the report draws from it."""

    source: str
    customers: dict[str, PlanCustomer]
    totals: dict[str, float]
    sets: list[PlanSet]
    params: dict[str, Any]
    private: dict[str, Any] | None = None
    """How the private plans compared with the oracle (``mpc-crm churn plan`` without --plain)."""


PLAN_TOTALS = (
    "customers",
    "loyal",
    "unloyal",
    "planned",
    "served",
    "net_profit",
    "cost",
    "action_sets",
)


def _read_json(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(str(path), f"not UTF-8 ({exc.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(str(path), f"not JSON ({exc})") from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _num(value: Any, where: str, *, lo: float | None = None, hi: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return float(value)
    bounds = f" in {lo:g}..{hi:g}" if lo is not None and hi is not None else ""
    bounds = bounds or (f" >= {lo:g}" if lo is not None else "")
    shown = repr(value) if isinstance(value, int | float | str | bool) else _kind(value)
    raise ValueError(f"{where}: expected a number{bounds}, got {shown}")


def _count(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    shown = repr(value) if isinstance(value, int | float | str | bool) else _kind(value)
    raise ValueError(f"{where}: expected a count (an integer >= 0), got {shown}")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object, got {_kind(value)}")
    return value


def _keys(doc: dict[str, Any], keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")


def parse_scores(doc: Any, source: str = "<scores>") -> Scores:
    """Check the shape of scores.json (``docs/churn.md``); problems are a :class:`DataError`."""
    try:
        return _parse_scores(doc, source)
    except ValueError as exc:
        raise DataError(source, f"{exc} (is this the --out of `mpc-crm churn score`?)") from None


def _parse_scores(doc: Any, source: str) -> Scores:
    doc = _object(doc, "top level")
    _keys(doc, ["customers"], "top level")
    people = _object(doc["customers"], "customers")
    if not people:
        raise ValueError("customers: empty")
    params = _object(doc.get("params", {}), "params")
    written = params.get("segment_threshold") is not None
    threshold = (
        _num(params["segment_threshold"], "params.segment_threshold", lo=0, hi=1)
        if written
        else 0.5
    )
    customers: dict[str, Score] = {}
    for cid, entry in people.items():
        where = f"customer {cid!r}"
        entry = _object(entry, where)
        _keys(entry, ["p_loyal", "p_loyal_plain", "segment", "match"], where)
        p = entry["p_loyal"]
        p = None if p is None else _num(p, f"{where}: p_loyal", lo=0, hi=1)
        plain = _num(entry["p_loyal_plain"], f"{where}: p_loyal_plain", lo=0, hi=1)
        segment = entry["segment"]
        if segment not in ("loyal", "unloyal", None):
            raise ValueError(f"{where}: segment {segment!r}, expected 'loyal', 'unloyal' or null")
        if (p is None) != (segment is None):
            raise ValueError(f"{where}: segment {segment!r} with p_loyal {p!r}")
        if written and p is not None and segment != ("loyal" if p >= threshold else "unloyal"):
            raise ValueError(
                f"{where}: segment {segment!r} but p_loyal {p!r} and threshold {threshold:g}"
            )
        match = entry["match"]
        if not isinstance(match, bool):
            raise ValueError(f"{where}: match: expected true or false, got {match!r}")
        customers[cid] = Score(cid, p, plain, segment, match)
    return Scores(source, customers, threshold, written)


def load_scores(path: str | Path) -> Scores:
    return parse_scores(_read_json(path), str(path))


def parse_plan(doc: Any, source: str = "<plan>") -> PlanFile:
    """Check the shape of plan.json (``docs/churn.md``); problems are a :class:`DataError`."""
    try:
        return _parse_plan(doc, source)
    except ValueError as exc:
        raise DataError(source, f"{exc} (is this the --out of `mpc-crm churn plan`?)") from None


def _parse_plan(doc: Any, source: str) -> PlanFile:
    doc = _object(doc, "top level")
    _keys(doc, ["customers", "totals", "action_sets"], "top level")
    customers: dict[str, PlanCustomer] = {}
    for cid, entry in _object(doc["customers"], "customers").items():
        where = f"customer {cid!r}"
        entry = _object(entry, where)
        _keys(entry, ["p_loyal", "segment", "net_profit", "served"], where)
        if entry["segment"] not in ("loyal", "unloyal"):
            raise ValueError(f"{where}: segment {entry['segment']!r}, expected loyal or unloyal")
        if not isinstance(entry["served"], bool):
            raise ValueError(f"{where}: served: expected true or false")
        customers[cid] = PlanCustomer(
            p_loyal=_num(entry["p_loyal"], f"{where}: p_loyal", lo=0, hi=1),
            segment=entry["segment"],
            net_profit=_num(entry["net_profit"], f"{where}: net_profit"),
            served=entry["served"],
        )
    if not customers:
        raise ValueError("customers: empty")
    totals_doc = _object(doc["totals"], "totals")
    _keys(totals_doc, PLAN_TOTALS, "totals")
    totals = {}
    for k in PLAN_TOTALS:
        check = _num if k in ("net_profit", "cost") else _count
        totals[k] = float(check(totals_doc[k], f"totals.{k}"))
    if not isinstance(doc["action_sets"], list):
        raise ValueError(f"action_sets: expected a list, got {_kind(doc['action_sets'])}")
    sets = []
    for i, s in enumerate(doc["action_sets"]):
        where = f"action_sets[{i}]"
        s = _object(s, where)
        _keys(s, ["actions", "customers", "net_profit", "served", "served_net_profit"], where)
        actions = s["actions"]
        if not isinstance(actions, list) or not all(
            isinstance(a, dict)
            and isinstance(a.get("attribute"), str)
            and isinstance(a.get("to"), str)
            for a in actions
        ):
            raise ValueError(f"{where}.actions: expected a list of {{attribute, to}} texts")
        one = PlanSet(
            text="; ".join(f"{a['attribute']} -> {a['to']}" for a in actions) or "-",
            customers=_count(s["customers"], f"{where}.customers"),
            net_profit=_num(s["net_profit"], f"{where}.net_profit"),
            served=_count(s["served"], f"{where}.served"),
            served_net_profit=_num(s["served_net_profit"], f"{where}.served_net_profit"),
        )
        if one.served > one.customers:
            raise ValueError(f"{where}: {one.served} served of {one.customers} customers")
        sets.append(one)
    params = _object(doc.get("params", {}), "params")
    private = None
    if "private" in doc:
        private = _object(doc["private"], "private")
        if not isinstance(private.get("ok"), bool):
            raise ValueError("private.ok: expected true or false")
        _count(private.get("mismatches"), "private.mismatches")
    return PlanFile(source, customers, totals, sets, params, private)


def load_plan(path: str | Path) -> PlanFile:
    return parse_plan(_read_json(path), str(path))


def _examples(ids: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(repr(c) for c in ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")


def check_plan(scores: Scores, plan: PlanFile) -> None:
    """The plan must hold every scored customer, with the same plaintext P(loyal)."""
    missing = [c for c in scores.customers if c not in plan.customers]
    if missing:
        raise DataError(
            plan.source,
            f"{len(missing)} of the {len(scores.customers)} scored customers are not in the plan "
            f"({_examples(missing)}): a plan for other customers?",
        )
    for cid, s in scores.customers.items():
        q = plan.customers[cid].p_loyal
        if abs(q - s.p_loyal_plain) > P_TOLERANCE:
            raise DataError(
                plan.source,
                f"customer {cid!r}: p_loyal {q!r} in the plan, {s.p_loyal_plain!r} in "
                f"{scores.source}: a plan from another model?",
            )


def check_model(scores: Scores, model: TreeModel, source: str) -> None:
    """Every plaintext P(loyal) of the scores must be one of the model's leaves."""
    leaves = sorted({model.p_loyal(leaf) for leaf in model.leaves()})
    for cid, s in scores.customers.items():
        if not any(abs(s.p_loyal_plain - q) <= P_TOLERANCE for q in leaves):
            raise DataError(
                source,
                f"customer {cid!r}: p_loyal_plain {s.p_loyal_plain!r} in {scores.source} is no "
                "leaf of this model: scores from another model?",
            )


def check_data(scores: Scores, customers: Customers) -> None:
    known = set(customers.ids)
    missing = [c for c in scores.customers if c not in known]
    if missing:
        raise DataError(
            customers.source,
            f"{len(missing)} of the {len(scores.customers)} scored customers are not in the file "
            f"({_examples(missing)}): data of other customers?",
        )


# -- formatting --------------------------------------------------------------------------------


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
"""Characters XML 1.0 does not allow even escaped."""


def _e(text: object) -> str:
    """Text escaped for HTML and XML, quotes included; characters XML refuses become U+FFFD."""
    return escape(_NOT_XML.sub("\ufffd", str(text)), quote=True)


def _int(n: float) -> str:
    return f"{round(n):,}"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def _customers(n: float) -> str:
    return f"{_int(n)} customer" + ("" if n == 1 else "s")


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _f(x: float) -> str:
    """A coordinate: one decimal, no ``-0.0``."""
    text = f"{x:.1f}"
    return "0.0" if text == "-0.0" else text


def _clip(text: str, width: float) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` px of 12 px text."""
    n = max(4, int(width / CHAR_W))
    return text if len(text) <= n else text[: n - 1] + "…"


def _nice_step(top: float, ticks: int = 5) -> float:
    """A step of 1, 2 or 5 times a power of ten giving at most ``ticks`` intervals up to ``top``."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw:
            return float(m * power)
    return float(10 * power)  # pragma: no cover


class Svg:
    """A small SVG writer: elements appended as text, coordinates rounded."""

    def __init__(self, width: float, height: float, title: str) -> None:
        self.width, self.height, self.title = width, height, title
        self.parts: list[str] = []

    def rect(self, x: float, y: float, w: float, h: float, fill: str, tip: str = "") -> None:
        tail = f"><title>{_e(tip)}</title></rect>" if tip else "/>"
        self.parts.append(
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0))}" height="{_f(h)}" '
            f'fill="{fill}"{tail}'
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, cls: str = "axis") -> None:
        self.parts.append(
            f'<line class="{cls}" x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}"/>'
        )

    def text(
        self,
        x: float,
        y: float,
        text: str,
        *,
        anchor: str = "start",
        cls: str = "",
        tip: str = "",
        rotate: bool = False,
    ) -> None:
        attrs = f' class="{cls}"' if cls else ""
        if anchor != "start":
            attrs += f' text-anchor="{anchor}"'
        if rotate:
            attrs += f' transform="rotate(-90 {_f(x)} {_f(y)})"'
        body = _e(text) + (f"<title>{_e(tip)}</title>" if tip else "")
        self.parts.append(f'<text x="{_f(x)}" y="{_f(y)}"{attrs}>{body}</text>')

    def render(self) -> str:
        w, h = _f(self.width), _f(self.height)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" role="img" aria-label="{_e(self.title)}">'
            f"<title>{_e(self.title)}</title>" + "".join(self.parts) + "</svg>"
        )


def _legend(svg: Svg, x: float, y: float, items: Sequence[tuple[str, str]]) -> None:
    for color, label in items:
        svg.rect(x, y - 10, 12, 12, color)
        svg.text(x + 17, y, label)
        x += 17 + CHAR_W * len(label) + 24


# -- charts ------------------------------------------------------------------------------------


def split_chart(scores: Scores) -> str:
    """A 100% bar: loyal, unloyal (and not scored), with counts and shares below."""
    n = len(scores.customers)
    thr = f"{scores.threshold:g}"
    parts = [
        ("Loyal", f"P(loyal) ≥ {thr}", scores.count("loyal"), LOYAL),
        ("Unloyal", f"P(loyal) < {thr}", scores.count("unloyal"), UNLOYAL),
        ("Not scored", "no private score", scores.count(None), NOT_SCORED),
    ]
    parts = [p for p in parts if p[2] or p[0] != "Not scored"]
    svg = Svg(WIDTH, 70 + 22 * len(parts), "Loyal and unloyal customers")
    x0, bar_w, x = 10.0, WIDTH - 20.0, 10.0
    for name, _rule, count, color in parts:
        w = bar_w * count / n
        svg.rect(x, 10, w, 36, color, f"{name}: {_int(count)} ({_pct(count, n)})")
        label = _pct(count, n)
        if w >= 9 * len(label) + 8:
            svg.text(x + w / 2, 33, label, anchor="middle", cls="inbar")
        x += w
    for i, (name, rule, count, color) in enumerate(parts):
        y = 74 + 22 * i
        svg.rect(x0, y - 11, 12, 12, color)
        svg.text(x0 + 18, y, name, cls="strong")
        svg.text(x0 + 110, y, rule, cls="tick")
        svg.text(x0 + 330, y, _customers(count), anchor="end", cls="num")
        svg.text(x0 + 390, y, _pct(count, n), anchor="end", cls="num")
    return svg.render()


def histogram_chart(scores: Scores) -> str:
    """Customers per P(loyal) bin, stacked by segment, the threshold as a dashed line."""
    loyal = [0] * BINS
    unloyal = [0] * BINS
    for s in scores.customers.values():
        if s.p_loyal is None:
            continue
        i = min(math.floor(Fraction(repr(s.p_loyal)) * BINS), BINS - 1)
        (loyal if s.segment == "loyal" else unloyal)[i] += 1
    totals = [a + b for a, b in zip(loyal, unloyal, strict=True)]
    top = max(totals) or 1
    step = _nice_step(top)
    y_top = step * math.ceil(top / step)
    left, right, top_px, bottom = 64.0, WIDTH - 16.0, 44.0, 246.0
    svg = Svg(WIDTH, 296, "Histogram of P(loyal), the private scores")

    def px(p: float) -> float:
        return left + (right - left) * p

    def py(c: float) -> float:
        return bottom - (bottom - top_px) * c / y_top

    k = 0
    while k * step <= y_top + 1e-9:
        y = py(k * step)
        svg.line(left, y, right, y, "grid")
        svg.text(left - 6, y + 4, _int(k * step), anchor="end", cls="tick")
        k += 1
    bw = (right - left) / BINS
    for i in range(BINS):
        x = px(i / BINS) + 1
        lo, hi = i / BINS, (i + 1) / BINS
        rng = f"P(loyal) {lo:.2f}–{hi:.2f}"
        if unloyal[i]:
            svg.rect(
                x,
                py(unloyal[i]),
                bw - 2,
                bottom - py(unloyal[i]),
                UNLOYAL,
                f"{rng}: {unloyal[i]} unloyal",
            )
        if loyal[i]:
            base = py(unloyal[i])
            svg.rect(
                x, py(totals[i]), bw - 2, base - py(totals[i]), LOYAL, f"{rng}: {loyal[i]} loyal"
            )
        if totals[i]:
            svg.text(x + bw / 2 - 1, py(totals[i]) - 4, _int(totals[i]), anchor="middle", cls="num")
    svg.line(left, bottom, right, bottom)
    svg.line(left, top_px - 8, left, bottom)
    for t in range(11):
        x = px(t / 10)
        svg.line(x, bottom, x, bottom + 4)
        svg.text(x, bottom + 17, f"{t / 10:.1f}", anchor="middle", cls="tick")
    svg.text(
        (left + right) / 2, bottom + 38, "P(loyal), the private score", anchor="middle", cls="label"
    )
    svg.text(16, (top_px + bottom) / 2, "customers", anchor="middle", cls="label", rotate=True)
    xt = px(scores.threshold)
    svg.line(xt, top_px - 14, xt, bottom, "threshold")
    flip = scores.threshold > 0.8
    svg.text(
        xt + (-5 if flip else 5),
        top_px - 6,
        f"threshold {scores.threshold:g}",
        anchor="end" if flip else "start",
        cls="strong",
    )
    _legend(svg, right - 190, 14, [(UNLOYAL, "unloyal"), (LOYAL, "loyal")])
    return svg.render()


def _tenure_band(row: Mapping[str, str]) -> str:
    tenure = numeric_value(row, "tenure")
    for bound, label in TENURE_BANDS:
        if bound is None or tenure <= Decimal(bound):
            return label
    raise AssertionError("unreachable")  # pragma: no cover


def segment_groups(
    scores: Scores, customers: Customers
) -> list[tuple[str, list[tuple[str, int, int]]]]:
    """``(title, [(value, unloyal, scored)])`` per column, for the scored customers."""
    rows = dict(zip(customers.ids, customers.rows, strict=True))
    scored = [(rows[c], s.segment) for c, s in scores.customers.items() if s.segment is not None]
    columns: list[tuple[str, Callable[[Mapping[str, str]], str], list[str] | None]] = [
        (c, lambda row, c=c: row[c], None) for c in SEGMENT_COLUMNS
    ]
    columns.append(("Tenure", _tenure_band, [label for _, label in TENURE_BANDS]))
    groups = []
    for title, value_of, order in columns:
        counts: dict[str, list[int]] = {}
        for row, segment in scored:
            c = counts.setdefault(value_of(row), [0, 0])
            c[0] += segment == "unloyal"
            c[1] += 1
        values = [v for v in order if v in counts] if order else sorted(counts)
        groups.append((title, [(v, counts[v][0], counts[v][1]) for v in values]))
    return groups


def segment_chart(title: str, values: list[tuple[str, int, int]], overall: float) -> str:
    """Share of unloyal customers per value: horizontal bars on a 0..100% track."""
    longest = max((len(v) for v, _, _ in values), default=4)
    label_w = min(max(longest * CHAR_W + 16, 90.0), 230.0)
    left, right, row_h, top = label_w, WIDTH - 150.0, 26.0, 22.0
    height = top + row_h * len(values) + 44
    svg = Svg(WIDTH, height, f"Share of unloyal customers by {title}")
    for k, (value, bad, n) in enumerate(values):
        y = top + row_h * k
        svg.text(left - 8, y + 15, _clip(value, label_w - 16), anchor="end", tip=value)
        svg.rect(left, y + 3, right - left, 17, TRACK)
        w = (right - left) * bad / n
        tip = f"{title} = {value}: {bad} of {n} unloyal"
        svg.rect(left, y + 3, w, 17, UNLOYAL, tip)
        svg.text(left + w + 6, y + 16, f"{_pct(bad, n)} ({_int(bad)} of {_int(n)})", cls="num")
    bottom = top + row_h * len(values) + 2
    for t in range(0, 101, 25):
        x = left + (right - left) * t / 100
        svg.line(x, bottom, x, bottom + 4)
        svg.text(x, bottom + 16, f"{t}%", anchor="middle", cls="tick")
    svg.line(left, bottom, right, bottom)
    xo = left + (right - left) * overall
    svg.line(xo, top - 6, xo, bottom, "threshold")
    flip = overall > 0.6
    svg.text(
        xo + (-5 if flip else 5),
        top - 6,
        f"all scored: {100 * overall:.1f}%",
        anchor="end" if flip else "start",
        cls="tick",
    )
    svg.text(
        (left + right) / 2, bottom + 34, "share of unloyal customers", anchor="middle", cls="label"
    )
    return svg.render()


def profit_chart(plan: PlanFile) -> str:
    """Action sets by summed net profit: one text line and one bar each, served part in green."""
    sets = plan.sets[:MAX_SETS]
    rest = plan.sets[MAX_SETS:]
    left, right, row_h, top = 10.0, WIDTH - 260.0, 44.0, 34.0
    height = top + row_h * len(sets) + (22 if rest else 0) + 36
    svg = Svg(WIDTH, height, "Action sets by summed net profit")
    _legend(svg, left, 16, [(SERVED, "served"), (NOT_SERVED, "not served")])
    top_value = max((s.net_profit for s in plan.sets), default=0.0)
    scale = (right - left) / top_value if top_value > 0 else 0.0
    for k, s in enumerate(sets):
        y = top + row_h * k
        label = _clip(f"{k + 1}. {s.text}", (WIDTH - 20) / BOLD)
        svg.text(left, y + 12, label, cls="strong", tip=s.text)
        w_all = max(s.net_profit, 0.0) * scale
        w_served = min(max(s.served_net_profit, 0.0) * scale, w_all)
        svg.rect(
            left, y + 18, w_served, 16, SERVED, f"{s.text}: served {_money(s.served_net_profit)}"
        )
        svg.rect(
            left + w_served,
            y + 18,
            w_all - w_served,
            16,
            NOT_SERVED,
            f"{s.text}: not served {_money(s.net_profit - s.served_net_profit)}",
        )
        if s.served == s.customers:
            status = "served"
        elif s.served == 0:
            status = "not served"
        else:
            status = f"{_int(s.served)} served"
        svg.text(
            left + w_all + 6,
            y + 31,
            f"{_money(s.net_profit)} · {_customers(s.customers)} · {status}",
            cls="num",
        )
    y = top + row_h * len(sets)
    if rest:
        summed = sum(s.net_profit for s in rest)
        svg.text(
            left,
            y + 12,
            f"… and {len(rest)} more action sets: {_money(summed)} net profit, "
            f"{_customers(sum(s.customers for s in rest))}",
            cls="tick",
        )
        y += 22
    svg.line(left, y + 4, right, y + 4)
    svg.text(left, y + 20, "0", cls="tick")
    svg.text(right, y + 20, _money(top_value), anchor="middle", cls="tick")
    svg.text(
        (left + right) / 2, y + 20, "summed net profit per action set", anchor="middle", cls="label"
    )
    return svg.render()


# -- the page ----------------------------------------------------------------------------------

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
margin:24px auto;max-width:760px;padding:0 12px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:14px 0 2px}
p{margin:4px 0}.meta{color:#555}.note{color:#555;font-size:13px}
.ok{border-left:5px solid #009E73;background:#eef8f4;padding:8px 12px;margin:12px 0}
.bad{border-left:5px solid #D55E00;background:#fdf0e8;padding:8px 12px;margin:12px 0;
font-weight:600}
.bad ul{font-weight:400;margin:4px 0}
table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 14px 3px 0;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
th{font-weight:600;border-bottom:1px solid #ccc}
code{font-size:13px}
svg{display:block;max-width:100%;height:auto;margin:4px 0}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#222}
svg text.tick{fill:#555;font-size:11px}
svg text.num{font-size:11px;paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}
svg text.label{font-size:12px;fill:#555}svg text.strong{font-weight:600}
svg text.inbar{fill:#fff;font-size:15px;font-weight:700}
svg line.axis{stroke:#444;stroke-width:1}svg line.grid{stroke:#e2e2e2;stroke-width:1}
svg line.threshold{stroke:#222;stroke-width:1.5;stroke-dasharray:5 3}
""".strip()


def _table(rows: Sequence[tuple[str, str]]) -> str:
    return (
        "<table>"
        + "".join(f'<tr><td>{_e(k)}</td><td class="n">{_e(v)}</td></tr>' for k, v in rows)
        + "</table>"
    )


def _match_block(scores: Scores) -> str:
    n = len(scores.customers)
    bad = scores.mismatches
    if not bad:
        return f'<div class="ok">✓ All {_int(n)} private scores equal the plaintext model\'s.</div>'
    items = []
    for s in bad[:MAX_MISMATCHES]:
        got = "no private score" if s.p_loyal is None else f"private {s.p_loyal!r}"
        items.append(
            f"<li><code>{_e(s.customer)}</code>: {_e(got)}, plaintext "
            f"{_e(repr(s.p_loyal_plain))}</li>"
        )
    more = len(bad) - MAX_MISMATCHES
    if more > 0:
        items.append(f"<li>… and {_int(more)} more</li>")
    return (
        f'<div class="bad" role="alert">✗ MISMATCH: {_int(len(bad))} of {_int(n)} private '
        f"scores differ from the plaintext model's. Do not act on this report before finding "
        f"out why.<ul>{''.join(items)}</ul></div>"
    )


def _model_section(model: TreeModel, source: str) -> str:
    m = model.metrics

    def metric(key: str, fmt: Callable[[Any], str]) -> str:
        v = m.get(key)
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        return fmt(v) if ok else "not recorded"

    rows = [
        ("held-out accuracy", metric("test_accuracy", lambda v: f"{v:.3f}")),
        ("held-out ROC-AUC", metric("test_auc", lambda v: f"{v:.3f}")),
        ("cross-validated ROC-AUC", metric("cv_auc", lambda v: f"{v:.3f}")),
        ("training / held-out customers", f"{metric('n_train', _int)} / {metric('n_test', _int)}"),
        (
            "tree: nodes, leaves, depth",
            f"{_int(len(model.nodes))}, {_int(len(model.leaves()))}, {model.depth}",
        ),
    ]
    return f'<h2>The model</h2><p class="meta">{_e(source)}</p>{_table(rows)}'


def _plan_section(plan: PlanFile, scores: Scores) -> str:
    t = plan.totals
    params = plan.params
    if params.get("max_action_sets") is not None:
        limit = f"the {params['max_action_sets']} most profitable action sets"
    elif params.get("budget") is not None:
        limit = f"budget {params['budget']}"
    else:
        limit = "no limit" if params else "not recorded"
    rows = [
        ("customers in the plan", _int(t["customers"])),
        ("unloyal", _int(t["unloyal"])),
        ("with a profitable plan", _int(t["planned"])),
        ("served customers", _int(t["served"])),
        ("action sets served / planned", f"{_int(t['action_sets'])} / {_int(len(plan.sets))}"),
        ("net profit of the served", _money(t["net_profit"])),
        ("cost of the served", _money(t["cost"])),
        ("limit", str(limit)),
    ]
    notes = []
    if "profit" in params:
        notes.append(f"Profit of keeping a customer: <code>{_e(params['profit'])}</code>.")
    if len(plan.customers) > len(scores.customers):
        mine = [plan.customers[c] for c in scores.customers]
        served = [p for p in mine if p.served]
        notes.append(
            f"The plan covers {_int(len(plan.customers))} customers; of the "
            f"{_int(len(scores.customers))} scored ones, {_int(len(served))} are served, "
            f"net profit {_money(sum(p.net_profit for p in served))}."
        )
    thr = params.get("segment_threshold")
    if thr is not None and _same_threshold(thr, scores.threshold) is False:
        notes.append(
            f"The plan's segment threshold is {_e(thr)}, the scores' {scores.threshold:g}."
        )
    chart = profit_chart(plan) if plan.sets else "<p>No unloyal customer has a profitable plan.</p>"
    return (
        f'<h2>Profit of actions</h2><p class="meta">{_e(plan.source)}</p>{_plan_match_block(plan)}{_table(rows)}'
        + "".join(f'<p class="note">{n}</p>' for n in notes)
        + chart
    )


def _plan_match_block(plan: PlanFile) -> str:
    """Whether the plans were computed privately and agreed with the plaintext oracle."""
    p = plan.private
    if p is None:
        return '<p class="note">These plans were computed in the clear (<code>--plain</code>).</p>'
    n = len(plan.customers)
    if p["ok"]:
        t = p.get("planning_s")
        took = f" (planning {float(t):.0f} s after scoring)" if isinstance(t, int | float) else ""
        return f'<div class="ok">✓ All {_int(n)} plans were computed privately and equal the plaintext oracle\'s{took}.</div>'
    return (
        f'<div class="bad" role="alert">✗ MISMATCH: {_int(int(p["mismatches"]))} of {_int(n)} private '
        f"plans differ from the plaintext oracle's. Do not act on them before finding out why.</div>"
    )


def _same_threshold(a: Any, b: float) -> bool | None:
    try:
        return Fraction(str(a).strip()) == Fraction(repr(b))
    except (ValueError, ZeroDivisionError):
        return None


def build_report(
    scores: Scores,
    *,
    date: str,
    plan: PlanFile | None = None,
    model: TreeModel | None = None,
    model_source: str = "model.json",
    customers: Customers | None = None,
) -> str:
    """The report as one HTML document (also well-formed XML). Cross-checks the inputs first."""
    if plan is not None:
        check_plan(scores, plan)
    if model is not None:
        check_model(scores, model, model_source)
    if customers is not None:
        check_data(scores, customers)
    n = len(scores.customers)
    thr = f"{scores.threshold:g}" + ("" if scores.threshold_written else " (default)")
    body = [
        "<h1>Churn report</h1>",
        f'<p class="meta">{_e(date)} · {_int(n)} customers scored · segment threshold {_e(thr)}'
        f" · {_e(scores.source)}</p>",
        _match_block(scores),
        "<h2>Loyal and unloyal customers</h2>",
        f"<p>A customer is <b>loyal</b> when their private P(loyal) is at least {_e(thr)}.</p>",
        split_chart(scores),
        "<h2>P(loyal) over customers</h2>",
        f'<p class="note">Customers per bin of width {1 / BINS:g}; a bin holds P(loyal) from its '
        "lower edge up to (not including) the next; the dashed line is the threshold.</p>",
        histogram_chart(scores),
    ]
    if customers is not None:
        scored = n - scores.count(None)
        overall = scores.count("unloyal") / scored if scored else 0.0
        body += [
            "<h2>Churn by segment</h2>",
            f'<p class="meta">{_e(customers.source)}</p>',
            f'<p class="note">Share of unloyal customers among the {_int(scored)} scored, per '
            f"value; the dashed line is the share over all of them ({100 * overall:.1f}%).</p>",
        ]
        for title, values in segment_groups(scores, customers):
            body += [f"<h3>{_e(title)}</h3>", segment_chart(title, values, overall)]
    if plan is not None:
        body.append(_plan_section(plan, scores))
    if model is not None:
        body.append(_model_section(model, model_source))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"/>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
        f"<title>Churn report {_e(date)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


# -- command line ------------------------------------------------------------------------------


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", metavar="FILE", required=True, help="scores.json from churn score")
    p.add_argument("--plan", metavar="FILE", help="plan.json from churn plan: profit of actions")
    p.add_argument("--model", metavar="FILE", help="model.json: accuracy, ROC-AUC, tree size")
    p.add_argument("--data", metavar="FILE", help="customers CSV: churn by segment")
    p.add_argument("--date", metavar="YYYY-MM-DD", help="the date in the header (default today)")
    p.add_argument("--out", metavar="FILE", required=True, help="where to write report.html")


def run_report(args: argparse.Namespace) -> int:
    if args.date is None:
        date = datetime.date.today().isoformat()
    else:
        try:
            date = datetime.date.fromisoformat(args.date).isoformat()
        except ValueError:
            raise ParameterError(f"--date {args.date!r}: expected YYYY-MM-DD") from None
    scores = load_scores(args.scores)
    plan = load_plan(args.plan) if args.plan else None
    model = TreeModel.load(args.model) if args.model else None
    customers = load_customers(args.data) if args.data else None
    html = build_report(
        scores,
        date=date,
        plan=plan,
        model=model,
        model_source=str(args.model),
        customers=customers,
    )
    try:
        Path(args.out).write_text(html, encoding="utf-8")
    except OSError as exc:
        raise ParameterError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
    n, bad = len(scores.customers), len(scores.mismatches)
    print(
        f"{n} customers: {scores.count('loyal')} loyal, {scores.count('unloyal')} unloyal; "
        + (
            "every private score matches the plaintext model"
            if not bad
            else f"{bad} private score(s) DIFFER from the plaintext model"
        )
    )
    print(f"wrote {args.out} ({Path(args.out).resolve().as_uri()})")
    return 0
