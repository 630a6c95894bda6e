"""``mpc-crm user``: the user side from the command line.

    mpc-crm user --config u0001.toml upload --kind values --values 3,1,4
    mpc-crm user --config u0001.toml fetch --kind sum
    mpc-crm user --config u0001.toml roundtrip --values 3,1,4 --json   (upload, fetch, check)

Every command encrypts or decrypts on this machine; the servers never see the
values in clear.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from mpc.errors import MpcError
from mpc.parties.user import UserClient, UserConfig


def _values(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"values must be integers separated by commas: {exc}") from exc
    if not vals:
        raise argparse.ArgumentTypeError("give at least one value")
    if any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError("values must be >= 0 (encode signed values with an offset)")
    return vals


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the user's TOML configuration")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the servers' key")
    sub = parser.add_subparsers(dest="action", required=True)
    up = sub.add_parser("upload", help="encrypt values locally and upload them")
    up.add_argument("--kind", default="values")
    up.add_argument("--values", type=_values, required=True, help="comma-separated integers")
    fe = sub.add_parser("fetch", help="fetch a record or result and decrypt it locally")
    fe.add_argument("--kind", default="values")
    rt = sub.add_parser("roundtrip", help="upload, fetch values and their sum, check them (simulate uses it)")
    rt.add_argument("--values", type=_values, required=True)
    rt.add_argument("--json", action="store_true", help="print one JSON line with the timings")


def run(args: argparse.Namespace) -> int:
    config = UserConfig.load(args.config)
    return asyncio.run(_run(config, args))


async def _run(config: UserConfig, args: argparse.Namespace) -> int:
    async with UserClient(config) as user:
        await user.public_key(wait_s=args.wait)
        if args.action == "upload":
            version = await user.upload(args.kind, args.values)
            print(f"uploaded {len(args.values)} encrypted values as {args.kind!r} (version {version})")
            return 0
        if args.action == "fetch":
            print(",".join(str(v) for v in await user.fetch(args.kind)))
            return 0
        return await _roundtrip(user, args)


async def _roundtrip(user: UserClient, args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"user": user.config.name, "ok": False, "phases_s": {}}
    t = time.perf_counter()
    try:
        await user.upload("values", args.values)
        report["phases_s"]["upload"] = time.perf_counter() - t
        t = time.perf_counter()
        got = await user.fetch("values")
        total = await user.fetch("sum")
        report["phases_s"]["fetch"] = time.perf_counter() - t
        report["ok"] = got == args.values and total == [sum(args.values)]
        if not report["ok"]:
            report["error"] = f"decrypted {got} / {total}, expected {args.values} / {[sum(args.values)]}"
    except MpcError as exc:
        report["error"] = str(exc)
    report["bytes_sent"] = user.bytes_sent
    if args.json:
        print(json.dumps(report), flush=True)
    elif report["ok"]:
        print(f"{user.config.name}: upload, fetch and sum all decrypted correctly")
    else:
        print(f"{user.config.name}: FAILED: {report.get('error')}", file=sys.stderr)
    return 0 if report["ok"] else 1


