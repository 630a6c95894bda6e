"""gRPC plumbing shared by every party: TLS credentials, options, error mapping, handlers.

Services are registered from their Protobuf descriptors with *raw bytes* in and
out, and parsed here, so that a malformed message becomes INVALID_ARGUMENT with
a log line (gRPC's own deserialiser would answer INTERNAL). Every handler goes
through one wrapper that (1) identifies the caller by its certificate, (2)
checks the caller's role may call the method, (3) maps the project's
exceptions to status codes, and (4) counts bytes, so each servicer method is
plain protocol logic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import symbol_database
from google.protobuf.message import Message

from mpc import errors, transport
from mpc.parties.certs import PeerIdentity, identity_from_pem
from mpc.protocols.wire import parse_message

log = logging.getLogger("mpc.rpc")

CHUNK_BYTES = 1 << 20
"""Streamed messages are cut into chunks of at most 1 MiB."""
MAX_GRPC_MESSAGE = 4 << 20
"""Explicit per-message limit on both ends (a chunk plus headroom), never the default by accident."""
DEFAULT_DEADLINE_S = 120.0

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 0),  # we retry ourselves, only where idempotent
    # Reconnect quickly once a peer is back: gRPC's default backoff grows to 120 s,
    # during which every call fails at once with UNAVAILABLE although the peer is up.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]

STATUS_OF: list[tuple[type[Exception], grpc.StatusCode]] = [
    (transport.UnknownSession, grpc.StatusCode.NOT_FOUND),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (transport.SessionClosed, grpc.StatusCode.FAILED_PRECONDITION),
    (transport.UnexpectedStep, grpc.StatusCode.FAILED_PRECONDITION),
    (transport.ConflictingMessage, grpc.StatusCode.ALREADY_EXISTS),
    (transport.SessionExists, grpc.StatusCode.ALREADY_EXISTS),
    (transport.MessageTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.EncodingError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ParameterError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.LayoutError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.AuthorizationError, grpc.StatusCode.PERMISSION_DENIED),
    (errors.TransportError, grpc.StatusCode.UNAVAILABLE),
    (errors.KeyGenerationError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.ProtocolError, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.MpcError, grpc.StatusCode.FAILED_PRECONDITION),
]

# The reverse, for clients: a status from a peer becomes the project's exception.
ERROR_OF: dict[grpc.StatusCode, type[errors.MpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.EncodingError,
    grpc.StatusCode.PERMISSION_DENIED: errors.AuthorizationError,
    grpc.StatusCode.UNAUTHENTICATED: errors.AuthorizationError,
    grpc.StatusCode.UNAVAILABLE: errors.TransportError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.TransportError,
    grpc.StatusCode.NOT_FOUND: errors.ProtocolError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.ProtocolError,
    grpc.StatusCode.ALREADY_EXISTS: errors.ProtocolError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ProtocolError,
}


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in STATUS_OF:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


ERROR_HEADER = "mpc-error"


def error_from_rpc(exc: grpc.RpcError, what: str) -> errors.MpcError:
    """Turn a failed call into the project's exception, keeping the peer's message.

    The class is the one the peer raised (named in trailing metadata) when it
    is one of ours, else chosen by status code.
    """
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    cls = ERROR_OF.get(code, errors.MpcError)
    try:
        meta = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
    except Exception:
        meta = {}
    named = getattr(errors, str(meta.get(ERROR_HEADER, "")), None)
    if isinstance(named, type) and issubclass(named, errors.MpcError):
        cls = named
    err = cls(f"{what}: {code.name}: {details}")
    err.status = code  # type: ignore[attr-defined]
    return err


# -- TLS ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and this party's certificate and key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except OSError as exc:
            raise errors.ParameterError(f"cannot read TLS file: {exc}") from exc


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """mTLS: clients must present a certificate signed by our CA."""
    ca, cert, key = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    ca, cert, key = tls.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def secure_channel(address: str, tls: TlsFiles, server_name: str | None = None) -> grpc.aio.Channel:
    """A channel to ``address``; ``server_name`` overrides the name checked in the server cert."""
    opts = list(CHANNEL_OPTIONS)
    if server_name:
        opts.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(address, channel_credentials(tls), options=opts)


def caller_identity(context: grpc.aio.ServicerContext) -> PeerIdentity:
    """The caller's (role, name) from its verified certificate; never from its address."""
    auth = context.auth_context() or {}
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        raise errors.AuthorizationError("no client certificate presented")
    return identity_from_pem(pems[0])


