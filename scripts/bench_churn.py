#!/usr/bin/env python3
"""Benchmark of private churn scoring: all Telco customers across three processes, and per-step costs.

    python scripts/bench_churn.py --data ../shared/data/telco-churn.csv --key-bits 2048 \
        --json bench/results/bench_churn.json [--customers N] [--model model.json] [--sample 200]

Two parts, in one run:

1. Per customer, in this process (one core): the customer's encryption of its
   attributes, the SP's flipped tree and table, the PSP's walk, with the
   exact curve operations of each (libsecp256k1 calls by kind) and what the
   same count of operations costs at the raw speed of each primitive,
   measured here just before: the ratio is the Python overhead.
2. End to end: ``mpc-crm churn score`` (PSP, SP, two customer front ends and
   the admin as separate processes over gRPC with mTLS) on every customer,
   checked customer by customer against model.json; the time of each phase.

The tree is trained first (``mpc-crm churn train``, seed 0) unless --model is
given. The key size only matters for the joint key the servers generate at
start (scoring uses the curve); it is recorded all the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    try:
        import mpc  # noqa: F401
    except ImportError:  # run from a checkout without installing: use the tree above
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import loadavg, machine_info, publish, standalone
from bench.rawspeed import curve_seconds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="the Telco customers CSV")
    p.add_argument("--model", help="model.json (default: train one, seed 0)")
    p.add_argument("--customers", type=int, default=None, help="first N customers end to end (default all)")
    p.add_argument("--key-bits", type=int, default=2048, choices=(1024, 2048))
    p.add_argument("--sample", type=int, default=200, help="customers timed step by step in this process")
    p.add_argument("--json", help="write the result here ('-' for stdout)")
    p.add_argument(
        "--plan",
        metavar="COSTS",
        help="end to end, plan privately too with this cost file (mpc-crm churn plan: scoring, "
        "then protocol churn-plan, every plan checked against the oracle)",
    )


def _steps(model_path: Path, data: str, sample: int) -> dict[str, Any]:
    from crm.churn import private as P
    from crm.churn.data import load_customers
    from crm.churn.model import TreeModel, encode_row
    from crm.churn.protocol import sp_prepare
    from mpc.comparison import ec
    from mpc.comparison.pools import bit_encryption_pool
    from mpc.elgamal.curve import CurvePrivateKey

    model = TreeModel.load(model_path)
    rows = load_customers(data).rows[:sample]
    layout = P.UploadLayout.from_model(model)
    spec = P.TreeSpec.from_model(model, layout)
    psp = CurvePrivateKey.generate()
    pub = psp.public_key.to_bytes()
    pool = bit_encryption_pool(pub)
    rnd = P.SpRandomness(pub)
    raw = curve_seconds()
    n = len(rows)
    res: dict[str, Any] = {"customers": n}

    def timed(name: str, fn: Any) -> Any:
        ec.OPS.clear()
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        ops = {k: v / n for k, v in ec.OPS.items() if v}
        at_raw = sum(ops.get(k, 0) * raw[k] for k in raw)
        res[name] = {"ms_per_customer": dt / n * 1e3, "ops_per_customer": ops,
                     "raw_ms_per_customer": at_raw * 1e3, "overhead": dt / n / at_raw if at_raw else None}
        return out

    ints = [encode_row(model, r) for r in rows]
    records = timed("customer_encrypt", lambda: [P.encrypt_record(layout, x, pool) for x in ints])
    seed = P.new_seed()
    nodes, tables = timed("sp_prepare", lambda: sp_prepare(spec, layout, records, seed, rnd))
    results = timed("psp_walk", lambda: P.psp_walk_many(spec.depth, layout.max_terms, n, nodes, tables, psp))
    got = P.open_scores(results, seed, n, spec.depth)
    want = [model.p_loyal_exact(model.leaf_of(r)) for r in rows]
    if got != want:
        raise SystemExit("step benchmark: private scores differ from the model")
    res["raw_us"] = {k: v * 1e6 for k, v in raw.items()}
    res["tree"] = {"depth": spec.depth, "nodes_padded": spec.internal, "comparisons": spec.comparisons(),
                   "terms_per_node": layout.max_terms, "upload_ciphertexts": layout.ciphertexts,
                   "upload_bytes": layout.record_bytes, "nodes_bytes": len(nodes) // n,
                   "psp_zero_tests": spec.depth * layout.max_terms}
    return res


def run(args: argparse.Namespace) -> int:
    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-churn-") as tmp:
        model = Path(args.model) if args.model else Path(tmp) / "model.json"
        if not args.model:
            log("training the tree (mpc-crm churn train, seed 0) ...")
            subprocess.run([sys.executable, "-m", "mpc", "churn", "train", "--data", args.data,
                            "--out", str(model)], check=True, stdout=subprocess.DEVNULL)
        log(f"per-step costs on {args.sample} customers in this process ...")
        load_before = loadavg()
        steps = _steps(model, args.data, args.sample)
        action = "plan" if args.plan else "score"
        log(f"end to end: mpc-crm churn {action} (PSP, SP, front ends, admin as processes) ...")
        out = Path(tmp) / f"{action}.json"
        cmd = [sys.executable, "-m", "mpc", "churn", action, "--data", args.data, "--model", str(model),
               "--key-bits", str(args.key_bits), "--out", str(out)]
        if args.plan:
            cmd += ["--costs", args.plan]
        if args.customers:
            cmd += ["--customers", str(args.customers)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
        sys.stderr.write(proc.stdout)
        report = json.loads(out.read_text()) if out.exists() else {}
    plan = report.get("private") if args.plan else None
    if args.plan and plan is None:
        report = {}
    if plan is not None:  # plan.json: the scoring report's figures are under "private"
        n = len(report.get("customers", {}))
        report = {**plan, "customers": {}, "phases_s": {"scoring": plan["scoring_s"], "planning": plan["planning_s"]}}
        matches = n - plan["mismatches"] if plan["scores_match"] else 0
        count = n
    else:
        matches = sum(1 for c in report.get("customers", {}).values() if c["match"])
        count = len(report.get("customers", {}))
    res = {
        "benchmark": "churn",
        "key_bits": args.key_bits,
        "steps": steps,
        "end_to_end": {
            "action": "plan" if args.plan else "score",
            "customers": count,
            "matches": matches,
            "planning_s": report.get("planning_s"),
            "sp_planning_s": report.get("sp_planning_s"),
            "exit_code": proc.returncode,
            "wall_s": wall,
            "total_s": report.get("total_s"),
            "scoring_s": report.get("scoring_s"),
            "sp_job_s": report.get("sp_scoring_s"),
            "phases_s": report.get("phases_s"),
            "bytes_sent": report.get("bytes_sent"),
        },
        "load_before": load_before,
        "load_after": loadavg(),
    }

    def summary(r: dict[str, Any]) -> str:
        s, e = r["steps"], r["end_to_end"]
        lines = [f"churn scoring, tree {s['tree']}"]
        for k in ("customer_encrypt", "sp_prepare", "psp_walk"):
            lines.append(f"  {k:17s} {s[k]['ms_per_customer']:7.2f} ms/customer "
                         f"(at raw primitive speed {s[k]['raw_ms_per_customer']:.2f} ms: x{s[k]['overhead']:.2f})")
        if e["total_s"] is None:
            lines.append(f"  end to end ({e['action']}): FAILED, exit code {e['exit_code']}")
        else:
            lines.append(f"  end to end ({e['action']}): {e['matches']}/{e['customers']} equal the oracle; "
                         f"total {e['total_s']:.1f} s, scoring {e['scoring_s']:.1f} s; phases {e['phases_s']}")
        return "\n".join(lines)

    publish(res, machine_info(["coincurve", "grpcio", "cryptography"]), args._command, args.json, summary, log)
    return 0 if proc.returncode == 0 and matches == res["end_to_end"]["customers"] > 0 else 1


if __name__ == "__main__":
    sys.exit(standalone("bench_churn.py", __doc__, add_arguments, run))
