"""Errors of the churn module: bad data, a bad model file, a bad cost file.

Each says where the problem is (file, line, column, node or key), so that the
person who wrote the file can fix it without reading the code.
"""

from __future__ import annotations

from mpc.errors import MpcError, ParameterError

__all__ = ["CostError", "DataError", "ModelError", "ParameterError"]


class DataError(MpcError):
    """Customer data is malformed, or a value does not fit the model's encoding.

    ``path`` (or ``None`` for a value not read from a file), ``line`` (1-based
    line of the file) and ``column`` (its name) say where; ``reason`` says what.
    The message reads ``FILE: line L, column C: reason``.
    """

    def __init__(
        self,
        path: str | None,
        reason: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.reason = reason
        self.line = line
        self.column = column
        parts = [f"line {line}"] if line is not None else []
        if column is not None:
            parts.append(f"column {column}")
        where = ", ".join(parts)
        if path:
            where = f"{path}: {where}" if where else path
        super().__init__(f"{where}: {reason}" if where else reason)


class ModelError(MpcError):
    """A model file (``model.json``) is malformed or inconsistent."""


class CostError(MpcError):
    """A cost file is malformed or does not fit the data; the message names the key."""
