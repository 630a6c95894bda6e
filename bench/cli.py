"""``mpc-crm bench``: one sub-subcommand per benchmark, each in ``bench.<name>``.

A benchmark module provides ``add_arguments(parser)`` and ``run(args) -> int``.
Only the module of the benchmark named on the command line is imported, so
``mpc-crm bench transport`` does not load the crypto benchmark's dependencies
and a benchmark that is missing or broken does not break the others. To add a
benchmark, write the module and add a line to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "crypto": (
        "bench.crypto",
        "ElGamal, packing and curve operations on one core, batch encryption, phe comparison",
    ),
    "transport": (
        "bench.transport",
        "message throughput and latency of the party transport",
    ),
    "compare": (
        "bench.compare",
        "secure comparison: amortised time per comparison in a batch, by output",
    ),
}


def _chosen(argv: Sequence[str]) -> str | None:
    """The benchmark named on the command line: the first known name after ``bench``."""
    words = [a for a in argv if not a.startswith("-")]
    if "bench" in words:
        words = words[words.index("bench") + 1 :]
    return next((w for w in words if w in BENCHMARKS), None)


def add_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Add one sub-subcommand per benchmark; only the chosen one's module is imported.

    ``argv`` defaults to ``sys.argv[1:]`` and is used only to decide which module
    to import; parsing is left to argparse.
    """
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name != chosen:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # the module exists but one of its imports is missing: show it
            p.set_defaults(_bench_missing=f"{module} is not available ({exc})")
            continue
        mod.add_arguments(p)
        p.set_defaults(_bench_run=mod.run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark chosen by :func:`add_arguments`."""
    missing = getattr(args, "_bench_missing", None)
    if missing:
        print(f"mpc-crm bench {args.benchmark}: {missing}", file=sys.stderr)
        return 2
    runner = getattr(args, "_bench_run", None)
    if runner is None:
        print(
            f"mpc-crm bench {args.benchmark}: its options were not loaded "
            "(add_arguments was given an argv that does not name it)",
            file=sys.stderr,
        )
        return 2
    return int(runner(args) or 0)
