"""The SP and the PSP as live gRPC servers (in this event loop), a user, and bad input.

Every bad input must get a precise gRPC status and a log line, never crash a
server, and leave the SP's store as it was (``store.fingerprint()``).
"""

from __future__ import annotations

import asyncio
import logging
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mpc.parties.rpc as rpc_module
import mpc.parties.server as server_module
from mpc.elgamal import local_joint_keys
from mpc.elgamal.proofs import proof_bytes
from mpc.errors import AuthorizationError, EncodingError, ProtocolError, TransportError
from mpc.parties.certs import create_ca
from mpc.parties.config import SHARE_FILE, key_fingerprint, save_keys
from mpc.parties.deploy import free_port
from mpc.parties.rpc import RawStub
from mpc.parties.server import MAX_UPLOAD_CIPHERTEXTS, PartyServer
from mpc.parties.user import UserClient
from mpc.protocol import new_session_id
from mpc.protocols.wire import ciphertext_batch
from mpc.transport import DEFAULT_MAX_PAYLOAD
from mpc.v1 import peer_pb2, steps_pb2, user_pb2

if TYPE_CHECKING:
    from conftest import Parties

PEER = peer_pb2.DESCRIPTOR.services_by_name["Peer"]
VALUES = [3, 1, 4]
DEADLINE_S = 5.0
"""Deadline of calls made by the tests themselves (the servers' is set in conftest)."""
SHORT_DEADLINE_S = 1.5
RECONNECT_S = 4.0
"""A server is reachable again this soon after its peer came back (reconnect backoff <= 2 s)."""

Code = grpc.StatusCode


