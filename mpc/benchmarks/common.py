"""What every benchmark does the same way: stamp the result, write the JSON, run stand-alone."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
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
