"""The cost file: what a retention action may change, what it costs, what a customer is worth.

A TOML file, checked against the customer data it will be used with::

    hard = ["gender", "SeniorCitizen", "Partner", "Dependents", "tenure"]
    profit = "12 * MonthlyCharges"

    [soft.Contract]                  # categorical: the cost of moving "from -> to"
    "Month-to-month -> One year" = 150

    [soft.MonthlyCharges]            # numeric: the cost per unit of change, per direction
    down = 12.0                      # (a direction left out is not allowed)

``hard`` attributes never change; so does every attribute not named in the
file. ``profit`` is a linear expression over numeric columns (``+``, ``-``,
a constant times a column, a column divided by a constant, constants): the
value of keeping the customer, weighed by the change in ``p_loyal``.

Every number is taken as the exact decimal it is written as (``0.1`` is
1/10), so that a private computation can reproduce the plan exactly.
Anything unusable is a :class:`~crm.churn.errors.CostError` naming the key.
"""

from __future__ import annotations

import ast
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from crm.churn.data import ID_COLUMN, NUMERIC_COLUMNS, REQUIRED_COLUMNS, Customers, numeric_value
from crm.churn.errors import CostError

__all__ = ["DIRECTIONS", "Costs", "LinearExpr", "exact", "load_costs", "parse_costs", "parse_profit"]

DIRECTIONS = ("up", "down")
_TOP_KEYS = {"hard", "soft", "profit"}


@dataclass(frozen=True)
class LinearExpr:
    """``constant + sum(coef * column)`` with exact coefficients."""

    terms: Mapping[str, Fraction]
    constant: Fraction = Fraction(0)

    def value(self, row: Mapping[str, str]) -> Fraction:
        """The expression for one customer's raw row."""
        total = self.constant
        for column, coef in self.terms.items():
            total += coef * Fraction(numeric_value(row, column))
        return total

    def __str__(self) -> str:
        parts = [f"{_show(c)} * {col}" for col, c in self.terms.items() if c]
        if self.constant or not parts:
            parts.append(_show(self.constant))
        return " + ".join(parts)


