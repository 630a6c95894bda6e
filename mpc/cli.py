"""The ``mpc-crm`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module and is imported only when used, so
``mpc-crm certs`` does not load gRPC and ``mpc-crm demo`` does not load
scikit-learn.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mpc import plugins
from mpc.errors import MpcError

# name -> (module, help). Each module has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("mpc.demo", "a short demonstration of the crypto: keys, packing, threshold decryption"),
    "certs": ("mpc.parties.certs_cli", "create a CA and one certificate per party"),
    "party": ("mpc.parties.server", "run a long-lived SP or PSP server process"),
    "user": ("mpc.parties.user_cli", "user side: upload encrypted data, fetch and decrypt results"),
    "simulate": ("mpc.parties.simulate", "PSP, SP and N users as separate processes on loopback"),
}
"""The framework's own subcommands; applications add theirs by entry points (mpc.plugins)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpc-crm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = sys.argv[1:]
    # The first word that is not an option names the subcommand; only its module is loaded.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    commands = dict(SUBCOMMANDS)
    for name, (module, help_text) in plugins.load(plugins.COMMANDS):
        if name in commands:
            raise MpcError(f"the plugin command {name!r} ({module}) would replace a framework command")
        commands[name] = (module, help_text)
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                p.set_defaults(_missing=str(exc))
                continue
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "_missing", None):
        print(f"mpc-crm {args.command}: not available: {args._missing}", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except MpcError as exc:
        print(f"mpc-crm {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
