"""Issue #12: every responder checks what its peer proposes against its own configuration.

The SP starts every session and proposes its parameters (kappa, sizes, methods,
layout versions ...); the PSP builds its inputs in ``responder_inputs`` and must
refuse whatever its own configuration (``PartyConfig``) or its own copy of the
public parameters does not allow, with a ParameterError or ProtocolError naming
the parameter.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import mpc.protocols.compare as cmp
from mpc.elgamal import KeyShare, PublicKey, local_joint_keys, params_for
from mpc.errors import EncodingError, ParameterError, ProtocolError
from mpc.parties.config import PartyConfig
from mpc.protocol import get_protocol, run_local
from mpc.v1 import compare_pb2

P = params_for(1024)
PK, (SP_SHARE, PSP_SHARE) = local_joint_keys(P)
BASE = {
    "role": "psp", "listen": "x:1", "peer": "y:2", "data_dir": "d",
    "tls": {"ca": "a", "cert": "b", "key": "c"},
}


def config(**extra: Any) -> PartyConfig:
    return PartyConfig.from_dict({**BASE, **extra})


class FakeParty:
    """What ``responder_inputs`` may use of a PartyServer (the PSP unless told otherwise)."""

    def __init__(self, cfg: PartyConfig | None = None, role: str = "psp") -> None:
        self.role = role
        self.params = P
        if cfg is not None:
            self.config = cfg

    def require_key(self) -> tuple[PublicKey, KeyShare]:
        return PK, PSP_SHARE

    async def run_crypto(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


def _compare_start(**fields: Any) -> bytes:
    msg = cmp.CompareParams(16, 4).to_proto()
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg.SerializeToString()


# -- compare ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kappa", [1, 39])
def test_compare_psp_refuses_a_small_kappa(kappa: int) -> None:
    """The attack of issue #12: an SP proposing kappa = 1 would show the PSP nearly unmasked values."""
    spec = get_protocol("compare")
    for party in (FakeParty(config()), FakeParty()):  # configured, or the default floor
        with pytest.raises(ParameterError, match=rf"kappa.*{kappa}.*40"):
            spec.responder_inputs(party, _compare_start(kappa=kappa))


def test_compare_psp_refuses_a_small_kappa_in_the_masked_message() -> None:
    """The same attack when the PSP takes the parameters from the SP's first message (a
    comparison inside another protocol, ``params`` not given): it refuses before decrypting."""
    bad = cmp.CompareParams(8, 3, kappa=1)
    with pytest.raises(ParameterError, match="kappa"):
        asyncio.run(run_local("compare", {
            "sp": {"pk": PK, "share": SP_SHARE, "params": bad, "xs": [PK.encrypt(v) for v in (1, 2, 3)],
                   "ys": [PK.encrypt(v) for v in (3, 2, 1)]},
            "psp": {"pk": PK, "share": PSP_SHARE},
        }, timeout=30.0))


def test_compare_psp_checks_the_proposal_against_its_config() -> None:
    spec = get_protocol("compare")
    strict = FakeParty(config(kappa=64, compare_methods=["gc"]))
    with pytest.raises(ParameterError, match=r"kappa = 40.*kappa >= 64"):
        spec.responder_inputs(strict, _compare_start(kappa=40))
    with pytest.raises(ParameterError, match=r"method 'dgk'.*\['gc'\]"):
        spec.responder_inputs(strict, _compare_start(kappa=64, method=compare_pb2.COMPARE_METHOD_DGK))
    inputs = spec.responder_inputs(strict, _compare_start(kappa=64))
    assert inputs["params"] == cmp.CompareParams(16, 4, kappa=64) and inputs["min_kappa"] == 64
    # Sizes out of their bounds are refused with the parameter named, never a generic exception.
    for fields, needle in (({"count": 10**8}, "MiB"), ({"chunks": cmp.MAX_CHUNKS + 1}, "chunks"),
                           ({"bits": 65}, "bits"), ({"kappa": 300}, "kappa")):
        with pytest.raises((ParameterError, ProtocolError, EncodingError), match=needle):
            spec.responder_inputs(FakeParty(config()), _compare_start(**fields))
    with pytest.raises(ProtocolError, match="started by the SP"):
        spec.responder_inputs(FakeParty(config(), role="sp"), _compare_start())


def test_compare_with_proper_parameters_still_works() -> None:
    spec = get_protocol("compare")
    params = cmp.CompareParams(8, 3, cmp.OUTPUT_PSP)
    psp = spec.responder_inputs(FakeParty(config()), params.to_proto().SerializeToString())
    xs, ys = [5, 2, 200], [5, 9, 100]
    out = asyncio.run(run_local("compare", {
        "sp": {"pk": PK, "share": SP_SHARE, "params": params, "xs": [PK.encrypt(v) for v in xs],
               "ys": [PK.encrypt(v) for v in ys]},
        "psp": psp,
    }, timeout=30.0))
    assert out["psp"] == [1, 0, 1]