# -- helpers --------------------------------------------------------------------------------
def status(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status behind a failed call (raw call, or the project's error)."""
    if isinstance(exc, grpc.RpcError):
        return exc.code()
    code = getattr(exc, "status", None)
    assert isinstance(code, grpc.StatusCode), f"{exc!r} carries no gRPC status"
    return code


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def assert_logged(caplog: pytest.LogCaptureFixture, *words: str) -> None:
    text = messages(caplog)
    for w in words:
        assert w in text, f"{w!r} not logged; log was:\n{text}"
    assert "internal error" not in text, text


async def raw_call(channel: grpc.aio.Channel, method: str, data: bytes) -> grpc.aio.AioRpcError:
    """A raw-bytes unary call that must fail; returns the error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.unary_unary(method)(data, timeout=DEADLINE_S)
    return info.value


async def raw_stream_call(
    channel: grpc.aio.Channel, method: str, pieces: Iterable[bytes]
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.stream_unary(method)(iter(list(pieces)), timeout=DEADLINE_S)
    return info.value


def peer_stub(parties: Parties, as_name: str, to: str, certs: Path | None = None) -> RawStub:
    """The Peer service of server ``to``, called with ``as_name``'s certificate."""
    return RawStub(parties.raw_channel(as_name, to, certs=certs), PEER, to)


def chunk(session: str, step: str, data: bytes, total: int | None = None) -> peer_pb2.Chunk:
    return peer_pb2.Chunk(
        session=session, step=step, total_size=len(data) if total is None else total, data=data
    )


async def deliver(stub: RawStub, *msgs: peer_pb2.Chunk) -> peer_pb2.DeliverAck:
    return await stub.stream("Deliver", list(msgs), timeout=DEADLINE_S)


def upload_chunks(
    kind: str, count: int, blob: bytes, total: int | None = None, proof_width: int = 0
) -> list[user_pb2.UploadChunk]:
    return [
        user_pb2.UploadChunk(
            kind=kind,
            count=count,
            total_size=len(blob) if total is None else total,
            proof_width=proof_width,
            data=blob,
        )
    ]


async def upload_raw(user: UserClient, kind: str, blob: bytes, count: int) -> int:
    """Upload ``blob`` as it is, with proofs of the right size but no value (all zero): for
    tests of malformed ciphertexts, which are refused before any proof is looked at."""
    return await user.upload_proven(kind, blob, bytes(count * proof_bytes(user.params)), count)


async def check_intact(parties: Parties, before: list[tuple]) -> None:
    """The store did not change and the servers still serve alice's data correctly."""
    assert parties.sp.store is not None
    assert parties.sp.store.fingerprint() == before
    assert await parties.user("alice").fetch("values") == VALUES


async def fetch_after_reconnect(user: UserClient) -> None:
    """alice's fetch succeeds again within RECONNECT_S of the PSP's return (retrying UNAVAILABLE)."""
    t0 = time.perf_counter()
    while True:
        try:
            assert await user.fetch("values") == VALUES
            return
        except TransportError:
            assert time.perf_counter() - t0 < RECONNECT_S, "the SP did not reconnect to the new PSP"
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def loaded(parties: Parties) -> list[tuple]:
    """alice has uploaded VALUES; returns the store's fingerprint."""
    assert await parties.user("alice").upload("values", VALUES) == 1
    assert parties.sp.store is not None
    return parties.sp.store.fingerprint()


# -- 1. round trip --------------------------------------------------------------------------
async def test_round_trip_and_atomic_reupload(parties: Parties) -> None:
    alice = parties.user("alice")
    store = parties.sp.store
    assert store is not None
    pk = await alice.public_key()
    n = int(pk.params.n)

    assert await alice.upload("values", VALUES) == 1
    assert await alice.fetch("values") == VALUES
    assert await alice.fetch("sum") == [sum(VALUES)]
    first_sum = store.get_result("alice", "sum")
    assert first_sum is not None and first_sum.version == 1

    # Re-upload: replaced as a whole, version 2, the sum is recomputed for version 2.
    new = [0, n - 1, 5]  # extremes of Z_N; the sum wraps mod N
    assert await alice.upload("values", new) == 2
    rec = store.get_record("alice", "values")
    assert rec is not None and (rec.version, rec.count) == (2, 3)
    second_sum = store.get_result("alice", "sum")
    assert second_sum is not None and second_sum.version == 2
    assert second_sum.blob != first_sum.blob
    assert await alice.fetch("values") == new
    assert await alice.fetch("sum") == [(n - 1 + 5) % n]
    reply = await alice.sp.call("Fetch", user_pb2.FetchRequest(kind="sum"), timeout=DEADLINE_S)
    assert reply.version == 2 and reply.ciphertexts.count == reply.partials.count == 1

    # A shorter record replaces a longer one entirely (no leftover ciphertexts).
    assert await alice.upload("values", [42]) == 3
    assert await alice.fetch("values") == [42]
    assert await alice.fetch("sum") == [42]

    # A failed re-upload (valid first ciphertext, invalid second) changes nothing.
    before = store.fingerprint()
    good = pk.encrypt(7).to_bytes()
    bad = bytes(pk.ciphertext_bytes)  # c1 = c2 = 0
    with pytest.raises(EncodingError) as info:
        await upload_raw(alice, "values", good + bad, 2)
    assert status(info.value) is Code.INVALID_ARGUMENT
    assert store.fingerprint() == before
    assert await alice.fetch("values") == [42]
    assert await alice.fetch("sum") == [42]


async def test_concurrent_reuploads_keep_the_result_consistent(
    parties: Parties, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An older upload whose result is slow to compute must not store it over a newer record's."""
    alice = parties.user("alice")
    real_sum = server_module.RESULT_HOOKS["values"]["sum"]
    entered = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()
    calls = 0

    def slow_first(pk, cts):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:  # the first upload's result waits until the second upload is done
            loop.call_soon_threadsafe(entered.set)
            release.wait(DEADLINE_S)
        return real_sum(pk, cts)

    monkeypatch.setitem(server_module.RESULT_HOOKS, "values", {"sum": slow_first})
    await alice.public_key()
    first = asyncio.ensure_future(alice.upload("values", [1, 1]))
    try:
        await asyncio.wait_for(entered.wait(), DEADLINE_S)
        second = await alice.upload("values", [5, 5])
    finally:
        release.set()
    await first
    store = parties.sp.store
    assert store is not None
    rec, res = store.get_record("alice", "values"), store.get_result("alice", "sum")
    assert rec is not None and res is not None
    assert res.version == rec.version  # the stored sum belongs to the stored record
    values = await alice.fetch("values")
    assert await alice.fetch("sum") == [sum(values)]
    assert (second, rec.version) == (1, 2)  # the slow upload stored last


async def test_upload_of_another_kind_keeps_results(parties: Parties) -> None:
    alice = parties.user("alice")
    await alice.upload("values", [2, 3])
    await alice.upload("ratings", [9])
    assert await alice.fetch("ratings") == [9]
    assert await alice.fetch("sum") == [5]


async def test_peer_cannot_start_a_delivery_at_the_sp(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    as_psp = peer_stub(parties, "psp", "sp")
    start = steps_pb2.DeliverInputs(user_id="alice", delivery_id="d" * 32).SerializeToString()
    sid = new_session_id()
    with pytest.raises(ProtocolError) as info:
        await as_psp.call(
            "StartSession", peer_pb2.SessionStart(session=sid, protocol="deliver", inputs=start)
        )
    assert status(info.value) is Code.FAILED_PRECONDITION
    assert_logged(caplog, "/mpc.v1.Peer/StartSession", "FAILED_PRECONDITION", "started by the SP")
    assert not parties.sp.mailbox.is_open(sid)
    await asyncio.sleep(0.1)
    assert parties.sp.stats["errors"] == 0
    await check_intact(parties, loaded)


# -- 2. restart -----------------------------------------------------------------------------
async def test_restart_reloads_key_and_data(
    parties: Parties, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mpc.party")
    alice = parties.user("alice")
    await alice.upload("values", [7, 8])
    fingerprints = {r: key_fingerprint(parties.servers[r].pk) for r in ("sp", "psp")}  # type: ignore[arg-type]
    shares = {r: parties.servers[r].share for r in ("sp", "psp")}
    assert fingerprints["sp"] == fingerprints["psp"]
    stored = parties.sp.store.fingerprint()  # type: ignore[union-attr]
    old = dict(parties.servers)

    await parties.restart()
    caplog_text = messages(caplog)
    assert caplog_text.count("loaded from disk") == 2
    for role in ("sp", "psp"):
        server = parties.servers[role]
        assert server is not old[role]
        assert server.pk is not None and key_fingerprint(server.pk) == fingerprints[role]
        assert server.share == shares[role]
        assert server.stats["key_fingerprint"] == fingerprints[role].hex()
        assert "keygen" not in server.stats["sessions"]  # no second key generation
        mode = stat.S_IMODE((server.config.data_dir / SHARE_FILE).stat().st_mode)
        assert mode == 0o600
    assert parties.sp.store.fingerprint() == stored  # type: ignore[union-attr]

    fresh = parties.user("alice")
    assert await fresh.fetch("values") == [7, 8]
    assert await fresh.fetch("sum") == [15]
    assert await alice.fetch("values") == [7, 8]  # the old client reconnects


# -- 3. bad input ---------------------------------------------------------------------------
MALFORMED_UNARY = [
    ("alice", "sp", "/mpc.v1.UserGateway/Fetch"),
    ("alice", "sp", "/mpc.v1.UserGateway/GetPublicKey"),
    ("alice", "psp", "/mpc.v1.Delivery/CollectPartials"),
    ("sp", "psp", "/mpc.v1.Peer/StartSession"),
    ("psp", "sp", "/mpc.v1.Peer/GetPublicKey"),
]


async def test_malformed_unary_message(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    for as_name, to, method in MALFORMED_UNARY:
        caplog.clear()
        err = await raw_call(parties.raw_channel(as_name, to), method, b"\xff\xff\xff\xff")
        assert err.code() is Code.INVALID_ARGUMENT, (method, err)
        assert "malformed" in (err.details() or ""), method
        assert_logged(caplog, method, "INVALID_ARGUMENT", "malformed")
    await check_intact(parties, loaded)


async def test_malformed_stream_chunk(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    pk = await parties.user("alice").public_key()
    ch = parties.raw_channel("alice", "sp")
    # As the only chunk, and after a valid header chunk.
    err = await raw_stream_call(ch, "/mpc.v1.UserGateway/Upload", [b"\xff\xff\xff"])
    assert err.code() is Code.INVALID_ARGUMENT
    header = upload_chunks("values", 1, b"", total=pk.ciphertext_bytes)[0].SerializeToString()
    err = await raw_stream_call(ch, "/mpc.v1.UserGateway/Upload", [header, b"\x0a\xff"])
    assert err.code() is Code.INVALID_ARGUMENT
    # The same for a peer message.
    err = await raw_stream_call(
        parties.raw_channel("sp", "psp"), "/mpc.v1.Peer/Deliver", [b"\xff\xff\xff"]
    )
    assert err.code() is Code.INVALID_ARGUMENT
    assert_logged(caplog, "/mpc.v1.UserGateway/Upload", "/mpc.v1.Peer/Deliver", "INVALID_ARGUMENT")
    await check_intact(parties, loaded)


async def test_ciphertext_of_wrong_length(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    alice = parties.user("alice")
    pk = await alice.public_key()
    w = pk.ciphertext_bytes
    good = pk.encrypt(1).to_bytes()
    for blob, count in ((good[:-1], 1), (good + b"\x00", 1), (good + good[: w // 2], 2), (b"", 1)):
        with pytest.raises(EncodingError) as info:
            await upload_raw(alice, "values", blob, count)
        assert status(info.value) is Code.INVALID_ARGUMENT
    assert_logged(caplog, "INVALID_ARGUMENT", "bytes")
    await check_intact(parties, loaded)


async def test_ciphertext_outside_group(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    alice = parties.user("alice")
    pk = await alice.public_key()
    p = pk.params
    e = p.element_bytes
    good = pk.encrypt(5).to_bytes()
    cases = {
        "c1 = 0": (0, "outside Z_(N^2)"),
        "c1 = N^2": (int(p.n2), "outside Z_(N^2)"),
        "c1 = 2^(8w) - 1": ((1 << (8 * e)) - 1, "outside Z_(N^2)"),
        "c1 = N": (int(p.n), "not invertible"),
    }
    for what, (c1, reason) in cases.items():
        caplog.clear()
        bad = c1.to_bytes(e, "big") + good[e:]
        with pytest.raises(EncodingError) as info:  # after a valid one: nothing is stored
            await upload_raw(alice, "values", good + bad, 2)
        assert status(info.value) is Code.INVALID_ARGUMENT, what
        assert reason in str(info.value), what
        assert_logged(caplog, "INVALID_ARGUMENT", reason)
    await check_intact(parties, loaded)


async def test_upload_size_mismatch(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    alice = parties.user("alice")
    pk = await alice.public_key()
    pw = proof_bytes(pk.params)
    w = pk.ciphertext_bytes + pw
    one = pk.encrypt(9).to_bytes() + bytes(pw)

    def chunks(kind: str, count: int, blob: bytes, total: int | None = None) -> list[user_pb2.UploadChunk]:
        return upload_chunks(kind, count, blob, total, proof_width=pw)

    cases = {
        "total_size != count x width": chunks("values", 2, one),
        "blob shorter than total_size": chunks("values", 2, one, total=2 * w),
        "blob longer than total_size": chunks("values", 1, one + one, total=w),
        "count 0": chunks("values", 0, b"", total=0),
        "count too large": chunks(
            "values", MAX_UPLOAD_CIPHERTEXTS + 1, b"", total=(MAX_UPLOAD_CIPHERTEXTS + 1) * w
        ),
        "no proofs": upload_chunks("values", 1, one[: pk.ciphertext_bytes]),
        "proof width wrong": upload_chunks("values", 1, one + b"\0", proof_width=pw + 1),
        "header in a later chunk": [
            *chunks("values", 2, one, total=2 * w),
            user_pb2.UploadChunk(kind="values", data=one),
        ],
        "bad kind": chunks("../etc", 1, one),
        "no chunk": [],
    }
    for what, reqs in cases.items():
        with pytest.raises(EncodingError) as info:
            await alice.sp.stream("Upload", reqs, timeout=DEADLINE_S)
        assert status(info.value) is Code.INVALID_ARGUMENT, what
    assert_logged(
        caplog, "INVALID_ARGUMENT", "truncated", "larger than its declared", "empty upload"
    )
    await check_intact(parties, loaded)


async def test_deliver_unknown_session(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    for as_name, to, step in (("sp", "psp", "ciphertexts"), ("psp", "sp", "ready")):
        with pytest.raises(ProtocolError) as info:
            await deliver(peer_stub(parties, as_name, to), chunk(new_session_id(), step, b"x"))
        assert status(info.value) is Code.NOT_FOUND
        assert type(info.value).__name__ == "UnknownSession"
    with pytest.raises(EncodingError) as info:  # no session named at all
        await deliver(peer_stub(parties, "sp", "psp"), chunk("", "ciphertexts", b"x"))
    assert status(info.value) is Code.INVALID_ARGUMENT
    assert_logged(caplog, "/mpc.v1.Peer/Deliver", "NOT_FOUND", "unknown session")
    await check_intact(parties, loaded)


async def test_deliver_to_finished_session(
    parties: Parties,
    loaded: list[tuple],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []

    def spy() -> str:
        started.append(new_session_id())
        return started[-1]

    monkeypatch.setattr(server_module, "new_session_id", spy)
    assert await parties.user("alice").fetch("values") == VALUES
    (sid,) = started
    assert parties.psp.mailbox.is_closed(sid) and parties.sp.mailbox.is_closed(sid)
    for as_name, to, step in (("sp", "psp", "ciphertexts"), ("psp", "sp", "ready")):
        with pytest.raises(ProtocolError) as info:
            await deliver(peer_stub(parties, as_name, to), chunk(sid, step, b"late"))
        assert status(info.value) is Code.FAILED_PRECONDITION
        assert type(info.value).__name__ == "SessionClosed"
    assert_logged(caplog, "FAILED_PRECONDITION", "is finished")
    await check_intact(parties, loaded)


async def test_deliver_duplicate_and_conflict(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    """A session held open at the SP (as ``start_session`` opens one), fed as the PSP.

    A real delivery closes within milliseconds of its messages, too soon to send
    it duplicates reliably; the gRPC path (Deliver, mailbox, status) is the same.
    """
    caplog.set_level(logging.INFO, logger="mpc.party")
    sid = new_session_id()
    parties.sp.transport.open_session(sid, [("ready", "psp")])
    try:
        as_psp = peer_stub(parties, "psp", "sp")
        payload = steps_pb2.DeliverReady(count=3).SerializeToString()
        # Split over several chunks: only the first carries the header.
        first = await deliver(
            as_psp,
            chunk(sid, "ready", payload[:1], total=len(payload)),
            peer_pb2.Chunk(data=payload[1:]),
        )
        assert first.duplicate is False
        again = await deliver(as_psp, chunk(sid, "ready", payload))
        assert again.duplicate is True
        assert_logged(caplog, "duplicate", "dropped")

        other = steps_pb2.DeliverReady(count=4).SerializeToString()
        with pytest.raises(ProtocolError) as info:
            await deliver(as_psp, chunk(sid, "ready", other))
        assert status(info.value) is Code.ALREADY_EXISTS
        assert type(info.value).__name__ == "ConflictingMessage"
        assert_logged(caplog, "ALREADY_EXISTS", "different message")
        # The first message is what the session receives.
        got = await parties.sp.transport.receive("psp", sid, "ready", timeout=1)
        assert got == payload
    finally:
        parties.sp.transport.close_session(sid)
    await check_intact(parties, loaded)


async def test_deliver_undeclared_step(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    # Start a real "deliver" session at the PSP through the peer API, acting as the SP.
    as_sp = peer_stub(parties, "sp", "psp")
    sid = new_session_id()
    start = steps_pb2.DeliverInputs(user_id="alice", delivery_id="d" * 32).SerializeToString()
    ack = await as_sp.call(
        "StartSession", peer_pb2.SessionStart(session=sid, protocol="deliver", inputs=start)
    )
    assert ack.session == sid
    assert parties.psp.mailbox.is_open(sid)
    for step in ("ready", "commit", "bogus"):  # "ready" is declared, but from the PSP to the SP
        with pytest.raises(ProtocolError) as info:
            await deliver(as_sp, chunk(sid, step, b"x"))
        assert status(info.value) is Code.FAILED_PRECONDITION
        assert type(info.value).__name__ == "UnexpectedStep"
    # The same session id again, and protocols that cannot be started this way.
    with pytest.raises(ProtocolError) as info:
        await as_sp.call(
            "StartSession", peer_pb2.SessionStart(session=sid, protocol="deliver", inputs=start)
        )
    assert status(info.value) is Code.ALREADY_EXISTS
    for protocol, inputs in (
        ("no-such-protocol", b""),
        ("keygen", steps_pb2.KeygenInputs(key_bits=1024).SerializeToString()),
    ):
        with pytest.raises(ProtocolError) as info:
            await as_sp.call(
                "StartSession",
                peer_pb2.SessionStart(session=new_session_id(), protocol=protocol, inputs=inputs),
            )
        assert status(info.value) is Code.FAILED_PRECONDITION
    assert_logged(
        caplog, "FAILED_PRECONDITION", "not expected", "ALREADY_EXISTS", "unknown protocol"
    )
    assert parties.psp.mailbox.is_open(sid)  # refused messages did not disturb the session
    parties.psp.transport.fail_session(sid, TransportError("test over"))
    await check_intact(parties, loaded)


async def test_deliver_malformed_payload_fails_only_its_session(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    """Ciphertexts of the wrong width, sent as the SP to a delivery the PSP plays."""
    pk = parties.psp.pk
    assert pk is not None
    as_sp = peer_stub(parties, "sp", "psp")
    sid = new_session_id()
    start = steps_pb2.DeliverInputs(user_id="alice", delivery_id="e" * 32).SerializeToString()
    await as_sp.call(
        "StartSession", peer_pb2.SessionStart(session=sid, protocol="deliver", inputs=start)
    )
    batch = ciphertext_batch(pk, [pk.encrypt(1)])
    batch.width -= 1
    payload = steps_pb2.DeliverCiphertexts(ciphertexts=batch).SerializeToString()
    ack = await deliver(as_sp, chunk(sid, "ciphertexts", payload))
    assert ack.duplicate is False  # well-formed as a message: filed; the PSP's role refuses it
    for _ in range(150):  # the role fails, tells the SP (Abort), then the error is logged
        if parties.psp.mailbox.is_closed(sid) and parties.psp.stats["errors"]:
            break
        await asyncio.sleep(0.02)
    assert parties.psp.mailbox.is_closed(sid)
    assert_logged(caplog, "session deliver/", "element width")
    assert parties.psp.stats["errors"] == 1
    assert len(parties.psp.outbox) == 0
    with pytest.raises(ProtocolError) as info:
        await parties.user("alice").psp.call(
            "CollectPartials", user_pb2.CollectRequest(delivery_id="e" * 32)
        )
    assert status(info.value) is Code.NOT_FOUND
    await check_intact(parties, loaded)


async def test_oversized_messages(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    sid = new_session_id()
    parties.sp.transport.open_session(sid, [("ready", "psp")])
    try:
        # One gRPC message above the 4 MiB limit, unary and streamed.
        big = b"\x00" * (rpc_module.MAX_GRPC_MESSAGE + 1)
        err = await raw_call(parties.raw_channel("alice", "sp"), "/mpc.v1.UserGateway/Fetch", big)
        assert err.code() is Code.RESOURCE_EXHAUSTED
        msg = chunk(sid, "ready", big).SerializeToString()
        err = await raw_stream_call(parties.raw_channel("psp", "sp"), "/mpc.v1.Peer/Deliver", [msg])
        assert err.code() is Code.RESOURCE_EXHAUSTED
        # gRPC refuses these before our handlers see a message: the unary call logs
        # nothing of ours; the stream handler only sees its input end, and logs that.
        assert_logged(caplog, "/mpc.v1.Peer/Deliver from psp:psp", "empty message")
        # A declared size above the mailbox's limit, refused on the first chunk.
        with pytest.raises(ProtocolError) as info:
            await deliver(
                peer_stub(parties, "psp", "sp"),
                chunk(sid, "ready", b"x", total=DEFAULT_MAX_PAYLOAD + 1),
            )
        assert status(info.value) is Code.RESOURCE_EXHAUSTED
        assert type(info.value).__name__ == "MessageTooLarge"
        assert_logged(caplog, "RESOURCE_EXHAUSTED", "more than the limit")
        assert parties.sp.mailbox.buffered_bytes(sid) == 0
    finally:
        parties.sp.transport.close_session(sid)
    await check_intact(parties, loaded)


async def test_certificate_from_another_ca(
    parties: Parties, loaded: list[tuple], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = rpc_module.caller_identity

    def counting(context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        calls.append(context)
        return real(context)

    monkeypatch.setattr(rpc_module, "caller_identity", counting)
    other = tmp_path / "other-ca"
    ca = create_ca(other)
    ca.issue("user", "alice")
    ca.issue("sp", "sp")
    pk = await parties.user("alice").public_key()
    blob = pk.encrypt(1).to_bytes()
    req = upload_chunks("values", 1, blob)[0].SerializeToString()
    calls.clear()
    err = await raw_stream_call(
        parties.raw_channel("alice", "sp", certs=other), "/mpc.v1.UserGateway/Upload", [req]
    )
    assert err.code() is Code.UNAVAILABLE, err
    err = await raw_call(
        parties.raw_channel("sp", "psp", certs=other), "/mpc.v1.Peer/GetPublicKey", b""
    )
    assert err.code() is Code.UNAVAILABLE, err
    assert calls == []  # no handler ran
    # A genuine certificate still gets through the same code path.
    assert await parties.user("alice").fetch("values") == VALUES
    assert calls
    await check_intact(parties, loaded)


WRONG_ROLE = [
    ("alice", "sp", "/mpc.v1.Peer/StartSession"),
    ("alice", "psp", "/mpc.v1.Peer/StartSession"),
    ("alice", "psp", "/mpc.v1.Peer/Deliver"),
    ("alice", "sp", "/mpc.v1.Peer/GetPublicKey"),
    ("sp", "sp", "/mpc.v1.UserGateway/Upload"),
    ("psp", "sp", "/mpc.v1.UserGateway/Fetch"),
    ("sp", "psp", "/mpc.v1.Delivery/CollectPartials"),  # the SP must never get the PSP's partials
    ("sp", "sp", "/mpc.v1.Peer/StartSession"),  # the SP calling itself is not its peer
]


async def test_wrong_role(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    for as_name, to, method in WRONG_ROLE:
        caplog.clear()
        ch = parties.raw_channel(as_name, to)
        if method.endswith(("Upload", "Deliver")):
            err = await raw_stream_call(ch, method, [b""])
        else:
            err = await raw_call(ch, method, b"")
        assert err.code() is Code.PERMISSION_DENIED, (as_name, method, err)
        assert_logged(caplog, method, "refused", "may not call it")
    await check_intact(parties, loaded)


async def test_user_cannot_reach_another_users_data(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = parties.user("alice"), parties.user("bob")
    pk = await alice.public_key()
    reply = await alice.sp.call("Fetch", user_pb2.FetchRequest(kind="values"), timeout=DEADLINE_S)
    # bob asks the PSP for alice's partial decryptions.
    with pytest.raises(AuthorizationError) as info:
        await bob.psp.call(
            "CollectPartials",
            user_pb2.CollectRequest(delivery_id=reply.delivery_id),
            timeout=DEADLINE_S,
        )
    assert status(info.value) is Code.PERMISSION_DENIED
    assert_logged(caplog, "PERMISSION_DENIED", "not addressed to 'bob'")
    # alice still can.
    got = await alice.psp.call(
        "CollectPartials",
        user_pb2.CollectRequest(delivery_id=reply.delivery_id),
        timeout=DEADLINE_S,
    )
    assert got.partials.count == len(VALUES)

    # At the SP a user names no user at all: the certificate decides whose data it is.
    with pytest.raises(ProtocolError) as info:
        await bob.fetch("values")
    assert status(info.value) is Code.NOT_FOUND
    assert "'bob'" in str(info.value)
    await bob.upload("values", [100, 200])
    assert await bob.fetch("values") == [100, 200]
    assert await bob.fetch("sum") == [300]
    assert await alice.fetch("values") == VALUES
    assert await alice.fetch("sum") == [sum(VALUES)]
    assert parties.sp.store is not None
    assert parties.sp.store.users() == ["alice", "bob"]
    assert pk == await bob.public_key()
    await check_intact(parties, [*loaded[:1], ("bob", "values", 1, 2, 2 * pk.ciphertext_bytes)])


async def test_unknown_delivery_and_kind(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    alice = parties.user("alice")
    for delivery_id in ("0" * 32, ""):
        with pytest.raises(ProtocolError) as info:
            await alice.psp.call(
                "CollectPartials",
                user_pb2.CollectRequest(delivery_id=delivery_id),
                timeout=DEADLINE_S,
            )
        assert status(info.value) is Code.NOT_FOUND
    for kind in ("ratings", "values2"):
        with pytest.raises(ProtocolError) as info:
            await alice.fetch(kind)
        assert status(info.value) is Code.NOT_FOUND
    for kind in ("", "Values", "../values", "x" * 33):
        with pytest.raises(EncodingError) as info:
            await alice.fetch(kind)
        assert status(info.value) is Code.INVALID_ARGUMENT
    assert_logged(caplog, "NOT_FOUND", "no delivery", "no 'ratings' stored", "INVALID_ARGUMENT")
    await check_intact(parties, loaded)


async def test_psp_disappears(
    parties: Parties, loaded: list[tuple], caplog: pytest.LogCaptureFixture
) -> None:
    alice = parties.user("alice")
    await alice.public_key()
    sp = parties.sp
    await parties.stop("psp")

    t0 = time.perf_counter()
    with pytest.raises(TransportError) as info:
        await alice.fetch("values")
    elapsed = time.perf_counter() - t0
    assert status(info.value) is Code.UNAVAILABLE
    assert elapsed < DEADLINE_S + 2, elapsed
    assert_logged(caplog, "/mpc.v1.UserGateway/Fetch", "UNAVAILABLE")
    # The SP is still up: its key, its store, uploads.
    assert parties.sp is sp
    info_reply = await alice.sp.call("GetPublicKey", user_pb2.KeyRequest(), timeout=DEADLINE_S)
    assert info_reply.fingerprint == key_fingerprint(sp.pk)  # type: ignore[arg-type]
    assert sp.store is not None and sp.store.fingerprint() == loaded

    # A new PSP on the same config and data: the same fetch succeeds, once the SP's
    # channel has reconnected (UNAVAILABLE until then, which a user may retry). The
    # reconnect backoff is bounded (gRPC's default grows to 120 s).
    assert dict(rpc_module.CHANNEL_OPTIONS)["grpc.max_reconnect_backoff_ms"] <= 2_000
    await parties.start("psp")
    assert parties.psp.pk == sp.pk
    await fetch_after_reconnect(alice)
    await check_intact(parties, loaded)


async def test_psp_disappears_mid_protocol(
    parties: Parties, loaded: list[tuple], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PSP stops after it received the ciphertexts, before it answered."""
    import mpc.protocols.deliver as deliver_module

    # An SP with a short deadline, so that its wait for the vanished PSP ends soon.
    await parties.stop("sp")
    parties.changes["sp"] = {"deadline_s": SHORT_DEADLINE_S}
    await parties.start("sp")
    psp = parties.psp
    real = deliver_module.partials_of
    psp_busy = asyncio.Event()
    release = threading.Event()
    loop = asyncio.get_running_loop()

    def slow(share, cts):  # type: ignore[no-untyped-def]
        if share is psp.share:  # the PSP's partial decryptions wait until it is stopping
            loop.call_soon_threadsafe(psp_busy.set)
            release.wait(DEADLINE_S)
        return real(share, cts)

    monkeypatch.setattr(deliver_module, "partials_of", slow)
    alice = parties.user("alice", deadline_s=3 * DEADLINE_S)
    await alice.public_key()
    fetch = asyncio.ensure_future(alice.fetch("values"))
    try:
        await asyncio.wait_for(psp_busy.wait(), DEADLINE_S)
        playing = [t for t in psp.tasks if t.get_coro().__name__ == "play"]  # type: ignore[union-attr]
        assert len(playing) == 1
        t0 = time.perf_counter()
        stopping = asyncio.ensure_future(parties.stop("psp"))
        await asyncio.wait(playing, timeout=DEADLINE_S)  # stop() cancels the PSP's session
        assert playing[0].cancelled()
    finally:
        release.set()  # let the crypto thread end, so that stop() can shut its pool down
    await stopping
    with pytest.raises(TransportError) as info:
        await fetch
    elapsed = time.perf_counter() - t0
    assert status(info.value) is Code.UNAVAILABLE, info.value
    # The stopping PSP tells the SP (Peer.Abort), so the SP fails at once, not at its deadline.
    assert "the psp aborted: the psp is shutting down" in str(info.value)
    assert elapsed < SHORT_DEADLINE_S, elapsed
    assert parties.sp.store.fingerprint() == loaded  # type: ignore[union-attr]
    monkeypatch.setattr(deliver_module, "partials_of", real)
    await parties.start("psp")
    await fetch_after_reconnect(alice)
    await check_intact(parties, loaded)


# -- 4. key not ready -----------------------------------------------------------------------
async def test_public_key_before_keygen(
    idle_parties: Parties, caplog: pytest.LogCaptureFixture
) -> None:
    parties = idle_parties
    await parties.start("sp", wait_key=False)  # its PSP is absent: key generation cannot finish
    alice = parties.user("alice")
    with pytest.raises(TransportError) as info:
        await alice.sp.call("GetPublicKey", user_pb2.KeyRequest(), timeout=DEADLINE_S)
    assert status(info.value) is Code.UNAVAILABLE
    assert "key generation has not finished" in str(info.value)
    with pytest.raises(TransportError) as info:
        await upload_raw(alice, "values", b"\x01" * 512, 1)
    assert status(info.value) is Code.UNAVAILABLE
    assert_logged(caplog, "/mpc.v1.UserGateway/GetPublicKey", "UNAVAILABLE")
    health = health_pb2_grpc.HealthStub(parties.raw_channel("alice", "sp"))
    check = await health.Check(
        health_pb2.HealthCheckRequest(service="mpc.v1.UserGateway"), timeout=DEADLINE_S
    )
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert parties.sp.store is not None and parties.sp.store.fingerprint() == []

    # Once the PSP comes, key generation finishes and the key is served.
    await parties.start("psp", wait_key=False)
    await parties.wait_key("sp", "psp")
    pk = await alice.public_key(wait_s=DEADLINE_S)
    assert key_fingerprint(pk) == key_fingerprint(parties.sp.pk)  # type: ignore[arg-type]
    for _ in range(50):
        check = await health.Check(
            health_pb2.HealthCheckRequest(service="mpc.v1.UserGateway"), timeout=DEADLINE_S
        )
        if check.status == health_pb2.HealthCheckResponse.SERVING:
            break
        await asyncio.sleep(0.05)
    assert check.status == health_pb2.HealthCheckResponse.SERVING


# -- 5. servers with different keys ---------------------------------------------------------
async def test_user_refuses_servers_with_different_keys(parties: Parties, tmp_path: Path) -> None:
    """A second, real PSP server (same CA and certificate) serving another joint key."""
    cfg = parties.config("psp")
    address = f"127.0.0.1:{free_port()}"
    rogue_cfg = replace(cfg, listen=address, data_dir=tmp_path / "rogue-psp")
    other_pk, other_shares = local_joint_keys(cfg.params)
    save_keys(rogue_cfg.data_dir, other_pk, other_shares[1])
    rogue = PartyServer(rogue_cfg)
    await rogue.start()
    try:
        assert rogue.key_ready.is_set() and rogue.pk == other_pk != parties.sp.pk
        alice = parties.user("alice", psp=address)
        with pytest.raises(AuthorizationError, match="different public keys"):
            await alice.public_key()
        with pytest.raises(AuthorizationError):
            await alice.upload("values", [1])
        assert parties.sp.store is not None and parties.sp.store.fingerprint() == []
        # The honest pair is accepted by the same user.
        assert await parties.user("alice").public_key() == parties.sp.pk
    finally:
        await rogue.stop(grace=0.5)
