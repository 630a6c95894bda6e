#!/usr/bin/env python3
"""Crypto micro-benchmark: the same as ``mpc-crm bench crypto`` (see bench/crypto.py).

    python scripts/bench_crypto.py --bits 2048 --json bench-crypto.json
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import mpc  # noqa: F401
    except ImportError:  # run from a checkout without installing: use the tree above
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    from bench.crypto import main

    raise SystemExit(main())
