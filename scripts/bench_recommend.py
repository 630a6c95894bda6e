"""Benchmark of the private recommender (threshold or top-N mode), one process, in memory.

    python scripts/bench_recommend.py --ratings ../shared/data/movietweetings-top1000.csv \
        --bits 2048 --targets 3 --json bench/results/bench_recommend.json

Every user's upload is encrypted for real (with the batch encryptor on all
cores: setup, not counted per target); then for each target the whole
"recommend" protocol runs between an SP and a PSP role in one event loop over
the in-memory transport, and the decrypted aggregate is checked against the
plaintext oracle. Both roles share this process (and its two cores), so the
per-target time is the SP's and the PSP's work added up, minus what overlaps;
over gRPC each server has its own process. The transport is measured apart
(scripts/bench_transport.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import crm.recommender.protocol
import crm.recommender.rank
import crm.recommender.topn  # noqa: F401  (registers "recommend-topn")
from crm.recommender.data import load_ratings, synthetic_ratings
from crm.recommender.plain import PlainParams, Recommender, rank
from crm.recommender.private import (
    RecLayout,
    UserRecord,
    build_blocks,
    decode_aggregate,
    decode_neighbours,
    user_plaintexts,
)
from crm.recommender.protocol import compare_params
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import combine_many, local_joint_keys, params_for
from mpc.elgamal.batch import BatchEncryptor
from mpc.elgamal.curve import CurvePrivateKey
from mpc.protocol import run_local


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--ratings", help="ratings CSV")
    src.add_argument("--synthetic", metavar="W1", help="generated workload W1 (SeComLib's setting)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bits", type=int, default=2048, choices=(1024, 2048))
    ap.add_argument("--users", type=int, default=0, help="first N users only (0: all)")
    ap.add_argument("--targets", type=int, default=3)
    ap.add_argument("--dense", type=int, default=20)
    ap.add_argument("--shift", type=int, default=8)
    ap.add_argument("--threshold", default="0.5", help="delta: an integer, or a fraction of 2^(2 shift)")
    ap.add_argument("--top-n", type=int, default=0, help="top-N mode with this N (shuffle-then-select)")
    ap.add_argument(
        "--selector", choices=("sample", "quickselect", "rank", "both"), default="sample",
        help="top-N: the PSP's selection in shuffle-then-select, or rank (protocol recommend-rank, "
        "leak-free); both: sample and quickselect on each target, back to back",
    )
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args(argv)

    load0 = os.getloadavg()
    r = synthetic_ratings(args.synthetic, seed=args.seed) if args.synthetic else load_ratings(args.ratings)
    if args.users:
        keep = r.users[: args.users]
        from crm.recommender.data import build_ratings

        triples = [(u, it, int(r.d[r.user_index[u], j]) - 1 + r.lo) for u in keep for j, it in enumerate(r.items) if r.d[r.user_index[u], j]]
        r = build_ratings(triples, (r.lo, r.hi))
    topn = args.top_n > 0
    pp = (
        PlainParams(dense=args.dense, shift=args.shift, top_n=args.top_n, k=0)
        if topn
        else PlainParams(dense=args.dense, shift=args.shift, threshold=args.threshold, k=0)
    )
    plain = Recommender(r, pp)
    delta = None if topn else plain.params.delta
    params = params_for(args.bits)
    pk, (sp, psp) = local_joint_keys(params)
    n = len(r.users)
    layout = RecLayout(
        params, n, len(r.items), args.dense, args.shift, r.levels,
        args.top_n if topn else n - 1, tie_bits=(n - 1).bit_length() if topn else 0,
    )
    print(f"{len(r.users)} users x {len(r.items)} items, {args.bits}-bit keys, delta {delta}: {layout.describe()}")

    t = time.perf_counter()
    plains = [
        user_plaintexts(layout, u, [int(x) for x in plain.vectors[u]], [int(x) for x in r.d[u]])
        for u in range(len(r.users))
    ]
    flat = [m for row in plains for m in row]
    with BatchEncryptor(pk) as enc:
        enc.warm_up()
        cts = enc.encrypt(flat)
    per_user = layout.upload_count
    records = [UserRecord.split(layout, cts[i * per_user : (i + 1) * per_user]) for i in range(len(r.users))]
    setup_encrypt = time.perf_counter() - t
    t = time.perf_counter()
    blocks = build_blocks(layout, records)
    setup_blocks = time.perf_counter() - t
    print(f"setup: {len(flat)} encryptions in {setup_encrypt:.1f} s, blocks in {setup_blocks:.2f} s")
    pk.encrypt(0)  # tables

    from bench.rawspeed import curve_seconds, modular_seconds, price
    from mpc.comparison import ec
    from mpc.elgamal.opcount import OPS

    raw_mod, raw_curve = modular_seconds(params.n2), curve_seconds()
    op_reports: list[dict[str, object]] = []
    times, matches, precompute, used = [], [], [], []
    by_selector: dict[str, list[float]] = {}
    selectors = ["sample", "quickselect"] if args.selector == "both" else [args.selector]
    curve = CurvePrivateKey.generate()
    cparams = compare_params(layout)
    if topn:  # about 2n comparisons of ranked values in quickselect
        from mpc.protocols.compare import CompareParams

        cparams = CompareParams(layout.ranked_bits, 2 * n)
    # Targets spread over user order, among users who rated some dense item (others have no neighbours).
    candidates = [u for u in range(len(r.users)) if plain.vectors[u].any()]
    for k, selector in ((k, sel) for k in range(args.targets) for sel in selectors):
        a = candidates[(k * 97) % len(candidates)]
        # Idle-time precomputation for one query (what the pools would hold), timed apart. The
        # comparisons use the default method "gc" (garbled circuit), which draws on no pool of
        # its own: the DGK pools (bit encryptions, randomizers, dummies) stay empty.
        t = time.perf_counter()
        psp_pools, sp_pools = PspPools(), SpPools(curve)
        # One process plays both servers, so one pool serves both: rank selection encrypts about
        # 2n values at each server; shuffle-then-select only the packed values' re-randomisations.
        per_user = 4 * n + 256 if selector == "rank" else 0
        pk.pool.fill((per_user if topn else cparams.count) + 2 * layout.n_blocks + 2 * layout.n_rating_ciphertexts + 64)
        on_demand, drawn = pk.pool.on_demand, pk.pool.drawn
        precompute.append(time.perf_counter() - t)
        OPS.clear()
        ec.OPS.clear()
        t = time.perf_counter()
        out = asyncio.run(
            run_local(
                ("recommend-rank" if selector == "rank" else "recommend-topn") if topn else "recommend",
                {
                    "sp": {"layout": layout, "pk": pk, "share": sp, "records": records, "blocks": blocks,
                           "target": a, "delta": delta, "compare_pools": sp_pools, "top_n": args.top_n},
                    "psp": {"layout": layout, "pk": pk, "share": psp, "records": records, "blocks": blocks,
                            "compare_pools": psp_pools, "top_n": args.top_n,
                            "selector": selector},
                },
                timeout=600,
            )
        )
        # What the query drew of the precomputed encryptions of zero (the rest stays for the next).
        from_stock = (pk.pool.drawn - drawn) - (pk.pool.on_demand - on_demand)
        used.append(from_stock * (pk.pool.seconds_per_item or 0.0))
        agg = out["sp"]
        plain_vals = combine_many(agg, [sp.partial_decrypt_many(agg), psp.partial_decrypt_many(agg)])
        times.append(time.perf_counter() - t)
        priced = price(OPS, ec.OPS, raw_mod, raw_curve)
        op_reports.append({
            "ops": dict(OPS), "curve_ops": dict(ec.OPS), **priced,
            "joint_zero_pairs_made_online": pk.pool.on_demand - on_demand,
            "overhead_vs_as_run": times[-1] / priced["as_run_s"], "naive_vs_wall": priced["naive_s"] / times[-1],
        })
        sums, counts = decode_aggregate(layout, plain_vals)
        want = plain.recommend(r.users[a])
        ok = sums == [int(x) for x in want.sums] and counts == [int(x) for x in want.counts]
        ok = ok and decode_neighbours(layout, plain_vals) == len(want.neighbours)
        ranked = rank(r, a, np.array(sums), np.array(counts), 10)  # the first 10 of the list
        ok = ok and [x.to_dict() for x in ranked] == [x.to_dict() for x in want.recommendations[:10]]
        matches.append(ok)
        by_selector.setdefault(selector, []).append(times[-1])
        print(
            f"target {r.users[a]}{f' ({selector})' if topn else ''}: {times[-1]:.2f} s online, "
            f"{precompute[-1]:.2f} s idle-time precomputation (of which used {used[-1]:.2f} s), "
            f"{len(want.neighbours)} neighbours, match {ok}; at raw speed {op_reports[-1]['as_run_s']:.2f} s "
            f"as run (x{op_reports[-1]['overhead_vs_as_run']:.2f}), {op_reports[-1]['naive_s']:.1f} s naive"
        )

    result = {
        "bits": args.bits,
        "users": len(r.users),
        "items": len(r.items),
        "dense": args.dense,
        "shift": args.shift,
        "delta": delta,
        "layout": layout.describe(),
        "setup_encrypt_s": setup_encrypt,
        "setup_encryptions": len(flat),
        "setup_blocks_s": setup_blocks,
        "per_target_s": statistics.median(by_selector[selectors[0]] if topn else times),
        "precompute_per_target_s": statistics.median(precompute),
        "precompute_used_per_target_s": statistics.median(used),
        "per_target_by_selector_s": {k: statistics.median(v) for k, v in by_selector.items()} if topn else None,
        "per_target_by_selector_all_s": by_selector if topn else None,
        "per_target_all_s": times,
        "raw_seconds": {"modular": raw_mod, "curve": raw_curve},
        "operations_per_target": op_reports,
        "all_match": all(matches),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "loadavg_before": list(load0),
        "loadavg_after": list(os.getloadavg()),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["scripts/bench_recommend.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    print(json.dumps({k: result[k] for k in ("per_target_s", "precompute_per_target_s", "precompute_used_per_target_s",
                                             "per_target_by_selector_s", "all_match", "setup_encrypt_s")}))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))
    return 0 if all(matches) else 1


if __name__ == "__main__":
    raise SystemExit(main())
