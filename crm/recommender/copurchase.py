"""Dynamic recommendations from co-purchase counts ("buyers of X also bought Y").

``C(X, Y)`` is the number of baskets holding both X and Y; a basket holds an
item at most once (a repeated item counts once). For a product X the
recommendations are the products ``Y != X`` with ``C(X, Y) > 0``, by count
descending, then name ascending; the first k (0: all).

For the private version each customer uploads the co-purchase pairs of its
own baskets as a packed 0/1 vector (or counts, summed over its baskets); the
SP adds the uploads. The pair layout is fixed by the sorted item list
``items`` (n items): pair ``(i, j)``, ``i < j``, has index
``i*n - i*(i+1)/2 + (j - i - 1)``, in ``0 .. n(n-1)/2 - 1`` (row by row of the
upper triangle). The sum of all baskets' contributions equals
:meth:`Cooccurrence.pair_vector` exactly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crm.recommender.errors import ParameterError

__all__ = [
    "Cooccurrence",
    "basket_contribution",
    "basket_pairs",
    "cooccurrence",
    "pair_count",
    "pair_from_index",
    "pair_index",
    "recommend_for",
]


def pair_count(n: int) -> int:
    """Number of unordered pairs of ``n`` items: ``n(n-1)/2``."""
    return n * (n - 1) // 2


def pair_index(i: int, j: int, n: int) -> int:
    """The index of the pair ``{i, j}`` (``i != j``, both in ``0..n-1``; order does not matter)."""
    if i > j:
        i, j = j, i
    if not 0 <= i < j < n:
        raise ParameterError(f"pair ({i}, {j}) is not a pair of distinct items in 0..{n - 1}")
    return i * n - i * (i + 1) // 2 + (j - i - 1)


def pair_from_index(p: int, n: int) -> tuple[int, int]:
    """The pair ``(i, j)``, ``i < j``, at index ``p`` (the inverse of :func:`pair_index`)."""
    if not 0 <= p < pair_count(n):
        raise ParameterError(f"pair index {p} outside 0..{pair_count(n) - 1}")
    i = 0
    row = n - 1  # pairs whose first item is i
    while p >= row:
        p -= row
        i += 1
        row -= 1
    return i, i + 1 + p


def basket_pairs(basket: Iterable[str], index: Mapping[str, int]) -> list[int]:
    """The sorted pair indices of one basket (a repeated item counts once).

    ``index`` maps item -> position in the sorted item list; an item it does
    not know is an error.
    """
    n = len(index)
    try:
        pos = sorted({index[item] for item in basket})
    except KeyError as exc:
        raise ParameterError(f"unknown item {exc.args[0]!r}") from None
    return sorted(pair_index(a, b, n) for k, a in enumerate(pos) for b in pos[k + 1 :])


def basket_contribution(basket: Iterable[str], index: Mapping[str, int]) -> np.ndarray:
    """One basket's upload: a 0/1 int64 vector over all ``n(n-1)/2`` pairs."""
    out = np.zeros(pair_count(len(index)), dtype=np.int64)
    out[basket_pairs(basket, index)] = 1
    return out


@dataclass(frozen=True, eq=False)
class Cooccurrence:
    """Co-purchase counts: ``matrix[i, j] = C(items[i], items[j])``.

    The diagonal ``matrix[i, i]`` is the number of baskets holding item i.
    """

    items: list[str]
    index: dict[str, int] = field(repr=False)
    matrix: np.ndarray = field(repr=False)
    baskets: int

    def _pos(self, product: str) -> int:
        try:
            return self.index[product]
        except KeyError:
            close = difflib.get_close_matches(product, self.items, n=3)
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            raise ParameterError(f"unknown product {product!r}{hint}") from None

    def count(self, x: str, y: str) -> int:
        """``C(x, y)``; ``C(x, x)`` is the number of baskets with x."""
        return int(self.matrix[self._pos(x), self._pos(y)])

    def support(self, x: str) -> int:
        """Number of baskets holding ``x``."""
        return self.count(x, x)

    def recommend_for(self, product: str, k: int = 10) -> list[tuple[str, int]]:
        """``(Y, C(product, Y))`` for the best ``k`` products ``Y != product`` with a count > 0.

        By count descending, then name ascending; ``k = 0`` keeps them all.
        """
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ParameterError(f"k must be an integer >= 0, got {k!r}")
        x = self._pos(product)
        row = self.matrix[x]
        order = np.argsort(-row, kind="stable")  # items are sorted: ties go to the smaller name
        out = [(self.items[y], int(row[y])) for y in order.tolist() if y != x and row[y] > 0]
        return out[:k] if k else out

    def pair_vector(self) -> np.ndarray:
        """``C`` over the pair layout: entry ``pair_index(i, j)`` is ``C(items[i], items[j])``."""
        iu, ju = np.triu_indices(len(self.items), k=1)  # row by row, the layout of pair_index
        return self.matrix[iu, ju].astype(np.int64)

    def to_dict(self, product: str, k: int = 10) -> dict[str, Any]:
        return {
            "baskets_with": self.support(product),
            "recommendations": [{"item": y, "count": c} for y, c in self.recommend_for(product, k)],
        }


def cooccurrence(
    baskets: Sequence[Iterable[str]], items: Sequence[str] | None = None
) -> Cooccurrence:
    """Count ``C`` over ``baskets`` (each an iterable of item names).

    ``items`` fixes the item list (sorted here); by default every item seen.
    """
    sets = [set(b) for b in baskets]
    names = sorted(set().union(*sets) if items is None else set(items))
    index = {name: k for k, name in enumerate(names)}
    incidence = np.zeros((len(sets), len(names)), dtype=np.float64)
    for row, basket in enumerate(sets):
        try:
            incidence[row, [index[i] for i in basket]] = 1
        except KeyError as exc:
            raise ParameterError(f"basket {row + 1}: unknown item {exc.args[0]!r}") from None
    if len(sets) >= 1 << 52:
        raise ParameterError("too many baskets to count exactly in float64")
    # A float64 (BLAS) product of 0/1 matrices is exact: every partial sum is an
    # integer below 2^53. numpy's int64 matmul has no BLAS and is ~100x slower.
    matrix = np.rint(incidence.T @ incidence).astype(np.int64)
    return Cooccurrence(names, index, matrix, len(sets))


def recommend_for(co: Cooccurrence, product: str, k: int = 10) -> list[tuple[str, int]]:
    """Same as :meth:`Cooccurrence.recommend_for`."""
    return co.recommend_for(product, k)
