"""The leaf-node search compiled into integer linear forms: what private planning evaluates.

:mod:`crm.churn.plan` searches the leaves of one customer with fractions.
Here the same search, for every customer at once, becomes a fixed list of
*contenders*, each with an integer **key** that is a linear form in bits
the two servers can hold as XOR shares:

- ``("oh", C, v)``: the customer's categorical column ``C`` is ``v`` (one-hot;
  a value neither the model nor the cost file names is all zeros);
- ``("gt", f, t)``: numeric feature ``f`` is above the threshold ``t``
  (encoded integers; every threshold of ``f`` in the tree);
- ``("x", f, i)``: bit ``i`` of feature ``f``'s encoded value.

Contenders (:class:`Contender`), in a public order:

- one per target leaf ``D`` and *variant* (for each numeric feature ``D``'s
  path bounds: inside the interval, moved down to ``hi`` or up to ``lo + 1``
  when the cost file allows), key ``Z * (profit * P(D) - cost)`` minus a
  penalty ``PEN`` for every condition the variant needs and the customer
  does not meet (a hard attribute, a move not offered, the wrong side of a
  bound);
- one *stay* contender per leaf ``L``: ``Z * profit * P(L)`` minus ``PEN``
  per condition on ``L``'s path the customer violates, plus ``PEN2`` when
  ``P(L)`` is at or above the segment threshold.

Exactly one stay contender, the customer's own leaf ``S``, is unpenalized,
and its key is ``Z * profit * P(S)`` (plus ``PEN2`` for a loyal customer),
so the largest key is a target exactly when its net profit is positive and
the customer is unloyal: the plan of :func:`crm.churn.plan.plan_customer`.
Targets with ``P(D) <= P(S)`` need no test: with a profit that cannot be
negative (checked) their net is never positive. Ties: every key is
``(G * T + tb) * 2^PB + payload`` with a distinct tie-break ``tb`` (stay
contenders above targets, then the smaller leaf first), so keys never tie,
and the low ``PB`` bits carry the target's **payload**: the profit, and for
each soft column the code of the customer's current value when the plan
moves it (the actions' ``from``). The admin reads only those bits.

``Z`` is the least common multiple of every denominator involved (the
leaves' ``n + 2``, the scales, the costs), so all of this is exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import product

from crm.churn.costs import Costs
from crm.churn.data import split_feature
from crm.churn.errors import ParameterError
from crm.churn.model import TreeModel, encode_row, threshold_int
from crm.churn.plan import (
    Action,
    CustomerPlan,
    LeafConditions,
    format_encoded,
    leaf_conditions,
    to_fraction,
)
from mpc.errors import ProtocolError

__all__ = [
    "Contender",
    "Form",
    "PlanForms",
    "compile_plan",
]

Var = tuple[str, str, object]


@dataclass
class Form:
    """``const + sum(coef * var)`` over 0/1 variables, exact integers."""

    const: int = 0
    coefs: dict[Var, int] = field(default_factory=dict)

    def add(self, var: Var | None, coef: int) -> Form:
        """Add ``coef * var`` (``var`` None: a constant) in place; returns self."""
        if var is None:
            self.const += coef
        elif coef:
            self.coefs[var] = self.coefs.get(var, 0) + coef
        return self

    def plus(self, other: Form, times: int = 1) -> Form:
        self.const += times * other.const
        for v, c in other.coefs.items():
            self.add(v, times * c)
        return self

    def scaled(self, k: int) -> Form:
        return Form(self.const * k, {v: c * k for v, c in self.coefs.items()})

    def value(self, env: Mapping[Var, int]) -> int:
        return self.const + sum(c * env[v] for v, c in self.coefs.items())

    def bound(self) -> int:
        """The largest absolute value over any 0/1 assignment (loose)."""
        return abs(self.const) + sum(abs(c) for c in self.coefs.values())


@dataclass(frozen=True)
class Contender:
    """One candidate outcome: move to ``leaf`` with numeric ``variant`` moves, or stay."""

    kind: str  # "target" | "stay"
    leaf: int
    variant: tuple[tuple[str, str], ...]  # (numeric feature, "in" | "down" | "up")
    tb: int
    gain: Form  # Z * (profit * P - cost) (+ PEN2 for a loyal stay), without penalties
    penalty: Form  # the number of unmet conditions
    payload: Form


@dataclass(frozen=True)
class PayloadField:
    name: str  # "profit", a soft categorical column, or a soft numeric feature
    kind: str  # "profit" | "code" | "value"
    offset: int
    width: int


@dataclass
class PlanForms:
    """The compiled search (:func:`compile_plan`); see the module docstring."""

    model: TreeModel
    costs: Costs
    segment_threshold: Fraction
    variables: list[Var]
    contenders: list[Contender]
    values: dict[str, list[str]]  # categorical column -> its coded values
    fields: list[PayloadField]
    z: int
    profit_scale: int
    pen: int
    pen2: int
    tie_bits: int
    payload_bits: int
    key_bits: int  # keys lie in (-2^(key_bits-1), 2^(key_bits-1))
    targets: dict[int, LeafConditions]

    def key_form(self, c: Contender) -> Form:
        """``((gain - PEN * penalty) * T + tb) * 2^PB + payload``."""
        t, pb = 1 << self.tie_bits, 1 << self.payload_bits
        f = Form().plus(c.gain, t * pb).plus(c.penalty, -self.pen * t * pb).add(None, c.tb * pb)
        return f.plus(c.payload)

    def env(self, row: Mapping[str, str]) -> dict[Var, int]:
        """The variables for one customer's raw row (the plaintext reference)."""
        ints = encode_row(self.model, row)
        out: dict[Var, int] = {}
        for var in self.variables:
            kind, name, arg = var
            if kind == "oh":
                out[var] = int(row[name] == arg)
            elif kind == "gt":
                out[var] = int(ints[name] > arg)  # type: ignore[operator]
            else:
                out[var] = (ints[name] >> arg) & 1  # type: ignore[operator]
        return out

    def numeric_inputs(self) -> list[str]:
        """Numeric features whose bits are variables or whose thresholds are (R1's inputs)."""
        return [f for f in self.model.numeric_features if any(v[1] == f for v in self.variables)]

    def winner(self, env: Mapping[Var, int]) -> int:
        """The contender of the largest key (the plaintext argmax)."""
        keys = [self.key_form(c).value(env) for c in self.contenders]
        return max(range(len(keys)), key=keys.__getitem__)

    def decode(self, index: int, payload: int, customer: str, p_loyal: Fraction) -> CustomerPlan:
        """What the admin makes of the winner and its payload: the customer's plan.

        ``p_loyal`` is the customer's P(S) (the admin has it from scoring).
        """
        segment = "loyal" if p_loyal >= self.segment_threshold else "unloyal"
        c = self.contenders[index]
        if c.kind == "stay":
            return CustomerPlan(customer, -1, p_loyal, segment)
        fields = {f.name: (payload >> f.offset) & ((1 << f.width) - 1) for f in self.fields}
        profit = Fraction(fields["profit"], self.profit_scale)
        target = self.targets[c.leaf]
        actions: list[Action] = []
        for column in sorted(target.categorical):
            code = fields.get(column, 0)
            if not code:
                continue
            if code > len(self.values[column]):
                raise ProtocolError(f"customer {customer}: payload code {code} for {column} names no value")
            u = self.values[column][code - 1]
            options = [
                (m, v) for v in target.allowed[column] if (m := self.costs.move_cost(column, u, v)) is not None
            ]
            if not options:
                raise ProtocolError(f"customer {customer}: the plan moves {column} from {u!r}, which no move allows")
            cost, v = min(options)
            actions.append(Action(column, u, v, cost))
        variant = dict(c.variant)
        for feature, (lo, hi) in target.numeric.items():
            move = variant.get(feature, "in")
            if move == "in":
                continue
            x = fields[feature]
            new = hi if move == "down" else lo + 1  # type: ignore[operator]
            enc = self.model.encoding_of(feature)
            unit = self.costs.unit_cost(feature, move)
            assert unit is not None and new is not None
            actions.append(Action(
                feature, format_encoded(x, enc.scale), format_encoded(new, enc.scale),
                unit * abs(x - new) / enc.scale,
            ))
        actions.sort(key=lambda a: (a.attribute, a.new))
        p_target = self.model.p_loyal_exact(c.leaf)
        net = profit * (p_target - p_loyal) - sum((a.cost for a in actions), Fraction(0))
        return CustomerPlan(customer, -1, p_loyal, segment, c.leaf, p_target, tuple(actions), net)


