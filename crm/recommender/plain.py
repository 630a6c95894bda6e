"""The plaintext recommender: the exact function the private protocol computes.

This is the test oracle of DESIGN section 4: on the same integers the private
result (neighbours, per-item sums and counts) must equal this one exactly.
``docs/recommender.md`` states the function; in short, for a target user A:

1. dense items: the ``dense`` items rated by the most users (ties: item id);
2. each user's dense vector of shifted ratings ``d`` is scaled to integers,
   ``v[j] = (d[j] << shift) // isqrt(sum d^2)`` (zeros when the sum is 0);
3. ``sim(A, B) = sum_j v_A[j] * v_B[j]``;
4. neighbours: the ``top_n`` other users with the largest ``sim`` (ties: the
   user earlier in user order), or all others with ``sim >= delta``;
5. per item, the sum of the neighbours' ``d`` and the number of neighbours
   who rated it;
6. the items A has not rated with a count > 0, ranked by ``sum / count``
   (exactly), then count, then item id; the first ``k`` (0: all).

Everything is integer arithmetic: numpy int64 where the bounds allow it
(``v <= 2^shift`` because ``d[j] <= isqrt(sum d^2)``, so
``sim <= dense * 2^(2*shift)``), Python integers (object arrays) otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from crm.recommender.data import Ratings
from crm.recommender.errors import ParameterError

__all__ = [
    "PlainParams",
    "Recommendation",
    "Recommender",
    "Result",
    "aggregate",
    "dense_items",
    "dense_vectors",
    "neighbours_threshold",
    "neighbours_top_n",
    "parse_threshold",
    "recommend",
    "recommend_all",
    "similarities",
]

DEFAULT_TOP_N = 20
_INT64_SAFE = 1 << 62  # values and sums below this are exact in int64 with room to spare


def parse_threshold(value: int | Fraction | float | str) -> int | Fraction:
    """A threshold as given by a user: an integer is absolute, anything else a fraction.

    ``"1000"`` and ``1000`` are the integer delta 1000; ``"0.5"``, ``"1/2"``,
    ``Fraction(1, 2)`` and ``0.5`` are half of ``2^(2*shift)``. A float is
    read through its shortest decimal form (``0.1`` is exactly 1/10).
    """
    if isinstance(value, bool):
        raise ParameterError(f"threshold {value!r}: not a number")
    if isinstance(value, int | Fraction):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"threshold {value!r}: not a finite number")
        return Fraction(repr(value))
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text) if text.lstrip("+-").isdigit() else Fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ParameterError(
                f"threshold {value!r}: expected an integer or a fraction such as 0.5 or 1/2"
            ) from None
    raise ParameterError(f"threshold {value!r}: expected an integer or a fraction")


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class PlainParams:
    """Public parameters of the recommender.

    Exactly one neighbour rule: ``top_n`` (the default, 20) or ``threshold``
    (see :func:`parse_threshold`; an ``int`` is an absolute delta, a
    ``Fraction`` a fraction of ``2^(2*shift)``). ``k = 0`` keeps every
    recommendation.
    """

    dense: int = 20
    shift: int = 8
    top_n: int | None = None
    threshold: int | Fraction | None = None
    k: int = 10

    def __post_init__(self) -> None:
        _check_int("dense", self.dense, 1)
        _check_int("shift", self.shift, 0)
        _check_int("k", self.k, 0)
        if self.threshold is not None:
            if self.top_n is not None:
                raise ParameterError("give either top_n or threshold, not both")
            object.__setattr__(self, "threshold", parse_threshold(self.threshold))
        else:
            if self.top_n is None:
                object.__setattr__(self, "top_n", DEFAULT_TOP_N)
            _check_int("top_n", self.top_n, 1)

    @property
    def mode(self) -> str:
        """``"top_n"`` or ``"threshold"``."""
        return "threshold" if self.threshold is not None else "top_n"

    @property
    def delta(self) -> int | None:
        """The integer threshold: ``sim >= delta`` exactly when ``sim >= threshold``.

        A fraction f of ``2^(2*shift)`` becomes ``ceil(f * 2^(2*shift))``
        (similarities are integers, so the two tests agree).
        """
        t = self.threshold
        if t is None:
            return None
        if isinstance(t, int):
            return t
        return math.ceil(t * (1 << (2 * self.shift)))

    def to_dict(self) -> dict[str, Any]:
        t = self.threshold
        return {
            "dense": self.dense,
            "shift": self.shift,
            "top_n": self.top_n,
            "threshold": None if t is None else (t if isinstance(t, int) else str(t)),
            "delta": self.delta,
            "k": self.k,
        }


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: ``sum`` and ``count`` are over the neighbours' shifted
    ratings ``d`` (what the private protocol decrypts); ``score`` is
    ``sum / count - 1 + lo`` on the original scale (``lo`` of the ratings),
    ``exact`` the same as a Fraction."""

    item: str
    sum: int
    count: int
    lo: int = field(default=1, repr=False)

    @property
    def exact(self) -> Fraction:
        """The score on the original scale, exactly: ``sum / count - 1 + lo``."""
        return Fraction(self.sum, self.count) - 1 + self.lo

    @property
    def score(self) -> float:
        """:attr:`exact` rounded to the nearest float."""
        return float(self.exact)

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "sum": self.sum, "count": self.count, "score": self.score}


