"""Benchmarks: scripts that measure and write JSON, outside the runtime package.

``mpc-crm bench NAME`` (registered by an entry point, ``bench.COMMAND``) runs one;
results go to ``bench/results/`` and the figures to docs/benchmarks.md.
"""

COMMAND = ("bench.cli", "benchmarks that write JSON (crypto, transport, compare)")