def _lcm(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out = out * v // math.gcd(out, v)
    return out


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _categorical_table(
    target: LeafConditions, costs: Costs, column: str, values: list[str]
) -> dict[str | None, tuple[Fraction | None, int]]:
    """Per current value u (None: one nobody names): (the cost of meeting ``target``'s tests
    on ``column``, None if it cannot be met; the payload code, 1 + u's index when u moves)."""
    tests = target.categorical[column]
    table: dict[str | None, tuple[Fraction | None, int]] = {}
    for u in [*values, None]:
        if all(int(u is not None and u == w) in ok for w, ok in tests):
            table[u] = (Fraction(0), 0)
            continue
        options = [] if costs.is_hard(column) or u is None else [
            (m, v) for v in target.allowed[column] if (m := costs.move_cost(column, u, v)) is not None
        ]
        table[u] = (min(options)[0], values.index(u) + 1) if options else (None, 0)  # type: ignore[arg-type]
    return table


def compile_plan(
    model: TreeModel, costs: Costs, *, segment_threshold: Fraction | int | float | str = Fraction(1, 2)
) -> PlanForms:
    """Compile the leaf-node search for ``model`` and ``costs`` (see the module docstring).

    Refused with a :class:`ParameterError`: a profit over a column that is
    not one of the model's numeric features, or one that can be negative.
    """
    threshold = to_fraction(segment_threshold)
    numeric = set(model.numeric_features)
    for column in costs.profit.terms:
        if column not in numeric:
            raise ParameterError(
                f"private planning needs the profit over the model's numeric features; "
                f"{column!r} is not one"
            )
    encs = {f: model.encoding_of(f) for f in numeric}
    low = costs.profit.constant + sum(
        min(Fraction(0), c * encs[f].max_value / encs[f].scale) for f, c in costs.profit.terms.items()
    )
    if low < 0:
        raise ParameterError(
            f"private planning needs a profit that cannot be negative; {costs.profit} can be {float(low)}"
        )
    leaves = model.leaves()
    targets = {leaf: leaf_conditions(model, leaf) for leaf in leaves}

    # The categorical columns and their coded values: the model's, then the cost file's.
    columns = sorted({c for c in model.columns if c not in numeric} | set(costs.categorical))
    values: dict[str, list[str]] = {}
    for c in columns:
        named = list(model.values(c))
        for u, v in costs.categorical.get(c, {}):
            named += [u, v]
        values[c] = list(dict.fromkeys(named))
    soft_columns = sorted(costs.categorical)
    soft_numeric = sorted(f for f in costs.numeric if f in numeric)

    # Z: every denominator.
    profit_terms = {f: c / encs[f].scale for f, c in costs.profit.terms.items()}
    profit_scale = _lcm([c.denominator for c in [*profit_terms.values(), costs.profit.constant]])
    dens = [profit_scale] + [
        (model.p_loyal_exact(leaf) * c).denominator
        for leaf in leaves for c in [Fraction(1), costs.profit.constant, *profit_terms.values()]
    ]
    dens += [m.denominator for moves in costs.categorical.values() for m in moves.values()]
    dens += [(u / encs[f].scale).denominator for f in soft_numeric for u in costs.numeric[f].values()]
    z = _lcm(dens)

    def linear_x(feature: str, k: Fraction, shift: int = 0) -> Form:
        """``k * x_feature * 2^shift`` over the x bits (k * 2^shift an integer)."""
        assert (k * (1 << shift)).denominator == 1
        return Form(0, {("x", feature, i): int(k * (1 << (i + shift))) for i in range(encs[feature].bits)})

    def profit_form(times: Fraction, shift: int = 0) -> Form:
        """``times * profit * 2^shift`` over the x bits."""
        f = Form(int(times * costs.profit.constant * (1 << shift)))
        for feature, coef in profit_terms.items():
            f.plus(linear_x(feature, times * coef, shift))
        return f

    # Payload fields.
    fields: list[PayloadField] = []
    offset = 0
    for name, kind, width in [
        ("profit", "profit", _bits(profit_form(Fraction(profit_scale)).bound())),
        *[(c, "code", _bits(len(values[c]) + 1)) for c in soft_columns],
        *[(f, "value", encs[f].bits) for f in soft_numeric],
    ]:
        fields.append(PayloadField(name, kind, offset, width))
        offset += width
    at = {f.name: f.offset for f in fields}
    used: set[Var] = set()

    def gt(feature: str, t: int) -> Form:
        used.add(("gt", feature, t))
        return Form(0, {("gt", feature, t): 1})

    def not_gt(feature: str, t: int) -> Form:
        return Form(1).plus(gt(feature, t), -1)

    contenders: list[tuple[str, int, tuple[tuple[str, str], ...], Form, Form, Form]] = []
    # -- targets --------------------------------------------------------------------------
    for leaf in leaves:
        target = targets[leaf]
        cost, penalty, payload = Form(), Form(), profit_form(Fraction(profit_scale), at["profit"])
        for column in sorted(target.categorical):
            table = _categorical_table(target, costs, column, values[column])
            base_cost, _ = table[None]
            base_pen = int(base_cost is None)
            cost.add(None, int(z * (base_cost or 0)))
            penalty.add(None, base_pen)
            for u in values[column]:
                m, code = table[u]
                var = ("oh", column, u)
                cost.add(var, int(z * ((m or 0) - (base_cost or 0))))
                penalty.add(var, int(m is None) - base_pen)
                if column in at:
                    payload.add(var, code << at[column])
        per_feature: list[list[tuple[str, str, Form, Form]]] = []
        for feature, (lo, hi) in sorted(target.numeric.items()):
            enc = encs[feature]
            outside = Form()
            if hi is not None:
                outside.plus(gt(feature, hi))
            if lo is not None:
                outside.plus(not_gt(feature, lo))
            opts = [(feature, "in", Form(), outside)]
            if not costs.is_hard(feature) and not (lo is not None and hi is not None and lo >= hi):
                down, up = costs.unit_cost(feature, "down"), costs.unit_cost(feature, "up")
                if down is not None and hi is not None and 0 <= hi <= enc.max_value:
                    k = z * down / enc.scale
                    opts.append((feature, "down", linear_x(feature, k).add(None, -int(k * hi)), not_gt(feature, hi)))
                if up is not None and lo is not None and 0 <= lo + 1 <= enc.max_value:
                    k = z * up / enc.scale
                    opts.append((feature, "up", linear_x(feature, -k).add(None, int(k * (lo + 1))), gt(feature, lo)))
            per_feature.append(opts)
        gain0 = profit_form(z * model.p_loyal_exact(leaf)).plus(cost, -1)
        for combo in product(*per_feature):
            gain, pen, pay = Form().plus(gain0), Form().plus(penalty), Form().plus(payload)
            for feature, move, fc, fp in combo:
                gain.plus(fc, -1)
                pen.plus(fp)
                if move != "in" and feature in at:
                    pay.plus(linear_x(feature, Fraction(1), at[feature]))
            contenders.append(("target", leaf, tuple((f, m) for f, m, _, _ in combo), gain, pen, pay))

    # -- stay ------------------------------------------------------------------------------
    for leaf in leaves:
        penalty = Form()
        for node, right in model.path(leaf):
            column, value = split_feature(model.split(node).feature)
            t = threshold_int(model, node)
            if value is None:
                penalty.plus(not_gt(column, t) if right else gt(column, t))
            else:  # one-hot: right iff the bit is above t
                bit = Form(0, {("oh", column, value): 1}) if t == 0 else Form(int(t < 0))
                penalty.plus(Form(1).plus(bit, -1) if right else bit)
        contenders.append(("stay", leaf, (), profit_form(z * model.p_loyal_exact(leaf)), penalty, Form()))

    # -- penalties and tie-breaks -----------------------------------------------------------------
    gain_bound = max(g.bound() for _, _, _, g, _, _ in contenders)
    pen2 = 1 << (_bits(gain_bound) + 2)
    pen = 1 << (_bits(gain_bound + pen2) + 2)
    n_targets = sum(kind == "target" for kind, *_ in contenders)
    out: list[Contender] = []
    for i, (kind, leaf, variant, gain, penalty, payload) in enumerate(contenders):
        if kind == "stay":  # above every target; among stays the order does not matter
            tb = n_targets + (len(contenders) - 1 - i)
            if model.p_loyal_exact(leaf) >= threshold:
                gain = Form().plus(gain).add(None, pen2)
        else:  # the smaller leaf (then the earlier variant) first
            tb = n_targets - 1 - i
        out.append(Contender(kind, leaf, variant, tb, gain, penalty, payload))

    # Every numeric feature gets as many threshold comparisons as the busiest one, the extra
    # ones above the encoding's range (always 0, in no form): the PSP, which inputs its shares
    # per comparison, learns that largest count, not which feature the tree splits on how often.
    counts = {f: sum(1 for v in used if v[1] == f) for f in model.numeric_features}
    most = max(counts.values(), default=0)
    for f, count in counts.items():
        for k in range(most - count):
            used.add(("gt", f, encs[f].max_value + 1 + k))
    variables: list[Var] = [("oh", c, v) for c in columns for v in values[c]]
    for feature in model.numeric_features:
        variables += sorted(v for v in used if v[1] == feature)
    for feature in model.numeric_features:
        if any(var[0] == "x" and var[1] == feature for c in out for var in (*c.gain.coefs, *c.payload.coefs)):
            variables += [("x", feature, i) for i in range(encs[feature].bits)]
    forms = PlanForms(
        model, costs, threshold, variables, out, values, fields, z, profit_scale, pen, pen2,
        _bits(len(out)), offset, 0, targets,
    )
    forms.key_bits = max(_bits(forms.key_form(c).bound()) for c in out) + 1
    known = set(variables)
    for c in out:
        for f in (c.gain, c.penalty, c.payload):
            if set(f.coefs) - known:
                raise AssertionError(f"variables not listed: {set(f.coefs) - known}")
    return forms