@dataclass(frozen=True, eq=False)
class Result:
    """The recommender's output for one target user.

    ``neighbours`` (user ids) are in rank order: similarity descending, then
    user order, in both neighbour modes; ``neighbour_sims`` are their
    similarities. ``sums`` and ``counts`` (int64, one entry per item of
    ``Ratings.items``) are the full aggregates, before any filtering.
    """

    user: str
    neighbours: list[str]
    neighbour_sims: list[int]
    recommendations: list[Recommendation]
    sums: np.ndarray = field(repr=False)
    counts: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "neighbours": list(self.neighbours),
            "recommendations": [rec.to_dict() for rec in self.recommendations],
        }


# -- the steps -------------------------------------------------------------------------


def dense_items(r: Ratings, n: int) -> list[str]:
    """The ``n`` items rated by the most users, most rated first, ties by item id.

    Raises :class:`ParameterError` when ``n`` exceeds the number of items
    (no silent clamp: ``n`` fixes the length of every user's dense vector).
    """
    _check_int("dense", n, 1)
    if n > len(r.items):
        raise ParameterError(
            f"dense = {n} but the ratings have only {len(r.items)} items; use --dense {len(r.items)} or fewer"
        )
    raters = np.count_nonzero(r.d, axis=0)
    order = np.argsort(-raters, kind="stable")  # items are sorted, so ties go to the smaller id
    return [r.items[i] for i in order[:n]]