def test_a_config_below_kappa_40_is_refused_at_load(tmp_path: Any) -> None:
    import dataclasses

    assert config().kappa == cmp.MIN_KAPPA == 40 and config().compare_methods == ("gc", "dgk")
    assert config(kappa=80).kappa == 80
    for bad in (39, 1, 0, -5, True, "40", 40.0):
        with pytest.raises(ParameterError, match="kappa"):
            config(kappa=bad)
    with pytest.raises(ParameterError, match="kappa"):
        dataclasses.replace(config(), kappa=20)
    for bad in ([], ["gc", "aes"], "gc"):
        with pytest.raises(ParameterError, match="compare_methods"):
            config(compare_methods=bad)
    path = tmp_path / "psp.toml"
    path.write_text('role = "psp"\nlisten = "x:1"\npeer = "y:2"\ndata_dir = "d"\nkappa = 32\n'
                    '[tls]\nca = "a"\ncert = "b"\nkey = "c"\n')
    with pytest.raises(ParameterError, match=r"kappa must be an integer >= 40.*32"):
        PartyConfig.load(path)
    path.write_text(path.read_text().replace("kappa = 32", 'kappa = 48\ncompare_methods = ["dgk"]'))
    loaded = PartyConfig.load(path)
    assert loaded.kappa == 48 and loaded.compare_methods == ("dgk",)


# -- aggregate-decrypt ----------------------------------------------------------------------------


def test_aggregate_decrypt_psp_bounds_the_count_and_checks_its_minimum() -> None:
    from mpc.protocols import aggregate_decrypt as ad

    spec = get_protocol("aggregate-decrypt")
    party = FakeParty(config(aggregate_min_contributors=25))
    for count in (0, ad.MAX_CIPHERTEXTS + 1):
        with pytest.raises(ParameterError, match=rf"count = {count}"):
            spec.responder_inputs(party, ad.start_message("copurchase", 50, count).SerializeToString())
    with pytest.raises(ProtocolError, match=r"contributors = 24.*at least 25.*aggregate_min_contributors"):
        spec.responder_inputs(party, ad.start_message("copurchase", 24, 3).SerializeToString())
    # Proper parameters: the PSP helps, the SP gets the plaintexts.
    values = [0, 7, 123456]
    inputs = spec.responder_inputs(party, ad.start_message("copurchase", 25, len(values)).SerializeToString())
    assert inputs["min_contributors"] == 25
    out = asyncio.run(run_local("aggregate-decrypt", {
        "sp": {"pk": PK, "share": SP_SHARE, "ciphertexts": [PK.encrypt(v) for v in values]},
        "psp": inputs,
    }, timeout=30.0))
    assert out["sp"] == values


# -- deliver ---------------------------------------------------------------------------------------


def test_deliver_psp_bounds_the_ids_and_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    from mpc.protocols import deliver
    from mpc.v1 import steps_pb2

    spec = get_protocol("deliver")
    party = FakeParty(config())
    party.outbox = deliver.Outbox()

    def start(user: str, did: str) -> bytes:
        return steps_pb2.DeliverInputs(user_id=user, delivery_id=did).SerializeToString()

    with pytest.raises(ParameterError, match="user_id"):
        spec.responder_inputs(party, start("u" * 65, "d1"))
    with pytest.raises(ParameterError, match="user_id"):
        spec.responder_inputs(party, start("bob/../alice", "d1"))
    with pytest.raises(ParameterError, match="delivery_id"):
        spec.responder_inputs(party, start("u0001", "d" * 65))
    with pytest.raises(ProtocolError, match="started by the SP"):
        spec.responder_inputs(FakeParty(config(), role="sp"), start("u0001", "d1"))
    inputs = spec.responder_inputs(party, start("u0001", "d1"))
    cts = [PK.encrypt(v) for v in (4, 5, 6)]
    out = asyncio.run(run_local("deliver", {"sp": {"pk": PK, "share": SP_SHARE, "ciphertexts": cts}, "psp": inputs},
                                timeout=30.0))
    assert out["psp"] == 3 and len(party.outbox.collect("d1", "u0001")) == 3
    # More ciphertexts than the PSP delivers at once (a bound lowered for the test).
    monkeypatch.setattr(deliver, "MAX_CIPHERTEXTS", 2)
    inputs = spec.responder_inputs(party, start("u0001", "d2"))
    with pytest.raises(ParameterError, match="deliver 3 ciphertexts"):
        asyncio.run(run_local("deliver", {"sp": {"pk": PK, "share": SP_SHARE, "ciphertexts": cts}, "psp": inputs},
                              timeout=30.0))


