"""The registered protocols (keygen, deliver) in one event loop over the in-memory transport."""

from __future__ import annotations

import pytest

import mpc.protocols  # noqa: F401  (registers them)
from mpc.elgamal import KeyShare, PublicKey, combine_many, local_joint_keys, params_for
from mpc.errors import AuthorizationError, EncodingError, NotFound, ProtocolError
from mpc.protocol import get_protocol, run_local
from mpc.protocols.deliver import Outbox
from mpc.protocols.keygen import decode_commit
from mpc.v1 import steps_pb2

P = params_for(1024)


async def test_keygen_gives_both_servers_the_same_joint_key() -> None:
    out = await run_local("keygen", {"sp": {"params": P}, "psp": {"params": P}})
    (pk_sp, share_sp), (pk_psp, share_psp) = out["sp"], out["psp"]
    assert isinstance(pk_sp, PublicKey) and pk_sp == pk_psp
    assert isinstance(share_sp, KeyShare) and share_sp.x != share_psp.x
    assert pk_sp.h == share_sp.h * share_psp.h % P.n2
    c = pk_sp.encrypt(1234)
    assert combine_many([c], [[share_sp.partial_decrypt(c)], [share_psp.partial_decrypt(c)]]) == [1234]


def test_keygen_refuses_a_malformed_commitment() -> None:
    bad = steps_pb2.KeygenCommit(digest=b"short").SerializeToString()
    with pytest.raises(EncodingError, match="32 bytes"):
        decode_commit("psp", bad)


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, list[KeyShare]]:
    return local_joint_keys(P)


async def test_deliver_leaves_the_psp_partials_for_the_user_only(keys) -> None:
    pk, (sp, psp) = keys
    values = [0, 1, 99, P.n - 1]
    stored = [pk.encrypt(v) for v in values]
    fresh = [pk.rerandomize(c) for c in stored]
    outbox = Outbox()
    start = steps_pb2.DeliverInputs(user_id="u0001", delivery_id="d1")
    out = await run_local(
        "deliver",
        {
            "sp": {"pk": pk, "share": sp, "ciphertexts": fresh},
            "psp": {"pk": pk, "share": psp, "outbox": outbox, "start": start},
        },
    )
    assert out["psp"] == len(values)
    sp_partials = out["sp"]
    psp_partials = outbox.collect("d1", "u0001")
    assert combine_many(fresh, [sp_partials, psp_partials]) == values
    # What the PSP saw were fresh ciphertexts, never the stored ones.
    assert all(f != s and f.c1 != s.c1 for f, s in zip(fresh, stored, strict=True))
    with pytest.raises(AuthorizationError):
        outbox.collect("d1", "u0002")
    with pytest.raises(NotFound):
        outbox.collect("nope", "u0001")


def test_deliver_is_startable_by_a_peer_and_keygen_only_by_the_lifecycle() -> None:
    assert get_protocol("deliver").roles == ("sp", "psp")
    with pytest.raises(ProtocolError):
        get_protocol("keygen").responder_inputs(object(), b"")


def test_outbox_expires_parcels() -> None:
    box = Outbox(ttl_s=-1.0)
    box.put("d", "u", [1])
    with pytest.raises(NotFound):
        box.collect("d", "u")
