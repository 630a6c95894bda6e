"""Retention actions by leaf-node search (Yang et al., TKDE 2007), in the clear.

This is the exact function a private version must reproduce, so every step
is integer or :class:`~fractions.Fraction` arithmetic; floats appear only in
JSON. The rule (also in ``docs/churn.md``):

A customer in leaf ``S`` (walked with encoded integers) may be moved to any
leaf ``D`` with ``P(D) > P(S)`` (``P`` = smoothed ``p_loyal``). ``D``'s path
constrains each column it tests:

- categorical ``C``: right of ``C=v`` means "is v", left means "is not v";
  ``A`` = the model's values of ``C`` meeting every constraint. If the
  customer's value ``u`` meets them: no action. Else the cheapest ``v`` in
  ``A`` with a cost ``u -> v`` (ties: ``v`` ascending as a string) is the
  action; none (or ``C`` hard) makes ``D`` unreachable.
- numeric ``f``: an interval ``lo < x <= hi`` of encoded integers
  (thresholds by :func:`~crm.churn.model.threshold_int`). Inside: no
  action. Above: move down to ``hi``; at or below ``lo``: up to ``lo + 1``,
  at ``unit_cost * |x - x'| / scale``. Hard, a direction without a cost,
  or a target outside ``0 .. 2^bits - 2`` makes ``D`` unreachable.

``net = profit(customer) * (P(D) - P(S)) - sum of action costs``; the plan
is the ``D`` of largest ``net > 0`` (ties: smaller leaf index), or none.
Only customers with ``P(S)`` below the segment threshold are planned for.

With limited resources (:func:`select`): an action set is the sorted tuple
of ``(attribute, to)``; ``max_action_sets=k`` keeps the ``k`` sets with the
largest summed net profit (ties: the set's text ascending) and serves their
customers; ``budget=B`` takes customers by net profit descending (ties: id
ascending), serving each whose cost still fits in what is left of ``B``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from crm.churn.costs import Costs
from crm.churn.data import Customers, split_feature
from crm.churn.errors import DataError, ParameterError
from crm.churn.model import TreeModel, encode_row, threshold_int

__all__ = [
    "Action",
    "ActionSetStats",
    "CustomerPlan",
    "LeafConditions",
    "Selection",
    "format_encoded",
    "leaf_conditions",
    "plan_all",
    "plan_customer",
    "reach",
    "select",
    "set_text",
    "to_fraction",
]

ActionSet = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Action:
    """Change ``attribute`` from ``old`` to ``new`` (numbers as decimal text) at ``cost``."""

    attribute: str
    old: str
    new: str
    cost: Fraction

    def to_dict(self) -> dict[str, object]:
        return {
            "attribute": self.attribute,
            "from": self.old,
            "to": self.new,
            "cost": float(self.cost),
        }


@dataclass(frozen=True)
class CustomerPlan:
    """One customer's leaf, segment and best action plan (``target is None`` when none)."""

    customer: str
    leaf: int
    p_loyal: Fraction
    segment: str
    target: int | None = None
    p_target: Fraction | None = None
    actions: tuple[Action, ...] = ()
    net_profit: Fraction = Fraction(0)

    @property
    def cost(self) -> Fraction:
        return sum((a.cost for a in self.actions), Fraction(0))

    @property
    def action_set(self) -> ActionSet:
        """The plan's identity: sorted ``(attribute, to)`` pairs."""
        return tuple(sorted((a.attribute, a.new) for a in self.actions))


@dataclass(frozen=True)
class LeafConditions:
    """What a leaf's path requires, column by column.

    ``categorical[C]`` lists ``(v, ok)`` pairs: the indicator ``int(value == v)``
    must be in ``ok`` (``{1}``: is ``v``; ``{0}``: is not ``v``);
    ``allowed[C]`` the model's values of ``C`` meeting them all, sorted.
    ``numeric[f] = (lo, hi)``: ``lo < x <= hi`` in encoded integers, ``None``
    for no bound.
    """

    leaf: int
    categorical: Mapping[str, tuple[tuple[str, frozenset[int]], ...]]
    allowed: Mapping[str, tuple[str, ...]]
    numeric: Mapping[str, tuple[int | None, int | None]]

    def meets(self, column: str, value: str) -> bool:
        """Whether ``value`` of categorical ``column`` meets this leaf's constraints."""
        return all(int(value == v) in ok for v, ok in self.categorical.get(column, ()))


