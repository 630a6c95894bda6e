"""The private recommender's steps against the plaintext oracle: exact equality."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm.recommender.data import build_ratings
from crm.recommender.plain import PlainParams, Recommender, aggregate, dense_items, dense_vectors
from crm.recommender.private import (
    RecLayout,
    UserRecord,
    block_products,
    build_blocks,
    decode_aggregate,
    decode_neighbours,
    finish_similarities,
    mask_selection,
    mask_target,
    rating_products,
    unmask_selection,
    unmask_target,
    user_plaintexts,
)
from mpc.elgamal import combine, local_joint_keys, params_for
from mpc.errors import LayoutError, ParameterError

P = params_for(1024)


@pytest.fixture(scope="module")
def keys():
    return local_joint_keys(P)


def decrypt(shares, c):
    return combine(c, [s.partial_decrypt(c) for s in shares])


def small_ratings(seed: int, users: int = 23, items: int = 17):
    rng = random.Random(seed)
    triples = []
    for u in range(users):
        for i in range(items):
            if i < 4 or rng.random() < 0.4:  # the first items are dense
                triples.append((f"u{u:02d}", f"i{i:02d}", rng.randint(0, 5)))
    return build_ratings(triples, scale=(0, 5))


@pytest.fixture(scope="module")
def world(keys):
    pk, _ = keys
    r = small_ratings(7)
    dense, shift = 4, 8
    items = dense_items(r, dense)
    vectors = dense_vectors(r, items, shift)
    layout = RecLayout(P, len(r.users), len(r.items), dense, shift, r.levels, max_neighbours=len(r.users) - 1)
    records = []
    for u in range(len(r.users)):
        plains = user_plaintexts(layout, u, [int(x) for x in vectors[u]], [int(x) for x in r.d[u]])
        records.append(UserRecord.split(layout, [pk.encrypt(m) for m in plains]))
    return {"r": r, "items": items, "vectors": vectors, "layout": layout, "records": records}


def test_layout_is_refused_when_it_cannot_fit() -> None:
    with pytest.raises(LayoutError):
        RecLayout(P, 10, 10, dense=40, shift=8, levels=5, max_neighbours=9)  # 40 target slots x 50 bits
    with pytest.raises(ParameterError):
        RecLayout(P, 0, 10, dense=4, shift=8, levels=5, max_neighbours=1)


def test_similarities_equal_the_oracle(keys, world) -> None:
    pk, shares = keys
    layout, records, vectors = world["layout"], world["records"], world["vectors"]
    blocks = build_blocks(layout, records)
    assert layout.n_blocks >= 2  # the example spans several blocks
    for a in (0, 5, len(records) - 1):
        masked, r = mask_target(layout, records[a].target)
        z = unmask_target(layout, decrypt(shares, masked))
        assert z != [int(v) for v in vectors[a]]  # the PSP sees masked values only
        psp = block_products(pk, blocks, z)
        sp = block_products(pk, blocks, r)
        sims_ct = finish_similarities(psp, sp)
        sims = []
        for c in sims_ct:
            x = decrypt(shares, c)
            w = layout.sim_slot_bits
            sims += [(x >> (w * k)) & ((1 << w) - 1) for k in range(layout.users_per_block)]
        expect = [int(x) for x in vectors @ vectors[a]]
        assert sims[: len(records)] == expect


def test_aggregate_equals_the_oracle(keys, world) -> None:
    pk, shares = keys
    r, layout, records = world["r"], world["layout"], world["records"]
    rng = random.Random(3)
    chosen = sorted(rng.sample(range(len(records)), 6))
    bits = [pk.encrypt(1 if u in chosen else 0) for u in range(len(records))]
    packed, rho = mask_selection(layout, bits)
    z = unmask_selection(layout, [decrypt(shares, c) for c in packed], len(records))
    assert all(zz >= rr for zz, rr in zip(z, rho, strict=True))
    assert [zz - rr for zz, rr in zip(z, rho, strict=True)] == [int(u in chosen) for u in range(len(records))]
    ratings = [rec.ratings for rec in records]
    psp = rating_products(pk, ratings, z)
    sp = rating_products(pk, ratings, rho)
    result = [a - b for a, b in zip(psp, sp, strict=True)]
    sums, counts = decode_aggregate(layout, [decrypt(shares, c) for c in result])
    exp_sums, exp_counts = aggregate(r, chosen)
    assert sums == [int(x) for x in exp_sums]
    assert counts == [int(x) for x in exp_counts]


def test_oracle_parameters_match(world) -> None:
    r = world["r"]
    rec = Recommender(r, PlainParams(dense=4, shift=8, threshold=0))
    assert rec.recommend(r.users[0]).neighbours  # sanity: threshold 0 selects everyone else


async def test_threshold_recommendation_end_to_end_in_memory(keys, world) -> None:
    """The whole protocol over the in-memory transport: exact equality with the oracle."""
    import crm.recommender.protocol  # noqa: F401  (registers "recommend")
    from crm.recommender.plain import rank
    from crm.recommender.private import build_blocks
    from mpc.elgamal.curve import CurvePrivateKey
    from mpc.protocol import run_local

    pk, shares = keys
    r, layout, records, vectors = world["r"], world["layout"], world["records"], world["vectors"]
    blocks = build_blocks(layout, records)
    a = 3
    sims = [int(x) for x in vectors @ vectors[a]]
    delta = sorted(sims)[len(sims) // 2]  # about half the users are neighbours, ties included
    oracle = Recommender(r, PlainParams(dense=4, shift=8, threshold=delta, k=0)).recommend(r.users[a])
    out = await run_local(
        "recommend",
        {
            "sp": {"layout": layout, "pk": pk, "share": shares[0], "records": records, "blocks": blocks,
                   "target": a, "delta": delta},
            "psp": {"layout": layout, "pk": pk, "share": shares[1], "records": records, "blocks": blocks,
                    "curve_key": CurvePrivateKey.generate()},
        },
        timeout=60,
    )
    plains = [decrypt(shares, c) for c in out["sp"]]
    sums, counts = decode_aggregate(layout, plains)
    assert sums == [int(x) for x in oracle.sums]
    assert counts == [int(x) for x in oracle.counts]
    assert decode_neighbours(layout, plains) == len(oracle.neighbours)
    import numpy as np

    ranked = rank(r, a, np.array(sums), np.array(counts), 0)
    assert [x.to_dict() for x in ranked] == [x.to_dict() for x in oracle.recommendations]
    assert out["psp"] is None


async def test_fewer_users_than_one_block(keys) -> None:
    """A single, partly filled similarity block (fewer users than its slots)."""
    import crm.recommender.protocol  # noqa: F401
    from mpc.elgamal.curve import CurvePrivateKey
    from mpc.protocol import run_local

    pk, shares = keys
    r = small_ratings(11, users=5, items=6)
    items = dense_items(r, 3)
    vectors = dense_vectors(r, items, 6)
    layout = RecLayout(P, len(r.users), len(r.items), 3, 6, r.levels, max_neighbours=len(r.users) - 1)
    assert layout.n_blocks == 1
    records = [
        UserRecord.split(layout, [pk.encrypt(m) for m in user_plaintexts(layout, u, [int(x) for x in vectors[u]], [int(x) for x in r.d[u]])])
        for u in range(len(r.users))
    ]
    blocks = build_blocks(layout, records)
    oracle = Recommender(r, PlainParams(dense=3, shift=6, threshold=1, k=0)).recommend(r.users[0])
    out = await run_local(
        "recommend",
        {
            "sp": {"layout": layout, "pk": pk, "share": shares[0], "records": records, "blocks": blocks,
                   "target": 0, "delta": 1},
            "psp": {"layout": layout, "pk": pk, "share": shares[1], "records": records, "blocks": blocks,
                    "curve_key": CurvePrivateKey.generate()},
        },
        timeout=60,
    )
    sums, counts = decode_aggregate(layout, [decrypt(shares, c) for c in out["sp"]])
    assert (sums, counts) == ([int(x) for x in oracle.sums], [int(x) for x in oracle.counts])


def _topn_world(keys, seed: int, users: int, dense: int = 4, shift: int = 6):
    pk, _ = keys
    base = small_ratings(seed, users=users // 2, items=12)
    # Every user twice (u.. and v..): equal similarities everywhere, so ties decide.
    from crm.recommender.data import build_ratings

    triples = []
    for u in base.users:
        for j, it in enumerate(base.items):
            if base.d[base.user_index[u], j]:
                val = int(base.d[base.user_index[u], j]) - 1 + base.lo
                triples += [(u, it, val), ("v" + u[1:], it, val)]
    r = build_ratings(triples, scale=(base.lo, base.hi))
    items = dense_items(r, dense)
    vectors = dense_vectors(r, items, shift)
    n = len(r.users)
    layout = RecLayout(P, n, len(r.items), dense, shift, r.levels, max_neighbours=5, tie_bits=(n - 1).bit_length())
    records = [
        UserRecord.split(layout, [pk.encrypt(m) for m in user_plaintexts(layout, u, [int(x) for x in vectors[u]], [int(x) for x in r.d[u]])])
        for u in range(n)
    ]
    return r, layout, records


async def test_top_n_by_shuffle_then_select_equals_the_oracle(keys) -> None:
    import crm.recommender.topn  # noqa: F401  (registers "recommend-topn")
    from crm.recommender.private import build_blocks
    from mpc.elgamal.curve import CurvePrivateKey
    from mpc.protocol import run_local

    pk, shares = keys
    r, layout, records = _topn_world(keys, 5, 22)
    blocks = build_blocks(layout, records)
    for a in (0, 7):
        oracle = Recommender(r, PlainParams(dense=4, shift=6, top_n=5, k=0)).recommend(r.users[a])
        out = await run_local(
            "recommend-topn",
            {
                "sp": {"layout": layout, "pk": pk, "share": shares[0], "records": records, "blocks": blocks, "target": a},
                "psp": {"layout": layout, "pk": pk, "share": shares[1], "records": records, "blocks": blocks,
                        "curve_key": CurvePrivateKey.generate(), "top_n": 5},
            },
            timeout=120,
        )
        assert out["psp"] == 5
        plains = [decrypt(shares, c) for c in out["sp"]]
        sums, counts = decode_aggregate(layout, plains)
        assert (sums, counts) == ([int(x) for x in oracle.sums], [int(x) for x in oracle.counts]), a
        assert decode_neighbours(layout, plains) == len(oracle.neighbours) == 5


async def test_top_n_by_encrypted_ranks_equals_the_oracle_and_reveals_nothing(keys) -> None:
    """The leak-free mode: same neighbours (every user duplicated, so ties decide), and the
    PSP gets no comparison outcome (both batches' outputs stay encrypted)."""
    import crm.recommender.rank as rank
    from crm.recommender.private import build_blocks
    from mpc.elgamal.curve import CurvePrivateKey
    from mpc.protocol import run_local

    pk, shares = keys
    r, layout, records = _topn_world(keys, 5, 12)
    blocks = build_blocks(layout, records)
    a = 3
    oracle = Recommender(r, PlainParams(dense=4, shift=6, top_n=5, k=0)).recommend(r.users[a])
    out = await run_local(
        "recommend-rank",
        {
            "sp": {"layout": layout, "pk": pk, "share": shares[0], "records": records, "blocks": blocks,
                   "target": a, "top_n": 5},
            "psp": {"layout": layout, "pk": pk, "share": shares[1], "records": records, "blocks": blocks,
                    "curve_key": CurvePrivateKey.generate()},
        },
        timeout=300,
    )
    assert out["psp"] is None  # the PSP's role returns nothing: it learnt no bit
    plains = [decrypt(shares, c) for c in out["sp"]]
    sums, counts = decode_aggregate(layout, plains)
    assert (sums, counts) == ([int(x) for x in oracle.sums], [int(x) for x in oracle.counts])
    assert decode_neighbours(layout, plains) == len(oracle.neighbours) == 5
    n = layout.n_users
    assert len(rank.pairs_of(n, a)) == (n - 1) * (n - 2) // 2


def test_ranks_from_outcomes_count_the_users_above(keys) -> None:
    from crm.recommender.rank import pairs_of, ranks_from_outcomes

    pk, shares = keys
    values = [5, 9, 1, 7, 3]
    pairs = pairs_of(5, 2)
    ge = [pk.encrypt(int(values[c] >= values[b])) for c, b in pairs]
    ranks = {u: decrypt(shares, c) for u, c in ranks_from_outcomes(pk, 5, 2, pairs, ge).items()}
    assert ranks == {u: sum(values[v] > values[u] for v in (0, 1, 3, 4)) for u in (0, 1, 3, 4)}


async def test_top_n_pairs_tell_the_sp_nothing_about_the_order(keys, monkeypatch) -> None:
    """The SP sees which positions the PSP compares; they must not be positions it can map to
    users. With quickselect for the top 1, every round compares the candidates still in play,
    so the positions common to all rounds contain the largest value's. Mapped through the SP's
    own permutation they would always contain the top user; after the PSP's reshuffle they
    are positions of an order the SP does not know, and miss it in most queries."""
    import crm.recommender.topn as topn
    from crm.recommender.private import build_blocks
    from mpc.elgamal.curve import CurvePrivateKey
    from mpc.protocol import run_local

    pk, shares = keys
    r, layout, records = _topn_world(keys, 5, 22)
    blocks = build_blocks(layout, records)
    seen: dict[str, list] = {"perm": [], "rounds": []}
    order, decode = topn.shuffle_order, topn.decode_pairs

    def spy_order(n_users: int, target: int) -> list[int]:
        seen["perm"].append(perm := order(n_users, target))
        return perm

    def spy_decode(data: bytes) -> list[tuple[int, int]]:
        if pairs := decode(data):
            seen["rounds"].append(pairs)
        return pairs

    monkeypatch.setattr(topn, "shuffle_order", spy_order)
    monkeypatch.setattr(topn, "decode_pairs", spy_decode)
    a, hits, runs = 3, 0, 6
    top = r.user_index[Recommender(r, PlainParams(dense=4, shift=6, top_n=1, k=0)).recommend(r.users[a]).neighbours[0]]
    for _ in range(runs):
        seen["perm"].clear()
        seen["rounds"].clear()
        await run_local(
            "recommend-topn",
            {
                "sp": {"layout": layout, "pk": pk, "share": shares[0], "records": records, "blocks": blocks, "target": a},
                "psp": {"layout": layout, "pk": pk, "share": shares[1], "records": records, "blocks": blocks,
                        "curve_key": CurvePrivateKey.generate(), "top_n": 1, "selector": "quickselect"},
            },
            timeout=120,
        )
        (perm,) = seen["perm"]
        common = set.intersection(*({p for pair in pairs for p in pair} for pairs in seen["rounds"]))
        hits += top in {perm[p] for p in common}
    assert hits < runs  # before the reshuffle: hits == runs every time


@pytest.mark.parametrize("kind", ["Quickselect", "SampleSelect"])
def test_selection_finds_the_k_largest(kind: str) -> None:
    import crm.recommender.topn as topn

    rng = random.Random(4)
    for n, k in [(1, 1), (5, 0), (5, 5), (30, 7), (200, 20), (999, 20), (64, 1), (500, 0), (300, 300)]:
        values = rng.sample(range(10_000), n)
        sel = getattr(topn, kind)(n, k)
        rounds = 0
        while not sel.done:
            pairs = sel.pairs()
            assert all(a != b and 0 <= a < n and 0 <= b < n for a, b in pairs)
            sel.outcome([int(values[a] >= values[b]) for a, b in pairs])
            rounds += 1
        assert sorted(sel.chosen) == sorted(sorted(range(n), key=lambda i: -values[i])[:k])
        assert rounds <= topn.MAX_ROUNDS


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 700), frac=st.floats(0, 1), seed=st.integers(0, 2**32))
def test_sample_select_against_sorted_plaintext(n: int, frac: float, seed: int) -> None:
    """Random sizes and k, including the fallback when few values lie above the pivot."""
    from crm.recommender.topn import MAX_ROUNDS, SampleSelect

    rng = random.Random(seed)
    k = min(n, int(frac * frac * n))  # small k more often
    values = rng.sample(range(4 * n), n)
    sel = SampleSelect(n, k)
    rounds = 0
    while not sel.done:
        sel.outcome([int(values[a] >= values[b]) for a, b in sel.pairs()])
        rounds += 1
    assert sorted(sel.chosen) == sorted(sorted(range(n), key=lambda i: -values[i])[:k])
    assert rounds <= MAX_ROUNDS