def dense_vectors(r: Ratings, items: Sequence[str], shift: int) -> np.ndarray:
    """Each user's normalised, scaled dense vector (``len(users) x len(items)``).

    ``q = isqrt(sum_j d[u,j]^2)``, ``v[u,j] = (d[u,j] << shift) // q``, all
    zeros when ``q = 0``. int64 when ``dense * 2^(2*shift)`` and
    ``levels * 2^shift`` fit, else an object array of Python ints.
    """
    _check_int("shift", shift, 0)
    try:
        cols = [r.item_index[i] for i in items]
    except KeyError as exc:
        raise ParameterError(f"unknown item {exc.args[0]!r}") from None
    dd = r.d[:, cols]
    fits = len(cols) << (2 * shift) < _INT64_SAFE and r.levels << shift < _INT64_SAFE
    if fits and r.levels**2 * len(cols) < _INT64_SAFE:
        sumsq = np.einsum("ij,ij->i", dd, dd)
        q = np.array([math.isqrt(int(x)) for x in sumsq], dtype=np.int64)
        safe_q = np.where(q > 0, q, 1)[:, None]
        return np.where(q[:, None] > 0, (dd << shift) // safe_q, 0).astype(np.int64)
    out = np.zeros(dd.shape, dtype=object)
    for u, row in enumerate(dd.tolist()):
        q = math.isqrt(sum(x * x for x in row))
        if q:
            out[u] = [(x << shift) // q for x in row]
    return out if not fits else out.astype(np.int64)


def _sim_row(vectors: np.ndarray, a: int) -> np.ndarray:
    return vectors @ vectors[a]


def similarities(vectors: np.ndarray, a: int) -> list[int]:
    """``sim(a, b)`` for every user ``b`` (index order, ``a`` itself included)."""
    return [int(x) for x in _sim_row(vectors, a).tolist()]


def _as_int64(sims: Sequence[int] | np.ndarray) -> np.ndarray | None:
    if isinstance(sims, np.ndarray) and sims.dtype == np.int64:
        return sims
    values = [int(x) for x in sims]
    if all(-_INT64_SAFE < x < _INT64_SAFE for x in values):
        return np.array(values, dtype=np.int64)
    return None


def _rank_others(values: list[int], a: int) -> list[int]:
    """All users but ``a``, by similarity descending, then index ascending (Python ints)."""
    return sorted((b for b in range(len(values)) if b != a), key=lambda b: (-values[b], b))


def neighbours_top_n(sims: Sequence[int] | np.ndarray, a: int, n: int) -> list[int]:
    """The ``n`` users ``b != a`` with the largest ``sims[b]``, ties to the smaller index.

    In rank order. When fewer than ``n`` other users exist, all of them.
    """
    _check_int("top_n", n, 0)
    arr = _as_int64(sims)
    if arr is None:
        return _rank_others([int(x) for x in sims], a)[:n]
    order = np.argsort(-arr, kind="stable")
    order = order[order != a]
    return order[:n].tolist()


def neighbours_threshold(sims: Sequence[int] | np.ndarray, a: int, delta: int) -> list[int]:
    """All users ``b != a`` with ``sims[b] >= delta`` (an integer), in rank order."""
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise ParameterError(f"delta must be an integer, got {delta!r} (see PlainParams.delta)")
    arr = _as_int64(sims)
    if arr is None:
        values = [int(x) for x in sims]
        return [b for b in _rank_others(values, a) if values[b] >= delta]
    order = np.argsort(-arr, kind="stable")
    keep = (order != a) & (arr[order] >= delta)
    return order[keep].tolist()


def aggregate(r: Ratings, neighbours: Iterable[int | str]) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the sum of the neighbours' ``d`` and the number who rated it (int64 arrays).

    ``neighbours`` are user indices or user ids.
    """
    idx = [r.user_index[b] if isinstance(b, str) else int(b) for b in neighbours]
    rows = r.d[idx]
    return rows.sum(axis=0, dtype=np.int64), np.count_nonzero(rows, axis=0).astype(np.int64)


def _exact_order(s: np.ndarray, c: np.ndarray, idx: np.ndarray) -> list[int]:
    """``idx`` sorted by ``s/c`` descending (exact), then ``c`` descending, then index.

    Sorts on the float means first: correctly rounded division is monotonic
    (``float(x) > float(y)`` implies ``x > y``) and equal fractions give equal
    floats, so only runs of equal floats could hide distinct fractions. Each
    run is checked exactly (``s * c0 == s0 * c``); if one holds distinct
    fractions (never seen with realistic sizes) everything is sorted again
    with :class:`fractions.Fraction` keys.
    """
    if len(idx) == 0:
        return []
    means = s / c
    order = np.lexsort((idx, -c, -means))
    small = int(s.max(initial=0)) < (1 << 31) and int(c.max(initial=0)) < (1 << 31)
    if small and len(order) > 1:
        m, so, co = means[order], s[order], c[order]
        starts = np.concatenate(([True], m[1:] != m[:-1]))
        head = np.maximum.accumulate(np.where(starts, np.arange(len(m)), 0))
        if (so * co[head] == so[head] * co).all():
            return idx[order].tolist()
    elif small:
        return idx[order].tolist()
    sl, cl, il = s.tolist(), c.tolist(), idx.tolist()
    pos = sorted(range(len(il)), key=lambda p: (-Fraction(sl[p], cl[p]), -cl[p], il[p]))
    return [il[p] for p in pos]


def rank(r: Ratings, a: int, sums: np.ndarray, counts: np.ndarray, k: int) -> list[Recommendation]:
    """The items user ``a`` has not rated with a count > 0, best first, the first ``k`` (0: all).

    Order: ``sum / count`` descending (compared exactly, see
    :func:`_exact_order`), count descending, item id ascending.
    """
    cand = np.flatnonzero((r.d[a] == 0) & (counts > 0))
    ordered = _exact_order(sums[cand], counts[cand], cand)
    if k:
        ordered = ordered[:k]
    return [Recommendation(r.items[i], int(sums[i]), int(counts[i]), r.lo) for i in ordered]


# -- all together ----------------------------------------------------------------------


class Recommender:
    """The dense items and vectors of one ratings set, computed once, for many targets."""

    def __init__(self, r: Ratings, params: PlainParams | None = None) -> None:
        self.ratings = r
        self.params = params or PlainParams()
        self.dense_items = dense_items(r, self.params.dense)
        self.vectors = dense_vectors(r, self.dense_items, self.params.shift)

    def _index(self, user: str) -> int:
        try:
            return self.ratings.user_index[user]
        except KeyError:
            raise ParameterError(f"unknown user {user!r}") from None

    def similarities(self, user: str) -> list[int]:
        return similarities(self.vectors, self._index(user))

    def recommend(self, user: str) -> Result:
        r, p = self.ratings, self.params
        a = self._index(user)
        sims = _sim_row(self.vectors, a)
        if p.threshold is not None:
            nb = neighbours_threshold(sims, a, p.delta)  # type: ignore[arg-type]
        else:
            nb = neighbours_top_n(sims, a, p.top_n)  # type: ignore[arg-type]
        sums, counts = aggregate(r, nb)
        return Result(
            user=user,
            neighbours=[r.users[b] for b in nb],
            neighbour_sims=[int(sims[b]) for b in nb],
            recommendations=rank(r, a, sums, counts, p.k),
            sums=sums,
            counts=counts,
        )


def recommend(r: Ratings, a: str, params: PlainParams | None = None) -> Result:
    """Recommendations for user ``a`` (a user id)."""
    return Recommender(r, params).recommend(a)


def recommend_all(
    r: Ratings, params: PlainParams | None = None, targets: Iterable[str] | None = None
) -> dict[str, Result]:
    """Results for ``targets`` (user ids; default every user, in user order)."""
    rec = Recommender(r, params)
    return {u: rec.recommend(u) for u in (r.users if targets is None else targets)}
