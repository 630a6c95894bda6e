"""The Transport interface over gRPC: protocol messages between the two servers.

Sending streams the payload in chunks to the peer's ``Peer.Deliver``; the
peer's servicer puts it in its mailbox under (session, step, sender), where the
sender is the name in the caller's certificate. Because delivery is idempotent
per key, a send that failed with UNAVAILABLE is retried until its deadline:
the worst case is a duplicate, which the mailbox drops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from mpc.errors import SessionClosed, TransportError
from mpc.parties import rpc
from mpc.transport import Mailbox
from mpc.v1 import peer_pb2

log = logging.getLogger("mpc.transport.grpc")


class GrpcTransport:
    """Transport of one server: receives through its mailbox, sends to the one peer server."""

    def __init__(
        self,
        party: str,
        mailbox: Mailbox,
        peer_name: str,
        peer_stub: rpc.RawStub,
        deadline_s: float = rpc.DEFAULT_DEADLINE_S,
        retry_s: float = 30.0,
    ) -> None:
        self.party = party
        self.mailbox = mailbox
        self.peer_name = peer_name
        self.stub = peer_stub
        self.deadline_s = deadline_s
        self.retry_s = retry_s
        self.bytes_sent = 0

    def open_session(self, session: str, expected: Iterable[tuple[str, str]] | None = None) -> None:
        self.mailbox.open_session(session, expected)

    def close_session(self, session: str) -> None:
        self.mailbox.close_session(session)

    def fail_session(self, session: str, exc: BaseException) -> bool:
        return self.mailbox.fail_session(session, exc)

    async def send(self, to: str, session: str, step: str, payload: bytes) -> None:
        if to != self.peer_name:
            raise TransportError(f"{self.party} has no channel to {to!r} (only to {self.peer_name!r})")
        payload = bytes(payload)

        def requests() -> list[peer_pb2.Chunk]:
            pieces = rpc.chunks(payload)
            first = peer_pb2.Chunk(session=session, step=step, total_size=len(payload), data=bytes(pieces[0]))
            return [first, *(peer_pb2.Chunk(data=bytes(p)) for p in pieces[1:])]

        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_s
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.stub.stream("Deliver", requests(), timeout=self.deadline_s)
                self.bytes_sent += len(payload)
                return
            except SessionClosed:
                if attempt > 1:
                    # An earlier attempt arrived (its ack was lost) and the peer
                    # has finished the session since: the message was delivered.
                    return
                raise
            except TransportError as exc:
                if loop.time() + delay > give_up:
                    raise TransportError(
                        f"{self.party} -> {to}: could not deliver {step!r} of session {session[:8]}: {exc}"
                    ) from exc
                log.info("retrying %s/%s to %s in %.1fs: %s", session[:8], step, to, delay, exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 2.0)

    async def receive(self, frm: str, session: str, step: str, timeout: float | None = None) -> bytes:
        return await self.mailbox.receive(session, step, frm, timeout=timeout if timeout is not None else self.deadline_s)