# -- handlers ----------------------------------------------------------------------------
@dataclass
class TrafficCounter:
    """Bytes a party sent and received over gRPC, by peer role (for summaries)."""

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)

    def add_sent(self, to: str, n: int) -> None:
        self.sent[to] = self.sent.get(to, 0) + n

    def add_received(self, frm: str, n: int) -> None:
        self.received[frm] = self.received.get(frm, 0) + n

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {"sent": dict(self.sent), "received": dict(self.received)}


def service_handler(
    service: Any,
    servicer: object,
    allowed: dict[str, Iterable[str]],
    traffic: TrafficCounter | None = None,
) -> grpc.GenericRpcHandler:
    """Build a generic handler for ``service`` (a ServiceDescriptor) bound to ``servicer``.

    ``allowed`` maps a method name to the roles that may call it. Each servicer
    method is ``async def Method(request_or_iterator, identity, context)``.
    """
    sym = symbol_database.Default()
    handlers = {}
    for method in service.methods:
        req_cls = sym.GetSymbol(method.input_type.full_name)
        impl = getattr(servicer, method.name)
        roles = frozenset(allowed.get(method.name, ()))
        full = f"/{service.full_name}/{method.name}"
        if method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                _stream_unary(impl, req_cls, roles, full, traffic)
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary_unary(impl, req_cls, roles, full, traffic)
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


async def _authorise(context: grpc.aio.ServicerContext, roles: frozenset[str], full: str) -> PeerIdentity:
    try:
        ident = caller_identity(context)
    except errors.AuthorizationError as exc:
        log.warning("%s refused: %s (peer %s)", full, exc, context.peer())
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if ident.role not in roles:
        log.warning("%s refused: role %r (%s) may not call it", full, ident.role, ident.name)
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"a {ident.role!r} certificate may not call {full}",
        )
    return ident


async def _fail(context: grpc.aio.ServicerContext, full: str, ident: PeerIdentity | None, exc: BaseException) -> None:
    code = status_for(exc)
    who = f"{ident.role}:{ident.name}" if ident else context.peer()
    if code is grpc.StatusCode.INTERNAL:
        log.exception("%s from %s: internal error", full, who)
        await context.abort(code, f"internal error ({type(exc).__name__}); see the server log")
    log.warning("%s from %s: %s: %s", full, who, code.name, exc)
    # The exact exception class travels in trailing metadata, so the caller can
    # re-raise the same error it would have seen in memory.
    await context.abort(code, str(exc), trailing_metadata=((ERROR_HEADER, type(exc).__name__),))


def _unary_unary(impl: Callable, req_cls: type[Message], roles: frozenset[str], full: str, traffic: TrafficCounter | None):
    async def handler(data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        ident = await _authorise(context, roles, full)
        try:
            if traffic:
                traffic.add_received(ident.role, len(data))
            reply = await impl(parse_message(req_cls, data, f"{req_cls.__name__} for {full}"), ident, context)
            out = reply.SerializeToString()
            if traffic:
                traffic.add_sent(ident.role, len(out))
            return out
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, full, ident, exc)
            raise  # unreachable: abort raises

    return handler


async def _stream_really_ended(context: grpc.aio.ServicerContext, full: str, ident: PeerIdentity, received: int) -> None:
    """Return only if the request stream ended because the client half-closed it.

    gRPC ends the request iterator the same way when it drops the call instead: a message
    over MAX_GRPC_MESSAGE (the client is told RESOURCE_EXHAUSTED), or the client cancelled
    or ran out of time. The handler is cancelled only a moment later, so a servicer that
    already holds a complete upload would store it (or start work) for a caller who has
    been told it failed. Sending the initial metadata needs a live call: on a dropped one
    the cancellation arrives here (or the send fails), before the servicer goes on.
    """
    try:
        await context.send_initial_metadata(())
    except BaseException as exc:
        log.warning(
            "%s from %s: gRPC ended the call after %s (a message over %d bytes, or the client went away): "
            "nothing of it is used",
            full, f"{ident.role}:{ident.name}",
            f"{received} message(s)" if received else "an empty message stream", MAX_GRPC_MESSAGE,
        )
        if isinstance(exc, Exception):
            raise errors.TransportError(f"the call ended before its request stream did: {exc}") from exc
        raise