def to_fraction(value: Fraction | int | float | str) -> Fraction:
    """An exact number from text (``"0.5"``, ``"1/2"``), an int, or a float as its repr writes it."""
    if isinstance(value, Fraction | int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"{value!r} is not finite")
        return Fraction(Decimal(repr(value)))
    try:
        return Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        raise ParameterError(f"{value!r} is not a number") from None


def format_encoded(x: int, scale: int) -> str:
    """An encoded integer as decimal text with the scale's decimals (2985, 100 -> ``"29.85"``)."""
    digits = len(str(scale)) - 1
    return f"{Decimal(x).scaleb(-digits):f}" if digits else str(x)


def set_text(key: ActionSet) -> str:
    """An action set as text: ``"Contract -> One year; MonthlyCharges -> 70.00"`` (``"-"`` if empty)."""
    return "; ".join(f"{a} -> {v}" for a, v in key) or "-"


def leaf_conditions(model: TreeModel, leaf: int) -> LeafConditions:
    """The constraints of ``leaf``'s path, grouped by column."""
    categorical: dict[str, list[tuple[str, frozenset[int]]]] = {}
    numeric: dict[str, tuple[int | None, int | None]] = {}
    for node, right in model.path(leaf):
        column, value = split_feature(model.split(node).feature)
        t = threshold_int(model, node)
        if value is not None:
            ok = frozenset(x for x in (0, 1) if (x > t) == right)
            categorical.setdefault(column, []).append((value, ok))
        else:
            lo, hi = numeric.get(column, (None, None))
            if right:
                lo = t if lo is None else max(lo, t)
            else:
                hi = t if hi is None else min(hi, t)
            numeric[column] = (lo, hi)
    tests = {c: tuple(t) for c, t in categorical.items()}
    allowed = {
        c: tuple(sorted(v for v in model.values(c) if all(int(v == w) in ok for w, ok in tests[c])))
        for c in tests
    }
    return LeafConditions(leaf, tests, allowed, numeric)


def reach(
    model: TreeModel,
    costs: Costs,
    row: Mapping[str, str],
    ints: Mapping[str, int],
    target: LeafConditions,
) -> tuple[Action, ...] | None:
    """The cheapest actions that move a customer into ``target``'s leaf, or ``None``."""
    actions: list[Action] = []
    for column in target.categorical:
        u = row[column]
        if target.meets(column, u):
            continue
        if costs.is_hard(column):
            return None
        options = [
            (c, v)
            for v in target.allowed[column]
            if (c := costs.move_cost(column, u, v)) is not None
        ]
        if not options:
            return None
        cost, v = min(options)
        actions.append(Action(column, u, v, cost))
    for feature, (lo, hi) in target.numeric.items():
        x = ints[feature]
        if (lo is None or x > lo) and (hi is None or x <= hi):
            continue
        if lo is not None and hi is not None and lo >= hi:
            return None
        enc = model.encoding_of(feature)
        if hi is not None and x > hi:
            new, direction = hi, "down"
        else:
            assert lo is not None
            new, direction = lo + 1, "up"
        unit = costs.unit_cost(feature, direction)
        if unit is None or not 0 <= new <= enc.max_value:
            return None
        cost = unit * abs(x - new) / enc.scale
        old_text, new_text = format_encoded(x, enc.scale), format_encoded(new, enc.scale)
        actions.append(Action(feature, old_text, new_text, cost))
    return tuple(sorted(actions, key=lambda a: (a.attribute, a.new)))


def _segment(p: Fraction, threshold: Fraction) -> str:
    return "loyal" if p >= threshold else "unloyal"


def plan_customer(
    model: TreeModel,
    costs: Costs,
    customer: str,
    row: Mapping[str, str],
    *,
    segment_threshold: Fraction | int | float | str = Fraction(1, 2),
    targets: list[LeafConditions] | None = None,
) -> CustomerPlan:
    """The best plan for one customer (see the module docstring for the exact rule).

    ``targets`` (every leaf's :func:`leaf_conditions`) saves recomputing them
    for each customer.
    """
    threshold = to_fraction(segment_threshold)
    if targets is None:
        targets = [leaf_conditions(model, leaf) for leaf in model.leaves()]
    ints = encode_row(model, row)
    leaf = model.leaf_of_encoded(ints)
    p = model.p_loyal_exact(leaf)
    plan = CustomerPlan(customer, leaf, p, _segment(p, threshold))
    if plan.segment == "loyal":
        return plan
    profit = costs.profit.value(row)
    if profit <= 0:
        return plan
    # Highest p_loyal first: once the gross gain falls below the best net, nothing can beat it.
    candidates = sorted(
        (t for t in targets if model.p_loyal_exact(t.leaf) > p),
        key=lambda t: (-model.p_loyal_exact(t.leaf), t.leaf),
    )
    best: tuple[Fraction, int, tuple[Action, ...]] | None = None
    for target in candidates:
        gain = profit * (model.p_loyal_exact(target.leaf) - p)
        if best is not None and gain < best[0]:
            break
        actions = reach(model, costs, row, ints, target)
        if actions is None:
            continue
        net = gain - sum((a.cost for a in actions), Fraction(0))
        if net <= 0:
            continue
        if best is None or net > best[0] or (net == best[0] and target.leaf < best[1]):
            best = (net, target.leaf, actions)
    if best is None:
        return plan
    net, target_leaf, actions = best
    return CustomerPlan(
        customer,
        leaf,
        p,
        plan.segment,
        target=target_leaf,
        p_target=model.p_loyal_exact(target_leaf),
        actions=actions,
        net_profit=net,
    )