# -- churn-score ----------------------------------------------------------------------------------


def test_churn_score_psp_bounds_what_the_sp_proposes() -> None:
    from crm.churn import protocol as churn
    from mpc.v1 import churn_pb2

    spec = get_protocol("churn-score")
    party = FakeParty(config())
    party.curve_key = object()
    good = churn_pb2.ChurnScoreInputs(depth=6, terms=13, count=128, admin_key=bytes(32), chunk="job/0")

    def start(**fields: Any) -> bytes:
        msg = churn_pb2.ChurnScoreInputs()
        msg.CopyFrom(good)
        for k, v in fields.items():
            setattr(msg, k, v)
        return msg.SerializeToString()

    for fields, needle in (({"depth": 0}, "depth = 0"), ({"depth": 17}, "depth = 17"),
                           ({"terms": 0}, "terms = 0"), ({"terms": 65}, "terms = 65"),
                           ({"count": 0}, "count = 0"), ({"count": churn.MAX_CHUNK + 1}, "count = 4097"),
                           ({"depth": 16, "terms": 64, "count": 1}, "MiB")):
        with pytest.raises(ParameterError, match=needle):
            spec.responder_inputs(party, start(**fields))
    inputs = spec.responder_inputs(party, start())
    assert (inputs["depth"], inputs["terms"], inputs["count"]) == (6, 13, 128)
    assert inputs["curve_key"] is party.curve_key
    with pytest.raises(ProtocolError, match="started by the SP"):
        spec.responder_inputs(FakeParty(config(), role="sp"), start())


# -- churn-plan -----------------------------------------------------------------------------------


def test_churn_plan_psp_checks_the_layout_version_and_bounds_the_sizes() -> None:
    import json

    import numpy as np

    from crm.churn import plan_private as pp
    from mpc.elgamal.curve import CurvePrivateKey
    from mpc.v1 import churn_pb2

    layout = pp.PlanLayout(
        inputs=(("oh", "contract", "monthly"), ("bit", "tenure", 0), ("bit", "tenure", 1)),
        gt=("tenure",), variables=(("in", 0), ("gt", 0), ("in", 1)), feature_bits=(("tenure", 2),),
        contenders=3, modulus_bits=64, payload_bits=16,
    )
    version = pp.layout_version(layout)
    key = CurvePrivateKey.generate()
    party = FakeParty(config())
    party.curve_key = key
    ids = ["c1", "c2"]
    bits = [np.array([1, 0, 1], dtype=np.uint8), np.array([0, 1, 1], dtype=np.uint8)]
    recs = [pp.customer_record(layout, version, key.public_key.to_bytes(), c, b) for c, b in zip(ids, bits, strict=True)]
    shares, boxes = pp.sp_shares(layout, recs)
    spec = get_protocol("churn-plan")

    good = pp.start_inputs(layout, version, ids, boxes, bytes(32), "plan/0")
    inputs = spec.responder_inputs(party, good.SerializeToString())
    assert ((inputs["shares"] ^ shares) == np.stack(bits)).all()

    wrong_version = pp.start_inputs(layout, version ^ 1, ids, boxes, bytes(32), "plan/0")
    with pytest.raises(ParameterError, match=rf"layout_version = {version ^ 1}"):
        spec.responder_inputs(party, wrong_version.SerializeToString())
    few_ids = pp.start_inputs(layout, version, ids, boxes, bytes(32), "plan/0")
    del few_ids.customer_ids[1:]
    with pytest.raises(ParameterError, match="count = 2 customers with 1 ids"):
        spec.responder_inputs(party, few_ids.SerializeToString())
    # A layout whose messages could never cross the transport is refused before any box is opened.
    huge = pp.PlanLayout(layout.inputs, layout.gt, layout.variables, layout.feature_bits,
                         contenders=1 << 15, modulus_bits=4096, payload_bits=16)
    big = churn_pb2.ChurnPlanInputs(
        layout_json=json.dumps(pp.layout_to_dict(huge)), layout_version=pp.layout_version(huge), count=64,
        customer_ids=[f"c{k}" for k in range(64)], admin_key=bytes(32), chunk="plan/0",
    )
    with pytest.raises(ParameterError, match=r"count = 64 customers of 32768 contenders.*modulus_bits = 4096"):
        spec.responder_inputs(party, big.SerializeToString())
    with pytest.raises(ProtocolError, match="started by the SP"):
        spec.responder_inputs(FakeParty(config(), role="sp"), good.SerializeToString())


# -- the recommender: "recommend", "recommend-topn", "recommend-rank" ------------------------------


class _NoRecords:
    def get_record(self, user: str, kind: str) -> None:
        return None


