"""Recommendations (DESIGN section 4): the plaintext reference and co-purchase counts.

- :mod:`crm.recommender.data`: loaders (ratings, baskets, titles) with errors naming the line;
- :mod:`crm.recommender.plain`: the exact function the private protocol computes (its oracle);
- :mod:`crm.recommender.copurchase`: co-purchase counts and the pair layout for packing;
- :mod:`crm.recommender.cli`: the ``mpc-crm recommend`` subcommand.

See ``docs/recommender.md``.
"""

from crm.recommender.copurchase import (
    Cooccurrence,
    basket_contribution,
    basket_pairs,
    cooccurrence,
    pair_count,
    pair_from_index,
    pair_index,
    recommend_for,
)
from crm.recommender.data import Ratings, build_ratings, load_baskets, load_ratings, load_titles
from crm.recommender.errors import DataError
from crm.recommender.plain import (
    PlainParams,
    Recommendation,
    Recommender,
    Result,
    aggregate,
    dense_items,
    dense_vectors,
    neighbours_threshold,
    neighbours_top_n,
    recommend,
    recommend_all,
    similarities,
)

__all__ = [
    "Cooccurrence",
    "DataError",
    "PlainParams",
    "Ratings",
    "Recommendation",
    "Recommender",
    "Result",
    "aggregate",
    "basket_contribution",
    "basket_pairs",
    "build_ratings",
    "cooccurrence",
    "dense_items",
    "dense_vectors",
    "load_baskets",
    "load_ratings",
    "load_titles",
    "neighbours_threshold",
    "neighbours_top_n",
    "pair_count",
    "pair_from_index",
    "pair_index",
    "recommend",
    "recommend_all",
    "recommend_for",
    "similarities",
]