def plan_all(
    model: TreeModel,
    costs: Costs,
    customers: Customers,
    *,
    segment_threshold: Fraction | int | float | str = Fraction(1, 2),
) -> dict[str, CustomerPlan]:
    """:func:`plan_customer` for every customer, in file order.

    A column the model needs that the file lacks, or a value outside the
    model's encoding, is a :class:`DataError` naming the file (and customer).
    """
    missing = [c for c in model.columns if c not in customers.columns]
    if missing:
        raise DataError(customers.source, f"missing column(s) the model uses: {', '.join(missing)}")
    threshold = to_fraction(segment_threshold)
    targets = [leaf_conditions(model, leaf) for leaf in model.leaves()]
    plans = {}
    for cid, row in zip(customers.ids, customers.rows, strict=True):
        try:
            plans[cid] = plan_customer(
                model, costs, cid, row, segment_threshold=threshold, targets=targets
            )
        except DataError as exc:
            raise DataError(
                customers.source, f"customer {cid!r}: {exc.reason}", column=exc.column
            ) from None
    return plans


@dataclass(frozen=True)
class ActionSetStats:
    """One action set: how many customers it is the plan of, how many are served, net profits."""

    key: ActionSet
    customers: int
    net_profit: Fraction
    served: int
    served_net_profit: Fraction

    @property
    def text(self) -> str:
        return set_text(self.key)


@dataclass(frozen=True)
class Selection:
    """Who is served under the limits, and what it costs and earns."""

    served: frozenset[str]
    net_profit: Fraction
    cost: Fraction
    sets: tuple[ActionSetStats, ...]
    """Every planned action set, by summed net profit descending (ties: text ascending)."""

    @property
    def sets_used(self) -> int:
        return sum(1 for s in self.sets if s.served)


def select(
    plans: Mapping[str, CustomerPlan],
    *,
    max_action_sets: int | None = None,
    budget: Fraction | int | float | str | None = None,
) -> Selection:
    """Serve planned customers under at most one limit (see the module docstring)."""
    if max_action_sets is not None and budget is not None:
        raise ParameterError("give max_action_sets or budget, not both")
    planned = [p for p in plans.values() if p.target is not None]
    groups: dict[ActionSet, list[CustomerPlan]] = {}
    for p in planned:
        groups.setdefault(p.action_set, []).append(p)
    by_profit = sorted(
        groups, key=lambda k: (-sum((p.net_profit for p in groups[k]), Fraction(0)), set_text(k))
    )
    if max_action_sets is not None:
        if max_action_sets < 0:
            raise ParameterError(f"max_action_sets must be >= 0, got {max_action_sets}")
        served = {p.customer for k in by_profit[:max_action_sets] for p in groups[k]}
    elif budget is not None:
        left = to_fraction(budget)
        if left < 0:
            raise ParameterError(f"budget must be >= 0, got {budget}")
        served = set()
        for p in sorted(planned, key=lambda p: (-p.net_profit, p.customer)):
            if p.cost <= left:
                served.add(p.customer)
                left -= p.cost
    else:
        served = {p.customer for p in planned}
    sets = []
    for k in by_profit:
        members = groups[k]
        chosen = [p for p in members if p.customer in served]
        sets.append(
            ActionSetStats(
                key=k,
                customers=len(members),
                net_profit=sum((p.net_profit for p in members), Fraction(0)),
                served=len(chosen),
                served_net_profit=sum((p.net_profit for p in chosen), Fraction(0)),
            )
        )
    return Selection(
        served=frozenset(served),
        net_profit=sum((plans[c].net_profit for c in served), Fraction(0)),
        cost=sum((plans[c].cost for c in served), Fraction(0)),
        sets=tuple(sets),
    )
