"""Customer files for the churn model: the Telco layout, checked on load.

A customer file is CSV with a header line. It must have the Telco columns
(:data:`REQUIRED_COLUMNS`); the label column (``Churn``, ``Yes``/``No``) is
needed for training only. Other columns are allowed and treated as
categorical. Fields are stripped of surrounding blanks; blank lines are
skipped. Rows keep the raw strings, so a model walks the same text that
was read.

Numeric columns (:data:`NUMERIC_COLUMNS`) hold non-negative decimals written
``123`` or ``123.45`` (no sign, no exponent); a blank ``TotalCharges`` (new
customers who were never billed) reads as 0. Every other field must be
non-empty. Errors (:class:`~crm.churn.errors.DataError`) name the file, the
line and the column.

Features (:func:`feature_names`): a numeric column is a feature of its own;
every other column except the id and the label is one-hot, one feature
``Column=Value`` for each value seen, values sorted as strings, columns in
file order.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from crm.churn.errors import DataError

__all__ = [
    "ID_COLUMN",
    "LABEL_COLUMN",
    "NUMERIC_COLUMNS",
    "REQUIRED_COLUMNS",
    "Customers",
    "decimals",
    "feature_names",
    "feature_value",
    "load_customers",
    "numeric_value",
    "split_feature",
]

ID_COLUMN = "customerID"
LABEL_COLUMN = "Churn"
NUMERIC_COLUMNS = ("SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges")
BLANK_IS_ZERO = ("TotalCharges",)
"""Numeric columns where a blank field means 0."""
REQUIRED_COLUMNS = (
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
)
LABELS = {"Yes": 1, "No": 0}
"""Label text -> label: 1 = the customer churned."""

_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_NEGATIVE = re.compile(r"-[0-9]+(\.[0-9]+)?")


@dataclass(frozen=True, eq=False)
class Customers:
    """Customers read from a file: ids, raw rows, the header and the labels.

    ``rows[i]`` maps every column to the stripped text of customer
    ``ids[i]``; ``labels[i]`` is 1 when that customer churned, 0 when not,
    and ``labels`` is ``None`` when the file has no label column.
    """

    ids: list[str]
    rows: list[dict[str, str]]
    columns: list[str]
    labels: list[int] | None
    label: str = LABEL_COLUMN
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.ids)

    def values(self, column: str) -> list[str]:
        """The distinct values of ``column``, sorted as strings."""
        return sorted({row[column] for row in self.rows})


def _check_number(column: str, text: str) -> str | None:
    """Why ``text`` is not a valid value of numeric ``column``, or ``None`` when it is."""
    if text == "" and column in BLANK_IS_ZERO:
        return None
    if _NUMBER.fullmatch(text):
        return None
    if _NEGATIVE.fullmatch(text):
        return f"{text!r} is negative"
    return f"{text!r} is not a number"


def numeric_value(row: Mapping[str, str], column: str) -> Decimal:
    """The exact value of numeric ``column`` in ``row`` (blank ``TotalCharges`` is 0)."""
    text = row[column].strip()
    problem = _check_number(column, text)
    if problem:
        raise DataError(None, problem, column=column)
    return Decimal(text or "0")


def decimals(text: str) -> int:
    """How many digits follow the decimal point in a number as written (``"29.85"`` -> 2)."""
    _, _, frac = text.partition(".")
    return len(frac)


def split_feature(feature: str) -> tuple[str, str | None]:
    """``"Contract=One year"`` -> ``("Contract", "One year")``; ``"tenure"`` -> ``("tenure", None)``."""
    column, sep, value = feature.partition("=")
    return (column, value) if sep else (column, None)


def feature_names(customers: Customers) -> list[str]:
    """The model's features for these customers (see the module docstring)."""
    names: list[str] = []
    for column in customers.columns:
        if column in (ID_COLUMN, customers.label):
            continue
        if column in NUMERIC_COLUMNS:
            names.append(column)
        else:
            names.extend(f"{column}={value}" for value in customers.values(column))
    return names


def feature_value(row: Mapping[str, str], feature: str) -> float:
    """The value of one feature for one row: the number, or 1.0/0.0 for ``Column=Value``."""
    column, value = split_feature(feature)
    if value is not None:
        return 1.0 if row[column] == value else 0.0
    return float(numeric_value(row, column))


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, stripped fields) of each non-blank CSV record."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            try:
                for fields in reader:
                    if any(field.strip() for field in fields):
                        yield reader.line_num, [field.strip() for field in fields]
            except csv.Error as exc:
                raise DataError(str(path), f"not CSV ({exc})", line=reader.line_num) from None
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(str(path), f"not UTF-8 ({exc.reason})") from None


def load_customers(
    path: str | Path, *, label: str = LABEL_COLUMN, require_label: bool = False
) -> Customers:
    """Read and check a customer file (see the module docstring for the rules).

    ``label`` names the label column; with ``require_label`` a file without
    it is refused (training needs it), otherwise its absence gives
    ``labels=None``.
    """
    path = Path(path)
    name = str(path)
    records = _records(path)
    first = next(records, None)
    if first is None:
        raise DataError(name, "empty file (expected a header line)")
    header_line, columns = first
    seen_columns: set[str] = set()
    for column in columns:
        if not column:
            raise DataError(name, "empty column name in the header", line=header_line)
        if "=" in column:
            raise DataError(
                name, "a column name may not contain '='", line=header_line, column=column
            )
        if column in seen_columns:
            raise DataError(
                name, "column named twice in the header", line=header_line, column=column
            )
        seen_columns.add(column)
    required = [*REQUIRED_COLUMNS, label] if require_label else list(REQUIRED_COLUMNS)
    missing = [c for c in required if c not in seen_columns]
    if missing:
        raise DataError(name, f"missing column(s) {', '.join(missing)}", line=header_line)
    has_label = label in seen_columns
    ids: list[str] = []
    rows: list[dict[str, str]] = []
    labels: list[int] = []
    first_line: dict[str, int] = {}
    for lineno, fields in records:
        if len(fields) != len(columns):
            raise DataError(
                name, f"{len(fields)} fields, the header has {len(columns)}", line=lineno
            )
        row = dict(zip(columns, fields, strict=True))
        for column, text in row.items():
            if column in NUMERIC_COLUMNS:
                problem = _check_number(column, text)
                if problem:
                    raise DataError(name, problem, line=lineno, column=column)
            elif not text:
                raise DataError(name, "empty", line=lineno, column=column)
        cid = row[ID_COLUMN]
        if cid in first_line:
            raise DataError(
                name,
                f"customer {cid!r} appears twice (lines {first_line[cid]} and {lineno})",
                line=lineno,
                column=ID_COLUMN,
            )
        first_line[cid] = lineno
        if has_label:
            if row[label] not in LABELS:
                raise DataError(name, f"{row[label]!r} is not Yes or No", line=lineno, column=label)
            labels.append(LABELS[row[label]])
        ids.append(cid)
        rows.append(row)
    if not rows:
        raise DataError(name, "no customers after the header")
    return Customers(
        ids=ids,
        rows=rows,
        columns=list(columns),
        labels=labels if has_label else None,
        label=label,
        source=name,
    )
