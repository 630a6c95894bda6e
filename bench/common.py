"""What every benchmark does the same way: stamp the result, write the JSON, run stand-alone."""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mpc.errors import MpcError


def publish(
    res: dict[str, Any],
    machine: dict[str, Any],
    command: str,
    json_path: str | None,
    summary: Callable[[dict[str, Any]], str],
    log: Callable[[str], None],
) -> int:
    """Add machine, date and command to ``res``; print the summary; write the JSON.

    ``json_path`` "-" prints the JSON on stdout (and the summary on stderr).
    """
    res["machine"] = machine
    res["date"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    res["command"] = command
    text = json.dumps(res, indent=2)
    if json_path == "-":
        print(text)
        print(summary(res), file=sys.stderr)
    else:
        print(summary(res))
        if json_path:
            with open(json_path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
            log(f"wrote {json_path}")
    return 0


def standalone(
    prog: str,
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """The ``scripts/bench_*.py`` entry point: parse, remember the command line, run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0] if doc else None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args._command = shlex.join([os.path.basename(sys.argv[0]) or prog, *argv])
    try:
        return run(args)
    except MpcError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (the machine is shared: say how busy it was)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Where the figures come from: CPU, Python, and the versions of ``packages``."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    out: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    for dist in packages:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out
