"""Loaders for the recommender's inputs: ratings, baskets and item titles.

Every file is passed in by the caller; nothing here knows where data lives.
Malformed input raises :class:`~crm.recommender.errors.DataError` naming the
file, the line and (where it applies) the column.

Ratings (``load_ratings``)
    One rating a line, ``user_id,item_id,rating`` (comma separated, exactly
    three columns), or the MovieLens ``u.data`` format (tab separated
    ``user item rating timestamp``: columns after the rating are ignored, in
    the tab-separated format only). The delimiter is the one of the first
    non-blank line: a tab if it has one, else a comma. Fields are stripped of
    surrounding blanks; a field may be quoted (``"a,b"``) as in CSV. Ids are
    strings (``"0031381"`` keeps its leading zero). A rating is an integer
    (``-?[0-9]+``; ``7.0`` is refused). Blank lines are skipped. Line 1 (only
    line 1) may be a header: it is one when its rating field is the word
    ``rating`` (any case); a non-integer rating anywhere else is an error.
    The same (user, item) twice is an error naming both lines. A file with
    no rating is an error.

Baskets (``load_baskets``)
    One basket a line, items comma separated, names stripped of surrounding
    blanks (``"cream cheese "`` is ``"cream cheese"``). An item repeated in a
    line counts once. Blank lines are skipped (they are not baskets); an
    empty item name (``a,,b`` or a trailing comma) is an error.

Titles (``load_titles``)
    ``item_id,title[,...]`` (CSV, quoted titles allowed), or ``|``/tab
    separated like MovieLens ``u.item``; a first line whose first field is
    ``item_id`` is a header. Lines that are not UTF-8 are read as Latin-1
    (titles are for display only).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crm.recommender.errors import DataError, ParameterError

__all__ = [
    "Ratings",
    "build_ratings",
    "load_baskets",
    "load_ratings",
    "load_titles",
    "parse_scale",
]

RATING_COLUMNS = ("user_id", "item_id", "rating")
_INT = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, eq=False)
class Ratings:
    """A ratings matrix in the shifted form the recommender works on.

    ``users`` and ``items`` are sorted as strings; ``d[u, i]`` (numpy int64,
    ``len(users) x len(items)``) is ``rating - lo + 1`` (1..hi-lo+1) or 0
    when user ``u`` did not rate item ``i``.
    """

    users: list[str]
    items: list[str]
    lo: int
    hi: int
    d: np.ndarray
    user_index: dict[str, int] = field(repr=False)
    item_index: dict[str, int] = field(repr=False)
    source: str = "<memory>"

    @property
    def levels(self) -> int:
        """Number of rating values on the scale: ``hi - lo + 1`` (the largest ``d``)."""
        return self.hi - self.lo + 1

    @property
    def n_ratings(self) -> int:
        return int(np.count_nonzero(self.d))

    def rating(self, user: str, item: str) -> int | None:
        """The rating on the original scale, or ``None`` when not rated."""
        v = int(self.d[self.user_index[user], self.item_index[item]])
        return None if v == 0 else v - 1 + self.lo


def parse_scale(text: str) -> tuple[int, int]:
    """``"LO:HI"`` -> ``(lo, hi)``; refuses anything else or ``lo > hi``."""
    parts = text.split(":")
    if len(parts) != 2 or not all(_INT.fullmatch(p.strip()) for p in parts):
        raise ParameterError(f"scale {text!r}: expected LO:HI with integers, e.g. 0:10")
    lo, hi = (int(p) for p in parts)
    _check_scale((lo, hi))
    return lo, hi


def _check_scale(scale: tuple[int, int]) -> None:
    lo, hi = scale
    if not (isinstance(lo, int) and isinstance(hi, int)) or isinstance(lo, bool):
        raise ParameterError(f"scale {scale!r}: LO and HI must be integers")
    if lo > hi:
        raise ParameterError(f"scale {lo}:{hi}: LO is larger than HI")


def build_ratings(
    triples: Iterable[tuple[str, str, int]],
    scale: tuple[int, int] | None = None,
    source: str = "<memory>",
) -> Ratings:
    """A :class:`Ratings` from ``(user, item, rating)`` triples (in memory, no line numbers).

    The scale defaults to the smallest and largest rating given. A repeated
    (user, item), an out-of-scale rating or no rating at all raise
    :class:`ParameterError`; use :func:`load_ratings` for files.
    """
    triples = list(triples)
    if not triples:
        raise ParameterError(f"{source}: no ratings")
    if scale is None:
        values = [t[2] for t in triples]
        scale = (min(values), max(values))
    _check_scale(scale)
    lo, hi = scale
    users = sorted({t[0] for t in triples})
    items = sorted({t[1] for t in triples})
    user_index = {u: k for k, u in enumerate(users)}
    item_index = {i: k for k, i in enumerate(items)}
    d = np.zeros((len(users), len(items)), dtype=np.int64)
    for user, item, rating in triples:
        if not lo <= rating <= hi:
            raise ParameterError(f"{source}: rating {rating} of ({user}, {item}) outside {lo}:{hi}")
        u, i = user_index[user], item_index[item]
        if d[u, i]:
            raise ParameterError(f"{source}: ({user}, {item}) rated twice")
        d[u, i] = rating - lo + 1
    return Ratings(users, items, lo, hi, d, user_index, item_index, source)


def _lines(path: Path, *, latin1_fallback: bool = False) -> list[tuple[int, str]]:
    """(line number, text without the line end) for each line, BOM removed on line 1.

    A file that cannot be read is a DataError naming it.
    """
    try:
        return list(_read_lines(path, latin1_fallback))
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror or exc}") from None


def _read_lines(path: Path, latin1_fallback: bool) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if not latin1_fallback:
                    raise DataError(str(path), f"not UTF-8 ({exc.reason})", line=lineno) from None
                text = raw.decode("latin-1")
            if lineno == 1:
                text = text.removeprefix("\ufeff")
            yield lineno, text.rstrip("\r\n")


def _split(text: str, delimiter: str) -> list[str]:
    return [f.strip() for f in next(csv.reader([text], delimiter=delimiter, skipinitialspace=True))]


def load_ratings(path: str | Path, scale: tuple[int, int] | None = None) -> Ratings:
    """Read a ratings file (see the module docstring for the rules).

    ``scale`` is ``(lo, hi)``; by default the smallest and largest rating in
    the file. With a scale given, a rating outside it is an error.
    """
    path = Path(path)
    name = str(path)
    if scale is not None:
        _check_scale(scale)
    delimiter: str | None = None
    seen: dict[tuple[str, str], int] = {}
    triples: list[tuple[str, str, int]] = []
    lines = _lines(path)
    for lineno, text in lines:
        if not text.strip():
            continue
        if delimiter is None:
            if "\t" in text:
                delimiter = "\t"
            elif "," in text:
                delimiter = ","
            else:
                raise DataError(
                    name,
                    "expected comma-separated user_id,item_id,rating "
                    "or tab-separated MovieLens user item rating timestamp",
                    line=lineno,
                )
        fields = _split(text, delimiter)
        if delimiter == "," and len(fields) > 3:
            raise DataError(
                name,
                f"unexpected extra column (expected 3: {','.join(RATING_COLUMNS)})",
                line=lineno,
                column=4,
            )
        for col in range(3):
            if col >= len(fields) or not fields[col]:
                raise DataError(
                    name, "missing", line=lineno, column=col + 1, column_name=RATING_COLUMNS[col]
                )
        user, item, rating_text = fields[:3]
        if not _INT.fullmatch(rating_text):
            if lineno == 1 and rating_text.lower() == "rating":
                continue  # the header
            hint = (
                " (a header is allowed on line 1 only)" if rating_text.lower() == "rating" else ""
            )
            raise DataError(
                name,
                f"{rating_text!r} is not an integer{hint}",
                line=lineno,
                column=3,
                column_name="rating",
            )
        rating = int(rating_text)
        if scale is not None and not scale[0] <= rating <= scale[1]:
            raise DataError(
                name,
                f"{rating} is outside the scale {scale[0]}:{scale[1]}",
                line=lineno,
                column=3,
                column_name="rating",
            )
        first = seen.setdefault((user, item), lineno)
        if first != lineno:
            raise DataError(
                name,
                f"user {user!r} rated item {item!r} twice (lines {first} and {lineno})",
                line=lineno,
            )
        triples.append((user, item, rating))
    if not triples:
        raise DataError(name, "no ratings")
    return build_ratings(triples, scale, source=name)


def load_baskets(path: str | Path) -> list[tuple[str, ...]]:
    """One basket a line: its distinct items in first-seen order (see the module docstring)."""
    path = Path(path)
    name = str(path)
    baskets: list[tuple[str, ...]] = []
    lines = _lines(path)
    for lineno, text in lines:
        if not text.strip():
            continue
        fields = _split(text, ",")
        for col, item in enumerate(fields, 1):
            if not item:
                raise DataError(name, "empty item name", line=lineno, column=col)
        baskets.append(tuple(dict.fromkeys(fields)))
    if not baskets:
        raise DataError(name, "no baskets")
    return baskets


def load_titles(path: str | Path) -> dict[str, str]:
    """``item_id -> title`` for readable output (see the module docstring)."""
    path = Path(path)
    name = str(path)
    titles: dict[str, str] = {}
    first_line: dict[str, int] = {}
    delimiter: str | None = None
    lines = _lines(path, latin1_fallback=True)
    for lineno, text in lines:
        if not text.strip():
            continue
        if delimiter is None:
            delimiter = ","
            if "\t" in text:
                delimiter = "\t"
            elif "|" in text and ("," not in text or text.index("|") < text.index(",")):
                delimiter = "|"
        fields = _split(text, delimiter)
        if lineno == 1 and fields[0].lower() == "item_id":
            continue
        if not fields[0]:
            raise DataError(name, "missing", line=lineno, column=1, column_name="item_id")
        if len(fields) < 2 or not fields[1]:
            raise DataError(name, "missing", line=lineno, column=2, column_name="title")
        item = fields[0]
        if item in first_line:
            raise DataError(
                name,
                f"item {item!r} listed twice (lines {first_line[item]} and {lineno})",
                line=lineno,
            )
        first_line[item] = lineno
        titles[item] = fields[1]
    return titles


SYNTHETIC = ("W1",)


def synthetic_ratings(name: str, seed: int = 1, users: int = 1000, items: int = 1000) -> Ratings:
    """A generated workload, reproducible from ``seed``.

    ``W1``, the setting of SeComLib's own generator: ``users`` x ``items``,
    ratings 1..5, the first 20 items rated by every user uniformly at random,
    every other rating missing with probability 1/2 and uniform otherwise.
    User ids ``u0000``.., item ids ``i0000``.. (so string order is numeric order).
    """
    if name.upper() != "W1":
        raise ParameterError(f"unknown synthetic workload {name!r}; known: {', '.join(SYNTHETIC)}")
    rng = np.random.default_rng(seed)
    d = np.zeros((users, items), dtype=np.int64)
    d[:, :20] = rng.integers(1, 6, size=(users, min(20, items)))
    if items > 20:
        rest = rng.integers(1, 6, size=(users, items - 20))
        keep = rng.random((users, items - 20)) >= 0.5
        d[:, 20:] = np.where(keep, rest, 0)
    user_ids = [f"u{k:04d}" for k in range(users)]
    item_ids = [f"i{k:04d}" for k in range(items)]
    return Ratings(
        users=user_ids,
        items=item_ids,
        lo=1,
        hi=5,
        d=d,
        user_index={u: k for k, u in enumerate(user_ids)},
        item_index={i: k for k, i in enumerate(item_ids)},
        source=f"synthetic:{name.upper()}:seed={seed}",
    )

