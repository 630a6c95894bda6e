#!/usr/bin/env python3
"""Transport benchmark: the same as ``mpc-crm bench transport`` (see bench/transport.py).

Starts a sink, a PSP and an SP as separate processes on loopback, measures
ciphertext throughput, round trips and mTLS connection set-up, and the
transport overhead of a protocol step whose crypto takes about one second:

    python scripts/bench_transport.py --bits 2048 --json bench-transport.json
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import mpc  # noqa: F401
    except ImportError:  # a checkout that is not installed: import the package next to us
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from bench.transport import main

    raise SystemExit(main())
