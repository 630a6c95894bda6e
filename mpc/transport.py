"""The message interface protocol code talks to, its mailbox, and an in-memory network.

Protocol roles never see sockets: they call ``Transport.send`` and
``Transport.receive`` with a (session, step) label. Every party owns a
:class:`Mailbox` that files incoming messages by (session, step, sender), so
that

- an early message (arriving before its ``receive``) simply waits;
- a repeated identical message is dropped, which makes sender retries safe;
- a repeated message with *different* bytes is refused (it would be ambiguous);
- messages for unknown, finished or failed sessions, or for steps the session
  does not expect, are refused with a precise :class:`~mpc.errors.ProtocolError`.

:class:`InMemoryNetwork` connects several parties inside one event loop (unit
and multi-party tests); the gRPC transport in ``mpc.parties`` implements the same
:class:`Transport` interface on top of the same :class:`Mailbox`. This module
imports no networking library.

A mailbox is bound to the event loop that first uses it and is not
thread-safe: call it from that loop's thread (``grpc.aio`` servicers do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mpc.errors import (  # re-exported: protocols catch them from here too
    ConflictingMessage,
    MessageTooLarge,
    PeerFailed,
    PeerUnreachable,
    ProtocolError,
    ReceiveTimeout,
    SessionClosed,
    SessionExists,
    UnexpectedStep,
    UnknownSession,
)

__all__ = [
    "DEFAULT_CLOSED_HISTORY",
    "DEFAULT_MAX_PAYLOAD",
    "ConflictingMessage",
    "DelayFn",
    "InMemoryNetwork",
    "InMemoryTransport",
    "Mailbox",
    "MessageTooLarge",
    "PeerFailed",
    "PeerUnreachable",
    "ReceiveTimeout",
    "SessionClosed",
    "SessionExists",
    "Transport",
    "UnexpectedStep",
    "UnknownSession",
]

DEFAULT_MAX_PAYLOAD = 256 * 1024 * 1024
"""Largest accepted message (bytes); bigger ones raise :class:`MessageTooLarge`."""

DEFAULT_CLOSED_HISTORY = 10_000
"""How many finished session ids a mailbox remembers (late duplicates -> SessionClosed)."""


# --- the interface ---


@runtime_checkable
class Transport(Protocol):
    """What protocol roles use to talk to the other parties of a session.

    ``party`` is this party's own name ("sp", "psp" or a user id). Senders in
    ``receive`` and in ``open_session(expected=...)`` are *party names*.
    """

    party: str
    bytes_sent: int

    async def send(self, to: str, session: str, step: str, payload: bytes) -> None:
        """Deliver ``payload`` to party ``to``; returns once the receiver has filed it.

        Raises the receiver's :class:`~mpc.errors.ProtocolError` (unknown or
        closed session, unexpected step, conflicting message, too large) or a
        :class:`~mpc.errors.TransportError` when ``to`` is unreachable. Sending
        the same bytes again is harmless.
        """
        ...

    async def receive(
        self, frm: str, session: str, step: str, timeout: float | None = None
    ) -> bytes:
        """Wait for the message of ``step`` from party ``frm`` in ``session``.

        Raises :class:`ReceiveTimeout` after ``timeout`` seconds (None: wait forever).
        """
        ...

    def open_session(self, session: str, expected: Iterable[tuple[str, str]] | None = None) -> None:
        """Start accepting messages for ``session``: ``expected`` lists the
        (step, sender party) pairs this party may receive (None: any)."""
        ...

    def close_session(self, session: str) -> None:
        """Finish ``session``: release its messages; later ones raise SessionClosed."""
        ...

    def fail_session(self, session: str, exc: BaseException) -> bool:
        """Make every pending and future receive in ``session`` raise ``exc``."""
        ...


# --- the mailbox ---


@dataclass(slots=True)
class _Session:
    expected: frozenset[tuple[str, str]] | None
    slots: dict[tuple[str, str], asyncio.Future[bytes]] = field(default_factory=dict)
    failure: BaseException | None = None


def _label(session: str, step: str, sender: str) -> str:
    return f"step {step!r} from {sender!r} in session {session!r}"


def _payload_size(payload: bytes | bytearray | memoryview) -> int:
    if isinstance(payload, memoryview):
        return payload.nbytes
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    raise TypeError(f"a payload must be bytes, not {type(payload).__name__}")


def _fail_future(fut: asyncio.Future[bytes], exc: BaseException) -> None:
    """Set ``exc`` on a pending future and mark it retrieved (no 'never retrieved' log)."""
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()


class Mailbox:
    """Incoming messages of one party, one asyncio future per (session, step, sender).

    ``deliver`` is synchronous (a gRPC servicer calls it when a message has
    fully arrived); ``receive`` awaits the future. ``owner`` only names the
    party in error messages.
    """

    def __init__(
        self,
        owner: str = "",
        *,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        closed_history: int = DEFAULT_CLOSED_HISTORY,
    ) -> None:
        if max_payload < 0 or closed_history < 0:
            raise ValueError("max_payload and closed_history must be >= 0")
        self.owner = owner
        self.max_payload = max_payload
        self.closed_history = closed_history
        self._sessions: dict[str, _Session] = {}
        self._closed: dict[str, None] = {}  # insertion-ordered set of finished ids

    # sessions

    def open_session(self, session: str, expected: Iterable[tuple[str, str]] | None = None) -> None:
        """Start accepting messages for ``session``.

        ``expected`` is the set of (step, sender) pairs that may arrive; None
        accepts any. Raises SessionExists if open, SessionClosed if finished
        (session ids are never reused).
        """
        if session in self._sessions:
            raise SessionExists(f"session {session!r} is already open{self._at()}")
        if session in self._closed:
            raise SessionClosed(f"session {session!r} is finished and cannot reopen{self._at()}")
        allowed = None if expected is None else frozenset((s, p) for s, p in expected)
        self._sessions[session] = _Session(expected=allowed)

    def close_session(self, session: str) -> None:
        """Finish ``session``: pending receives raise SessionClosed, payloads are released,
        and the id is remembered so late messages get SessionClosed. Idempotent."""
        state = self._sessions.pop(session, None)
        if state is not None:
            for (step, sender), fut in state.slots.items():
                _fail_future(
                    fut,
                    SessionClosed(
                        f"session closed while waiting for {_label(session, step, sender)}"
                    ),
                )
            state.slots.clear()
        self._closed.pop(session, None)
        self._closed[session] = None
        while len(self._closed) > self.closed_history:
            del self._closed[next(iter(self._closed))]

    def fail_session(self, session: str, exc: BaseException) -> bool:
        """Make every pending and future receive in ``session`` raise ``exc``.

        Used when a peer dies mid-protocol, so waiting roles fail at once
        instead of at their timeout. Later deliveries raise SessionClosed.
        The first failure wins. Returns False if the session is not open.
        """
        state = self._sessions.get(session)
        if state is None:
            return False
        if state.failure is None:
            state.failure = exc
        for fut in state.slots.values():
            _fail_future(fut, state.failure)
        state.slots.clear()
        return True

    def is_open(self, session: str) -> bool:
        """Whether ``session`` is open (possibly failed, not yet closed)."""
        return session in self._sessions

    def is_closed(self, session: str) -> bool:
        """Whether ``session`` was closed and is still remembered as such."""
        return session in self._closed

    def buffered_bytes(self, session: str | None = None) -> int:
        """Bytes of delivered payloads held for ``session`` (None: all open sessions)."""
        if session is None:
            states = list(self._sessions.values())
        else:
            state = self._sessions.get(session)
            states = [] if state is None else [state]
        return sum(
            len(fut.result())
            for state in states
            for fut in state.slots.values()
            if fut.done() and not fut.cancelled() and fut.exception() is None
        )

    # messages

    def check(self, session: str, step: str, sender: str, size: int | None = None) -> None:
        """Raise what ``deliver`` would raise for this header, without storing anything.

        Lets a streaming server refuse a message on its first chunk (before
        buffering it): UnknownSession, SessionClosed, UnexpectedStep,
        MessageTooLarge (if ``size`` is given).
        """
        self._accepting(session, step, sender, size)

    def deliver(
        self, session: str, step: str, sender: str, payload: bytes | bytearray | memoryview
    ) -> bool:
        """File a message; returns True if new, False if an identical duplicate (dropped).

        Raises UnknownSession, SessionClosed (finished or failed session),
        UnexpectedStep, MessageTooLarge, or ConflictingMessage (same key,
        different bytes). The payload is copied if mutable.
        """
        size = _payload_size(payload)
        state = self._accepting(session, step, sender, size)
        data = bytes(payload)
        key = (step, sender)
        fut = state.slots.get(key)
        if fut is None:
            fut = self._new_future()
            state.slots[key] = fut
        if not fut.done():
            fut.set_result(data)
            return True
        if fut.result() == data:
            return False
        raise ConflictingMessage(
            f"{_label(session, step, sender)}: a different message ({size} bytes) arrived "
            f"after one of {len(fut.result())} bytes{self._at()}"
        )

    async def receive(
        self, session: str, step: str, sender: str, timeout: float | None = None
    ) -> bytes:
        """Wait for the message of (session, step, sender) and return its bytes.

        Returns at once if it arrived early; receiving the same key again
        returns the same bytes. Raises ReceiveTimeout after ``timeout`` seconds
        (None: no limit), UnknownSession/SessionClosed/UnexpectedStep, or the
        exception given to ``fail_session``.
        """
        state = self._sessions.get(session)
        if state is None:
            raise self._missing(session)
        if state.failure is not None:
            raise state.failure
        key = (step, sender)
        if state.expected is not None and key not in state.expected:
            raise UnexpectedStep(
                f"{_label(session, step, sender)} is not expected by this session{self._at()}"
            )
        fut = state.slots.get(key)
        if fut is None:
            fut = self._new_future()
            state.slots[key] = fut
        if fut.done():
            return fut.result()
        # shield: a timed-out or cancelled receive must not cancel the shared future,
        # so the message can still be filed and received later.
        if timeout is None:
            return await asyncio.shield(fut)
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                return await asyncio.shield(fut)
        except TimeoutError:
            if deadline.expired():
                raise ReceiveTimeout(
                    f"timed out after {timeout:g} s waiting for "
                    f"{_label(session, step, sender)}{self._at()}"
                ) from None
            raise

    # internals

    def _accepting(self, session: str, step: str, sender: str, size: int | None) -> _Session:
        state = self._sessions.get(session)
        if state is None:
            raise self._missing(session)
        if state.failure is not None:
            raise SessionClosed(
                f"session {session!r} failed ({state.failure!r}); "
                f"{_label(session, step, sender)} refused{self._at()}"
            )
        if state.expected is not None and (step, sender) not in state.expected:
            raise UnexpectedStep(
                f"{_label(session, step, sender)} is not expected by this session{self._at()}"
            )
        if size is not None and size > self.max_payload:
            raise MessageTooLarge(
                f"{_label(session, step, sender)} has {size} bytes, "
                f"more than the limit of {self.max_payload}{self._at()}"
            )
        return state

    def _missing(self, session: str) -> ProtocolError:
        if session in self._closed:
            return SessionClosed(f"session {session!r} is finished{self._at()}")
        return UnknownSession(f"unknown session {session!r}{self._at()}")

    def _at(self) -> str:
        return f" (at {self.owner!r})" if self.owner else ""

    @staticmethod
    def _new_future() -> asyncio.Future[bytes]:
        return asyncio.get_running_loop().create_future()


# --- the in-memory network ---

DelayFn = Callable[[str, str, str, str], float]
"""``delay(frm, to, session, step) -> seconds`` for one message."""


class InMemoryTransport:
    """One party's end of an :class:`InMemoryNetwork` (implements :class:`Transport`)."""

    def __init__(self, network: InMemoryNetwork, party: str, mailbox: Mailbox) -> None:
        self.network = network
        self.party = party
        self.mailbox = mailbox
        self.bytes_sent = 0
        self.messages_sent = 0

    async def send(self, to: str, session: str, step: str, payload: bytes) -> None:
        """Copy ``payload`` into ``to``'s mailbox (after the network's delay, if any)."""
        await self.network._route(self, to, session, step, payload)

    async def receive(
        self, frm: str, session: str, step: str, timeout: float | None = None
    ) -> bytes:
        """Wait for ``step`` from ``frm`` in ``session`` (see :meth:`Mailbox.receive`)."""
        return await self.mailbox.receive(session, step, frm, timeout)

    def open_session(self, session: str, expected: Iterable[tuple[str, str]] | None = None) -> None:
        """See :meth:`Mailbox.open_session`."""
        self.mailbox.open_session(session, expected)

    def close_session(self, session: str) -> None:
        """See :meth:`Mailbox.close_session`."""
        self.mailbox.close_session(session)

    def fail_session(self, session: str, exc: BaseException) -> bool:
        """See :meth:`Mailbox.fail_session`."""
        return self.mailbox.fail_session(session, exc)

    def __repr__(self) -> str:
        return f"InMemoryTransport(party={self.party!r}, bytes_sent={self.bytes_sent})"


