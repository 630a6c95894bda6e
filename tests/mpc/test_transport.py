"""Mailbox semantics and the in-memory network (no protocol involved)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from mpc.errors import ProtocolError, TransportError
from mpc.transport import (
    ConflictingMessage,
    InMemoryNetwork,
    InMemoryTransport,
    Mailbox,
    MessageTooLarge,
    PeerFailed,
    PeerUnreachable,
    ReceiveTimeout,
    SessionClosed,
    SessionExists,
    Transport,
    UnexpectedStep,
    UnknownSession,
)

S = "session-1"


def test_error_hierarchy() -> None:
    for cls in (
        UnknownSession,
        SessionClosed,
        SessionExists,
        UnexpectedStep,
        ConflictingMessage,
        MessageTooLarge,
    ):
        assert issubclass(cls, ProtocolError)
    for cls in (ReceiveTimeout, PeerUnreachable, PeerFailed):
        assert issubclass(cls, TransportError)


# --- Mailbox ---


async def test_early_message_waits_for_receive() -> None:
    box = Mailbox("psp")
    box.open_session(S)
    assert box.deliver(S, "x", "sp", b"hello") is True
    assert box.buffered_bytes(S) == 5
    assert await box.receive(S, "x", "sp", timeout=0.1) == b"hello"


async def test_receive_waits_for_late_message() -> None:
    box = Mailbox()
    box.open_session(S)
    waiter = asyncio.create_task(box.receive(S, "x", "sp", timeout=1.0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert box.deliver(S, "x", "sp", b"late") is True
    assert await waiter == b"late"


async def test_receiving_twice_returns_same_payload() -> None:
    box = Mailbox()
    box.open_session(S)
    box.deliver(S, "x", "sp", b"abc")
    assert await box.receive(S, "x", "sp") == b"abc"
    assert await box.receive(S, "x", "sp") == b"abc"


async def test_two_waiters_on_same_key_both_get_it() -> None:
    box = Mailbox()
    box.open_session(S)
    w1 = asyncio.create_task(box.receive(S, "x", "sp"))
    w2 = asyncio.create_task(box.receive(S, "x", "sp"))
    await asyncio.sleep(0)
    box.deliver(S, "x", "sp", b"v")
    assert await asyncio.gather(w1, w2) == [b"v", b"v"]


async def test_keys_are_distinct_by_step_and_sender() -> None:
    box = Mailbox()
    box.open_session(S)
    box.deliver(S, "commit", "sp", b"1")
    box.deliver(S, "commit", "u0001", b"2")
    box.deliver(S, "reveal", "sp", b"3")
    assert await box.receive(S, "commit", "sp") == b"1"
    assert await box.receive(S, "commit", "u0001") == b"2"
    assert await box.receive(S, "reveal", "sp") == b"3"


async def test_identical_duplicate_is_dropped() -> None:
    box = Mailbox()
    box.open_session(S)
    assert box.deliver(S, "x", "sp", b"same") is True
    assert box.deliver(S, "x", "sp", bytearray(b"same")) is False
    assert await box.receive(S, "x", "sp") == b"same"
    assert box.deliver(S, "x", "sp", b"same") is False  # also after it was received


async def test_conflicting_duplicate_raises() -> None:
    box = Mailbox("psp")
    box.open_session(S)
    box.deliver(S, "x", "sp", b"one")
    with pytest.raises(ConflictingMessage, match=r"'x'.*'sp'.*session-1"):
        box.deliver(S, "x", "sp", b"two")
    assert await box.receive(S, "x", "sp") == b"one"  # the first one stands


async def test_unknown_session() -> None:
    box = Mailbox()
    with pytest.raises(UnknownSession, match="nope"):
        box.deliver("nope", "x", "sp", b"")
    with pytest.raises(UnknownSession):
        await box.receive("nope", "x", "sp", timeout=0.1)


async def test_closed_session_refuses_late_messages_and_releases_payloads() -> None:
    box = Mailbox()
    box.open_session(S)
    box.deliver(S, "x", "sp", b"payload")
    box.close_session(S)
    assert not box.is_open(S)
    assert box.is_closed(S)
    assert box.buffered_bytes() == 0
    assert S not in box._sessions
    with pytest.raises(SessionClosed):
        box.deliver(S, "x", "sp", b"payload")  # a late retry
    with pytest.raises(SessionClosed):
        await box.receive(S, "x", "sp")
    with pytest.raises(SessionClosed):
        box.open_session(S)  # ids are never reused
    box.close_session(S)  # idempotent


async def test_close_wakes_pending_receive() -> None:
    box = Mailbox()
    box.open_session(S)
    waiter = asyncio.create_task(box.receive(S, "x", "sp"))
    await asyncio.sleep(0)
    box.close_session(S)
    with pytest.raises(SessionClosed, match="'x'"):
        await waiter


async def test_closed_ids_are_bounded() -> None:
    box = Mailbox(closed_history=2)
    for sid in ("a", "b", "c"):
        box.open_session(sid)
        box.close_session(sid)
    with pytest.raises(UnknownSession):
        box.deliver("a", "x", "sp", b"")  # forgotten
    for sid in ("b", "c"):
        with pytest.raises(SessionClosed):
            box.deliver(sid, "x", "sp", b"")


async def test_open_twice_raises() -> None:
    box = Mailbox()
    box.open_session(S)
    with pytest.raises(SessionExists):
        box.open_session(S)


async def test_unexpected_step_and_sender() -> None:
    box = Mailbox()
    box.open_session(S, expected=[("x", "sp")])
    box.deliver(S, "x", "sp", b"ok")
    with pytest.raises(UnexpectedStep, match="'y'"):
        box.deliver(S, "y", "sp", b"")
    with pytest.raises(UnexpectedStep, match="'u0001'"):
        box.deliver(S, "x", "u0001", b"")
    with pytest.raises(UnexpectedStep):
        await box.receive(S, "y", "sp")  # would wait forever otherwise


async def test_max_payload() -> None:
    box = Mailbox(max_payload=4)
    box.open_session(S)
    assert box.deliver(S, "x", "sp", memoryview(b"1234")) is True
    with pytest.raises(MessageTooLarge, match="5 bytes"):
        box.deliver(S, "y", "sp", b"12345")
    with pytest.raises(MessageTooLarge):
        box.check(S, "y", "sp", size=10**9)
    box.check(S, "y", "sp", size=4)


async def test_check_does_not_store() -> None:
    box = Mailbox()
    with pytest.raises(UnknownSession):
        box.check(S, "x", "sp")
    box.open_session(S)
    box.check(S, "x", "sp", size=3)
    assert box.buffered_bytes(S) == 0


async def test_payload_must_be_bytes() -> None:
    box = Mailbox()
    box.open_session(S)
    with pytest.raises(TypeError):
        box.deliver(S, "x", "sp", "text")  # type: ignore[arg-type]


async def test_mutable_payload_is_copied() -> None:
    box = Mailbox()
    box.open_session(S)
    buf = bytearray(b"abc")
    box.deliver(S, "x", "sp", buf)
    buf[0] = ord("z")
    assert await box.receive(S, "x", "sp") == b"abc"


async def test_receive_timeout_names_the_message() -> None:
    box = Mailbox("sp")
    box.open_session(S)
    start = time.monotonic()
    with pytest.raises(ReceiveTimeout, match=r"'y'.*'psp'.*'session-1'.*'sp'"):
        await box.receive(S, "y", "psp", timeout=0.05)
    assert time.monotonic() - start < 0.5


async def test_message_after_timeout_can_still_be_received() -> None:
    box = Mailbox()
    box.open_session(S)
    with pytest.raises(ReceiveTimeout):
        await box.receive(S, "x", "sp", timeout=0.01)
    assert box.deliver(S, "x", "sp", b"finally") is True
    assert await box.receive(S, "x", "sp", timeout=0.01) == b"finally"


async def test_cancelled_receive_does_not_break_the_slot() -> None:
    box = Mailbox()
    box.open_session(S)
    waiter = asyncio.create_task(box.receive(S, "x", "sp"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    box.deliver(S, "x", "sp", b"v")
    assert await box.receive(S, "x", "sp") == b"v"


async def test_fail_session_fails_pending_and_future_receives() -> None:
    box = Mailbox()
    box.open_session(S)
    box.deliver(S, "early", "sp", b"dropped")
    waiter = asyncio.create_task(box.receive(S, "x", "sp"))
    await asyncio.sleep(0)
    boom = PeerFailed("psp died")
    assert box.fail_session(S, boom) is True
    with pytest.raises(PeerFailed, match="psp died"):
        await waiter
    with pytest.raises(PeerFailed):
        await box.receive(S, "y", "sp")
    with pytest.raises(PeerFailed):
        await box.receive(S, "early", "sp")
    assert box.buffered_bytes() == 0
    with pytest.raises(SessionClosed, match="failed"):
        box.deliver(S, "z", "sp", b"")
    assert box.fail_session("unknown", boom) is False
    box.close_session(S)
    assert not box.is_open(S)


async def test_fail_session_without_waiters_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    box = Mailbox()
    box.open_session(S)
    waiter = asyncio.create_task(box.receive(S, "x", "sp"))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    box.fail_session(S, PeerFailed("gone"))
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


# --- InMemoryNetwork ---


def _pair(**kwargs: object) -> tuple[InMemoryNetwork, InMemoryTransport, InMemoryTransport]:
    net = InMemoryNetwork(**kwargs)  # type: ignore[arg-type]
    sp, psp = net.transport("sp"), net.transport("psp")
    sp.open_session(S)
    psp.open_session(S)
    return net, sp, psp


async def test_transport_satisfies_protocol() -> None:
    net = InMemoryNetwork()
    t = net.transport("sp")
    assert isinstance(t, Transport)
    assert net.transport("sp") is t
    assert t.party == "sp"
    assert net.parties == ("sp",)


async def test_send_receive_and_byte_count() -> None:
    _, sp, psp = _pair()
    await sp.send("psp", S, "x", b"12345")
    await psp.send("sp", S, "y", b"1")
    assert await psp.receive("sp", S, "x", timeout=0.1) == b"12345"
    assert await sp.receive("psp", S, "y", timeout=0.1) == b"1"
    assert (sp.bytes_sent, psp.bytes_sent) == (5, 1)
    assert (sp.messages_sent, psp.messages_sent) == (1, 1)


async def test_send_copies_the_buffer() -> None:
    _, sp, psp = _pair(delay=0.01)
    buf = bytearray(b"abc")
    sending = asyncio.create_task(sp.send("psp", S, "x", buf))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    buf[:] = b"zzz"
    await sending
    assert await psp.receive("sp", S, "x") == b"abc"


async def test_receiver_errors_reach_the_sender() -> None:
    net, sp, psp = _pair(max_payload=8)
    with pytest.raises(UnknownSession):
        await sp.send("psp", "other", "x", b"")
    await sp.send("psp", S, "x", b"a")
    await sp.send("psp", S, "x", b"a")  # retry: fine
    assert sp.bytes_sent == 2
    with pytest.raises(ConflictingMessage):
        await sp.send("psp", S, "x", b"b")
    with pytest.raises(MessageTooLarge):
        await sp.send("psp", S, "big", bytes(9))
    psp.close_session(S)
    with pytest.raises(SessionClosed):
        await sp.send("psp", S, "x", b"a")
    with pytest.raises(PeerUnreachable, match="nobody"):
        await sp.send("nobody", S, "x", b"")
    assert net.is_connected("psp")


async def test_unexpected_step_reaches_the_sender() -> None:
    net = InMemoryNetwork()
    sp, psp = net.transport("sp"), net.transport("psp")
    psp.open_session(S, expected={("x", "sp")})
    with pytest.raises(UnexpectedStep):
        await sp.send("psp", S, "y", b"")


async def test_delay_makes_receiver_wait() -> None:
    _, sp, psp = _pair(delay=lambda frm, to, session, step: 0.05 if step == "x" else 0.0)
    waiter = asyncio.create_task(psp.receive("sp", S, "x", timeout=1.0))
    sending = asyncio.create_task(sp.send("psp", S, "x", b"slow"))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert psp.mailbox.buffered_bytes(S) == 0  # still in flight
    await sending
    assert await waiter == b"slow"


async def test_disconnect_and_reconnect() -> None:
    net, sp, psp = _pair()
    net.disconnect("psp")
    assert not net.is_connected("psp")
    with pytest.raises(PeerUnreachable, match="'psp' unreachable"):
        await sp.send("psp", S, "x", b"")
    with pytest.raises(TransportError, match="unreachable"):
        await psp.send("sp", S, "y", b"")
    assert sp.bytes_sent == psp.bytes_sent == 0
    net.reconnect("psp")
    await sp.send("psp", S, "x", b"ok")
    assert await psp.receive("sp", S, "x") == b"ok"


async def test_disconnect_while_in_flight() -> None:
    net, sp, _ = _pair(delay=0.05)
    sending = asyncio.create_task(sp.send("psp", S, "x", b"lost"))
    await asyncio.sleep(0.01)
    net.disconnect("psp")
    with pytest.raises(PeerUnreachable):
        await sending
    net.reconnect("psp")
    assert net.transport("psp").mailbox.buffered_bytes() == 0
