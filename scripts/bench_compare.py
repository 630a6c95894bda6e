#!/usr/bin/env python3
"""Secure comparison benchmark: the same as ``mpc-crm bench compare`` (see bench/compare.py).

Runs batches of comparisons over the in-memory transport in one process, for
the bit revealed to the PSP and the bit encrypted under the joint key:

    python scripts/bench_compare.py --bits 2048 --l 32 --batch 1000 --json bench-compare.json
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import mpc  # noqa: F401
    except ImportError:  # a checkout that is not installed: import the package next to us
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from bench.compare import main

    raise SystemExit(main())