def _stream_unary(impl: Callable, req_cls: type[Message], roles: frozenset[str], full: str, traffic: TrafficCounter | None):
    async def handler(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
        ident = await _authorise(context, roles, full)

        async def parsed() -> AsyncIterator[Message]:
            received = 0
            async for data in request_iterator:
                received += 1
                if traffic:
                    traffic.add_received(ident.role, len(data))
                yield parse_message(req_cls, data, f"{req_cls.__name__} for {full}")
            await _stream_really_ended(context, full, ident, received)

        try:
            reply = await impl(parsed(), ident, context)
            out = reply.SerializeToString()
            if traffic:
                traffic.add_sent(ident.role, len(out))
            return out
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _fail(context, full, ident, exc)
            raise

    return handler


class RawStub:
    """Client side of a service, with bytes on the wire and our own (de)serialisation.

    ``await stub.call("Method", request, timeout=...)`` for unary calls and
    ``await stub.stream("Method", iterator_of_requests, timeout=...)`` for
    client-streaming ones; failures become the project's exceptions.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        service: Any,
        peer_role: str,
        traffic: TrafficCounter | None = None,
        address: str | None = None,
    ) -> None:
        sym = symbol_database.Default()
        self.peer_role = peer_role
        self.address = address
        self.channel = channel
        self.traffic = traffic
        self._calls: dict[str, Any] = {}
        self._reply: dict[str, type[Message]] = {}
        for m in service.methods:
            path = f"/{service.full_name}/{m.name}"
            self._reply[m.name] = sym.GetSymbol(m.output_type.full_name)
            if m.client_streaming:
                self._calls[m.name] = channel.stream_unary(path)
            else:
                self._calls[m.name] = channel.unary_unary(path)

    def _count(self, n: int) -> None:
        if self.traffic:
            self.traffic.add_sent(self.peer_role, n)

    async def call(self, method: str, request: Message, timeout: float = DEFAULT_DEADLINE_S) -> Any:
        data = request.SerializeToString()
        self._count(len(data))
        try:
            out = await self._calls[method](data, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, method) from exc
        if self.traffic:
            self.traffic.add_received(self.peer_role, len(out))
        return self._reply[method].FromString(out)

    def _error(self, exc: grpc.RpcError, method: str) -> errors.MpcError:
        err = error_from_rpc(exc, f"{self.peer_role}.{method}")
        code = getattr(err, "status", None)
        if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE) and (
            self.channel.get_state() is not grpc.ChannelConnectivity.READY
        ):
            where = f" at {self.address}" if self.address else ""
            err = errors.PeerUnreachable(f"the {self.peer_role}{where} is unreachable (no connection): {err}")
            err.status = code  # type: ignore[attr-defined]
        return err

    async def stream(self, method: str, requests: Iterable[Message], timeout: float = DEFAULT_DEADLINE_S) -> Any:
        async def gen() -> AsyncIterator[bytes]:
            for r in requests:
                data = r.SerializeToString()
                self._count(len(data))
                yield data

        try:
            out = await self._calls[method](gen(), timeout=timeout)
        except grpc.RpcError as exc:
            raise self._error(exc, method) from exc
        if self.traffic:
            self.traffic.add_received(self.peer_role, len(out))
        return self._reply[method].FromString(out)


async def reassemble(
    chunks: AsyncIterator[Any],
    check_header: Callable[[Any], None],
    has_header: Callable[[Any], bool],
    what: str,
) -> tuple[Any, bytes]:
    """Join a streamed message: the first chunk's header (checked before anything is
    buffered) and the data, which must add up to the header's ``total_size`` exactly."""
    header = None
    parts: list[bytes] = []
    got = 0
    async for chunk in chunks:
        if header is None:
            header = chunk
            check_header(chunk)
        elif has_header(chunk):
            raise errors.EncodingError("only the first chunk may carry a header")
        got += len(chunk.data)
        if got > header.total_size:
            raise errors.EncodingError(f"{what} is larger than its declared {header.total_size} bytes")
        parts.append(chunk.data)
    if header is None:
        raise errors.EncodingError(f"empty {what}: no chunks")
    if got != header.total_size:
        raise errors.EncodingError(f"{what} of {got} bytes, declared {header.total_size}: truncated")
    return header, b"".join(parts)


async def retry_while_unavailable(call: Callable[[], Awaitable[Any]], wait_s: float) -> Any:
    """``await call()``, retried on TransportError (a server still starting, or not listening
    yet) for up to ``wait_s`` seconds with a growing pause; 0 tries once."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    delay = 0.1
    while True:
        try:
            return await call()
        except errors.TransportError:
            if loop.time() + delay > give_up:
                raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)


def chunks(data: bytes, size: int = CHUNK_BYTES) -> list[memoryview]:
    """Cut ``data`` into pieces of at most ``size`` bytes (at least one, maybe empty)."""
    mv = memoryview(data)
    return [mv[i : i + size] for i in range(0, max(len(data), 1), size)] if data else [mv[0:0]]
