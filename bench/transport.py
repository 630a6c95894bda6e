"""Transport benchmark (DESIGN 3.7): ciphertexts between processes over gRPC with mutual TLS.

``mpc-crm bench transport --json FILE [--bits 2048] [--mb 64] [--repeat 5]`` (or
``scripts/bench_transport.py``) starts, as separate processes on loopback and
before this process creates any gRPC object,

* a *sink*: a gRPC server with the parties' own TLS set-up
  (:func:`mpc.parties.rpc.server_credentials`, ``SERVER_OPTIONS``, a
  :func:`~mpc.parties.rpc.service_handler` for ``mpc.v1.Peer`` that only the
  SP certificate may call) whose ``Deliver`` reassembles the chunks and files
  the message in a :class:`~mpc.transport.Mailbox` exactly as the PSP's does,
  then acknowledges, with no crypto at all;
* a real PSP and SP (``python -m mpc party``) of a fresh deployment, which run
  joint key generation;

and measures, from this process:

1. ``connect_ms``: a new mTLS channel until it is ready (TCP, TLS handshake
   with ECDSA certificates on both sides, HTTP/2 preface), median;
   ``round_trip_ms``: a unary ``Peer.GetPublicKey`` on a warm channel to the
   sink, median (also a one-chunk ``Deliver`` of a tiny step message, and
   ``GetPublicKey`` of the real PSP); ``throughput``: messages of N 2048-bit
   ciphertexts (a ``DeliverCiphertexts`` step, as the SP sends the PSP) sent
   with :class:`~mpc.parties.grpc_transport.GrpcTransport` (1 MiB chunks,
   one message at a time, each acknowledged after the sink filed it).
   ``mb_per_s`` counts 10^6 bytes of serialised step message per second
   (gRPC framing and TLS records add a little on the wire).
2. ``step``: the protocol step "deliver" of k ciphertexts, k chosen so that
   one partial decryption of all k takes about ``--step-s`` (1 s):
   ``crypto_s`` is the slower of the SP's and the PSP's partial decryptions of
   the k ciphertexts, each timed alone here with the real key shares (in the
   real step they run at the same time in two processes), in rounds that
   alternate with the end-to-end samples so that both see the same load;
   ``end_to_end_s`` is ``UserClient.fetch`` of k stored ciphertexts through
   the real SP and PSP: the SP re-randomises them, starts a session with the
   PSP, streams them to it, both compute partial decryptions, the PSP answers
   "ready", the SP replies to the user, the user collects the PSP's partials
   and combines. ``overhead_ratio = (end_to_end_s - crypto_s) / crypto_s``
   (target: <= 0.10) therefore charges to "transport" everything that is not
   the two partial decryptions, including small crypto (re-randomisation,
   decoding, combining: timed separately under ``other_crypto_s``) and the
   contention of two busy servers on the machine's cores. ``wire_s`` is the
   pure transfer time of the k-ciphertext message from part 1.

Each server is waited on until it is idle (no CPU used for a moment: key
tables built, pool of encryptions of zero full) before every timed sample.
The figures depend on the machine and its load: the load average is recorded
before and after, and ``foreign_cpu_cores`` says how many cores other
processes kept busy during the samples. Child processes are always terminated (SIGTERM, then
SIGKILL), also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import loadavg, machine_info, publish, standalone
from mpc.errors import MpcError

TARGET_RATIO = 0.10
"""Transport may add at most this fraction to a step whose crypto takes ``--step-s``."""
DEFAULT_SIZES = (1_000, 10_000, 50_000)
MAX_MESSAGES_PER_SAMPLE = 256
USER = "u0001"

Log = Callable[[str], None]


# -- small helpers ---------------------------------------------------------------------------


def _stats(samples: Sequence[float]) -> dict[str, float | int]:
    """Median, min and max of ``samples``, and how many."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
    }


# -- CPU idleness of the child processes --------------------------------------------------------


def _cpu_ticks(pids: Sequence[int]) -> int | None:
    """User + system clock ticks used so far by the processes (all threads); None off Linux."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total


async def wait_idle(
    pids: Sequence[int], *, window_s: float = 0.3, quiet_ticks: int = 1, timeout_s: float = 60.0
) -> bool:
    """Wait until ``pids`` use (almost) no CPU for two windows in a row; False on timeout.

    A server is busy after key generation (fixed-base tables, then a pool of
    encryptions of zero) and after each delivery (the pool refills): a sample
    started then would measure that background work too.
    """
    before = _cpu_ticks(pids)
    if before is None:
        await asyncio.sleep(1.0)
        return True
    give_up = time.monotonic() + timeout_s
    quiet = 0
    while time.monotonic() < give_up:
        await asyncio.sleep(window_s)
        now = _cpu_ticks(pids)
        if now is None:
            return False
        quiet = quiet + 1 if now - before <= quiet_ticks else 0
        before = now
        if quiet >= 2:
            return True
    return False


def _system_busy_ticks() -> int | None:
    """Clock ticks every CPU of the machine spent busy so far (``/proc/stat``); None off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in first[1:9])
    return user + nice + system + irq + softirq + steal


