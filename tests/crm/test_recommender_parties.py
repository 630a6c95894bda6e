"""The private recommender (threshold mode) on live servers: uploads, replication, fetch = oracle.

The SP and the PSP run in this event loop (conftest's ``Parties``) with 1024-bit
keys and a recommender configured (``rec.json``); 20 users with their own
certificates upload their encrypted ratings; a target's fetch must equal the
plaintext oracle exactly. The slow test runs ``mpc-crm simulate --ratings``
with real processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from conftest import Parties

from crm.recommender.data import build_ratings
from crm.recommender.plain import PlainParams, Recommender
from crm.recommender.service import (
    REC_KIND,
    RESULT_KIND,
    RecParams,
    fetch_recommendations,
    upload_plaintexts,
    upload_ratings,
)
from mpc.errors import MpcError, ParameterError
from mpc.parties.deploy import write_deployment

KEY_BITS = 1024
DENSE, SHIFT = 4, 6
SERVER_DEADLINE_S = 60.0
CLIENT_DEADLINE_S = 60.0


def triples(seed: int = 11, users: int = 20, items: int = 10) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)
    out = []
    for u in range(users):
        for i in range(items):
            if i < 3 or rng.random() < 0.5:
                out.append((f"r{u:02d}", f"m{i:02d}", rng.randint(1, 5)))
    return out


def own(r, user: str) -> dict[str, int]:
    row = r.d[r.user_index[user]]
    return {r.items[i]: int(row[i]) - 1 + r.lo for i in range(len(r.items)) if row[i]}


@pytest.fixture
def rec_world(tmp_path: Path) -> dict:
    r = build_ratings(triples(), scale=(1, 5))
    vectors = Recommender(r, PlainParams(dense=DENSE, shift=SHIFT, threshold=0)).vectors
    sims = vectors @ vectors.T
    off = sorted(int(sims[a, b]) for a in range(len(r.users)) for b in range(len(r.users)) if a != b)
    delta = off[len(off) // 2]  # about half the pairs are neighbours
    oracle = Recommender(r, PlainParams(dense=DENSE, shift=SHIFT, threshold=delta, k=0))
    params = RecParams.from_ratings(r, oracle.dense_items, SHIFT, delta, KEY_BITS)
    path = tmp_path / "rec.json"
    params.save(path)
    dep = write_deployment(
        tmp_path / "dep", list(r.users), key_bits=KEY_BITS, deadline_s=SERVER_DEADLINE_S, recommender=path
    )
    return {"r": r, "params": params, "oracle": oracle, "dep": dep, "delta": delta}


@pytest_asyncio.fixture
async def rec_parties(rec_world: dict) -> AsyncIterator[Parties]:
    async with Parties(rec_world["dep"]) as p:
        await p.start()
        yield p


async def upload_all(p: Parties, world: dict, users: list[str] | None = None) -> None:
    r, params = world["r"], world["params"]

    async def one(u: str) -> None:
        await upload_ratings(p.user(u, deadline_s=CLIENT_DEADLINE_S), params, own(r, u))

    await asyncio.gather(*(one(u) for u in users or r.users))


def assert_equal_to_oracle(oracle: Recommender, user: str, got: tuple) -> None:
    ranked, sums, counts, neighbours = got
    exp = oracle.recommend(user)
    assert neighbours == len(exp.neighbours)
    assert sums == [int(x) for x in exp.sums]
    assert counts == [int(x) for x in exp.counts]
    assert [x.to_dict() for x in ranked] == [x.to_dict() for x in exp.recommendations]


def test_params_roundtrip_and_version(rec_world: dict, tmp_path: Path) -> None:
    params = rec_world["params"]
    again = RecParams.load(tmp_path / "rec.json")
    assert again == params and again.layout_version == params.layout_version
    assert 0 <= params.layout_version < 1 << 31
    other = RecParams.from_dict({**params.core(), "delta": params.delta + 1})
    assert other.layout_version != params.layout_version


async def test_upload_replicate_fetch_cache_invalidate(rec_parties: Parties, rec_world: dict) -> None:
    p, r, params, oracle = rec_parties, rec_world["r"], rec_world["params"], rec_world["oracle"]
    await upload_all(p, rec_world)

    # Replication: the PSP holds the same records, in its own store and in memory.
    assert p.sp.store.fingerprint() == p.psp.store.fingerprint()
    assert len(p.psp.store.users(REC_KIND)) == len(r.users)
    assert sorted(p.psp.plugins["recommender"].records) == list(range(len(r.users)))
    # The comparisons are garbled circuits (method "gc"): no curve work is precomputed for them
    # (method "dgk" would have the PSP ask for the SP's zero-test key and fill pools for it).
    # The SP's zero-test key is still given to the peer only, never to users.
    sp_key = p.sp.curve_key.public_key.to_bytes()
    assert p.psp.compare_pools._randomizers == {} and p.psp.compare_pools.dummies.target == 0
    assert p.sp.public_key_info().compare_key == b"" and p.psp.public_key_info(for_peer=True).compare_key == b""
    assert p.sp.public_key_info(for_peer=True).compare_key == sp_key

    target = r.users[3]
    client = p.user(target, deadline_s=CLIENT_DEADLINE_S)
    exp = oracle.recommend(target)
    assert exp.neighbours and len(exp.neighbours) < len(r.users) - 1  # a real selection
    got = await fetch_recommendations(client, params, own(r, target))
    assert_equal_to_oracle(oracle, target, got)
    stats = p.sp.plugins["recommender"].stats
    assert (stats["computed"], stats["cache_hits"]) == (1, 0)

    # A second fetch comes from the store.
    again = await fetch_recommendations(client, params, own(r, target))
    assert again == got
    assert (stats["computed"], stats["cache_hits"]) == (1, 1)

    # Another user's new upload changes the answer: the cache is invalidated.
    changed = [(u, i, (x % 5) + 1 if u == r.users[7] else x) for u, i, x in triples()]
    r2 = build_ratings(changed, scale=(1, 5))
    oracle2 = Recommender(r2, PlainParams(dense=DENSE, shift=SHIFT, threshold=rec_world["delta"], k=0))
    assert oracle2.dense_items == oracle.dense_items
    await upload_ratings(p.user(r.users[7], deadline_s=CLIENT_DEADLINE_S), params, own(r2, r.users[7]))
    assert p.sp.store.fingerprint() == p.psp.store.fingerprint()
    got2 = await fetch_recommendations(client, params, own(r2, target))
    assert stats["computed"] == 2
    assert_equal_to_oracle(oracle2, target, got2)

    # Precompute: every other user's result is computed once, then served from the cache.
    before = stats["computed"]
    n = await p.sp.plugins["recommender"].precompute_all(r.users[:2])
    assert n == 2 and stats["computed"] == before + 2
    other = r.users[1]
    got3 = await fetch_recommendations(p.user(other, deadline_s=CLIENT_DEADLINE_S), params, own(r2, other))
    assert stats["computed"] == before + 2
    assert_equal_to_oracle(oracle2, other, got3)


async def test_bad_uploads_are_refused(rec_parties: Parties, rec_world: dict) -> None:
    p, r, params = rec_parties, rec_world["r"], rec_world["params"]
    u = r.users[0]
    await upload_all(p, rec_world, [u])
    sp_before, psp_before = p.sp.store.fingerprint(), p.psp.store.fingerprint()
    assert sp_before == psp_before and len(sp_before) == 1

    client = p.user(u, deadline_s=CLIENT_DEADLINE_S)
    pk = await client.public_key()
    layout = params.layout(pk.params)
    plains = upload_plaintexts(params, layout, u, own(r, u))
    import grpc

    vb, tw = layout.value_bits, layout.target_layout.slot_bits
    too_big = list(plains)
    too_big[1] += 1 << vb  # a dense value of 2^value_bits + v (the bound the masks need is 2^value_bits)
    above = list(plains)
    above[0] += 1 << (tw * layout.dense)  # a bit above the target vector's last slot
    in_slot = list(plains)
    in_slot[0] += 1 << vb  # the target's first value out of range, inside its slot
    for values, version, words in (
        (plains[:-1], params.layout_version, "ciphertexts"),
        (plains, params.layout_version ^ 1, "layout version"),
        (too_big, params.layout_version, "out of range"),
        (above, params.layout_version, "out of range"),
        (in_slot, params.layout_version, "out of range"),
    ):
        with pytest.raises(MpcError) as info:  # proven uploads, refused by the recommender's checks
            await client.upload(REC_KIND, values, version, pk=pk)
        assert info.value.status == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert words in str(info.value)
    # Recommendations for a user who has not uploaded yet: NOT_FOUND, nothing computed.
    with pytest.raises(MpcError) as info:
        await p.user(r.users[1], deadline_s=CLIENT_DEADLINE_S).fetch(RESULT_KIND)
    assert info.value.status == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert p.sp.store.fingerprint() == sp_before
    assert p.psp.store.fingerprint() == psp_before


async def test_recommendations_survive_a_restart(rec_parties: Parties, rec_world: dict) -> None:
    """Both servers reload the records from their stores; the cached result is still served."""
    p, r, params, oracle = rec_parties, rec_world["r"], rec_world["params"], rec_world["oracle"]
    await upload_all(p, rec_world)
    target = r.users[5]
    first = await fetch_recommendations(p.user(target, deadline_s=CLIENT_DEADLINE_S), params, own(r, target))
    assert_equal_to_oracle(oracle, target, first)
    await p.close_clients()
    await p.restart()
    got = await fetch_recommendations(p.user(target, deadline_s=CLIENT_DEADLINE_S), params, own(r, target))
    assert got == first and p.sp.plugins["recommender"].stats["cache_hits"] == 1
    other = r.users[9]
    got = await fetch_recommendations(p.user(other, deadline_s=CLIENT_DEADLINE_S), params, own(r, other))
    assert_equal_to_oracle(oracle, other, got)


@pytest.mark.slow
def test_simulate_with_ratings_processes(tmp_path: Path) -> None:
    src = Path("/work/shared/data/movietweetings-top1000.csv")
    data = Path(__file__).parents[1] / "data" / "tiny-ratings.csv"
    ratings = tmp_path / "ratings.csv"
    if src.exists():
        lines = src.read_text().splitlines()
        users: list[str] = []
        keep = [lines[0]]
        for line in lines[1:]:
            u = line.split(",", 1)[0]
            if u not in users:
                if len(users) == 20:
                    continue
                users.append(u)
            keep.append(line)
        ratings.write_text("\n".join(keep) + "\n")
    else:
        ratings.write_text(data.read_text())
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mpc", "simulate", "--ratings", str(ratings), "--key-bits", "1024",
         "--targets", "2", "--dense", "5", "--workers", "2", "--out", str(out), "--timeout", "400",
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=500,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(out.read_text())
    assert len(rep["targets"]) == 2
    assert all(t["match"] for t in rep["targets"].values())
    assert all(t["neighbours"] == len(t["plain"]["neighbours"]) for t in rep["targets"].values())
    assert rep["per_target_s"] > 0 and rep["bytes_sent"]["sp"] > 0 and rep["bytes_sent"]["users"] > 0


@pytest.mark.parametrize("selection", ["shuffle", "rank"])
async def test_top_n_on_live_servers(tmp_path: Path, selection: str) -> None:
    """Top-N mode through the real SP and PSP (shuffle-then-select, or the leak-free
    encrypted rank counting): equal to the oracle."""
    r = build_ratings(triples(seed=5), scale=(1, 5))
    oracle = Recommender(r, PlainParams(dense=DENSE, shift=SHIFT, top_n=4, k=0))
    params = RecParams.from_ratings(r, oracle.dense_items, SHIFT, 0, KEY_BITS, top_n=4, selection=selection)
    assert params.protocol == {"shuffle": "recommend-topn", "rank": "recommend-rank"}[selection]
    if selection == "shuffle":  # parameters from before the option keep their version
        assert "selection" not in params.core()
    path = tmp_path / "rec.json"
    params.save(path)
    dep = write_deployment(
        tmp_path / "dep", list(r.users), key_bits=KEY_BITS, deadline_s=SERVER_DEADLINE_S, recommender=path
    )
    async with Parties(dep) as p:
        await p.start()
        await upload_all(p, {"r": r, "params": params})
        for target in (r.users[0], r.users[9]):
            got = await fetch_recommendations(p.user(target, deadline_s=CLIENT_DEADLINE_S), params, own(r, target))
            assert_equal_to_oracle(oracle, target, got)


async def test_precompute_in_idle_time(rec_world: dict) -> None:
    """With ``precompute = true`` the SP computes every user's recommendations once uploads
    settle; a fetch is then a cache hit; a new upload makes them stale and they are redone."""
    import json

    from crm.recommender.service import PRECOMPUTE_FILE

    r, params, oracle = rec_world["r"], rec_world["params"], rec_world["oracle"]
    p = Parties(rec_world["dep"])
    p.changes["sp"] = {"precompute": True}
    progress = rec_world["dep"].sp_data / PRECOMPUTE_FILE

    async def wait_all(total: int, version: int | None = None) -> dict:
        for _ in range(1200):
            try:
                state = json.loads(progress.read_text())
            except (OSError, ValueError):
                state = {}
            if state.get("total") == total and state.get("done") == total and (
                version is None or state.get("data_version") != version
            ):
                return state
            await asyncio.sleep(0.1)
        raise AssertionError(f"precomputation did not finish: {state}")

    async with p:
        await p.start()
        users = r.users[:6]
        await upload_all(p, rec_world, users)
        state = await wait_all(len(users))
        stats = p.sp.plugins["recommender"].stats
        assert stats["computed"] == len(users)
        got = await fetch_recommendations(p.user(users[2], deadline_s=CLIENT_DEADLINE_S), params, own(r, users[2]))
        assert stats["cache_hits"] >= 1 and stats["computed"] == len(users)
        # Everyone uploads (the oracle's data): all results stale, all recomputed.
        await upload_all(p, rec_world)
        await wait_all(len(r.users), state["data_version"])
        got = await fetch_recommendations(p.user(users[2], deadline_s=CLIENT_DEADLINE_S), params, own(r, users[2]))
        assert_equal_to_oracle(oracle, users[2], got)


def test_rank_selection_parameters(rec_world: dict) -> None:
    params = rec_world["params"]
    rank = dataclasses.replace(params, top_n=3, selection="rank")
    assert rank.protocol == "recommend-rank" and RecParams.from_dict(rank.to_dict()) == rank
    assert rank.layout_version != dataclasses.replace(params, top_n=3).layout_version
    with pytest.raises(ParameterError, match="selection"):
        dataclasses.replace(params, selection="fastest")
    many = tuple(f"x{i}" for i in range(401))
    with pytest.raises(ParameterError, match="at most 400 users"):
        dataclasses.replace(params, users=many, top_n=3, selection="rank")
