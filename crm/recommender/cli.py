"""``mpc-crm recommend``: the plaintext recommender and co-purchase counts from files.

    mpc-crm recommend --plain --ratings FILE [--scale LO:HI] [--dense R] [--shift S]
                      [--top-n N | --threshold D] [--k K] [--targets all|N|ID,...]
                      [--titles ITEMS_CSV] [--out results.json]
    mpc-crm recommend --copurchase BASKETS --product X [--product Y ...] [--k K] [--out FILE]

``--plain`` computes in the clear what the private protocol computes (its
test oracle); the JSON it writes is
``{"params": {...}, "targets": {"<user>": {"neighbours": [...], "recommendations":
[{"item", "sum", "count", "score"}]}}}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from crm.recommender.copurchase import cooccurrence
from crm.recommender.data import Ratings, load_baskets, load_ratings, load_titles, parse_scale
from crm.recommender.errors import ParameterError
from crm.recommender.plain import PlainParams, Recommender, parse_threshold

SHOW_TARGETS = 3
"""How many targets the readable summary shows in full (all of them are in --out)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--plain",
        action="store_true",
        help="compute the recommendations in the clear (the private protocol's oracle)",
    )
    mode.add_argument(
        "--copurchase",
        metavar="BASKETS",
        help="co-purchase recommendations from a baskets file (one basket a line)",
    )
    parser.add_argument(
        "--ratings", metavar="FILE", help="user_id,item_id,rating CSV or MovieLens u.data"
    )
    parser.add_argument(
        "--scale",
        metavar="LO:HI",
        help="rating scale (default: smallest and largest rating in the file); "
        "write --scale=-2:2 for a negative LO",
    )
    parser.add_argument(
        "--dense", metavar="R", type=int, default=20, help="dense items (default 20)"
    )
    parser.add_argument(
        "--shift", metavar="S", type=int, default=8, help="scale dense vectors by 2^S (default 8)"
    )
    rule = parser.add_mutually_exclusive_group()
    rule.add_argument(
        "--top-n", metavar="N", type=int, help="the N most similar users (default 20)"
    )
    rule.add_argument(
        "--threshold",
        metavar="D",
        help="all users with similarity >= D: an integer, or a fraction of 2^(2S) (0.5, 1/2)",
    )
    parser.add_argument(
        "--k",
        metavar="K",
        type=int,
        default=10,
        help="recommendations per target, 0 for all (default 10)",
    )
    parser.add_argument(
        "--targets",
        default="all",
        metavar="all|N|ID,...",
        help="target users: all (default), the first N in user order, or a comma-separated "
        "list of ids (a single numeric id needs a trailing comma: 10,)",
    )
    parser.add_argument(
        "--titles", metavar="ITEMS_CSV", help="item_id,title file for readable output"
    )
    parser.add_argument(
        "--product", action="append", metavar="X", help="product for --copurchase (repeatable)"
    )
    parser.add_argument("--out", metavar="FILE", help="write the results as JSON")


def parse_targets(text: str, r: Ratings) -> list[str]:
    """``all`` -> every user; ``N`` -> the first N users (all when fewer); else ids, comma separated."""
    text = text.strip()
    if text == "all":
        return list(r.users)
    if text.isdigit():
        n = int(text)
        if n < 1:
            raise ParameterError("--targets N needs N >= 1")
        return list(r.users[:n])
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise ParameterError(f"--targets {text!r}: no user ids")
    unknown = [u for u in ids if u not in r.user_index]
    if unknown:
        raise ParameterError(f"--targets: unknown user(s) {', '.join(map(repr, unknown))}")
    return list(dict.fromkeys(ids))


