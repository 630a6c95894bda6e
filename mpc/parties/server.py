"""``mpc-crm party --role sp|psp --config FILE.toml``: one long-running server process.

Both servers offer ``Peer`` (to each other) and the gRPC health service; the SP
also offers ``UserGateway`` (upload, fetch) and keeps users' ciphertexts in
SQLite; the PSP offers ``Delivery`` (users collect its partial decryptions).
At first start the SP runs joint key generation with the PSP; both persist
their key share (mode 0600) and reload it on restart.

One asyncio event loop per process; CPU-heavy crypto runs in a thread pool
(gmpy2's list functions release the GIL). SIGTERM or Ctrl-C shuts down
gracefully: health turns NOT_SERVING, in-flight calls get a grace period,
running sessions fail cleanly, stats are written, the store is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import re
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import mpc.protocols  # noqa: F401  (registers the protocols)
from mpc import plugins
from mpc.elgamal import Ciphertext, KeyShare, PublicKey, sum_ciphertexts
from mpc.elgamal.curve import CurvePrivateKey
from mpc.elgamal.proofs import UploadContext, open_upload, proof_bytes
from mpc.errors import (
    EncodingError,
    NotFound,
    ParameterError,
    PeerFailed,
    ProtocolError,
    TransportError,
)
from mpc.parties import rpc
from mpc.parties.certs import PeerIdentity
from mpc.parties.config import (
    PartyConfig,
    key_fingerprint,
    load_keys,
    load_or_create_curve_key,
    save_keys,
)
from mpc.parties.grpc_transport import GrpcTransport
from mpc.parties.store import Store
from mpc.protocol import SessionContext, get_protocol, new_session_id, run_role
from mpc.protocols.deliver import Outbox
from mpc.protocols.wire import MAX_CIPHERTEXTS, ciphertext_batch, element_batch, parse_message
from mpc.transport import Mailbox
from mpc.v1 import common_pb2, peer_pb2, steps_pb2, user_pb2

log = logging.getLogger("mpc.party")

PEERS = {"sp": "sp", "psp": "psp"}
KIND_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_UPLOAD_CIPHERTEXTS = MAX_CIPHERTEXTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", choices=("sp", "psp"), required=True, help="which server")
    parser.add_argument("--config", required=True, help="the party's TOML configuration")


def run(args: argparse.Namespace) -> int:
    config = PartyConfig.load(args.config)
    if config.role != args.role:
        raise ParameterError(f"--role {args.role} but the config says role = {config.role!r}")
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    asyncio.run(serve(config))
    return 0


async def serve(config: PartyConfig) -> None:
    """Run a server until SIGTERM/SIGINT."""
    server = PartyServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


class PartyServer:
    """One SP or PSP: gRPC server, mailbox, transport to the peer, keys, store."""

    def __init__(self, config: PartyConfig) -> None:
        self.config = config
        self.role = config.role
        self.params = config.params
        self.traffic = rpc.TrafficCounter()
        self.mailbox = Mailbox(self.role)
        self.pool = ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="crypto")
        self.pk: PublicKey | None = None
        self.share: KeyShare | None = None
        self.key_ready = asyncio.Event()
        # Both servers keep a store: the SP users' uploads, the PSP its replicas of them.
        self.store: Store | None = Store(config.data_dir / "store.sqlite")
        # Extension points (the recommender service fills them): kind -> coroutine.
        self.upload_handlers: dict[str, Callable[..., Any]] = {}
        """kind -> ``await handler(user, header, cts, blob, proofs) -> version``, replaces the generic
        store; called only once every proof of the upload verified (``proofs``: for a replica)."""
        self.fetch_handlers: dict[str, Callable[..., Any]] = {}
        """kind -> ``await handler(user, time_left)``: make the result current before it is delivered."""
        self.responders: dict[str, Callable[[bytes], dict[str, Any]]] = {}
        """protocol -> inputs of our role when the peer starts it (overrides the protocol's own)."""
        self.outbox = Outbox()
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.active_sessions: set[str] = set()
        self.busy = 0  # foreground crypto jobs running (the pool refill waits for 0)
        self.stats: dict[str, Any] = {"role": self.role, "sessions": {}, "errors": 0}
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.pool_target = 256
        self.grpc_services: list[tuple[Any, object, dict[str, list[str]]]] = []
        """Extra gRPC services a plugin adds before start(): (descriptor, servicer, method -> roles)."""
        self.plugins: dict[str, Any] = plugins.attach_all(self)
        """The applications attached to this server (entry points, mpc.plugins): name -> extension."""

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        self._channel = rpc.secure_channel(c.peer, c.tls, c.peer_server_name)
        self.peer_stub = rpc.RawStub(self._channel, peer_pb2.DESCRIPTOR.services_by_name["Peer"], c.peer_role, self.traffic)
        self.transport = GrpcTransport(
            self.role, self.mailbox, c.peer_role, self.peer_stub, c.deadline_s, retry_s=min(30.0, c.deadline_s)
        )

        server = grpc.aio.server(options=rpc.SERVER_OPTIONS)
        peer_only = [c.peer_role]
        server.add_generic_rpc_handlers(
            [
                rpc.service_handler(
                    peer_pb2.DESCRIPTOR.services_by_name["Peer"],
                    PeerService(self),
                    {"StartSession": peer_only, "Deliver": peer_only, "Abort": peer_only, "GetPublicKey": peer_only},
                    self.traffic,
                )
            ]
        )
        users = ["user"]
        keys = ["user", "frontend"]  # the public keys: also for a front end (churn uploads)
        if self.role == "sp":
            server.add_generic_rpc_handlers(
                [
                    rpc.service_handler(
                        user_pb2.DESCRIPTOR.services_by_name["UserGateway"],
                        UserGatewayService(self),
                        {"GetPublicKey": keys, "Upload": users, "Fetch": users},
                        self.traffic,
                    )
                ]
            )
        else:
            server.add_generic_rpc_handlers(
                [
                    rpc.service_handler(
                        user_pb2.DESCRIPTOR.services_by_name["Delivery"],
                        DeliveryService(self),
                        {"GetPublicKey": keys, "CollectPartials": users},
                        self.traffic,
                    )
                ]
            )
        for descriptor, servicer, allowed in self.grpc_services:
            server.add_generic_rpc_handlers([rpc.service_handler(descriptor, servicer, allowed, self.traffic)])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        await self._set_health(False)
        self.port = server.add_secure_port(c.listen, rpc.server_credentials(c.tls))
        if not self.port:
            raise ParameterError(f"cannot listen on {c.listen}")
        await server.start()
        self._server = server
        log.info("%s listening on %s (port %d)", self.role, c.listen, self.port)

        plugins.call_hook(self.plugins, "started")
        stored = load_keys(c.data_dir, self.params)
        if stored is not None:
            self._set_key(*stored, source="loaded from disk")
        elif self.role == "sp":
            self._spawn(self._initiate_keygen(), "keygen")
        else:
            log.info("psp: waiting for the SP to start key generation")

    async def stop(self, grace: float = 5.0) -> None:
        await self._set_health(False)
        for session in list(self.active_sessions):
            await self.abort_peer(session, f"the {self.role} is shutting down")
        if self._server is not None:
            await self._server.stop(grace)
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.pk is not None:
            # The warm-up (now finished) started the key's zero-pool refill thread: end it.
            self.pk.pool.stop()
        plugins.call_hook(self.plugins, "close")
        if self.store is not None:
            self.store.close()
        self.write_stats()
        log.info("%s stopped", self.role)

    def write_stats(self) -> None:
        self.stats["traffic"] = self.traffic.as_dict()
        self.stats["bytes_sent"] = sum(self.traffic.sent.values())
        path = self.config.data_dir / "stats.json"
        path.write_text(json.dumps(self.stats, indent=1))

    async def _set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", "mpc.v1.Peer", "mpc.v1.UserGateway" if self.role == "sp" else "mpc.v1.Delivery"):
            res = self._health.set(name, status)
            if asyncio.iscoroutine(res):
                await res

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                self.stats["errors"] += 1
                log.error("%s: %s failed: %s", self.role, what, t.exception())

        task.add_done_callback(done)
        return task

    async def run_crypto(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU-bound work off the event loop (and keep the idle-time pool refill paused)."""
        self.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        finally:
            self.busy -= 1

    # -- keys ------------------------------------------------------------------------
    def _set_key(self, pk: PublicKey, share: KeyShare, source: str) -> None:
        self.pk, self.share = pk, share
        self.key_ready.set()
        self.stats["key_fingerprint"] = key_fingerprint(pk).hex()
        log.info("%s: joint key %s (%s)", self.role, key_fingerprint(pk).hex()[:16], source)
        self._spawn(self._set_health(True), "health")
        # Build the fixed-base tables and a first stock of encryptions of zero in idle time.
        self._spawn(self.run_crypto(self._warm_key), "warm-up")

    def _warm_key(self) -> None:
        assert self.pk is not None
        self.pk.encrypt(0)
        # Encryptions of zero for re-randomisation, computed only while no session runs;
        # a service may ask for a bigger stock (the recommender: one query's worth).
        self.pk.pool.target = max(self.pk.pool.target, self.pool_target)
        self.pk.pool.start(idle=lambda: not self.active_sessions and self.busy == 0)

    def upload_lock(self, user: str) -> asyncio.Lock:
        """Serialises the stores of one user's uploads (record, then its derived results)."""
        return self._upload_locks.setdefault(user, asyncio.Lock())

    def require_key(self) -> tuple[PublicKey, KeyShare]:
        if self.pk is None or self.share is None:
            raise TransportError("joint key generation has not finished yet; retry shortly")
        return self.pk, self.share

    def public_key_info(self, for_peer: bool = False) -> common_pb2.PublicKeyInfo:
        """The joint key's description; the PSP adds its curve key, and the SP, for its
        peer only, the zero-test key of its comparisons (so the PSP can precompute the
        term randomizers before the first query)."""
        pk, _ = self.require_key()
        p = pk.params
        return common_pb2.PublicKeyInfo(
            group=p.name,
            n=int(p.n).to_bytes(p.element_bytes // 2, "big"),
            seed=p.seed,
            h=pk.to_bytes(),
            element_bytes=p.element_bytes,
            fingerprint=key_fingerprint(pk),
            curve_key=self.curve_key.public_key.to_bytes() if self.role == "psp" else b"",
            compare_key=self.curve_key.public_key.to_bytes() if for_peer and self.role == "sp" else b"",
        )

    @functools.cached_property
    def curve_key(self) -> CurvePrivateKey:
        """This server's own curve key, kept (mode 0600) in its data directory.

        The PSP's: customers encrypt churn attributes under its public half
        (published in :meth:`public_key_info`). The SP's: the zero tests of
        protocol "compare" (sent in each comparison, never published).
        """
        return load_or_create_curve_key(self.config.data_dir)

    async def _initiate_keygen(self, patience_s: float = 600.0) -> None:
        """SP at first start: run keygen with the PSP, retrying until it is reachable."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + patience_s
        delay = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                pk, share = await self.start_session(
                    "keygen", steps_pb2.KeygenInputs(key_bits=self.params.bits, seed=self.params.seed), {"params": self.params}
                )
                break
            except TransportError as exc:
                if loop.time() > give_up:
                    raise
                log.info("sp: PSP not reachable yet for key generation (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self.stats["keygen_s"] = time.perf_counter() - t0
        save_keys(self.config.data_dir, pk, share)
        self._set_key(pk, share, "generated jointly with the PSP")

    # -- sessions --------------------------------------------------------------------
    async def start_session(
        self, protocol: str, start_inputs: Any, local_inputs: dict[str, Any], timeout: float | None = None
    ) -> Any:
        """Initiate ``protocol`` with the peer: open, ask it to start, play our role.

        The whole session must finish within ``timeout`` (default: the configured
        deadline); when the caller has a deadline of its own, pass what is left of
        it so that the caller hears *why* it failed rather than its own timeout.
        """
        spec = get_protocol(protocol)
        session = new_session_id()
        budget = self.config.deadline_s if timeout is None else max(0.1, min(timeout, self.config.deadline_s))
        ctx = SessionContext(
            protocol=spec,
            transport=self.transport,
            session=session,
            role=self.role,
            peers=PEERS,
            inputs=local_inputs,
            timeout=budget,
        )
        ctx.open()
        self.active_sessions.add(session)
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(budget):
                await self.peer_stub.call(
                    "StartSession",
                    peer_pb2.SessionStart(session=session, protocol=protocol, inputs=start_inputs.SerializeToString()),
                    timeout=budget,
                )
                return await run_role(ctx)
        except TimeoutError as exc:
            await self.abort_peer(session, f"{protocol} did not finish within {budget:.1f} s")
            raise TransportError(
                f"{protocol}: the {self.config.peer_role} is unreachable or did not complete the session within {budget:.1f} s"
            ) from exc
        except PeerFailed:
            raise
        except BaseException as exc:
            await self.abort_peer(session, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.active_sessions.discard(session)
            ctx.close()
            s = self.stats["sessions"].setdefault(protocol, {"count": 0, "seconds": 0.0})
            s["count"] += 1
            s["seconds"] += time.perf_counter() - t0

    async def abort_peer(self, session: str, reason: str) -> None:
        """Best effort: tell the peer our side of ``session`` failed, so its side fails now."""
        try:
            await self.peer_stub.call(
                "Abort", peer_pb2.SessionAbort(session=session, reason=reason[:300]), timeout=2.0
            )
        except Exception as exc:  # the peer may be the reason we failed
            log.info("%s: could not tell the %s to abort %s: %s", self.role, self.config.peer_role, session[:8], exc)

    def responder_inputs(self, protocol: str, raw: bytes) -> tuple[dict[str, Any], Callable[[Any], None] | None]:
        """Local inputs for our role in a session the peer started, and what to do with the result."""
        if protocol == "keygen":
            start = parse_message(steps_pb2.KeygenInputs, raw, "keygen inputs")
            if self.pk is not None:
                raise ProtocolError("this server already has a joint key; refusing a second key generation")
            if start.key_bits != self.params.bits or start.seed != self.params.seed:
                raise ParameterError(
                    f"peer asks for a {start.key_bits}-bit key with seed {start.seed!r}; "
                    f"this server is configured for {self.params.bits} bits, seed {self.params.seed!r}"
                )

            def keep(result: Any) -> None:
                pk, share = result
                save_keys(self.config.data_dir, pk, share)
                self._set_key(pk, share, "generated jointly with the SP")

            return {"params": self.params}, keep
        if protocol in self.responders:
            return self.responders[protocol](raw), None
        return get_protocol(protocol).responder_inputs(self, raw), None

    async def respond(self, req: peer_pb2.SessionStart) -> None:
        spec = get_protocol(req.protocol)
        inputs, on_result = self.responder_inputs(req.protocol, req.inputs)
        ctx = SessionContext(
            protocol=spec,
            transport=self.transport,
            session=req.session,
            role=self.role,
            peers=PEERS,
            inputs=inputs,
            timeout=self.config.deadline_s,
        )
        ctx.open()

        async def play() -> None:
            t0 = time.perf_counter()
            self.active_sessions.add(req.session)
            try:
                result = await run_role(ctx)
            except PeerFailed:
                raise
            except BaseException as exc:
                await self.abort_peer(req.session, f"{type(exc).__name__}: {exc}")
                raise
            finally:
                self.active_sessions.discard(req.session)
            s = self.stats["sessions"].setdefault(req.protocol, {"count": 0, "seconds": 0.0})
            s["count"] += 1
            s["seconds"] += time.perf_counter() - t0
            if on_result is not None:
                on_result(result)

        self._spawn(play(), f"session {req.protocol}/{req.session[:8]}")


def _time_left(ctx: Any, margin: float = 1.0) -> float | None:
    """What is left of the caller's deadline, less a margin to send our answer back."""
    left = ctx.time_remaining() if ctx is not None else None
    return None if left is None else max(0.1, left - margin)


class PeerService:
    """Server-to-server calls; only the other server's certificate may call them."""

    def __init__(self, party: PartyServer) -> None:
        self.p = party

    async def StartSession(self, req: peer_pb2.SessionStart, ident: PeerIdentity, ctx: Any) -> peer_pb2.SessionAck:
        if not req.session or len(req.session) > 64:
            raise EncodingError("session id must be 1..64 characters")
        await self.p.respond(req)
        return peer_pb2.SessionAck(session=req.session)

    async def Deliver(self, chunks: AsyncIterator[peer_pb2.Chunk], ident: PeerIdentity, ctx: Any) -> peer_pb2.DeliverAck:
        def check(chunk: peer_pb2.Chunk) -> None:
            if not chunk.session or not chunk.step:
                raise EncodingError("the first chunk must name the session and the step")
            self.p.mailbox.check(chunk.session, chunk.step, ident.name, chunk.total_size)

        header, payload = await rpc.reassemble(
            chunks, check, lambda c: bool(c.session or c.step or c.total_size), "message"
        )
        new = self.p.mailbox.deliver(header.session, header.step, ident.name, payload)
        if not new:
            log.info("%s: duplicate %s/%s from %s dropped", self.p.role, header.session[:8], header.step, ident.name)
        return peer_pb2.DeliverAck(duplicate=not new)

    async def Abort(self, req: peer_pb2.SessionAbort, ident: PeerIdentity, ctx: Any) -> peer_pb2.SessionAck:
        if self.p.transport.fail_session(req.session, PeerFailed(f"the {ident.name} aborted: {req.reason}")):
            log.warning("%s: session %s aborted by the %s: %s", self.p.role, req.session[:8], ident.name, req.reason)
        return peer_pb2.SessionAck(session=req.session)

    async def GetPublicKey(self, req: Any, ident: PeerIdentity, ctx: Any) -> common_pb2.PublicKeyInfo:
        return self.p.public_key_info(for_peer=True)


class UserGatewayService:
    """The SP's user-facing calls: a user reaches only its own records (its certificate's name)."""

    def __init__(self, party: PartyServer) -> None:
        self.p = party

    async def GetPublicKey(self, req: Any, ident: PeerIdentity, ctx: Any) -> common_pb2.PublicKeyInfo:
        return self.p.public_key_info()

    async def Upload(self, chunks: AsyncIterator[user_pb2.UploadChunk], ident: PeerIdentity, ctx: Any) -> user_pb2.UploadReply:
        pk, _ = self.p.require_key()
        width = pk.ciphertext_bytes
        pw = proof_bytes(pk.params)

        def check(chunk: user_pb2.UploadChunk) -> None:
            if not KIND_RE.match(chunk.kind):
                raise EncodingError("kind must be 1..32 characters of a-z, 0-9, _ and -")
            if not 0 < chunk.count <= MAX_UPLOAD_CIPHERTEXTS:
                raise EncodingError(f"an upload holds 1..{MAX_UPLOAD_CIPHERTEXTS} ciphertexts, not {chunk.count}")
            if chunk.proof_width != pw:
                raise EncodingError(
                    f"every ciphertext of an upload needs a proof of knowledge of {pw} bytes "
                    f"(proof_width {chunk.proof_width}): uploads without proofs are refused"
                )
            if chunk.total_size != chunk.count * (width + pw):
                raise EncodingError(
                    f"{chunk.count} ciphertexts of {width} bytes with proofs of {pw} bytes make "
                    f"{chunk.count * (width + pw)} bytes, not {chunk.total_size}"
                )

        header, data = await rpc.reassemble(
            chunks, check, lambda c: bool(c.kind or c.count or c.total_size or c.proof_width), "upload"
        )
        statement = UploadContext(pk, ident.name, header.kind, header.layout_version)
        # Every ciphertext and its proof are checked before anything is stored or forwarded.
        cts, blob, proofs = await self.p.run_crypto(open_upload, pk, data, header.count, statement)
        handler = self.p.upload_handlers.get(header.kind)
        if handler is not None:
            version = await handler(ident.name, header, cts, blob, proofs)
            return user_pb2.UploadReply(version=version, count=header.count)
        # Results derived from this record are computed before anything is stored, and a
        # user's uploads store one at a time: otherwise a slower, older upload could store
        # its result over the newer record's (a stale result under the new version).
        results: dict[str, tuple[int, bytes]] = {}
        for kind, fn in RESULT_HOOKS.get(header.kind, {}).items():
            out = await self.p.run_crypto(fn, pk, cts)
            results[kind] = (len(out), pk.ciphertexts_to_bytes(out))
        store = self.p.store
        assert store is not None
        async with self.p.upload_lock(ident.name):
            version = await self.p.run_crypto(
                store.put_record, ident.name, header.kind, header.layout_version, header.count, width, blob, results
            )
        log.info("sp: %s uploaded %d ciphertexts of kind %r (version %d)", ident.name, header.count, header.kind, version)
        return user_pb2.UploadReply(version=version, count=header.count)

    async def Fetch(self, req: user_pb2.FetchRequest, ident: PeerIdentity, ctx: Any) -> user_pb2.FetchReply:
        pk, share = self.p.require_key()
        if not KIND_RE.match(req.kind):
            raise EncodingError("kind must be 1..32 characters of a-z, 0-9, _ and -")
        store = self.p.store
        assert store is not None
        ensure = self.p.fetch_handlers.get(req.kind)
        if ensure is not None:
            await ensure(ident.name, _time_left(ctx))

        def load() -> tuple[Any, list[Ciphertext]]:
            rec = store.get_result(ident.name, req.kind) or store.get_record(ident.name, req.kind)
            if rec is None:
                raise NotFound(f"no {req.kind!r} stored for {ident.name!r}")
            stored = pk.ciphertexts_from_bytes(rec.blob, rec.count)
            return rec, [pk.rerandomize(c) for c in stored]

        rec, fresh = await self.p.run_crypto(load)
        delivery_id = secrets.token_hex(16)
        partials = await self.p.start_session(
            "deliver",
            steps_pb2.DeliverInputs(user_id=ident.name, delivery_id=delivery_id),
            {"pk": pk, "share": share, "ciphertexts": fresh, "run_crypto": self.p.run_crypto},
            timeout=_time_left(ctx),
        )
        return await self.p.run_crypto(
            lambda: user_pb2.FetchReply(
                delivery_id=delivery_id,
                ciphertexts=ciphertext_batch(pk, fresh),
                partials=element_batch(pk.params, partials),
                version=rec.version,
            )
        )


class DeliveryService:
    """The PSP's user-facing calls: a user collects only deliveries addressed to it."""

    def __init__(self, party: PartyServer) -> None:
        self.p = party

    async def GetPublicKey(self, req: Any, ident: PeerIdentity, ctx: Any) -> common_pb2.PublicKeyInfo:
        return self.p.public_key_info()

    async def CollectPartials(self, req: user_pb2.CollectRequest, ident: PeerIdentity, ctx: Any) -> user_pb2.CollectReply:
        pk, _ = self.p.require_key()
        partials = self.p.outbox.collect(req.delivery_id, ident.name)
        return user_pb2.CollectReply(partials=element_batch(pk.params, partials))


def _sum(pk: PublicKey, cts: list[Ciphertext]) -> list[Ciphertext]:
    return [sum_ciphertexts(cts)]


RESULT_HOOKS: dict[str, dict[str, Callable[[PublicKey, list[Ciphertext]], list[Ciphertext]]]] = {
    # Results the SP computes homomorphically on upload (the recommender adds its own).
    "values": {"sum": _sum},
}
"""kind uploaded -> {result kind: function}. Results are dropped when their source changes."""
