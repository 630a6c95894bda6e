"""What the servers see in the private recommender, checked on the wire (in memory).

- The PSP never receives the same ciphertext (or curve point) twice, neither
  within nor across queries, and never one of the stored ciphertexts it holds
  a copy of: every value it sees is fresh.
- The SP's view (the steps it receives and their sizes) is the same for two
  different data sets of the same sizes: it depends on nothing but sizes.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

import crm.recommender.protocol
import crm.recommender.topn  # noqa: F401  (registers "recommend-topn")
from crm.recommender.data import build_ratings
from crm.recommender.plain import dense_items, dense_vectors
from crm.recommender.private import RecLayout, UserRecord, build_blocks, user_plaintexts
from mpc.elgamal import local_joint_keys, params_for
from mpc.elgamal.curve import CurvePrivateKey
from mpc.protocol import run_local
from mpc.transport import InMemoryNetwork

P = params_for(1024)
WINDOW = 48
"""A repeated 48-byte run of random-looking bytes can only be a repeated value."""


class RecordingNetwork(InMemoryNetwork):
    """An in-memory network that keeps, per receiving party, every (step, payload) sent to it."""

    def __init__(self) -> None:
        super().__init__()
        self.received: dict[str, list[tuple[str, bytes]]] = {}

    def transport(self, party: str) -> Any:
        t = super().transport(party)
        if not getattr(t, "_recorded", False):
            send = t.send

            async def recording_send(to: str, session: str, step: str, payload: bytes) -> None:
                self.received.setdefault(to, []).append((step, bytes(payload)))
                await send(to, session, step, payload)

            t.send = recording_send  # type: ignore[method-assign]
            t._recorded = True  # type: ignore[attr-defined]
        return t


def _ratings(seed: int, users: int = 20, items: int = 15) -> Any:
    rng = random.Random(seed)
    triples = [
        (f"u{u:02d}", f"i{i:02d}", rng.randint(0, 5))
        for u in range(users)
        for i in range(items)
        if i < 4 or rng.random() < 0.4
    ]
    return build_ratings(triples, scale=(0, 5))


@pytest.fixture(scope="module")
def keys() -> Any:
    return local_joint_keys(P)


def _world(keys: Any, seed: int, tie_bits: int = 0) -> dict[str, Any]:
    pk, _ = keys
    r = _ratings(seed)
    vectors = dense_vectors(r, dense_items(r, 4), 8)
    # The same layout for every data set of these sizes (levels fixed at the scale's).
    layout = RecLayout(
        P, len(r.users), len(r.items), 4, 8, 6, max_neighbours=len(r.users) - 1, tie_bits=tie_bits
    )
    records = []
    for u in range(len(r.users)):
        plains = user_plaintexts(layout, u, [int(x) for x in vectors[u]], [int(x) for x in r.d[u]])
        records.append(UserRecord.split(layout, [pk.encrypt(m) for m in plains]))
    return {"layout": layout, "records": records, "blocks": build_blocks(layout, records), "vectors": vectors}


async def _query(
    keys: Any, w: dict[str, Any], target: int, net: RecordingNetwork, curve: Any, protocol: str = "recommend"
) -> None:
    pk, shares = keys
    sims = sorted(int(x) for x in w["vectors"] @ w["vectors"][target])
    delta = sims[len(sims) // 2]
    common = {"layout": w["layout"], "pk": pk, "records": w["records"], "blocks": w["blocks"]}
    await run_local(
        protocol,
        {
            "sp": {**common, "share": shares[0], "target": target, "delta": delta},
            "psp": {**common, "share": shares[1], "curve_key": curve, "top_n": 5},
        },
        network=net,
        timeout=60,
    )


def _windows(data: bytes) -> set[bytes]:
    return {data[i : i + WINDOW] for i in range(0, max(0, len(data) - WINDOW + 1))}


def _random_looking(w: bytes) -> bool:
    """At least 24 distinct byte values: a run of zeros or of a repeated pattern (padding,
    framing) is not a value, so it may repeat."""
    return len(set(w)) >= 24


def _repeats_within(msgs: list[tuple[str, bytes]]) -> list[str]:
    """The steps in which a random-looking window stands twice: in two messages of one
    query, or at two places of one message."""
    where: dict[bytes, str] = {}
    found = []
    for step, payload in msgs:
        here: dict[bytes, int] = {}
        for i in range(0, max(0, len(payload) - WINDOW + 1)):
            w = payload[i : i + WINDOW]
            if not _random_looking(w):
                continue
            if w in where:
                found.append(f"{where[w]} and {step}")
            elif w in here and i - here[w] >= WINDOW:
                found.append(f"{step} twice")
            here.setdefault(w, i)
        for w in here:
            where.setdefault(w, step)
    return found


@pytest.mark.parametrize("protocol", ["recommend", "recommend-topn"])
async def test_psp_never_sees_a_ciphertext_twice_nor_a_stored_one(keys: Any, protocol: str) -> None:
    """Top-N included: its shuffled values and the PSP's own selection bits are not
    re-randomised one by one, only every packed value derived from them (crm.recommender.topn)."""
    w = _world(keys, 1, tie_bits=5 if protocol == "recommend-topn" else 0)
    curve = CurvePrivateKey.generate()
    seen: list[set[bytes]] = []
    for target in (3, 3, 8):  # the same target twice, then another
        net = RecordingNetwork()
        await _query(keys, w, target, net, curve, protocol)
        msgs = net.received["psp"]
        assert msgs, "the PSP received nothing"
        repeats = _repeats_within(msgs)
        assert not repeats, f"a value repeats within one query: {repeats[:3]}"
        windows: set[bytes] = set()
        for _step, payload in msgs:
            windows |= _windows(payload)
        seen.append(windows)
    assert not seen[0] & seen[1], "a value repeats between two queries for the same target"
    assert not seen[0] & seen[2] and not seen[1] & seen[2]
    pk = keys[0]
    stored: set[bytes] = set()
    for rec in w["records"]:
        for c in [rec.target, *rec.dense, *rec.ratings]:
            stored |= _windows(pk.ciphertexts_to_bytes([c]))
    assert not stored & (seen[0] | seen[1] | seen[2]), "the PSP received a stored ciphertext"


async def test_the_sp_view_depends_on_sizes_only(keys: Any) -> None:
    """Two unrelated data sets of the same sizes: the SP receives the same steps, the same sizes."""
    curve = CurvePrivateKey.generate()
    views = []
    for seed in (2, 5):
        w = _world(keys, seed)
        net = RecordingNetwork()
        await _query(keys, w, 4, net, curve)
        views.append([(step, len(payload)) for step, payload in net.received["sp"]])
    assert views[0] == views[1]


def test_the_repeat_check_catches_repeats_within_a_query() -> None:
    """The check above is not vacuous: a value sent twice in one query, in two messages or in
    one, is caught; zero padding repeated is not a value."""
    import secrets

    value = secrets.token_bytes(128)
    assert _repeats_within([("a", value), ("b", secrets.token_bytes(64) + value)]) != []
    twice = _repeats_within([("a", value + secrets.token_bytes(16) + value)])
    assert twice and set(twice) == {"a twice"}
    assert _repeats_within([("a", bytes(500)), ("b", bytes(500))]) == []
    assert _repeats_within([("a", secrets.token_bytes(500)), ("b", secrets.token_bytes(500))]) == []