def _show(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else str(float(x))


@dataclass(frozen=True, eq=False)
class Costs:
    """A checked cost file.

    ``categorical[C][(u, v)]`` is the cost of moving column ``C`` from ``u``
    to ``v``; ``numeric[f][direction]`` the cost per unit of change of
    ``f`` going ``"up"`` or ``"down"``. An attribute in neither is hard.
    """

    hard: frozenset[str]
    categorical: Mapping[str, Mapping[tuple[str, str], Fraction]]
    numeric: Mapping[str, Mapping[str, Fraction]]
    profit: LinearExpr
    source: str = "<memory>"

    def is_hard(self, attribute: str) -> bool:
        return attribute not in self.categorical and attribute not in self.numeric

    def move_cost(self, attribute: str, old: str, new: str) -> Fraction | None:
        """The cost of changing categorical ``attribute`` from ``old`` to ``new``, or ``None``."""
        return self.categorical.get(attribute, {}).get((old, new))

    def unit_cost(self, attribute: str, direction: str) -> Fraction | None:
        """The cost per unit of moving numeric ``attribute`` ``"up"``/``"down"``, or ``None``."""
        return self.numeric.get(attribute, {}).get(direction)


def exact(value: int | float) -> Fraction:
    """A TOML number as the exact decimal it is written as."""
    return Fraction(value) if isinstance(value, int) else Fraction(Decimal(repr(value)))


def _cost(value: Any, where: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CostError(f"{where}: {value!r} is not a number")
    if not math.isfinite(value):
        raise CostError(f"{where}: {value!r} is not finite")
    if value < 0:
        raise CostError(f"{where}: {value!r} is negative")
    return exact(value)


def parse_profit(text: str, numeric_columns: set[str] | frozenset[str]) -> LinearExpr:
    """A linear expression over ``numeric_columns`` (see the module docstring)."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise CostError(f"profit: {text!r} is not an expression") from None

    def linear(node: ast.AST) -> tuple[dict[str, Fraction], Fraction]:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise CostError(f"profit: {node.value!r} is not a number")
            if not math.isfinite(node.value):
                raise CostError(f"profit: {node.value!r} is not finite")
            return {}, exact(node.value)
        if isinstance(node, ast.Name):
            if node.id not in numeric_columns:
                raise CostError(f"profit: {node.id!r} is not a numeric column")
            return {node.id: Fraction(1)}, Fraction(0)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            terms, const = linear(node.operand)
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return {k: sign * v for k, v in terms.items()}, sign * const
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
            (lt, lc), (rt, rc) = linear(node.left), linear(node.right)
            sign = -1 if isinstance(node.op, ast.Sub) else 1
            terms = dict(lt)
            for k, v in rt.items():
                terms[k] = terms.get(k, Fraction(0)) + sign * v
            return terms, lc + sign * rc
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            (lt, lc), (rt, rc) = linear(node.left), linear(node.right)
            if lt and rt:
                raise CostError(f"profit: {text!r} multiplies two columns (not linear)")
            terms, factor = (rt, lc) if not lt else (lt, rc)
            const = lc * rc
            return {k: factor * v for k, v in terms.items()}, const
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            (lt, lc), (rt, rc) = linear(node.left), linear(node.right)
            if rt:
                raise CostError(f"profit: {text!r} divides by a column (not linear)")
            if rc == 0:
                raise CostError(f"profit: {text!r} divides by zero")
            return {k: v / rc for k, v in lt.items()}, lc / rc
        raise CostError(
            f"profit: {text!r} is not linear over numeric columns "
            "(use +, -, constant * column, column / constant)"
        )

    terms, constant = linear(tree.body)
    return LinearExpr({k: v for k, v in terms.items() if v}, constant)


def parse_costs(doc: Mapping[str, Any], customers: Customers | None, source: str = "<memory>") -> Costs:
    """Check a parsed cost file against the customers it will plan for.

    ``customers`` None (the SP, which never sees the data): the columns of the
    data format, and any value of a categorical column."""
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise CostError(f"{', '.join(unknown)}: unknown key(s); expected hard, soft, profit")
    if customers is None:
        attributes = [c for c in REQUIRED_COLUMNS if c != ID_COLUMN]
        where_from = "the data format"
    else:
        attributes = [c for c in customers.columns if c not in (ID_COLUMN, customers.label)]
        where_from = customers.source
    numeric = {c for c in attributes if c in NUMERIC_COLUMNS}

    def attribute(name: str, where: str) -> str:
        if name not in attributes:
            raise CostError(f"{where}: {name!r} is not a column of {where_from}")
        return name

    hard_doc = doc.get("hard", [])
    if not isinstance(hard_doc, list) or not all(isinstance(a, str) for a in hard_doc):
        raise CostError("hard: expected a list of column names")
    hard = frozenset(attribute(a, "hard") for a in hard_doc)

    soft_doc = doc.get("soft", {})
    if not isinstance(soft_doc, dict):
        raise CostError("soft: expected tables [soft.<column>]")
    categorical: dict[str, dict[tuple[str, str], Fraction]] = {}
    numeric_costs: dict[str, dict[str, Fraction]] = {}
    for name, table in soft_doc.items():
        where = f"soft.{name}"
        attribute(name, where)
        if name in hard:
            raise CostError(f"{where}: {name!r} is both hard and soft")
        if not isinstance(table, dict):
            raise CostError(f"{where}: expected a table")
        if name in numeric:
            bad = [k for k in table if k not in DIRECTIONS]
            if bad:
                raise CostError(
                    f"{where}.{bad[0]}: {name} is numeric: give costs per unit for "
                    "'up' and/or 'down', not moves between values"
                )
            numeric_costs[name] = {k: _cost(v, f"{where}.{k}") for k, v in table.items()}
        else:
            seen = None if customers is None else set(customers.values(name))
            moves: dict[tuple[str, str], Fraction] = {}
            for key, value in table.items():
                key_where = f'{where}."{key}"'
                if key in DIRECTIONS:
                    raise CostError(
                        f"{key_where}: {name} is categorical: give costs of moves "
                        "'from -> to', not per unit"
                    )
                parts = key.split("->")
                if len(parts) != 2 or not all(p.strip() for p in parts):
                    raise CostError(f"{key_where}: expected 'from -> to'")
                old, new = (p.strip() for p in parts)
                for v in (old, new):
                    if seen is not None and v not in seen:
                        raise CostError(
                            f"{key_where}: {v!r} is not a value of {name} in {where_from}"
                        )
                if old == new:
                    raise CostError(f"{key_where}: a move to the same value")
                if (old, new) in moves:
                    raise CostError(f"{key_where}: the move {old} -> {new} is given twice")
                moves[(old, new)] = _cost(value, key_where)
            categorical[name] = moves

    if "profit" not in doc:
        raise CostError('profit: missing (e.g. profit = "12 * MonthlyCharges")')
    profit_text = doc["profit"]
    if isinstance(profit_text, int | float) and not isinstance(profit_text, bool):
        profit_text = repr(profit_text)
    if not isinstance(profit_text, str):
        raise CostError(f"profit: {profit_text!r} is not an expression")
    profit = parse_profit(profit_text, frozenset(numeric))
    return Costs(hard, categorical, numeric_costs, profit, source)


def load_costs(path: str | Path, customers: Customers | None) -> Costs:
    """Read a cost file and check it against ``customers``; errors name the file and the key."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise CostError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CostError(f"{path}: not TOML ({exc})") from None
    try:
        return parse_costs(doc, customers, source=str(path))
    except CostError as exc:
        raise CostError(f"{path}: {exc}") from None