class CpuMeter:
    """CPU used during an interval by named processes, and by everything else on the machine.

    ``foreign_cores``: busy ticks of the whole machine minus those of this
    process and the named ones, over the wall time: 0 on an otherwise idle
    machine, 1 if something else kept a whole core busy all along (the
    machine may be shared).
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {"benchmark": os.getpid(), **pids}
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._t0 = 0.0
        self._sys0: int | None = None
        self._own0: dict[str, int | None] = {}

    def _own(self) -> dict[str, int | None]:
        return {name: _cpu_ticks([pid]) for name, pid in self.pids.items()}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._sys0 = _system_busy_ticks()
        self._own0 = self._own()

    def stop(self) -> dict[str, Any]:
        """``{"foreign_cores": float | None, "cpu_s": {name: seconds}}`` since :meth:`start`."""
        wall = time.monotonic() - self._t0
        sys1, own1 = _system_busy_ticks(), self._own()
        cpu: dict[str, float] = {}
        for name, t1 in own1.items():
            t0 = self._own0.get(name)
            if t0 is not None and t1 is not None:
                cpu[name] = (t1 - t0) / self.hz
        foreign = None
        if self._sys0 is not None and sys1 is not None and len(cpu) == len(self.pids) and wall > 0:
            foreign = max(0.0, (sys1 - self._sys0) / self.hz - sum(cpu.values())) / wall
        return {"foreign_cores": foreign, "cpu_s": cpu}


# -- child processes ---------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


@dataclass
class Children:
    """The processes this benchmark started; :meth:`stop` ends them (TERM, then KILL)."""

    items: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], cwd: Path, log_dir: Path) -> Child:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        env = dict(os.environ)
        # the children import the same mpc as this process, installed or not
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop them in order
                preexec_fn=_die_with_parent(),
            )
        child = Child(name, proc, log_path)
        self.items.append(child)
        return child

    def check_alive(self) -> None:
        for c in self.items:
            code = c.proc.poll()
            if code is not None:
                raise MpcError(
                    f"{c.name} process exited with code {code}; its log ends:\n{c.tail()}"
                )

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every live child, wait up to ``grace_s``, then SIGKILL what is left."""
        for c in self.items:
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c in self.items:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for c in self.items:
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    c.proc.kill()
                c.proc.wait()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes a child get SIGTERM if this process dies (Linux only).

    Covers a benchmark killed with SIGKILL, where no ``finally`` runs.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return set_pdeathsig


# -- the sink: a Peer server that only files messages ----------------------------------------------


