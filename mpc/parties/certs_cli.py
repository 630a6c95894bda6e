"""``mpc-crm certs``: create a CA and one certificate per party (SP, PSP, users, front ends).

    mpc-crm certs --out DIR [--users N | --user-ids a,b,c] [--frontends fe0,fe1]
                  [--sp-host H ...] [--psp-host H ...] [--days D] [--force]

Writes ``ca.pem``/``ca.key`` and ``<name>.pem``/``<name>.key`` for ``sp``,
``psp``, every user and every front end (role ``"frontend"``: it may upload any
customer's churn records once the SP's ``frontends`` config names it). Keys are unencrypted PEM with mode 0600. Copy to each
host only ``ca.pem`` and that party's own two files; keep ``ca.key`` elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mpc.errors import ParameterError
from mpc.parties.certs import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    DEFAULT_DAYS,
    DEFAULT_SERVER_HOSTS,
    create_deployment,
    user_ids,
)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``mpc-crm certs`` to ``parser``."""
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="directory to write the CA and the certificates to (created, mode 0700)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--users", type=_non_negative, default=0, metavar="N",
                     help="issue certificates for N users named u0001, u0002, ... (default: 0)")
    who.add_argument("--user-ids", metavar="IDS",
                     help="comma-separated user ids instead of --users (characters A-Z a-z 0-9 . _ -)")
    parser.add_argument("--frontends", metavar="IDS", default="",
                        help="comma-separated names of front-end certificates (role frontend) to issue; "
                        "list them in the SP's `frontends` config too")
    default_hosts = ", ".join(DEFAULT_SERVER_HOSTS)
    parser.add_argument("--sp-host", action="append", default=[], metavar="H", dest="sp_hosts",
                        help=f"a DNS name or IP address the SP serves on; repeat for more (default: {default_hosts})")
    parser.add_argument("--psp-host", action="append", default=[], metavar="H", dest="psp_hosts",
                        help=f"a DNS name or IP address the PSP serves on; repeat for more (default: {default_hosts})")
    parser.add_argument("--days", type=_positive, default=DEFAULT_DAYS, metavar="D",
                        help=f"validity of the CA and the certificates in days (default: {DEFAULT_DAYS})")
    parser.add_argument("--force", action="store_true",
                        help="replace an existing CA in DIR (every certificate it issued becomes useless)")


def _parse_user_ids(text: str, option: str = "--user-ids") -> list[str]:
    ids = [part.strip() for part in text.split(",")]
    if any(not part for part in ids):
        raise ParameterError(f"{option} has an empty entry: {text!r}")
    return ids


def run(args: argparse.Namespace) -> int:
    """Create the CA and the certificates; print what was written. Exit status 2 if a CA exists."""
    out: Path = args.out
    users = _parse_user_ids(args.user_ids) if args.user_ids else user_ids(args.users)
    frontends = _parse_user_ids(args.frontends, "--frontends") if args.frontends else []
    existing = [out / f for f in (CA_CERT_FILE, CA_KEY_FILE) if (out / f).exists()]
    if existing and not args.force:
        print(
            f"mpc-crm certs: {out} already holds a CA ({', '.join(p.name for p in existing)}); "
            "a new CA would invalidate every certificate it issued. "
            "Use another --out directory, or --force to replace it.",
            file=sys.stderr,
        )
        return 2
    before: set[str] = set()
    if out.is_dir():
        before = {p.name for pattern in ("*.pem", "*.key") for p in out.glob(pattern)}

    issued = create_deployment(
        out, users, args.sp_hosts, args.psp_hosts, frontends=frontends, days=args.days,
        overwrite=args.force,
    )

    print(f"{out / CA_CERT_FILE}  CA certificate (give to every party)")
    print(f"{out / CA_KEY_FILE}  CA private key, mode 0600 (keep it off the party hosts)")
    for name, cert in issued.items():
        what = f"{cert.identity.role} {name!r}"
        if cert.identity.is_server:
            hosts = args.sp_hosts if name == "sp" else args.psp_hosts
            what += f", hosts {', '.join(hosts or DEFAULT_SERVER_HOSTS)}"
        print(f"{cert.cert_path}  certificate of {what}")
        print(f"{cert.key_path}  private key of {name!r}, mode 0600, unencrypted")
    written = {CA_CERT_FILE, CA_KEY_FILE} | {
        p.name for c in issued.values() for p in (c.cert_path, c.key_path)
    }
    stale = sorted(before - written)
    if stale:
        print(
            f"note: {len(stale)} older file(s) in {out} were not rewritten and do not belong "
            f"to the new CA: {', '.join(stale)}",
            file=sys.stderr,
        )
    fes = f", {len(frontends)} front ends" if frontends else ""
    print(f"{len(issued)} certificates ({len(users)} users{fes}), valid {args.days} days")
    return 0
