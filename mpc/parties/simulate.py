"""``mpc-crm simulate``: the PSP, the SP and N users as separate OS processes on loopback.

Fresh certificates and configs in a work directory, then: the servers start
and run joint key generation; every user process encrypts its values, uploads
them, and fetches them back (and their homomorphic sum) through the "decrypt
for user" path; the parent checks every result, prints a summary (time per
phase, bytes sent per party) and shuts everything down: also on Ctrl-C, or
when a party dies. No orphaned processes: the children get SIGTERM if this
process dies (PR_SET_PDEATHSIG) and are killed if they do not stop in time.

The parent never creates a gRPC object: it starts processes and reads files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mpc import plugins
from mpc.errors import MpcError, ParameterError
from mpc.parties.certs import user_ids
from mpc.parties.deploy import Deployment, write_deployment


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--users", type=int, default=None,
        help="number of user processes (default 4); with --ratings: the first N users of the file (default all)",
    )
    parser.add_argument("--values", type=int, default=8, help="values each user encrypts (default 8)")
    parser.add_argument(
        "--key-bits", type=int, default=None, choices=(1024, 2048),
        help="default 2048 (an application's simulation may choose another: 1024 with --baskets)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the users' plaintext values")
    parser.add_argument("--workdir", help="where certificates, configs, data and logs go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument("--json", dest="json_out", help="also write the summary as JSON to this file")
    for _name, simulation in plugins.load(plugins.SIMULATIONS):
        simulation.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    for _name, simulation in plugins.load(plugins.SIMULATIONS):
        code = simulation.run(args)  # an application's simulation, when its options were given
        if code is not None:
            return int(code)
    if args.key_bits is None:
        args.key_bits = 2048
    if args.users is None:
        args.users = 4
    if args.users < 1:
        raise ParameterError("--users must be at least 1")
    if args.values < 1:
        raise ParameterError("--values must be at least 1")
    with work_directory(args, "mpc-sim-") as root:
        summary = Simulation(root, args).run()
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=1))
    return 0 if summary["ok"] else 1


@contextlib.contextmanager
def work_directory(args: argparse.Namespace, prefix: str) -> Iterator[Path]:
    """``--workdir`` as given (kept), else a fresh temporary one, removed afterwards unless ``--keep``."""
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(root, ignore_errors=True)


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    out: IO[bytes] | None = None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class Simulation:
    root: Path
    args: argparse.Namespace
    children: list[Child] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str], stdout_to_file: bool = False, module: str = "mpc") -> Child:
        """``python -m MODULE ARGV`` with stderr (and optionally stdout) in logs/NAME.*."""
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        err = open(log, "wb")  # noqa: SIM115 (kept open for the child's lifetime)
        out = open(self.root / "logs" / f"{name}.out", "wb") if stdout_to_file else subprocess.DEVNULL  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        child = Child(name, proc, log, out if stdout_to_file else None)  # type: ignore[arg-type]
        self.children.append(child)
        return child

    def check_servers(self, servers: list[Child]) -> None:
        for c in servers:
            code = c.proc.poll()
            if code is not None:
                raise MpcError(f"the {c.name} process died (exit {code}); last log lines:\n{c.tail()}")

    def run(self) -> dict[str, Any]:
        a = self.args
        names = user_ids(a.users)
        rng = random.Random(a.seed)
        values = {u: [rng.randrange(0, 1 << 16) for _ in range(a.values)] for u in names}
        deadline = time.monotonic() + a.timeout
        ok = False
        results: list[dict[str, Any]] = []
        print(f"Simulation in {self.root}: PSP, SP and {a.users} users as separate processes, {a.key_bits}-bit keys")
        try:
            t = time.perf_counter()
            dep = write_deployment(self.root, names, key_bits=a.key_bits, deadline_s=60.0)
            self.phases["certificates_and_configs"] = time.perf_counter() - t

            servers = self.start_servers(dep, deadline, self.phases)

            t = time.perf_counter()
            users = [
                self.spawn(
                    u,
                    ["user", "--config", str(dep.user_configs[u]), "--wait", "60", "roundtrip", "--json",
                     "--values", ",".join(map(str, values[u]))],
                    stdout_to_file=True,
                )
                for u in names
            ]
            results = self._wait_for_users(users, servers, deadline)
            self.phases["users_upload_and_fetch"] = time.perf_counter() - t
            ok = len(results) == len(users) and all(r.get("ok") for r in results)

            stats = self.stop_servers(servers, self.phases)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every party", file=sys.stderr)
            raise
        finally:
            self._kill_all()

        summary = self._summary(results, stats, ok)
        self._print(summary)
        return summary

    def start_servers(self, dep: Deployment, deadline: float, phases: dict[str, float]) -> list[Child]:
        """Start the PSP and the SP, wait for the joint key; phase ``start_and_keygen``."""
        t = time.perf_counter()
        psp = self.spawn("psp", ["-v", "party", "--role", "psp", "--config", str(dep.psp_config)])
        sp = self.spawn("sp", ["-v", "party", "--role", "sp", "--config", str(dep.sp_config)])
        servers = [psp, sp]
        self._wait_for_keys(dep, servers, deadline)
        phases["start_and_keygen"] = time.perf_counter() - t
        print(f"  servers up, joint key in {phases['start_and_keygen']:.2f} s")
        return servers

    def stop_servers(self, servers: list[Child], phases: dict[str, float]) -> dict[str, dict[str, Any]]:
        """Stop them gracefully (phase ``shutdown``); each server's stats.json by name."""
        t = time.perf_counter()
        self._stop(servers)
        phases["shutdown"] = time.perf_counter() - t
        return {c.name: read_json(self.root / c.name / "stats.json") for c in servers}

    def _wait_for_keys(self, dep: Deployment, servers: list[Child], deadline: float) -> None:
        want = [dep.sp_data / "public_key.json", dep.psp_data / "public_key.json"]
        while not all(p.exists() for p in want):
            self.check_servers(servers)
            if time.monotonic() > deadline:
                raise MpcError("timed out waiting for key generation; see logs in " + str(self.root / "logs"))
            time.sleep(0.05)
        fps = {read_json(p).get("fingerprint") for p in want}
        if len(fps) != 1:
            raise MpcError("SP and PSP hold different joint keys")

    def wait_for(
        self, children: list[Child], servers: list[Child], deadline: float, what: str
    ) -> list[dict[str, Any] | None]:
        """Wait for ``children`` to exit (watching the servers); each one's last JSON line, or None."""
        pending = list(children)
        while pending:
            self.check_servers(servers)
            pending = [c for c in pending if c.proc.poll() is None]
            if pending and time.monotonic() > deadline:
                raise MpcError(f"timed out waiting for {len(pending)} {what}; logs in {self.root / 'logs'}")
            time.sleep(0.05)
        reports: list[dict[str, Any] | None] = []
        for c in children:
            if c.out is not None:
                c.out.close()
            text = (self.root / "logs" / f"{c.name}.out").read_text().strip()
            try:
                reports.append(json.loads(text.splitlines()[-1]))
            except (ValueError, IndexError):
                reports.append(None)
        return reports

    def wait_reports(
        self, children: list[Child], servers: list[Child], deadline: float, what: str = "worker(s)"
    ) -> list[dict[str, Any]]:
        """:meth:`wait_for`, and every child must have reported success (else MpcError with its error)."""
        reports = self.wait_for(children, servers, deadline, what)
        for c, rep in zip(children, reports, strict=True):
            if rep is None:
                raise MpcError(f"{c.name} exited {c.proc.returncode} without a report:\n{c.tail()}")
            if not rep.get("ok"):
                raise MpcError(f"{c.name} failed: {rep.get('error')}")
        return reports  # type: ignore[return-value]

    def _wait_for_users(self, users: list[Child], servers: list[Child], deadline: float) -> list[dict[str, Any]]:
        reports = self.wait_for(users, servers, deadline, "user(s)")
        return [
            r if r is not None else {"user": c.name, "ok": False, "error": f"no report; log:\n{c.tail()}"}
            for c, r in zip(users, reports, strict=True)
        ]

    def _stop(self, servers: list[Child], grace: float = 15.0) -> None:
        for c in servers:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + grace
        for c in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=max(0.1, end - time.monotonic()))

    def _kill_all(self) -> None:
        """Last resort: no child outlives the simulation."""
        for c in self.children:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        end = time.monotonic() + 5.0
        for c in self.children:
            try:
                c.proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()

    def _summary(self, results: list[dict[str, Any]], stats: dict[str, Any], ok: bool) -> dict[str, Any]:
        upload = [r["phases_s"].get("upload", 0.0) for r in results if "phases_s" in r]
        fetch = [r["phases_s"].get("fetch", 0.0) for r in results if "phases_s" in r]
        return {
            "ok": ok,
            "params": {"users": self.args.users, "values": self.args.values, "key_bits": self.args.key_bits},
            "phases_s": self.phases,
            "user_phases_s": {
                "upload_median": _median(upload),
                "upload_max": max(upload, default=0.0),
                "fetch_median": _median(fetch),
                "fetch_max": max(fetch, default=0.0),
            },
            "bytes_sent": {
                "sp": stats.get("sp", {}).get("bytes_sent", 0),
                "psp": stats.get("psp", {}).get("bytes_sent", 0),
                "users": sum(int(r.get("bytes_sent", 0)) for r in results),
            },
            "users": results,
            "server_exit_codes": {c.name: c.proc.returncode for c in self.children if c.name in ("sp", "psp")},
        }

    def _print(self, s: dict[str, Any]) -> None:
        print()
        print("Phase                                   seconds")
        for k, v in s["phases_s"].items():
            print(f"  {k:<36} {v:8.2f}")
        up = s["user_phases_s"]
        print(f"  per user: upload median {up['upload_median']:.3f} s, fetch (values + sum) median {up['fetch_median']:.3f} s")
        b = s["bytes_sent"]
        print(f"Bytes sent: SP {b['sp']:,}, PSP {b['psp']:,}, users {b['users']:,} in all")
        good = sum(1 for r in s["users"] if r.get("ok"))
        print(f"Users whose decrypted values and sum matched: {good}/{len(s['users'])}")
        for r in s["users"]:
            if not r.get("ok"):
                print(f"  {r.get('user')}: {r.get('error')}")
        print("OK" if s["ok"] else "FAILED")


def report_worker(coro: Any) -> int:
    """A simulation worker's end: run ``coro``, print its report (a dict) as the last JSON line.

    An MpcError becomes ``{"ok": false, "error": ...}``; the exit code is 0 iff ok.
    """
    import asyncio

    try:
        report = asyncio.run(coro)
    except MpcError as exc:
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0