def _rec_service(tmp_path: Any, cfg: PartyConfig, **params: Any) -> Any:
    from crm.recommender.service import RecommenderService, RecParams

    rec = RecParams(
        users=("u0", "u1", "u2", "u3"), items=("a", "b", "c"), dense_items=("a", "b"), shift=4,
        levels=5, lo=1, delta=3, key_bits=1024, **params,
    )
    rec.save(tmp_path / "rec.json")
    party = FakeParty(cfg)
    party.stats, party.pool_target, party.responders, party.store = {}, 0, {}, _NoRecords()
    return RecommenderService(party, tmp_path / "rec.json")


def _rec_start(version: int, comparisons: int) -> bytes:
    from mpc.v1 import recommend_pb2

    return recommend_pb2.RecommendInputs(layout_version=version, comparisons=comparisons).SerializeToString()


def test_recommend_psp_checks_the_layout_version_the_size_and_its_kappa(tmp_path: Any) -> None:
    service = _rec_service(tmp_path, config())
    responder = service.party.responders["recommend"]
    version, n = service.params.layout_version, service.layout.n_users
    with pytest.raises(ParameterError, match=rf"layout_version = {version ^ 1}.*{version}"):
        responder(_rec_start(version ^ 1, n))
    with pytest.raises(ParameterError, match=rf"comparisons = {n + 1}.*over {n}"):
        responder(_rec_start(version, n + 1))
    inputs = responder(_rec_start(version, n))
    assert inputs["protocol"] == "recommend" and inputs["layout"] is service.layout

    # A PSP whose config asks for more statistical bits than the recommender's layout blinds with.
    strict = _rec_service(tmp_path, config(kappa=64))
    with pytest.raises(ParameterError, match=r"kappa = 40.*kappa >= 64"):
        strict.party.responders["recommend"](_rec_start(version, n))

    # Proper parameters still work: the whole protocol on the PSP's inputs (nobody uploaded yet,
    # so every sum is 0), with the SP proposing its own copy of the same parameters.
    sp = {k: inputs[k] for k in ("layout", "records", "blocks")}
    out = asyncio.run(run_local("recommend", {
        "sp": {**sp, "pk": PK, "share": SP_SHARE, "target": 0, "delta": 3},
        "psp": inputs,
    }, timeout=60.0))
    assert len(out["sp"]) == service.layout.n_result_ciphertexts


@pytest.mark.parametrize(("started", "own"), [
    ("recommend-topn", {"top_n": 2, "selection": "rank"}),  # the PSP's parameters say "leak nothing"
    ("recommend-rank", {"top_n": 2}),
    ("recommend", {"top_n": 2}),
    ("recommend-topn", {}),
])
def test_recommender_psp_plays_only_the_mode_of_its_own_parameters(tmp_path: Any, started: str, own: dict) -> None:
    from types import SimpleNamespace

    service = _rec_service(tmp_path, config(), **own)  # (importing the service registers the modes)
    inputs = service.party.responders[started](_rec_start(service.params.layout_version, service.layout.n_users))
    spec = get_protocol(started)
    ctx = SimpleNamespace(inputs=inputs, protocol=spec)
    with pytest.raises(ParameterError, match=rf"started protocol {started!r}.*run protocol {service.params.protocol!r}"):
        asyncio.run(spec.role("psp").run(ctx))  # type: ignore[arg-type]


def test_topn_sp_bounds_the_pairs_the_psp_asks_for(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """In "recommend-topn" the PSP proposes the pairs of each round; the SP refuses more than a
    selection round compares (every candidate against one pivot)."""
    import crm.recommender.topn as topn

    class AllPairs:
        def __init__(self, n: int, k: int) -> None:
            self.n, self.done, self.chosen = n, False, set(range(min(k, n)))

        def pairs(self) -> list[tuple[int, int]]:
            return [(a, b) for a in range(self.n) for b in range(self.n) if a != b]

        def outcome(self, bits: Any) -> None:
            self.done = True

    monkeypatch.setitem(topn.SELECTORS, "all-pairs", AllPairs)
    service = _rec_service(tmp_path, config(), top_n=2)
    inputs = service.party.responders["recommend-topn"](
        _rec_start(service.params.layout_version, service.layout.n_users)
    )
    sp = {k: inputs[k] for k in ("layout", "records", "blocks")}
    with pytest.raises(ProtocolError, match=r"round 0: the PSP asks for 6 pairs; a round compares at most 2"):
        asyncio.run(run_local("recommend-topn", {
            "sp": {**sp, "pk": PK, "share": SP_SHARE, "target": 1},
            "psp": {**inputs, "selector": "all-pairs"},
        }, timeout=60.0))
    # The usual selection still works with these parameters.
    out = asyncio.run(run_local("recommend-topn", {
        "sp": {**sp, "pk": PK, "share": SP_SHARE, "target": 1},
        "psp": inputs,
    }, timeout=60.0))
    assert out["psp"] == 2
