"""Errors of the recommender: bad input files name the file, the line and the column."""

from __future__ import annotations

from mpc.errors import MpcError, ParameterError

__all__ = ["DataError", "ParameterError"]


class DataError(MpcError):
    """An input file is malformed.

    ``path``, ``line`` (1-based, or ``None`` for the whole file), ``column``
    (1-based, or ``None``) and ``column_name`` say where; ``reason`` says what.
    The message reads ``FILE: line L, column C (name): reason``.
    """

    def __init__(
        self,
        path: str,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        column_name: str | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.column = column
        self.column_name = column_name
        where = path
        if line is not None:
            where += f": line {line}"
            if column is not None:
                where += f", column {column}"
                if column_name:
                    where += f" ({column_name})"
        super().__init__(f"{where}: {reason}")