def _usage(message: str) -> int:
    print(f"recommend: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.copurchase:
        return _run_copurchase(args)
    if args.plain:
        return _run_plain(args)
    return _usage("choose --plain (with --ratings) or --copurchase BASKETS")


def _write_json(path: str, doc: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _run_plain(args: argparse.Namespace) -> int:
    if not args.ratings:
        return _usage("--plain needs --ratings FILE")
    if args.product:
        return _usage("--product goes with --copurchase")
    scale = parse_scale(args.scale) if args.scale else None
    threshold = parse_threshold(args.threshold) if args.threshold is not None else None
    params = PlainParams(
        dense=args.dense, shift=args.shift, top_n=args.top_n, threshold=threshold, k=args.k
    )
    r = load_ratings(args.ratings, scale)
    titles = load_titles(args.titles) if args.titles else {}
    targets = parse_targets(args.targets, r)

    start = time.perf_counter()
    model = Recommender(r, params)
    results = {u: model.recommend(u) for u in targets}
    elapsed = time.perf_counter() - start

    if args.out:
        doc = {
            "params": {
                "mode": "plain",
                "ratings": str(args.ratings),
                "scale": [r.lo, r.hi],
                "users": len(r.users),
                "items": len(r.items),
                "n_ratings": r.n_ratings,
                **params.to_dict(),
                "dense_items": model.dense_items,
            },
            "targets": {u: res.to_dict() for u, res in results.items()},
        }
        _write_json(args.out, doc)

    def name(item: str) -> str:
        return f"{titles[item]} [{item}]" if item in titles else item

    print(
        f"ratings {args.ratings}: {len(r.users)} users, {len(r.items)} items, "
        f"{r.n_ratings} ratings, scale {r.lo}..{r.hi}"
    )
    if params.threshold is not None:
        rule = f"similarity >= {params.delta} (threshold {params.to_dict()['threshold']})"
    else:
        rule = f"top {params.top_n} by similarity"
    print(f"dense items: {params.dense}, shift {params.shift}; neighbours: {rule}; k = {params.k}")
    sizes = [len(res.neighbours) for res in results.values()]
    print(
        f"{len(results)} target(s) in {elapsed:.2f} s; neighbours per target "
        f"min {min(sizes)}, max {max(sizes)}"
    )
    for u, res in list(results.items())[:SHOW_TARGETS]:
        print(
            f"user {u}: {len(res.neighbours)} neighbours, {len(res.recommendations)} recommendations"
        )
        for rank_, rec in enumerate(res.recommendations, 1):
            print(
                f"  {rank_:2d}. {rec.score:6.2f}  ({rec.count} of {len(res.neighbours)} neighbours)  {name(rec.item)}"
            )
    if len(results) > SHOW_TARGETS:
        more = len(results) - SHOW_TARGETS
        print(f"... and {more} more target(s)" + (f" in {args.out}" if args.out else ""))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _run_copurchase(args: argparse.Namespace) -> int:
    if not args.product:
        return _usage("--copurchase needs --product X")
    if args.ratings:
        return _usage("--ratings goes with --plain")
    if args.k < 0:
        raise ParameterError(f"--k must be >= 0, got {args.k}")
    baskets = load_baskets(args.copurchase)
    co = cooccurrence(baskets)
    products = {x: co.to_dict(x, args.k) for x in args.product}
    if args.out:
        doc = {
            "params": {
                "mode": "copurchase",
                "baskets_file": str(args.copurchase),
                "baskets": co.baskets,
                "products": len(co.items),
                "k": args.k,
            },
            "products": products,
        }
        _write_json(args.out, doc)
    print(f"baskets {args.copurchase}: {co.baskets} baskets, {len(co.items)} products")
    for x, res in products.items():
        n = res["baskets_with"]
        print(f"{x}: in {n} baskets; bought with it:")
        for rank_, rec in enumerate(res["recommendations"], 1):
            share = 100 * rec["count"] / n if n else 0.0
            print(
                f"  {rank_:2d}. {rec['item']:<28} {rec['count']:6d}  ({share:.1f}% of its baskets)"
            )
    if args.out:
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (``python -m crm.recommender.cli``) until the lead registers it."""
    parser = argparse.ArgumentParser(prog="mpc-crm recommend", description=__doc__.splitlines()[0])
    add_arguments(parser)
    from mpc.errors import MpcError

    try:
        return run(parser.parse_args(argv))
    except MpcError as exc:
        print(f"recommend: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
