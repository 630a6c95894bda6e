"""Tests of crm.recommender: the plaintext recommender (the private protocol's oracle),
its loaders, co-purchase counts and the ``recommend`` command."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.recommender import cli
from crm.recommender.copurchase import (
    basket_contribution,
    basket_pairs,
    cooccurrence,
    pair_count,
    pair_from_index,
    pair_index,
)
from crm.recommender.data import build_ratings, load_baskets, load_ratings, load_titles, parse_scale
from crm.recommender.errors import DataError, ParameterError
from crm.recommender.plain import (
    PlainParams,
    Recommender,
    _exact_order,
    aggregate,
    dense_items,
    dense_vectors,
    neighbours_threshold,
    neighbours_top_n,
    recommend,
    recommend_all,
    similarities,
)

HERE = Path(__file__).resolve().parents[1]
"""The tests/ directory (its data/ folder)."""
DATA = HERE / "data"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MOVIES = SHARED / "movietweetings-top1000.csv"
TITLES = SHARED / "movietweetings-top1000-items.csv"
GROCERIES = SHARED / "groceries.csv"
TINY = DATA / "tiny-ratings.csv"
TINY_ML = DATA / "tiny-u.data"

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
needs_shared = pytest.mark.skipif(not MOVIES.exists(), reason="../shared/data not present")
needs_groceries = pytest.mark.skipif(not GROCERIES.exists(), reason="../shared/data not present")

# The hand-computed example (docs/recommender.md): scale 1..5, so d = rating.
#   u1: a3 b4 c5      u2: a3 b4 d4 e4      u3: a4 b3 c2 e4      u4: a5 d2 e4
# Raters: a 4, b 3, e 3, c 2, d 2 -> dense (R=2): a, b (b beats e on the id).
# Dense vectors, shift 4: q = isqrt(3^2+4^2) = 5 for u1, u2, u3 and isqrt(25) = 5 for u4;
#   u1 = u2 = (48//5, 64//5) = (9, 12), u3 = (12, 9), u4 = (80//5, 0) = (16, 0).
# Similarities: u1u2 225, u1u3 216, u1u4 144, u2u3 216, u2u4 144, u3u4 192.
TINY_PARAMS = PlainParams(dense=2, shift=4, top_n=2, k=10)
TINY_VECTORS = {"u1": [9, 12], "u2": [9, 12], "u3": [12, 9], "u4": [16, 0]}


def brute_force(r, user: str, params: PlainParams) -> tuple[list[str], list[tuple[str, int, int]]]:
    """The function straight from its definition: dicts, Python ints, Fractions, no numpy."""
    rows = dict(zip(r.users, r.d.tolist(), strict=True))  # user -> [d per item], plain ints
    col = r.item_index
    raters = {i: sum(1 for u in r.users if rows[u][col[i]] > 0) for i in r.items}
    dense = sorted(r.items, key=lambda i: (-raters[i], i))[: params.dense]
    vec = {}
    for u in r.users:
        q = math.isqrt(sum(rows[u][col[j]] ** 2 for j in dense))
        vec[u] = [(rows[u][col[j]] << params.shift) // q if q else 0 for j in dense]
    sim = {b: sum(x * y for x, y in zip(vec[user], vec[b], strict=True)) for b in r.users}
    others = sorted((b for b in r.users if b != user), key=lambda b: (-sim[b], r.user_index[b]))
    if params.threshold is None:
        nb = others[: params.top_n]
    else:
        limit = params.threshold
        if isinstance(limit, Fraction):
            limit = limit * 2 ** (2 * params.shift)
        nb = [b for b in others if sim[b] >= limit]
    recs = []
    for i in r.items:
        s = sum(rows[b][col[i]] for b in nb)
        c = sum(1 for b in nb if rows[b][col[i]] > 0)
        if c and not rows[user][col[i]]:
            recs.append((i, s, c))
    recs.sort(key=lambda t: (-Fraction(t[1], t[2]), -t[2], t[0]))
    return nb, recs[: params.k] if params.k else recs


def as_triples(result) -> list[tuple[str, int, int]]:
    return [(rec.item, rec.sum, rec.count) for rec in result.recommendations]


# -- the hand-computed example --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return load_ratings(TINY)


def test_tiny_loaded(tiny) -> None:
    assert tiny.users == ["u1", "u2", "u3", "u4"]
    assert tiny.items == ["a", "b", "c", "d", "e"]
    assert (tiny.lo, tiny.hi, tiny.n_ratings) == (2, 5, 14)  # smallest rating in the file is 2
    assert tiny.rating("u1", "c") == 5
    assert tiny.rating("u1", "d") is None


@pytest.fixture(scope="module")
def tiny15():
    return load_ratings(TINY, scale=(1, 5))


def test_tiny_dense_items_and_ties(tiny15) -> None:
    assert dense_items(tiny15, 2) == ["a", "b"]
    assert dense_items(tiny15, 3) == ["a", "b", "e"]  # b and e both have 3 raters: id order
    assert dense_items(tiny15, 5) == ["a", "b", "e", "c", "d"]


def test_tiny_vectors_and_similarities(tiny15) -> None:
    v = dense_vectors(tiny15, ["a", "b"], 4)
    assert v.dtype == np.int64
    assert {u: v[k].tolist() for k, u in enumerate(tiny15.users)} == TINY_VECTORS
    assert similarities(v, 0) == [225 + 0, 225, 216, 144]  # u1 . u1 = 81 + 144
    assert similarities(v, 3) == [144, 144, 192, 256]


def test_tiny_top_n_with_tie(tiny15) -> None:
    # u4: u3 (192) first; u1 and u2 tie at 144 -> u1, earlier in user order.
    res = recommend(tiny15, "u4", TINY_PARAMS)
    assert res.neighbours == ["u3", "u1"]
    assert res.neighbour_sims == [192, 144]
    # sums/counts over a..e: a 4+3, b 3+4, c 2+5, d -, e 4
    assert res.sums.tolist() == [7, 7, 7, 0, 4]
    assert res.counts.tolist() == [2, 2, 2, 0, 1]
    # u4 rated a, d, e: b and c tie on score 7/2 and count 2 -> item id order.
    assert as_triples(res) == [("b", 7, 2), ("c", 7, 2)]
    assert [rec.score for rec in res.recommendations] == [3.5, 3.5]


def test_tiny_count_breaks_score_tie(tiny15) -> None:
    # u1: neighbours u2 (225), u3 (216); d: 4/1, e: (4+4)/2 -> both 4, e has the larger count.
    res = recommend(tiny15, "u1", TINY_PARAMS)
    assert res.neighbours == ["u2", "u3"]
    assert as_triples(res) == [("e", 8, 2), ("d", 4, 1)]
    # u3: u1 and u2 tie at 216 -> u1 first; only d is left to recommend.
    res3 = recommend(tiny15, "u3", TINY_PARAMS)
    assert res3.neighbours == ["u1", "u2"]
    assert as_triples(res3) == [("d", 4, 1)]


def test_tiny_all_others_and_k(tiny15) -> None:
    # N = 10 > 3 other users: all of them (documented, not an error).
    res = recommend(tiny15, "u1", PlainParams(dense=2, shift=4, top_n=10))
    assert res.neighbours == ["u2", "u3", "u4"]
    assert as_triples(res) == [("e", 12, 3), ("d", 6, 2)]
    one = recommend(tiny15, "u1", PlainParams(dense=2, shift=4, top_n=10, k=1))
    assert as_triples(one) == [("e", 12, 3)]
    everything = recommend(tiny15, "u1", PlainParams(dense=2, shift=4, top_n=10, k=0))
    assert as_triples(everything) == as_triples(res)


def test_tiny_threshold_integer_and_fraction(tiny15) -> None:
    base = {"dense": 2, "shift": 4}
    for threshold in (216, Fraction(27, 32), "27/32", "0.84375", 0.84, "0.84"):
        res = recommend(tiny15, "u1", PlainParams(**base, threshold=threshold))
        assert res.neighbours == ["u2", "u3"], threshold
    assert PlainParams(**base, threshold="0.84").delta == 216  # ceil(0.84 * 256) = ceil(215.04)
    assert recommend(tiny15, "u1", PlainParams(**base, threshold=217)).neighbours == ["u2"]
    assert recommend(tiny15, "u1", PlainParams(**base, threshold="0.875")).neighbours == [
        "u2"
    ]  # 224
    assert recommend(tiny15, "u1", PlainParams(**base, threshold=1000)).recommendations == []
    assert recommend(tiny15, "u1", PlainParams(**base, threshold=0)).neighbours == [
        "u2",
        "u3",
        "u4",
    ]


def test_tiny_scale_shift(tiny15) -> None:
    """The same ratings minus one on the scale 0..4 give the same d, so the same
    neighbours, sums and counts, and scores one lower."""
    lower = build_ratings(
        [
            (u, i, tiny15.rating(u, i) - 1)
            for u in tiny15.users
            for i in tiny15.items
            if tiny15.rating(u, i) is not None
        ],
        scale=(0, 4),
    )
    assert (lower.d == tiny15.d).all()
    for u in tiny15.users:
        a, b = recommend(tiny15, u, TINY_PARAMS), recommend(lower, u, TINY_PARAMS)
        assert a.neighbours == b.neighbours
        assert as_triples(a) == as_triples(b)
        assert [x.exact - 1 for x in a.recommendations] == [x.exact for x in b.recommendations]


def test_tiny_matches_brute_force(tiny15) -> None:
    for params in (
        TINY_PARAMS,
        PlainParams(dense=3, shift=0, top_n=1),
        PlainParams(dense=5, threshold=0.5),
    ):
        for u in tiny15.users:
            res = recommend(tiny15, u, params)
            assert (res.neighbours, as_triples(res)) == brute_force(tiny15, u, params)


def test_python_int_path_for_wide_shift(tiny15) -> None:
    """dense * 2^(2*shift) beyond int64: exact Python ints, same function."""
    params = PlainParams(dense=2, shift=40, top_n=2)
    model = Recommender(tiny15, params)
    assert model.vectors.dtype == object
    assert model.vectors[0].tolist() == [(3 << 40) // 5, (4 << 40) // 5]
    for u in tiny15.users:
        res = model.recommend(u)
        assert (res.neighbours, as_triples(res)) == brute_force(tiny15, u, params)


def test_movielens_format_same_result(tiny15) -> None:
    ml = load_ratings(TINY_ML)
    assert ml.users == ["1", "2", "3", "4"]
    assert ml.items == ["1", "2", "3", "4", "5"]
    assert (ml.lo, ml.hi) == (2, 5)
    ml = load_ratings(TINY_ML, scale=(1, 5))
    assert (ml.d == tiny15.d).all()
    res = recommend(ml, "4", TINY_PARAMS)
    assert res.neighbours == ["3", "1"]
    assert as_triples(res) == [("2", 7, 2), ("3", 7, 2)]


# -- edge cases ---------------------------------------------------------------------------


def test_single_user() -> None:
    r = build_ratings([("only", "x", 3), ("only", "y", 5)])
    res = recommend(r, "only", PlainParams(dense=2))
    assert res.neighbours == []
    assert res.recommendations == []
    assert res.sums.tolist() == [0, 0]


def test_dense_larger_than_items_is_refused(tiny15) -> None:
    with pytest.raises(ParameterError, match=r"dense = 6 but the ratings have only 5 items"):
        recommend(tiny15, "u1", PlainParams(dense=6))
    with pytest.raises(ParameterError, match="20"):
        recommend(tiny15, "u1")  # the default R = 20


def test_params_validation() -> None:
    assert PlainParams().top_n == 20 and PlainParams().mode == "top_n"
    assert PlainParams(threshold=5).top_n is None
    with pytest.raises(ParameterError, match="not both"):
        PlainParams(top_n=5, threshold=5)
    for bad in (
        {"dense": 0},
        {"shift": -1},
        {"top_n": 0},
        {"k": -1},
        {"threshold": "x"},
        {"threshold": True},
        {"threshold": float("nan")},
        {"dense": 2.0},
    ):
        with pytest.raises(ParameterError):
            PlainParams(**bad)


def test_unknown_user(tiny15) -> None:
    with pytest.raises(ParameterError, match="unknown user 'nobody'"):
        recommend(tiny15, "nobody", TINY_PARAMS)


def test_zero_dense_vector_user() -> None:
    """A user who rated no dense item has similarity 0 with everyone; top-N still takes N."""
    r = build_ratings([("a", "x", 1), ("b", "x", 2), ("c", "y", 2), ("a", "y", 1)], scale=(1, 2))
    res = recommend(r, "c", PlainParams(dense=1, top_n=1))  # dense item: x (2 raters)
    assert res.neighbour_sims == [0]
    assert res.neighbours == ["a"]  # sim 0 ties: user order
    assert as_triples(res) == [("x", 1, 1)]


# -- neighbour selection: property tests -----------------------------------------------------


@FAST
@given(
    sims=st.lists(st.integers(0, 6), min_size=1, max_size=40),
    a=st.integers(0, 39),
    n=st.integers(0, 45),
)
def test_top_n_is_prefix_of_sorted_others(sims: list[int], a: int, n: int) -> None:
    a %= len(sims)
    expected = sorted((b for b in range(len(sims)) if b != a), key=lambda b: (-sims[b], b))
    assert neighbours_top_n(sims, a, n) == expected[:n]
    assert neighbours_top_n(np.array(sims, dtype=np.int64), a, n) == expected[:n]


@FAST
@given(
    sims=st.lists(st.integers(-(2**70), 2**70) | st.integers(-3, 3), min_size=1, max_size=30),
    a=st.integers(0, 29),
    n=st.integers(0, 35),
    delta=st.integers(-(2**70), 2**70) | st.integers(-3, 3),
)
def test_top_n_and_threshold_with_big_ints(sims: list[int], a: int, n: int, delta: int) -> None:
    a %= len(sims)
    expected = sorted((b for b in range(len(sims)) if b != a), key=lambda b: (-sims[b], b))
    assert neighbours_top_n(sims, a, n) == expected[:n]
    assert neighbours_threshold(sims, a, delta) == [b for b in expected if sims[b] >= delta]


@FAST
@given(
    cells=st.dictionaries(
        st.tuples(
            st.sampled_from("ABCDEFG"), st.sampled_from(["i0", "i1", "i2", "i3", "i4", "i5"])
        ),
        st.integers(0, 3),
        min_size=1,
        max_size=30,
    ),
    dense=st.integers(1, 6),
    shift=st.integers(0, 6),
    top_n=st.integers(1, 8),
    k=st.integers(0, 4),
)
def test_random_ratings_match_brute_force(cells, dense, shift, top_n, k) -> None:
    r = build_ratings([(u, i, v) for (u, i), v in cells.items()], scale=(0, 3))
    dense = min(dense, len(r.items))
    for params in (
        PlainParams(dense=dense, shift=shift, top_n=top_n, k=k),
        PlainParams(dense=dense, shift=shift, threshold=Fraction(1, 2), k=k),
    ):
        results = recommend_all(r, params)
        vectors = Recommender(r, params).vectors
        assert vectors.min() >= 0 and vectors.max() <= 1 << shift  # d[j] <= isqrt(sum d^2)
        assert (vectors @ vectors.T).max() < 1 << (2 * shift + 2)  # Cauchy-Schwarz bound
        for u in r.users:
            res = results[u]
            assert (res.neighbours, as_triples(res)) == brute_force(r, u, params)
            sums, counts = aggregate(r, res.neighbours)
            assert (sums == res.sums).all() and (counts == res.counts).all()


def test_exact_order_resolves_equal_floats() -> None:
    """(2^30+1)/2^30 and 2^30/(2^30-1) round to the same float; the second is larger."""
    s = np.array([2**30 + 1, 2**30], dtype=np.int64)
    c = np.array([2**30, 2**30 - 1], dtype=np.int64)
    assert float(s[0]) / float(c[0]) == float(s[1]) / float(c[1])
    assert _exact_order(s, c, np.array([0, 1])) == [1, 0]
    big = np.array([2**40, 2**40 + 2], dtype=np.int64)  # beyond the int64 cross-check
    assert _exact_order(big, np.array([2, 2]), np.array([0, 1])) == [1, 0]


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, 2**33), st.integers(1, 2**33))
        | st.tuples(st.integers(0, 9), st.integers(1, 3)),
        max_size=30,
    )
)
def test_exact_order_matches_fraction_sort(pairs: list[tuple[int, int]]) -> None:
    s = np.array([p[0] for p in pairs], dtype=np.int64)
    c = np.array([p[1] for p in pairs], dtype=np.int64)
    expected = sorted(range(len(pairs)), key=lambda i: (-Fraction(*pairs[i]), -pairs[i][1], i))
    assert _exact_order(s, c, np.arange(len(pairs))) == expected


# -- the loader's errors ------------------------------------------------------------------


def write(tmp_path: Path, text: str | bytes, name: str = "r.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "line", "column", "pattern"),
    [
        ("user_id,item_id,rating\nu,a,3\nu,b\n", 3, 3, r"line 3, column 3 \(rating\): missing"),
        ("u,a,3\nu\n", 2, 2, r"line 2, column 2 \(item_id\): missing"),
        ("u,a,3\n,b,3\n", 2, 1, r"line 2, column 1 \(user_id\): missing"),
        ("u,a,3\nu,b,x\n", 2, 3, r"line 2, column 3 \(rating\): 'x' is not an integer"),
        ("u,a,3\nu,b,7.0\n", 2, 3, r"'7.0' is not an integer"),
        ("u,a,3\nu,b,rating\n", 2, 3, r"allowed on line 1 only"),
        ("\nuser_id,item_id,rating\nu,a,1\n", 2, 3, r"allowed on line 1 only"),
        ("u,a,3\nu,b,3,9\n", 2, 4, r"line 2, column 4: unexpected extra column"),
        ("u a 3\n", 1, None, r"line 1: expected comma-separated"),
        ("u\ta\t3\t1\nu\tb\n", 2, 3, r"line 2, column 3 \(rating\): missing"),
    ],
)
def test_loader_errors_name_the_line(tmp_path, text, line, column, pattern) -> None:
    p = write(tmp_path, text)
    with pytest.raises(DataError, match=pattern) as info:
        load_ratings(p)
    assert info.value.line == line
    assert info.value.column == column
    assert str(p) in str(info.value)


def test_loader_out_of_scale(tmp_path) -> None:
    p = write(tmp_path, "u,a,3\nu,b,11\n")
    assert load_ratings(p).hi == 11  # no scale given: the file's own range
    with pytest.raises(
        DataError, match=r"line 2, column 3 \(rating\): 11 is outside the scale 0:10"
    ):
        load_ratings(p, scale=(0, 10))
    with pytest.raises(DataError, match=r"line 1, column 3 .*-1 is outside"):
        load_ratings(write(tmp_path, "u,a,-1\n"), scale=(0, 10))
    assert load_ratings(write(tmp_path, "u,a,-1\n"), scale=(-2, 2)).d.tolist() == [[2]]


def test_loader_duplicate_names_both_lines(tmp_path) -> None:
    p = write(tmp_path, "user_id,item_id,rating\nu,a,3\nv,a,3\nu,a,4\n")
    with pytest.raises(DataError, match=r"line 4: user 'u' rated item 'a' twice \(lines 2 and 4\)"):
        load_ratings(p)


def test_loader_empty_files(tmp_path) -> None:
    for text in ("", "\n\n", "user_id,item_id,rating\n"):
        with pytest.raises(DataError, match="no ratings"):
            load_ratings(write(tmp_path, text))


def test_loader_accepts(tmp_path) -> None:
    """Blanks around fields, CRLF, a BOM, quoted ids, blank lines, a header in any case."""
    p = write(
        tmp_path,
        b'\xef\xbb\xbfUser,Item,RATING\r\n u1 , "a,1" , 3 \r\n\r\nu2,007,+0\r\n'.replace(
            b"+0", b"0"
        ),
    )
    r = load_ratings(p)
    assert r.users == ["u1", "u2"]
    assert r.items == ["007", "a,1"]
    assert (r.lo, r.hi) == (0, 3)


def test_loader_not_utf8_and_missing_file(tmp_path) -> None:
    with pytest.raises(DataError, match=r"line 2: not UTF-8"):
        load_ratings(write(tmp_path, b"u,a,1\n\xff,b,2\n"))
    with pytest.raises(DataError, match="cannot read"):
        load_ratings(tmp_path / "missing.csv")


def test_parse_scale() -> None:
    assert parse_scale("0:10") == (0, 10)
    assert parse_scale("-2:2") == (-2, 2)
    for bad in ("10", "a:b", "5:1", "1:2:3"):
        with pytest.raises(ParameterError):
            parse_scale(bad)


def test_titles(tmp_path) -> None:
    p = write(
        tmp_path, "1|Toy Story (1995)|01-Jan-1995||http://x|0|1\n2|GoldenEye (1995)|x\n", "u.item"
    )
    assert load_titles(p) == {"1": "Toy Story (1995)", "2": "GoldenEye (1995)"}
    p = write(tmp_path, 'item_id,title\n1,"Crouching Tiger, Hidden Dragon (2000)"\n', "t.csv")
    assert load_titles(p) == {"1": "Crouching Tiger, Hidden Dragon (2000)"}
    with pytest.raises(DataError, match=r"line 3: item '1' listed twice \(lines 2 and 3\)"):
        load_titles(write(tmp_path, "item_id,title\n1,A\n1,B\n", "t2.csv"))
    with pytest.raises(DataError, match=r"line 1, column 2 \(title\): missing"):
        load_titles(write(tmp_path, "1\n", "t3.csv"))


def test_baskets_rules(tmp_path) -> None:
    baskets = load_baskets(DATA / "tiny-baskets.csv")
    assert baskets == [
        ("milk", "bread", "butter"),
        ("bread", "milk"),
        ("cream cheese", "milk"),
        ("butter",),
    ]
    with pytest.raises(DataError, match=r"line 2, column 2: empty item name"):
        load_baskets(write(tmp_path, "a\nb,,c\n"))
    with pytest.raises(DataError, match="no baskets"):
        load_baskets(write(tmp_path, "\n"))


# -- MovieTweetings end to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def movies():
    if not MOVIES.exists():
        pytest.skip("../shared/data not present")
    return load_ratings(MOVIES)


@needs_shared
def test_movietweetings_loaded(movies) -> None:
    assert (movies.lo, movies.hi) == (0, 10)
    assert len(movies.users) == 999 and len(movies.items) == 999
    assert movies.n_ratings == 29353
    assert "0031381" in movies.item_index  # leading zeros kept
    assert movies.users == sorted(movies.users)


@needs_shared
def test_movietweetings_all_targets(movies) -> None:
    start = time.perf_counter()
    results = recommend_all(movies)
    elapsed = time.perf_counter() - start
    assert elapsed < 30  # a few seconds at most in practice (well under 1 s here)
    assert list(results) == movies.users
    for u, res in results.items():
        a = movies.user_index[u]
        assert len(res.neighbours) == 20 and u not in res.neighbours
        assert len(set(res.neighbours)) == 20
        assert res.neighbour_sims == sorted(res.neighbour_sims, reverse=True)
        assert len(res.recommendations) <= 10
        for rec in res.recommendations:
            assert movies.d[a, movies.item_index[rec.item]] == 0  # never an item A rated
            assert 0 <= rec.score <= 10 and 1 <= rec.count <= 20
            assert rec.count <= rec.sum <= 11 * rec.count
        keys = [(-rec.exact, -rec.count, rec.item) for rec in res.recommendations]
        assert keys == sorted(keys)


@needs_shared
@pytest.mark.parametrize("position", [0, 1, 500, -1])
def test_movietweetings_matches_brute_force(movies, position) -> None:
    user = movies.users[position]
    for params in (
        PlainParams(),
        PlainParams(dense=10, shift=6, top_n=7, k=0),
        PlainParams(threshold="0.9", k=5),
    ):
        res = recommend(movies, user, params)
        assert (res.neighbours, as_triples(res)) == brute_force(movies, user, params)


@needs_shared
def test_movietweetings_titles() -> None:
    titles = load_titles(TITLES)
    assert len(titles) == 999
    assert titles["0031381"] == "Gone with the Wind (1939)"


# -- co-purchase ------------------------------------------------------------------------


def test_pair_index_is_a_bijection() -> None:
    for n in range(0, 9):
        seen = [pair_index(i, j, n) for i in range(n) for j in range(i + 1, n)]
        assert seen == list(range(pair_count(n)))  # row by row of the upper triangle
        for p in range(pair_count(n)):
            i, j = pair_from_index(p, n)
            assert pair_index(i, j, n) == p == pair_index(j, i, n)
    with pytest.raises(ParameterError):
        pair_index(2, 2, 5)
    with pytest.raises(ParameterError):
        pair_from_index(10, 5)


def test_tiny_baskets_counts() -> None:
    co = cooccurrence(load_baskets(DATA / "tiny-baskets.csv"))
    assert co.items == ["bread", "butter", "cream cheese", "milk"]
    assert co.count("milk", "bread") == 2  # "bread,milk,bread" counts once
    assert co.support("milk") == 3 and co.support("butter") == 2
    assert co.recommend_for("milk", 10) == [("bread", 2), ("butter", 1), ("cream cheese", 1)]
    assert co.recommend_for("cream cheese", 0) == [("milk", 1)]  # zero counts never listed
    assert basket_pairs(["milk", "bread", "milk"], co.index) == [pair_index(0, 3, 4)]
    with pytest.raises(ParameterError, match=r"unknown product 'milks' \(did you mean 'milk'"):
        co.recommend_for("milks", 3)


@pytest.fixture(scope="module")
def groceries():
    if not GROCERIES.exists():
        pytest.skip("../shared/data not present")
    # An independent parse of the file: one basket a line, names stripped, each once.
    raw = [
        frozenset(x.strip() for x in line.split(",")) for line in GROCERIES.read_text().splitlines()
    ]
    baskets = load_baskets(GROCERIES)
    return raw, baskets, cooccurrence(baskets)


@needs_groceries
@pytest.mark.parametrize("product", ["whole milk", "cream cheese", "soda", "baby food", "rum"])
def test_copurchase_matches_brute_force(groceries, product) -> None:
    raw, _, co = groceries
    assert co.baskets == 9835 and len(co.items) == 169
    counts: Counter[str] = Counter()
    for basket in raw:
        if product in basket:
            counts.update(basket - {product})
    expected = sorted(counts.items(), key=lambda t: (-t[1], t[0]))
    assert co.recommend_for(product, 0) == expected
    assert co.recommend_for(product, 7) == expected[:7]
    assert co.support(product) == sum(product in b for b in raw)


@needs_groceries
def test_basket_contributions_sum_to_counts(groceries) -> None:
    _, baskets, full = groceries
    items = full.items
    part = baskets[:400]
    co = cooccurrence(part, items=items)
    total = sum(basket_contribution(b, co.index) for b in part)
    assert total.shape == (pair_count(169),)
    assert (total == co.pair_vector()).all()
    i, j = co.index["whole milk"], co.index["yogurt"]
    assert total[pair_index(i, j, 169)] == co.count("whole milk", "yogurt")


# -- the command ----------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_cli_plain_tiny(tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    argv = [
        "--plain",
        "--ratings",
        str(TINY),
        "--scale",
        "1:5",
        "--dense",
        "2",
        "--shift",
        "4",
        "--top-n",
        "2",
        "--targets",
        "u4,u1",
        "--out",
        str(out),
    ]
    assert run_cli(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["params"]["dense_items"] == ["a", "b"]
    assert doc["params"]["scale"] == [1, 5] and doc["params"]["top_n"] == 2
    assert list(doc["targets"]) == ["u4", "u1"]
    assert doc["targets"]["u4"] == {
        "neighbours": ["u3", "u1"],
        "recommendations": [
            {"item": "b", "sum": 7, "count": 2, "score": 3.5},
            {"item": "c", "sum": 7, "count": 2, "score": 3.5},
        ],
    }
    assert "user u4: 2 neighbours" in capsys.readouterr().out


def test_cli_targets_and_threshold(tmp_path) -> None:
    out = tmp_path / "r.json"
    base = [
        "--plain",
        "--ratings",
        str(TINY_ML),
        "--scale",
        "1:5",
        "--dense",
        "2",
        "--shift",
        "4",
        "--out",
        str(out),
    ]
    assert run_cli([*base, "--targets", "2"]) == 0
    assert list(json.loads(out.read_text())["targets"]) == ["1", "2"]  # the first 2 users
    assert run_cli([*base, "--targets", "2,"]) == 0
    assert list(json.loads(out.read_text())["targets"]) == ["2"]  # user id "2"
    assert run_cli([*base, "--threshold", "27/32", "--targets", "1,"]) == 0
    doc = json.loads(out.read_text())
    assert doc["params"]["delta"] == 216 and doc["params"]["threshold"] == "27/32"
    assert doc["targets"]["1"]["neighbours"] == ["2", "3"]
    with pytest.raises(ParameterError, match="unknown user"):
        run_cli([*base, "--targets", "1,nobody"])


def test_cli_usage_and_data_errors(tmp_path, capsys) -> None:
    assert run_cli(["--ratings", str(TINY)]) == 2
    assert run_cli(["--plain"]) == 2
    assert run_cli(["--copurchase", str(DATA / "tiny-baskets.csv")]) == 2
    with pytest.raises(SystemExit):
        run_cli(["--plain", "--ratings", str(TINY), "--top-n", "3", "--threshold", "5"])
    bad = write(tmp_path, "u,a,1\nu,a,2\n")
    with pytest.raises(DataError, match="twice"):
        run_cli(["--plain", "--ratings", str(bad)])
    assert cli.main(["--plain", "--ratings", str(bad)]) == 1
    assert "lines 1 and 2" in capsys.readouterr().err


def test_cli_copurchase(tmp_path, capsys) -> None:
    out = tmp_path / "co.json"
    argv = [
        "--copurchase",
        str(DATA / "tiny-baskets.csv"),
        "--product",
        "milk",
        "--product",
        "butter",
        "--k",
        "2",
        "--out",
        str(out),
    ]
    assert run_cli(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["params"]["baskets"] == 4
    assert doc["products"]["milk"] == {
        "baskets_with": 3,
        "recommendations": [{"item": "bread", "count": 2}, {"item": "butter", "count": 1}],
    }
    assert "milk: in 3 baskets" in capsys.readouterr().out


@needs_shared
def test_cli_movietweetings_with_titles(tmp_path, capsys) -> None:
    out = tmp_path / "mt.json"
    assert (
        run_cli(
            [
                "--plain",
                "--ratings",
                str(MOVIES),
                "--titles",
                str(TITLES),
                "--targets",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert len(doc["targets"]) == 5
    assert all(len(t["neighbours"]) == 20 for t in doc["targets"].values())
    first = doc["targets"][min(doc["targets"])]["recommendations"][0]["item"]
    assert f"{load_titles(TITLES)[first]} [{first}]" in capsys.readouterr().out


def test_synthetic_w1_has_secomlibs_shape() -> None:
    from crm.recommender.data import synthetic_ratings

    r = synthetic_ratings("W1", seed=1, users=200, items=100)
    assert (r.lo, r.hi, len(r.users), len(r.items)) == (1, 5, 200, 100)
    assert (r.d[:, :20] > 0).all()  # the first 20 items rated by everyone
    rest = r.d[:, 20:]
    assert ((rest >= 0) & (rest <= 5)).all()
    assert 0.45 < (rest > 0).mean() < 0.55  # missing with probability 1/2
    again = synthetic_ratings("w1", seed=1, users=200, items=100)
    assert (again.d == r.d).all()
    with pytest.raises(ParameterError):
        synthetic_ratings("W2")
