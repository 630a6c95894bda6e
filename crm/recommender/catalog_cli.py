"""``mpc-crm catalog``: the SP's catalogue from a user's machine (customer or admin).

    mpc-crm catalog --config admin.toml set-static --csv table.csv       (admin)
    mpc-crm catalog --config u0001.toml static --product "whole milk"
    mpc-crm catalog --config u0001.toml contribute --basket "whole milk,butter" [--basket ...]
    mpc-crm catalog --config admin.toml publish                            (admin)
    mpc-crm catalog --config u0001.toml copurchase --product "whole milk" [--k 5] [--out FILE]
    mpc-crm catalog --config u0001.toml layout

``contribute`` encodes and encrypts the customer's own basket(s) on this
machine; the SP only ever stores the ciphertexts, and only the sum over all
customers is decrypted (``publish``). The static table's CSV format is in
:func:`crm.recommender.catalog.parse_static_table`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from crm.recommender.catalog import CatalogClient
from mpc.errors import ParameterError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the user's TOML configuration")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the servers' key")
    sub = parser.add_subparsers(dest="action", required=True)
    st = sub.add_parser("set-static", help="admin: replace the static recommendations with a CSV table")
    st.add_argument("--csv", required=True, help="product,recommended,rank lines (header optional)")
    get = sub.add_parser("static", help="the static recommendations of a product")
    get.add_argument("--product", action="append", required=True, help="repeatable")
    co = sub.add_parser("contribute", help="encrypt your own basket(s) here and upload them")
    co.add_argument(
        "--basket", action="append", required=True, help="comma-separated items (repeatable: several baskets)"
    )
    sub.add_parser("publish", help="admin: sum the contributions and decrypt the sum jointly")
    cp = sub.add_parser("copurchase", help="the published co-purchase counts of a product")
    cp.add_argument("--product", action="append", default=[], help="repeatable")
    cp.add_argument("--k", type=int, default=10, help="recommendations per product, 0 for all (default 10)")
    cp.add_argument("--out", help="write the whole published counts (JSON) to this file")
    sub.add_parser("layout", help="the co-purchase catalogue and layout customers encode for")


def run(args: argparse.Namespace) -> int:
    from mpc.parties.user import UserConfig

    return asyncio.run(_run(UserConfig.load(args.config), args))


async def _run(config: Any, args: argparse.Namespace) -> int:
    from mpc.parties.user import UserClient

    async with UserClient(config) as user:
        await user.public_key(wait_s=args.wait)
        cat = CatalogClient(user)
        if args.action == "set-static":
            try:
                text = Path(args.csv).read_bytes().decode("utf-8")
            except OSError as exc:
                raise ParameterError(f"cannot read {args.csv}: {exc.strerror or exc}") from None
            except UnicodeDecodeError as exc:
                raise ParameterError(f"{args.csv}: not UTF-8 ({exc.reason})") from None
            r = await cat.set_static_table(text, Path(args.csv).name)
            print(f"static table version {r.version}: {r.entries} entries for {r.products} products")
        elif args.action == "static":
            for product in args.product:
                version, rows = await cat.static(product)
                listed = ", ".join(f"{rank}. {x}" for rank, x in rows) or "(none)"
                print(f"{product}: {listed}" + ("" if version else "  [no table set yet]"))
        elif args.action == "contribute":
            baskets = [[i.strip() for i in b.split(",") if i.strip()] for b in args.basket]
            version = await cat.contribute(baskets)
            print(f"uploaded an encrypted contribution of {len(baskets)} basket(s) (version {version})")
        elif args.action == "publish":
            r = await cat.publish()
            print(
                f"published epoch {r.epoch}: {r.contributors} contributors, {r.baskets} baskets, "
                f"{r.changed} changed since the last epoch (sum {r.sum_s:.2f} s, decryption {r.decrypt_s:.2f} s)"
            )
        elif args.action == "copurchase":
            await _copurchase(cat, args)
        else:
            lay = await cat.layout()
            d = lay.describe()
            print(
                f"layout version {lay.version}: {d['items']} items, {d['positions']} counts in "
                f"{d['ciphertexts_per_customer']} ciphertexts ({d['slot_bits']}-bit slots), "
                f"at most {lay.customers} customers x {lay.max_baskets} basket(s)"
            )
    return 0


async def _copurchase(cat: CatalogClient, args: argparse.Namespace) -> None:
    if args.k < 0:
        raise ParameterError(f"--k must be >= 0, got {args.k}")
    reply = await cat.copurchase(args.product, args.k)
    print(f"co-purchase counts, epoch {reply.epoch}: {reply.baskets} baskets from {reply.contributors} customers")
    for entry in reply.products:
        n = entry.baskets_with
        print(f"{entry.product}: in {n} baskets; bought with it:")
        for rank, rec in enumerate(entry.recommendations, 1):
            share = 100 * rec.count / n if n else 0.0
            print(f"  {rank:2d}. {rec.item:<28} {rec.count:6d}  ({share:.1f}% of its baskets)")
    if args.out:
        co, meta = await cat.cooccurrence()
        doc = {
            "epoch": meta.epoch,
            "contributors": meta.contributors,
            "baskets": co.baskets,
            "items": co.items,
            "matrix": co.matrix.tolist(),
        }
        Path(args.out).write_text(json.dumps(doc, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