class InMemoryNetwork:
    """Parties in one event loop exchanging messages through their mailboxes.

    Failure injection for tests: :meth:`disconnect` makes every send to or
    from a party raise :class:`PeerUnreachable` (also for messages in flight
    when it happens), and ``delay`` (seconds, or a :data:`DelayFn`) holds
    each message before delivery, so receivers wait for late messages.
    """

    def __init__(
        self,
        *,
        delay: float | DelayFn = 0.0,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        closed_history: int = DEFAULT_CLOSED_HISTORY,
    ) -> None:
        self.delay = delay
        self.max_payload = max_payload
        self.closed_history = closed_history
        self._transports: dict[str, InMemoryTransport] = {}
        self._down: set[str] = set()

    def transport(self, party: str) -> InMemoryTransport:
        """The transport of ``party`` (created on first call, then the same one)."""
        existing = self._transports.get(party)
        if existing is not None:
            return existing
        mailbox = Mailbox(party, max_payload=self.max_payload, closed_history=self.closed_history)
        created = InMemoryTransport(self, party, mailbox)
        self._transports[party] = created
        return created

    @property
    def parties(self) -> tuple[str, ...]:
        """Names of the parties created so far."""
        return tuple(self._transports)

    def disconnect(self, party: str) -> None:
        """Make sends to or from ``party`` fail with PeerUnreachable until reconnected."""
        self._down.add(party)

    def reconnect(self, party: str) -> None:
        """Undo :meth:`disconnect`."""
        self._down.discard(party)

    def is_connected(self, party: str) -> bool:
        """Whether ``party`` exists and is not disconnected."""
        return party in self._transports and party not in self._down

    def _check_link(self, frm: str, to: str) -> None:
        for party in (frm, to):
            if party not in self._transports:
                raise PeerUnreachable(f"peer {party!r} unreachable: no such party")
            if party in self._down:
                raise PeerUnreachable(f"peer {party!r} unreachable (disconnected)")

    def _delay_for(self, frm: str, to: str, session: str, step: str) -> float:
        delay = self.delay
        return float(delay(frm, to, session, step) if callable(delay) else delay)

    async def _route(
        self, sender: InMemoryTransport, to: str, session: str, step: str, payload: bytes
    ) -> bool:
        size = _payload_size(payload)
        data = bytes(payload)  # the sender may reuse its buffer once send() is called
        self._check_link(sender.party, to)
        delay = self._delay_for(sender.party, to, session, step)
        if delay > 0:
            await asyncio.sleep(delay)
            self._check_link(sender.party, to)  # lost in flight
        sender.bytes_sent += size
        sender.messages_sent += 1
        return self._transports[to].mailbox.deliver(session, step, sender.party, data)
