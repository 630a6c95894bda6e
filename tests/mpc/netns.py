"""Helpers for multi-host tests: hosts in Linux network namespaces on one bridge.

A :class:`Lab` makes one namespace per host plus one namespace that holds a
Linux bridge. Each host has a veth pair: ``eth0`` inside the host's namespace,
the other end plugged into the bridge. Cutting a host's link is setting its
bridge-side end down (``ip -n <bridge-ns> link set <end> down``): packets to
and from the host are then dropped silently, as with a pulled cable.

Only addresses of the documentation range 198.51.100.0/24 (RFC 5737,
TEST-NET-2) are used, IPv6 is disabled in every namespace (no link-local or
multicast traffic), and nothing is created in the caller's namespace: the
veth pairs are created directly inside the new namespaces.

:class:`Proc` runs one command in a namespace in its own process group, with
stdout and stderr going to files, so a failing test can show their tails.

Run as a script, ``python tests/mpc/netns.py held-fetch CONFIG GO_FILE KIND`` is a
user that fetches the joint key first, prints ``{"ready": true}``, waits for
``GO_FILE`` to exist, then fetches ``KIND`` and prints one JSON report: a
fetch that starts while the user is already connected to both servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SUBNET = ipaddress.ip_network("198.51.100.0/24")
"""RFC 5737 documentation range: the only addresses these tests may use."""

IP_TIMEOUT_S = 10.0
MAX_IFNAME = 15

# Proxies would route gRPC's connections somewhere else entirely.
_PROXY_VARS = {"http_proxy", "https_proxy", "grpc_proxy", "all_proxy", "no_proxy"}


class NetnsUnavailable(RuntimeError):
    """``ip netns`` cannot be used here (not root, no CAP_SYS_ADMIN, no iproute2)."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise with its stderr when it fails and ``check`` is set."""
    try:
        res = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        raise NetnsUnavailable(f"the ip command (iproute2) is not installed: {exc}") from exc
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


@dataclass(frozen=True)
class Host:
    """One host: its namespace, its bridge-side veth end, its address."""

    label: str
    ns: str
    bridge_end: str
    address: str


class Lab:
    """Namespaces joined by one bridge; ``hosts`` maps a label to the last octet of its address.

    Use as a context manager, or call :meth:`create` then :meth:`close` (which
    is safe to call more than once and after a partial :meth:`create`).
    """

    def __init__(self, hosts: dict[str, int], prefix: str = "mpc") -> None:
        self.suffix = secrets.token_hex(3)
        self.bridge_ns = f"{prefix}{self.suffix}br"
        self.hosts: dict[str, Host] = {}
        for i, (label, octet) in enumerate(hosts.items()):
            address = ipaddress.ip_address(f"198.51.100.{octet}")
            if address not in SUBNET or octet in (0, 255):
                raise ValueError(f"{address} is not a host address of {SUBNET}")
            end = f"v{i}{self.suffix}"
            assert len(end) <= MAX_IFNAME
            self.hosts[label] = Host(label, f"{prefix}{self.suffix}{label}", end, str(address))
        self._created: list[str] = []

    def __enter__(self) -> Lab:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _add_ns(self, ns: str) -> None:
        res = ip("netns", "add", ns, check=False)
        if res.returncode != 0:
            raise NetnsUnavailable(f"ip netns add {ns}: {res.stderr.strip() or res.returncode}")
        self._created.append(ns)
        # No IPv6 at all: no link-local addresses, router solicitations or MLD reports.
        for key in ("all", "default"):
            path = f"net.ipv6.conf.{key}.disable_ipv6=1"
            ip("netns", "exec", ns, "sysctl", "-q", "-w", path, check=False)
        ip("-n", ns, "link", "set", "lo", "up")

    def create(self) -> None:
        self._add_ns(self.bridge_ns)
        br = self.bridge_ns
        ip("-n", br, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        ip("-n", br, "link", "set", "br0", "up")
        for h in self.hosts.values():
            self._add_ns(h.ns)
            ip("-n", br, "link", "add", h.bridge_end, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
            ip("-n", br, "link", "set", h.bridge_end, "master", "br0")
            ip("-n", br, "link", "set", h.bridge_end, "up")
            ip("-n", h.ns, "addr", "add", f"{h.address}/{SUBNET.prefixlen}", "dev", "eth0")
            ip("-n", h.ns, "link", "set", "eth0", "up")

    def address(self, label: str) -> str:
        return self.hosts[label].address

    def cut(self, label: str) -> None:
        """Pull the host's cable: its bridge port goes down."""
        ip("-n", self.bridge_ns, "link", "set", self.hosts[label].bridge_end, "down")

    def restore(self, label: str) -> None:
        ip("-n", self.bridge_ns, "link", "set", self.hosts[label].bridge_end, "up")

    def argv(self, label: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the host's namespace (``ip netns exec`` execs it: same pid)."""
        return ["ip", "netns", "exec", self.hosts[label].ns, *argv]

    def close(self) -> list[str]:
        """Delete every namespace created (kill their processes first); return the errors."""
        errors = []
        while self._created:
            ns = self._created.pop()
            res = ip("netns", "del", ns, check=False)
            if res.returncode != 0:
                errors.append(f"ip netns del {ns}: {res.stderr.strip()}")
        return errors


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A process in its own session (so its whole group can be killed), output to files."""

    def __init__(self, argv: Sequence[str], logdir: Path, name: str, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = logdir / f"{name}.out"
        self.stderr_path = logdir / f"{name}.err"
        self.started = time.monotonic()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=child_env(),
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the process.

        Only while the leader is not reaped yet (alive, or a zombie): its pid,
        hence the group id, cannot belong to anybody else then.
        """
        if self.popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self.wait(5.0)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        out = self.stdout().splitlines()[-lines:]
        err = self.stderr().splitlines()[-lines:]
        rc = self.popen.poll()
        state = "running" if rc is None else f"exit {rc}"
        return (
            f"--- {self.name} ({state}) stdout tail:\n" + "\n".join(out)
            + f"\n--- {self.name} stderr tail:\n" + "\n".join(err) + "\n"
        )


# -- a user that is already connected when the test acts ----------------------------------
GO_WAIT_S = 60.0


async def _held_fetch(config: str, go_file: str, kind: str) -> int:
    from mpc.errors import MpcError
    from mpc.parties.user import UserClient, UserConfig

    async with UserClient(UserConfig.load(config)) as user:
        await user.public_key(wait_s=30.0)
        print(json.dumps({"ready": True}), flush=True)
        give_up = time.monotonic() + GO_WAIT_S
        while not os.path.exists(go_file):
            if time.monotonic() > give_up:
                print(f"no {go_file} after {GO_WAIT_S:.0f} s", file=sys.stderr)
                return 2
            await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        report: dict[str, object]
        try:
            report = {"ok": True, "values": await user.fetch(kind)}
        except MpcError as exc:
            report = {"ok": False, "error": str(exc), "type": type(exc).__name__}
        report["seconds"] = round(time.perf_counter() - t0, 3)
        print(json.dumps(report), flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) != 4 or argv[0] != "held-fetch":
        print("usage: netns.py held-fetch CONFIG GO_FILE KIND", file=sys.stderr)
        return 2
    return asyncio.run(_held_fetch(*argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