class _SinkPeer:
    """``mpc.v1.Peer`` for the sink: Deliver as the parties' ``PeerService.Deliver``, no crypto.

    A message for a session it does not know opens that session first, and the
    session is closed once the message is filed, so nothing accumulates.
    """

    def __init__(self, element_bytes: int) -> None:
        from mpc.transport import Mailbox

        self.mailbox = Mailbox("sink")
        self.element_bytes = element_bytes
        self.messages = 0

    async def StartSession(self, req: Any, ident: Any, ctx: Any) -> Any:
        from mpc.v1 import peer_pb2

        if not self.mailbox.is_open(req.session):
            self.mailbox.open_session(req.session)
        return peer_pb2.SessionAck(session=req.session)

    async def Abort(self, req: Any, ident: Any, ctx: Any) -> Any:
        from mpc.v1 import peer_pb2

        return peer_pb2.SessionAck(session=req.session)

    async def Deliver(self, chunks: Any, ident: Any, ctx: Any) -> Any:
        from mpc.errors import EncodingError
        from mpc.v1 import peer_pb2

        header = None
        parts: list[bytes] = []
        got = 0
        async for chunk in chunks:
            if header is None:
                header = chunk
                if not chunk.session or not chunk.step:
                    raise EncodingError("the first chunk must name the session and the step")
                if not self.mailbox.is_open(chunk.session):
                    self.mailbox.open_session(chunk.session)
                self.mailbox.check(chunk.session, chunk.step, ident.name, chunk.total_size)
            elif chunk.session or chunk.step or chunk.total_size:
                raise EncodingError("only the first chunk may carry a header")
            got += len(chunk.data)
            if got > header.total_size:
                raise EncodingError(
                    f"message is larger than its declared {header.total_size} bytes"
                )
            parts.append(chunk.data)
        if header is None:
            raise EncodingError("empty message: no chunks")
        if got != header.total_size:
            raise EncodingError(f"message of {got} bytes, declared {header.total_size}: truncated")
        new = self.mailbox.deliver(header.session, header.step, ident.name, b"".join(parts))
        self.mailbox.close_session(header.session)
        self.messages += 1
        return peer_pb2.DeliverAck(duplicate=not new)

    async def GetPublicKey(self, req: Any, ident: Any, ctx: Any) -> Any:
        from mpc.v1 import common_pb2

        e = self.element_bytes
        # the size of a real answer: N, h, a fingerprint; the contents do not matter here
        return common_pb2.PublicKeyInfo(
            group="sink",
            n=bytes(e // 2),
            seed="sink",
            h=bytes(e),
            element_bytes=e,
            fingerprint=bytes(32),
        )


async def _serve_sink(ca: Path, cert: Path, key: Path, port_file: Path, element_bytes: int) -> None:
    import grpc

    from mpc.parties import rpc
    from mpc.v1 import peer_pb2

    tls = rpc.TlsFiles(ca, cert, key)
    server = grpc.aio.server(options=rpc.SERVER_OPTIONS)
    only_sp = ["sp"]
    server.add_generic_rpc_handlers(
        [
            rpc.service_handler(
                peer_pb2.DESCRIPTOR.services_by_name["Peer"],
                _SinkPeer(element_bytes),
                {"StartSession": only_sp, "Deliver": only_sp, "GetPublicKey": only_sp},
                rpc.TrafficCounter(),
            )
        ]
    )
    port = server.add_secure_port("127.0.0.1:0", rpc.server_credentials(tls))
    if not port:
        raise MpcError("sink: cannot listen on 127.0.0.1")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    os.replace(tmp, port_file)
    try:
        await stop.wait()
    finally:
        await server.stop(1.0)


def serve_sink(argv: Sequence[str] | None = None) -> int:
    """Entry point of the sink process (started by the benchmark, not by hand)."""
    p = argparse.ArgumentParser(prog="bench-transport-sink")
    for name in ("--ca", "--cert", "--key", "--port-file"):
        p.add_argument(name, type=Path, required=True)
    p.add_argument("--element-bytes", type=int, required=True)
    a = p.parse_args(argv)
    asyncio.run(_serve_sink(a.ca, a.cert, a.key, a.port_file, a.element_bytes))
    return 0


_SINK_CODE = (
    "import sys\n"
    "from bench.transport import serve_sink\n"
    "raise SystemExit(serve_sink(sys.argv[1:]))\n"
)


# -- set-up: deployment and processes -----------------------------------------------------------


@dataclass
class Setup:
    root: Path
    deployment: Any
    children: Children
    sink: Child | None = None
    psp: Child | None = None
    sp: Child | None = None
    port_file: Path | None = None
    sink_address: str = ""


def start_processes(root: Path, bits: int, children: Children, log: Log) -> Setup:
    """Write a deployment and start the sink, the PSP and the SP (no gRPC in this process).

    Every process started is added to ``children`` at once, so the caller can
    stop them even if a later one fails to start.
    """
    from mpc.elgamal import params_for
    from mpc.parties.deploy import write_deployment

    dep = write_deployment(root, users=[USER], key_bits=bits, deadline_s=60)
    setup = Setup(root=root, deployment=dep, children=children)
    certs = root / "certs"
    logs = root / "logs"
    port_file = root / "sink.port"
    element_bytes = params_for(bits).element_bytes
    log("starting the sink, the PSP and the SP ...")
    setup.sink = setup.children.start(
        "sink",
        [
            sys.executable,
            "-c",
            _SINK_CODE,
            "--ca",
            str(certs / "ca.pem"),
            # the sink presents the PSP's certificate: the benchmark talks to it as the SP would
            "--cert",
            str(certs / "psp.pem"),
            "--key",
            str(certs / "psp.key"),
            "--port-file",
            str(port_file),
            "--element-bytes",
            str(element_bytes),
        ],
        root,
        logs,
    )
    for role in ("psp", "sp"):
        child = setup.children.start(
            role,
            [
                sys.executable,
                "-m",
                "mpc",
                "party",
                "--role",
                role,
                "--config",
                str(root / f"{role}.toml"),
            ],
            root,
            logs,
        )
        setattr(setup, role, child)
    setup.port_file = port_file
    return setup


def wait_ready(setup: Setup, timeout_s: float, log: Log) -> None:
    """Wait (bounded) for the sink's port and both servers' public keys."""
    root = setup.root
    wanted = [root / "sp" / "public_key.json", root / "psp" / "public_key.json"]
    port_file = setup.port_file
    assert port_file is not None
    give_up = time.monotonic() + timeout_s
    while True:
        setup.children.check_alive()
        keys = all(p.exists() for p in wanted)
        if keys and port_file.exists():
            break
        if time.monotonic() > give_up:
            missing = [str(p) for p in [*wanted, port_file] if not p.exists()]
            raise MpcError(f"not ready after {timeout_s:g} s: missing {', '.join(missing)}")
        time.sleep(0.1)
    setup.sink_address = f"127.0.0.1:{int(port_file.read_text())}"
    infos = [json.loads(p.read_text()) for p in wanted]
    if infos[0]["fingerprint"] != infos[1]["fingerprint"]:
        raise MpcError("the SP and the PSP wrote different joint keys")
    log(f"joint key {infos[0]['fingerprint'][:16]} ready; sink at {setup.sink_address}")


# -- part 2a: the crypto of the step, in this process ---------------------------------------------


@dataclass
class StepCrypto:
    """The k ciphertexts of the step and both servers' real key shares, loaded here."""

    pk: Any
    shares: dict[str, Any]
    cts: list[Any]

    def partials(self, role: str) -> list[Any]:
        from mpc.protocols.deliver import partials_of

        return partials_of(self.shares[role], self.cts)

    def sample(self) -> dict[str, float]:
        """Seconds of the SP's and the PSP's partial decryptions of all k, each alone,
        then both at once on two threads (gmpy2 releases the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        out = {}
        for role in ("sp", "psp"):
            t0 = time.perf_counter()
            self.partials(role)
            out[role] = time.perf_counter() - t0
        with ThreadPoolExecutor(max_workers=2) as pool:
            t0 = time.perf_counter()
            futs = [pool.submit(self.partials, r) for r in ("sp", "psp")]
            for f in futs:
                f.result()
            out["parallel"] = time.perf_counter() - t0
        return out


def prepare_crypto(
    root: Path, bits: int, k: int | None, step_s: float, repeat: int, log: Log
) -> tuple[StepCrypto, dict[str, Any]]:
    """Load the servers' key shares, choose k, and time the small crypto of a delivery.

    The partial decryptions themselves are timed later, alternating with the
    end-to-end samples, so that both see the same machine load.
    """
    from mpc.elgamal import PublicKey, combine_many, params_for
    from mpc.parties.config import load_keys

    params = params_for(bits)
    info = json.loads((root / "sp" / "public_key.json").read_text())
    pk = PublicKey.from_bytes(params, bytes.fromhex(info["h"]))
    shares = {}
    for role in ("sp", "psp"):
        loaded = load_keys(root / role, params)
        if loaded is None or loaded[0] != pk:
            raise MpcError(f"cannot load the {role}'s key share, or it is for another key")
        shares[role] = loaded[1]

    log("calibrating k (fixed-base tables first) ...")
    probe = StepCrypto(pk, shares, [pk.encrypt(secrets.randbelow(1 << 32)) for _ in range(16)])
    probe.partials("sp")  # warm-up
    per = []
    for _ in range(5):
        t0 = time.perf_counter()
        probe.partials("sp")
        per.append((time.perf_counter() - t0) / len(probe.cts))
    # the fastest sample: the cost of the work itself, least disturbed by other processes
    partial_ms = min(per) * 1000
    if k is None:
        k = max(1, round(step_s / min(per)))
    log(f"one partial decryption {partial_ms:.2f} ms: k = {k} ciphertexts")

    values = [secrets.randbelow(1 << 32) for _ in range(k)]
    crypto = StepCrypto(pk, shares, [pk.encrypt(v) for v in values])
    sp_p, psp_p = crypto.partials("sp"), crypto.partials("psp")
    if combine_many(crypto.cts, [sp_p, psp_p]) != values:
        raise MpcError("the servers' key shares do not decrypt: refusing to benchmark")

    log("small crypto of a delivery, and the protocol in memory ...")
    blob = pk.ciphertexts_to_bytes(crypto.cts)
    rerand, decode, comb = [], [], []
    for _ in range(repeat):
        pk.pool.fill(k)  # the SP re-randomises from its pool of encryptions of zero
        t0 = time.perf_counter()
        _ = [pk.rerandomize(c) for c in crypto.cts]
        rerand.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pk.ciphertexts_from_bytes(blob, k)
        decode.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        combine_many(crypto.cts, [sp_p, psp_p])
        comb.append(time.perf_counter() - t0)
    in_memory = asyncio.run(_run_local_deliver(pk, shares, crypto.cts, repeat))

    rerandomize_s = statistics.median(rerand)
    decode_s = statistics.median(decode)
    combine_s = statistics.median(comb)
    return crypto, {
        "k": k,
        "partial_decrypt_ms": partial_ms,
        "other_crypto_s": {
            # per delivery of k: the SP re-randomises (pool full), the PSP and the user
            # each decode the batch, the user combines
            "rerandomize_s": rerandomize_s,
            "decode_batch_s": decode_s,
            "combine_s": combine_s,
            "total_s": rerandomize_s + 2 * decode_s + combine_s,
        },
        "in_memory_s": statistics.median(in_memory),
    }


async def _run_local_deliver(
    pk: Any, shares: dict[str, Any], cts: list[Any], repeat: int
) -> list[float]:
    from mpc.protocol import run_local
    from mpc.protocols.deliver import Outbox
    from mpc.v1 import steps_pb2

    out = []
    for _ in range(repeat):
        start = steps_pb2.DeliverInputs(user_id=USER, delivery_id=secrets.token_hex(16))
        t0 = time.perf_counter()
        await run_local(
            "deliver",
            {
                "sp": {"pk": pk, "share": shares["sp"], "ciphertexts": cts},
                "psp": {"pk": pk, "share": shares["psp"], "outbox": Outbox(), "start": start},
            },
            timeout=120.0,
        )
        out.append(time.perf_counter() - t0)
    return out


# -- part 1: the wire, against the sink ------------------------------------------------------------


def _random_ciphertext_blob(bits: int, count: int) -> bytes:
    """``count`` ciphertexts' worth of bytes: pairs of random elements below N^2.

    The contents do not change the cost of the wire (no compression), and
    encrypting 50,000 values would take minutes; the width is that of real
    ciphertexts.
    """
    from mpc.elgamal import params_for

    p = params_for(bits)
    n2, e = int(p.n2), p.element_bytes
    return b"".join(secrets.randbelow(n2).to_bytes(e, "big") for _ in range(2 * count))


async def _connect_ms(address: str, tls: Any, count: int) -> list[float]:
    """Fresh mTLS channels until ready; a local subchannel pool forces a new connection each."""
    import grpc

    from mpc.parties import rpc

    opts = [*rpc.CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        channel = grpc.aio.secure_channel(address, rpc.channel_credentials(tls), options=opts)
        try:
            await asyncio.wait_for(channel.channel_ready(), 30.0)
            out.append((time.perf_counter() - t0) * 1000)
        finally:
            await channel.close()
    return out


async def _unary_rtts(stub: Any, calls: int, warmup: int = 20) -> list[float]:
    from mpc.v1 import peer_pb2

    req = peer_pb2.PublicKeyRequest()
    for _ in range(warmup):
        await stub.call("GetPublicKey", req, timeout=30.0)
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await stub.call("GetPublicKey", req, timeout=30.0)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _deliver_rtts(transport: Any, calls: int, warmup: int = 20) -> list[float]:
    """One-chunk ``Deliver`` of a tiny step message (the "ready" of the deliver protocol)."""
    from mpc.v1 import steps_pb2

    payload = steps_pb2.DeliverReady(count=64).SerializeToString()
    sids = [secrets.token_hex(16) for _ in range(warmup + calls)]
    for sid in sids[:warmup]:
        await transport.send("psp", sid, "ready", payload)
    out = []
    for sid in sids[warmup:]:
        t0 = time.perf_counter()
        await transport.send("psp", sid, "ready", payload)
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def _throughput(
    transport: Any, blob: bytes, width: int, counts: Sequence[int], mb: float, repeat: int, log: Log
) -> list[dict[str, Any]]:
    """Per size: median seconds per message over ``repeat`` samples of back-to-back messages."""
    from mpc.v1 import common_pb2, steps_pb2

    rows = []
    for n in counts:
        batch = common_pb2.Batch(count=n, width=width, blob=blob[: n * width])
        payload = steps_pb2.DeliverCiphertexts(ciphertexts=batch).SerializeToString()
        del batch
        per_sample = max(1, min(MAX_MESSAGES_PER_SAMPLE, round(mb * 2**20 / len(payload))))
        log(
            f"throughput: {n} ciphertexts ({len(payload) / 1e6:.2f} MB) x {per_sample} x {repeat} ..."
        )
        await transport.send("psp", secrets.token_hex(16), "ciphertexts", payload)  # warm-up
        samples = []
        for _ in range(repeat):
            sids = [secrets.token_hex(16) for _ in range(per_sample)]
            t0 = time.perf_counter()
            for sid in sids:
                await transport.send("psp", sid, "ciphertexts", payload)
            samples.append((time.perf_counter() - t0) / per_sample)
        sec = statistics.median(samples)
        rows.append(
            {
                "ciphertexts": n,
                "bytes": len(payload),
                "seconds": sec,
                "mb_per_s": len(payload) / sec / 1e6,
                "mib_per_s": len(payload) / sec / 2**20,
                "ciphertexts_per_s": n / sec,
                "seconds_min": min(samples),
                "seconds_max": max(samples),
                "messages_per_sample": per_sample,
                "samples": repeat,
            }
        )
    return rows


# -- part 2b: the step end to end through the real servers -------------------------------------------


async def _end_to_end(
    setup: Setup, crypto: StepCrypto, repeat: int, servers: dict[str, int], log: Log
) -> dict[str, Any]:
    """Alternate, ``repeat`` times: the crypto alone here, a fetch, an instrumented fetch."""
    from mpc.elgamal import combine_many
    from mpc.parties.user import UserClient
    from mpc.protocols.wire import ciphertexts_from_batch, elements_from_batch
    from mpc.v1 import user_pb2

    k = len(crypto.cts)
    loop = asyncio.get_running_loop()
    timeouts = 0
    pids = list(servers.values())
    meter = CpuMeter(servers)
    user = UserClient.from_config(setup.deployment.user_configs[USER])
    try:
        pk = await user.public_key(wait_s=60.0)
        values = [secrets.randbelow(1 << 32) for _ in range(k)]
        log(f"end to end: {USER} uploads {k} values, then fetches them ({repeat} rounds) ...")
        await user.upload("values", values)
        if await user.fetch("values") != values:  # warm-up: channels, key, first session
            raise MpcError("the fetched values differ from the uploaded ones")
        whole: list[float] = []
        alone: dict[str, list[float]] = {"sp": [], "psp": [], "parallel": []}
        foreign: dict[str, list[float | None]] = {"crypto": [], "end_to_end": []}
        cpu: dict[str, list[float]] = {}
        parts: dict[str, list[float]] = {
            "sp_fetch_s": [],
            "psp_collect_s": [],
            "user_decode_combine_s": [],
        }
        for _ in range(repeat):
            timeouts += not await wait_idle(pids)
            meter.start()
            sample = await loop.run_in_executor(None, crypto.sample)
            foreign["crypto"].append(meter.stop()["foreign_cores"])
            for name, sec in sample.items():
                alone[name].append(sec)

            timeouts += not await wait_idle(pids)
            meter.start()
            t0 = time.perf_counter()
            got = await user.fetch("values")
            whole.append(time.perf_counter() - t0)
            used = meter.stop()
            foreign["end_to_end"].append(used["foreign_cores"])
            for name, sec in used["cpu_s"].items():
                cpu.setdefault(name, []).append(sec)
            if got != values:
                raise MpcError("the fetched values differ from the uploaded ones")

            # the same calls as UserClient.fetch, timed one by one
            timeouts += not await wait_idle(pids)
            deadline = user.config.deadline_s
            t0 = time.perf_counter()
            reply = await user.sp.call(
                "Fetch", user_pb2.FetchRequest(kind="values"), timeout=deadline
            )
            t1 = time.perf_counter()
            got_psp = await user.psp.call(
                "CollectPartials",
                user_pb2.CollectRequest(delivery_id=reply.delivery_id),
                timeout=deadline,
            )
            t2 = time.perf_counter()
            cts = ciphertexts_from_batch(pk, reply.ciphertexts)
            sp_p = elements_from_batch(pk.params, reply.partials)
            psp_p = elements_from_batch(pk.params, got_psp.partials)
            if combine_many(cts, [sp_p, psp_p]) != values:
                raise MpcError("the fetched values differ from the uploaded ones")
            t3 = time.perf_counter()
            parts["sp_fetch_s"].append(t1 - t0)
            parts["psp_collect_s"].append(t2 - t1)
            parts["user_decode_combine_s"].append(t3 - t2)
    finally:
        await user.close()
    step_crypto = [max(a, b) for a, b in zip(alone["sp"], alone["psp"], strict=True)]
    return {
        "crypto_s": statistics.median(step_crypto),
        "crypto_sp_s": statistics.median(alone["sp"]),
        "crypto_psp_s": statistics.median(alone["psp"]),
        "crypto_parallel_s": statistics.median(alone["parallel"]),
        "end_to_end_s": statistics.median(whole),
        "end_to_end_min_s": min(whole),
        "end_to_end_max_s": max(whole),
        "overhead_ratio_paired": statistics.median(
            (e - c) / c for e, c in zip(whole, step_crypto, strict=True)
        ),
        "samples": {
            "crypto_s": step_crypto,
            "end_to_end_s": whole,
            **{f"{r}_s": v for r, v in alone.items()},
        },
        "foreign_cpu_cores": {name: _median_or_none(xs) for name, xs in foreign.items()},
        "end_to_end_cpu_s": {name: statistics.median(xs) for name, xs in cpu.items()},
        "breakdown": {name: statistics.median(xs) for name, xs in parts.items()},
        "idle_wait_timeouts": timeouts,
    }


def _median_or_none(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


# -- the whole run ----------------------------------------------------------------------------------


async def _network_part(
    setup: Setup, bits: int, crypto: StepCrypto, args: argparse.Namespace, log: Log
) -> dict[str, Any]:
    from mpc.elgamal import params_for
    from mpc.parties import rpc
    from mpc.parties.grpc_transport import GrpcTransport
    from mpc.transport import Mailbox
    from mpc.v1 import peer_pb2

    root = setup.root
    assert setup.sink and setup.sp and setup.psp
    server_pids = [setup.sp.proc.pid, setup.psp.proc.pid]
    all_pids = [setup.sink.proc.pid, *server_pids]
    as_sp = rpc.TlsFiles(
        root / "certs" / "ca.pem", root / "certs" / "sp.pem", root / "certs" / "sp.key"
    )
    peer_service = peer_pb2.DESCRIPTOR.services_by_name["Peer"]
    width = 2 * params_for(bits).element_bytes
    k = len(crypto.cts)
    counts = sorted(set(args.sizes) | {k})
    out: dict[str, Any] = {"idle_wait_timeouts": 0}

    out["idle_wait_timeouts"] += not await wait_idle(all_pids)
    log(f"mTLS connection set-up ({args.connects} fresh channels) ...")
    connect = await _connect_ms(setup.sink_address, as_sp, args.connects)

    sink_channel = rpc.secure_channel(setup.sink_address, as_sp)
    psp_channel = rpc.secure_channel(setup.deployment.psp_address, as_sp)
    try:
        sink_stub = rpc.RawStub(sink_channel, peer_service, "psp")
        transport = GrpcTransport("sp", Mailbox("sp"), "psp", sink_stub, deadline_s=120.0)
        log(f"round trips ({args.rtt_calls} calls each) ...")
        rtt = await _unary_rtts(sink_stub, args.rtt_calls)
        deliver_rtt = await _deliver_rtts(transport, args.rtt_calls)
        out["idle_wait_timeouts"] += not await wait_idle(server_pids)
        psp_rtt = await _unary_rtts(rpc.RawStub(psp_channel, peer_service, "psp"), args.rtt_calls)

        blob = _random_ciphertext_blob(bits, max(counts))
        out["idle_wait_timeouts"] += not await wait_idle(all_pids)
        meter = CpuMeter(
            {"sink": setup.sink.proc.pid, "sp": setup.sp.proc.pid, "psp": setup.psp.proc.pid}
        )
        meter.start()
        rows = await _throughput(transport, blob, width, counts, args.mb, args.repeat, log)
        out["throughput_foreign_cpu_cores"] = meter.stop()["foreign_cores"]
        del blob
    finally:
        await sink_channel.close()
        await psp_channel.close()

    e2e = await _end_to_end(
        setup, crypto, args.repeat, {"sp": server_pids[0], "psp": server_pids[1]}, log
    )
    out["idle_wait_timeouts"] += e2e.pop("idle_wait_timeouts")
    out.update(
        width=width,
        connect=connect,
        rtt=rtt,
        deliver_rtt=deliver_rtt,
        psp_rtt=psp_rtt,
        rows=rows,
        e2e=e2e,
    )
    return out


def _server_sessions(root: Path) -> dict[str, Any]:
    """Mean seconds of each role's "deliver" sessions, from the stats the servers write on exit."""
    out: dict[str, Any] = {}
    for role in ("sp", "psp"):
        try:
            stats = json.loads((root / role / "stats.json").read_text())
        except (OSError, ValueError):
            continue
        s = stats.get("sessions", {}).get("deliver")
        if s and s.get("count"):
            out[f"{role}_deliver_session_mean_s"] = s["seconds"] / s["count"]
            out[f"{role}_deliver_sessions"] = s["count"]
    return out


def run_benchmark(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    """Start the processes, measure, stop them; the result as a JSON-ready dict."""
    if args.repeat < 1 or args.mb <= 0 or args.rtt_calls < 1 or args.connects < 1:
        raise MpcError("--repeat, --mb, --rtt-calls and --connects must be positive")
    if any(n < 1 for n in args.sizes) or (args.k is not None and args.k < 1):
        raise MpcError("message sizes and k must be positive")
    bits = args.bits
    res: dict[str, Any] = {"bits": bits, "loadavg_before": loadavg()}
    root = Path(tempfile.mkdtemp(prefix="mpc-bench-transport-"))
    children = Children()
    sessions: dict[str, Any] = {}
    ok = False
    try:
        setup = start_processes(root, bits, children, log)
        wait_ready(setup, args.startup_timeout, log)
        assert setup.sp and setup.psp
        server_pids = [setup.sp.proc.pid, setup.psp.proc.pid]
        log("waiting for the servers to finish their warm-up ...")
        warm_ok = asyncio.run(wait_idle(server_pids, timeout_s=120.0))
        crypto, small = prepare_crypto(root, bits, args.k, args.step_s, args.repeat, log)
        net = asyncio.run(_network_part(setup, bits, crypto, args, log))
        setup.children.check_alive()
        ok = True
    finally:
        if children.items:
            log("stopping the child processes ...")
            children.stop()
            if not ok:
                for c in children.items:
                    print(f"--- {c.name} log (last lines) ---\n{c.tail()}", file=sys.stderr)
        sessions = _server_sessions(root)  # written by the servers as they stop
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    res["loadavg_after"] = loadavg()

    rows = net["rows"]
    k = small["k"]
    wire = next(r for r in rows if r["ciphertexts"] == k)
    res["ciphertext_bytes"] = net["width"]
    res["throughput"] = [r for r in rows if r["ciphertexts"] in args.sizes]
    res["round_trip_ms"] = statistics.median(net["rtt"])
    res["connect_ms"] = statistics.median(net["connect"])
    res["round_trip_detail"] = {
        "sink_get_public_key_ms": _stats(net["rtt"]),
        "sink_deliver_tiny_step_ms": _stats(net["deliver_rtt"]),
        "real_psp_get_public_key_ms": _stats(net["psp_rtt"]),
    }
    res["connect_detail_ms"] = _stats(net["connect"])
    res["throughput_foreign_cpu_cores"] = net["throughput_foreign_cpu_cores"]

    e2e = net["e2e"]
    crypto_s = e2e["crypto_s"]
    parallel_s = e2e["crypto_parallel_s"]
    end_s = e2e["end_to_end_s"]
    other = small["other_crypto_s"]["total_s"]
    overhead = (end_s - crypto_s) / crypto_s
    step = {
        "k": k,
        "crypto_s": crypto_s,
        "end_to_end_s": end_s,
        "overhead_ratio": overhead,
        "wire_s": wire["seconds"],
        "wire_ratio": wire["seconds"] / crypto_s,
        "target_ratio": TARGET_RATIO,
        "meets_target": overhead <= TARGET_RATIO,
        "wire_meets_target": wire["seconds"] / crypto_s <= TARGET_RATIO,
        "overhead_ratio_paired": e2e["overhead_ratio_paired"],
        "overhead_excluding_other_crypto_ratio": (end_s - crypto_s - other) / crypto_s,
        "overhead_vs_parallel_crypto_ratio": (end_s - parallel_s) / parallel_s,
        "partial_decrypt_ms": small["partial_decrypt_ms"],
        "crypto_sp_s": e2e["crypto_sp_s"],
        "crypto_psp_s": e2e["crypto_psp_s"],
        "crypto_parallel_s": parallel_s,
        "other_crypto_s": small["other_crypto_s"],
        "in_memory_s": small["in_memory_s"],
        "end_to_end_min_s": e2e["end_to_end_min_s"],
        "end_to_end_max_s": e2e["end_to_end_max_s"],
        "end_to_end_breakdown_s": e2e["breakdown"],
        "foreign_cpu_cores": e2e["foreign_cpu_cores"],
        "end_to_end_cpu_s": e2e["end_to_end_cpu_s"],
        "samples": e2e["samples"],
        "wire_bytes": wire["bytes"],
        "server_sessions": sessions,
    }
    res["step"] = step
    res["settings"] = {
        "repeat": args.repeat,
        "mb_per_sample": args.mb,
        "sizes": list(args.sizes),
        "step_s": args.step_s,
        "rtt_calls": args.rtt_calls,
        "connects": args.connects,
        "chunk_bytes": _chunk_bytes(),
        "servers_warm_before_crypto": warm_ok,
        "idle_wait_timeouts": net["idle_wait_timeouts"],
    }
    res["notes"] = NOTES
    return res


def _chunk_bytes() -> int:
    from mpc.parties import rpc

    return rpc.CHUNK_BYTES


NOTES = [
    "throughput: one DeliverCiphertexts step message at a time over one warm mTLS channel, "
    "sent with GrpcTransport (1 MiB chunks) to a sink that reassembles and files it like "
    "PeerService.Deliver and acks; seconds = median per message, including the ack; "
    "mb_per_s in 10^6 bytes of serialised message per second",
    "round_trip_ms: unary Peer.GetPublicKey to the sink on a warm channel, median",
    "connect_ms: fresh channel (local subchannel pool) until ready: TCP + TLS handshake "
    "(mutual, ECDSA) + HTTP/2 preface, median",
    "step.crypto_s: max of the SP's and the PSP's partial decryptions of k ciphertexts, "
    "each timed alone in the benchmark process with the servers' real key shares, median "
    "over rounds that alternate with the end-to-end samples (same machine load)",
    "step.end_to_end_s: UserClient.fetch of k stored ciphertexts through the real SP and PSP "
    "processes (SP re-randomises, StartSession, SP->PSP transfer, both partial decryptions "
    "in parallel, PSP 'ready', Fetch reply, user CollectPartials at the PSP, decode, combine); "
    "servers idle before each sample; both servers and the user share the machine's cores",
    "step.overhead_ratio = (end_to_end_s - crypto_s) / crypto_s: everything but the partial "
    "decryptions, small crypto (other_crypto_s) and CPU contention included",
    "step.wire_s: pure transfer of the k-ciphertext step message, from the throughput part",
    "step.end_to_end_cpu_s: CPU seconds each process used during an end-to-end sample "
    "(benchmark = the user client), median",
    "foreign_cpu_cores: cores kept busy by processes other than the benchmark's own during "
    "the samples (the machine may be shared); median over samples",
]


# -- output ------------------------------------------------------------------------------------------


def format_summary(res: dict[str, Any]) -> str:
    s = res["step"]
    rt = res["round_trip_detail"]
    lines = [
        f"transport benchmark: {res['bits']}-bit key ({res['ciphertext_bytes']}-byte ciphertexts), "
        "gRPC with mutual TLS on loopback, separate processes",
        f"connection set-up (TCP + mTLS + HTTP/2):  {res['connect_ms']:8.2f} ms median "
        f"(min {res['connect_detail_ms']['min']:.2f}, max {res['connect_detail_ms']['max']:.2f})",
        f"round trip, unary GetPublicKey (sink):   {res['round_trip_ms']:8.3f} ms median "
        f"(min {rt['sink_get_public_key_ms']['min']:.3f})",
        f"round trip, tiny Deliver step (sink):    {rt['sink_deliver_tiny_step_ms']['median']:8.3f} ms median",
        f"round trip, GetPublicKey (real PSP):     {rt['real_psp_get_public_key_ms']['median']:8.3f} ms median",
        "",
        f"{'ciphertexts':>12}{'MB':>9}{'s/message':>12}{'MB/s':>9}{'ciphertexts/s':>15}",
    ]
    for r in res["throughput"]:
        lines.append(
            f"{r['ciphertexts']:>12}{r['bytes'] / 1e6:>9.2f}{r['seconds']:>12.4f}"
            f"{r['mb_per_s']:>9.1f}{r['ciphertexts_per_s']:>15.0f}"
        )
    oc = s["other_crypto_s"]
    br = s["end_to_end_breakdown_s"]
    verdict = "PASS" if s["meets_target"] else "MISS"
    lines += [
        "",
        f'protocol step "deliver" of k = {s["k"]} ciphertexts '
        f"(one partial decryption {s['partial_decrypt_ms']:.2f} ms):",
        f"  crypto, max of SP/PSP partial decryptions, each alone: {s['crypto_s']:7.3f} s "
        f"(SP {s['crypto_sp_s']:.3f}, PSP {s['crypto_psp_s']:.3f}; both at once on 2 threads "
        f"{s['crypto_parallel_s']:.3f})",
        f"  in memory (run_local, both roles in one thread):        {s['in_memory_s']:7.3f} s",
        f"  end to end, UserClient.fetch through SP and PSP:        {s['end_to_end_s']:7.3f} s "
        f"(min {s['end_to_end_min_s']:.3f}, max {s['end_to_end_max_s']:.3f})",
        f"    SP Fetch {br['sp_fetch_s']:.3f} s, PSP CollectPartials {br['psp_collect_s']:.4f} s, "
        f"user decode+combine {br['user_decode_combine_s']:.4f} s",
        f"  overhead (end to end - crypto) / crypto: {100 * s['overhead_ratio']:6.1f} %  "
        f"target <= {100 * s['target_ratio']:.0f} %: {verdict} "
        f"(paired by round: {100 * s['overhead_ratio_paired']:.1f} %)",
        f"    small crypto in it (re-randomise {oc['rerandomize_s'] * 1000:.1f} ms, decode 2 x "
        f"{oc['decode_batch_s'] * 1000:.1f} ms, combine {oc['combine_s'] * 1000:.1f} ms): "
        f"without it {100 * s['overhead_excluding_other_crypto_ratio']:.1f} %; "
        f"against both-at-once crypto {100 * s['overhead_vs_parallel_crypto_ratio']:.1f} %",
        f"  pure wire time of the k-ciphertext message SP->PSP: {s['wire_s'] * 1000:8.2f} ms "
        f"({100 * s['wire_ratio']:.2f} % of the crypto)",
        "  CPU used during an end-to-end sample: "
        + ", ".join(f"{n} {v:.2f} s" for n, v in s["end_to_end_cpu_s"].items())
        + f" (benchmark = the user; partial decryptions alone: SP {s['crypto_sp_s']:.2f} s, "
        f"PSP {s['crypto_psp_s']:.2f} s)",
        f"other processes kept busy: {_cores(res['throughput_foreign_cpu_cores'])} during the "
        f"throughput part, {_cores(s['foreign_cpu_cores']['crypto'])} during the crypto samples, "
        f"{_cores(s['foreign_cpu_cores']['end_to_end'])} during the end-to-end samples",
        f"load average: before {res['loadavg_before']}, after {res['loadavg_after']}",
    ]
    if res["settings"]["idle_wait_timeouts"] or not res["settings"]["servers_warm_before_crypto"]:
        lines.append("warning: a server was still busy when a sample started (see settings)")
    return "\n".join(lines)


def _cores(x: float | None) -> str:
    return "?" if x is None else f"{x:.2f} cores"


# -- command line ------------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from exc
    if not out or any(n < 1 for n in out):
        raise argparse.ArgumentTypeError("message sizes must be positive integers")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mpc-crm bench transport``."""
    parser.add_argument(
        "--bits", type=int, default=2048, choices=(1024, 2048), help="size of N (default 2048)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON ('-': stdout)")
    parser.add_argument(
        "--mb",
        type=float,
        default=64.0,
        metavar="MIB",
        help="data per throughput sample: that many MiB of back-to-back messages of one size "
        f"(at least 1 message, at most {MAX_MESSAGES_PER_SAMPLE}; default 64)",
    )
    parser.add_argument(
        "--repeat", type=int, default=5, metavar="N", help="timed samples per figure (default 5)"
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        metavar="N,N,...",
        help="ciphertexts per message for the throughput table (default 1000,10000,50000)",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=None,
        metavar="K",
        help="ciphertexts of the protocol step (default: as many as --step-s of partial decryption)",
    )
    parser.add_argument(
        "--step-s",
        type=float,
        default=1.0,
        metavar="S",
        help="crypto time of the protocol step used to choose k (default 1.0)",
    )
    parser.add_argument(
        "--rtt-calls",
        type=int,
        default=200,
        metavar="N",
        help="calls per round-trip figure (default 200)",
    )
    parser.add_argument(
        "--connects", type=int, default=10, metavar="N", help="fresh connections timed (default 10)"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="seconds to wait for the processes and joint key generation (default 180)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary deployment and the logs"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed arguments; print the summary, write the JSON."""
    command = getattr(args, "_command", None) or shlex.join(["mpc-crm", *sys.argv[1:]])

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench transport] {msg}", file=sys.stderr, flush=True)

    # SIGTERM becomes an exception, so the child processes are stopped on the way out
    previous = None
    if hasattr(signal, "SIGTERM"):
        with contextlib.suppress(ValueError):  # not the main thread
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        res = run_benchmark(args, log)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return publish(res, {**machine_info(("grpcio", "protobuf", "gmpy2")), "python_ssl": ssl.OPENSSL_VERSION}, command, args.json, format_summary, log)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``scripts/bench_transport.py``)."""
    return standalone("bench_transport", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
