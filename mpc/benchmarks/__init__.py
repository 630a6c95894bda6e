"""Benchmarks (JSON output); also reachable as scripts/bench_*.py."""
