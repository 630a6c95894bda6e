"""Precomputation in idle time: pools refill only while the process is idle; the PSP's curve key persists."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mpc.comparison.pools import Pool
from mpc.errors import ParameterError
from mpc.parties.config import load_or_create_curve_key


def test_pool_refills_only_when_idle() -> None:
    made = []
    pool = Pool(lambda n: [made.append(1) or object() for _ in range(n)], target=20, name="t")
    idle = threading.Event()
    asked = threading.Event()

    def is_idle() -> bool:
        asked.set()
        return idle.is_set()

    pool.start(chunk=5, idle=is_idle)
    try:
        # The refill thread has run and asked whether we are idle (not merely not started yet) ...
        assert asked.wait(5), "the refill thread never asked whether the process is idle"
        time.sleep(0.3)
        assert len(pool) == 0 and not made  # ... and, told busy, computed nothing
        idle.set()
        deadline = time.monotonic() + 5
        while len(pool) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pool) == 20
        pool.draw(5)  # 15 left: above half the target, no refill yet
        time.sleep(0.3)
        assert len(pool) == 15
        pool.draw(10)  # 5 left: below half, refill back up to the target
        deadline = time.monotonic() + 5
        while len(pool) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pool) == 20
    finally:
        pool.stop()


def test_curve_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    k1 = load_or_create_curve_key(tmp_path)
    path = tmp_path / "curve_key.bin"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_curve_key(tmp_path).to_bytes() == k1.to_bytes()
    path.chmod(0o644)
    with pytest.raises(ParameterError, match="chmod 600"):
        load_or_create_curve_key(tmp_path)
