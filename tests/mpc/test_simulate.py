"""``mpc-crm simulate`` end to end: real processes on loopback (small size, marked slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _mpc_children() -> list[int]:
    """PIDs of party or user processes started by a simulation of this test run."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "-m mpc" in args and ("party" in args or "user" in args) and "mpc-sim-test" in args:
            pids.append(int(entry.name))
    return pids


def test_simulate_checks_every_user(tmp_path: Path) -> None:
    work = tmp_path / "mpc-sim-test"
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mpc", "simulate", "--users", "2", "--values", "5", "--key-bits", "1024",
         "--workdir", str(work), "--json", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert summary["ok"] is True
    assert [u["ok"] for u in summary["users"]] == [True, True]
    assert set(summary["phases_s"]) >= {"start_and_keygen", "users_upload_and_fetch", "shutdown"}
    assert summary["bytes_sent"]["sp"] > 0 and summary["bytes_sent"]["psp"] > 0
    assert summary["bytes_sent"]["users"] > 0
    assert summary["server_exit_codes"] == {"psp": 0, "sp": 0}  # graceful shutdown
    assert (work / "sp" / "key_share.bin").stat().st_mode & 0o777 == 0o600
    assert "Users whose decrypted values and sum matched: 2/2" in proc.stdout
    assert _mpc_children() == []


def test_simulate_reports_a_dead_party_and_leaves_no_orphans(tmp_path: Path) -> None:
    work = tmp_path / "mpc-sim-test"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mpc", "simulate", "--users", "2", "--key-bits", "1024",
         "--workdir", str(work), "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Kill the PSP as soon as it has a key: the simulation must notice and stop everything.
    deadline = time.monotonic() + 60
    pid_file = work / "psp" / "public_key.json"
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in _mpc_children():
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if "--role psp" in args:
            os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    # The users cannot have finished (they need the PSP for every fetch): the death is reported.
    assert proc.returncode == 1, out + err
    assert "the psp process died" in err, out + err
    time.sleep(0.5)
    assert _mpc_children() == []


def test_simulate_refuses_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mpc", "simulate", "--users", "0"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "--users must be at least 1" in proc.stderr
