"""``mpc-crm churn``: train the tree, score privately, plan retention actions, report.

    mpc-crm churn train --data FILE --out model.json [--seed S]
    mpc-crm churn score --data FILE --model model.json [--customers N] [--key-bits 1024|2048]
                        --out scores.json
    mpc-crm churn plan --data FILE --model model.json --costs costs.toml
                       [--max-action-sets K | --budget B] [--segment-threshold P] --out plan.json
    mpc-crm churn report --scores scores.json [--plan plan.json] [--model model.json]
                         [--data FILE] --out report.html

``plan`` writes ``{"params": {...}, "customers": {"<id>": {"p_loyal", "segment",
"actions": [{"attribute", "from", "to", "cost"}], "p_loyal_target", "net_profit",
"served"}}, "totals": {...}, "action_sets": [...]}`` (``docs/churn.md``).

Each action is a pair of functions, ``_add_<name>(parser)`` and
``_run_<name>(args) -> int``, listed once in :data:`ACTIONS`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from crm.churn.costs import load_costs
from crm.churn.data import feature_names, load_customers
from crm.churn.errors import ParameterError
from crm.churn.model import DEPTHS, MIN_LEAVES, TreeModel, train
from crm.churn.plan import plan_all, select, set_text, to_fraction
from crm.churn.report import add_report_arguments, run_report
from crm.churn.score import add_score_arguments, run_score

SHOW_SETS = 10
"""How many action sets the readable summary of ``plan`` lists (all of them are in --out)."""


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data", metavar="FILE", required=True, help="customers CSV with a Churn column"
    )
    p.add_argument("--out", metavar="FILE", required=True, help="where to write model.json")
    p.add_argument("--seed", metavar="S", type=int, default=0, help="split and CV seed (default 0)")


def _run_train(args: argparse.Namespace) -> int:
    customers = load_customers(args.data, require_label=True)
    assert customers.labels is not None
    churned = sum(customers.labels)
    print(
        f"customers {args.data}: {len(customers)} ({churned} churned, "
        f"{100 * churned / len(customers):.1f}%), {len(feature_names(customers))} features"
    )
    print(
        f"grid search: max_depth {min(DEPTHS)}..{max(DEPTHS)} x min_samples_leaf "
        f"{','.join(map(str, MIN_LEAVES))}, 5-fold CV on ROC-AUC, 75% of the customers ...",
        flush=True,
    )
    result = train(customers, seed=args.seed)
    model, m = result.model, result.model.metrics
    chosen = result.params
    print(
        f"chosen: max_depth {chosen['max_depth']}, min_samples_leaf "
        f"{chosen['min_samples_leaf']} (CV ROC-AUC {m['cv_auc']:.3f}) in {result.seconds:.1f} s"
    )
    print(
        f"held out ({m['n_test']} customers): accuracy {m['test_accuracy']:.3f}, "
        f"ROC-AUC {m['test_auc']:.3f}"
    )
    print(f"tree: {m['nodes']} nodes, {m['leaves']} leaves, depth {m['depth']}")
    model.save(args.out)
    print(f"wrote {args.out}")
    return 0


def _add_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="FILE", required=True, help="customers CSV")
    p.add_argument("--model", metavar="FILE", required=True, help="model.json from churn train")
    p.add_argument("--costs", metavar="FILE", required=True, help="cost file (TOML)")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument(
        "--max-action-sets",
        metavar="K",
        type=int,
        help="serve only the customers of the K most profitable action sets",
    )
    limit.add_argument(
        "--budget",
        metavar="B",
        help="serve customers by net profit, most first, while their costs fit in B",
    )
    p.add_argument(
        "--segment-threshold",
        metavar="P",
        default="0.5",
        help="plan for customers with p_loyal below P (default 0.5)",
    )
    p.add_argument("--out", metavar="FILE", required=True, help="where to write plan.json")
    p.add_argument(
        "--plain",
        action="store_true",
        help="plan in the clear only (the oracle); by default the plan is computed privately "
        "(scoring, then protocol churn-plan, with PSP, SP and customers as processes) and checked "
        "against the oracle",
    )
    p.add_argument("--customers", type=int, default=None, help="private: only the first N customers")
    p.add_argument("--key-bits", type=int, default=2048, choices=(1024, 2048), help="private: joint key size")
    p.add_argument("--workers", type=int, default=2, help="private: upload and SP worker processes")
    p.add_argument("--workdir", help="private: where certificates, configs, data and logs go")
    p.add_argument("--keep", action="store_true", help="private: keep the work directory")
    p.add_argument("--timeout", type=float, default=3600.0, help="private: give up after this many seconds")


def _run_plan(args: argparse.Namespace) -> int:
    threshold = _number("--segment-threshold", args.segment_threshold)
    if not 0 <= threshold <= 1:
        raise ParameterError(f"--segment-threshold {args.segment_threshold}: not in 0..1")
    budget = _number("--budget", args.budget) if args.budget is not None else None
    if budget is not None and budget < 0:
        raise ParameterError(f"--budget {args.budget}: negative")
    model = TreeModel.load(args.model)
    customers = load_customers(args.data)
    costs = load_costs(args.costs, customers)
    private: dict[str, Any] | None = None
    if args.plain:
        plans = plan_all(model, costs, customers, segment_threshold=threshold)
    else:
        plans, private = _private_plans(args, model, costs, customers, threshold)
    chosen = select(plans, max_action_sets=args.max_action_sets, budget=budget)
    unloyal = sum(1 for p in plans.values() if p.segment == "unloyal")
    planned = sum(1 for p in plans.values() if p.target is not None)
    doc: dict[str, Any] = {
        "params": {
            "data": str(args.data),
            "model": str(args.model),
            "costs": str(args.costs),
            "segment_threshold": args.segment_threshold,
            "max_action_sets": args.max_action_sets,
            "budget": args.budget,
            "profit": str(costs.profit),
            "private": not args.plain,
        },
        **({"private": private} if private is not None else {}),
        "customers": {
            cid: {
                "p_loyal": float(p.p_loyal),
                "segment": p.segment,
                "actions": [a.to_dict() for a in p.actions],
                "p_loyal_target": None if p.p_target is None else float(p.p_target),
                "net_profit": float(p.net_profit),
                "served": cid in chosen.served,
            }
            for cid, p in plans.items()
        },
        "totals": {
            "customers": len(plans),
            "loyal": len(plans) - unloyal,
            "unloyal": unloyal,
            "planned": planned,
            "served": len(chosen.served),
            "net_profit": float(chosen.net_profit),
            "cost": float(chosen.cost),
            "action_sets": chosen.sets_used,
        },
        "action_sets": [
            {
                "actions": [{"attribute": a, "to": v} for a, v in s.key],
                "customers": s.customers,
                "net_profit": float(s.net_profit),
                "served": s.served,
                "served_net_profit": float(s.served_net_profit),
            }
            for s in chosen.sets
        ],
    }
    _write_json(args.out, doc)

    print(
        f"customers {args.data}: {len(plans)}; {len(plans) - unloyal} loyal, {unloyal} unloyal "
        f"(p_loyal < {args.segment_threshold})"
    )
    print(
        f"{planned} unloyal customers have a profitable plan, "
        f"{len(chosen.sets)} different action sets (profit = {costs.profit})"
    )
    if args.max_action_sets is not None:
        limit = f"the {args.max_action_sets} most profitable action sets"
    elif budget is not None:
        limit = f"budget {_money(budget)}"
    else:
        limit = "no limit"
    print(
        f"served ({limit}): {len(chosen.served)} customers, {chosen.sets_used} action sets, "
        f"net profit {_money(chosen.net_profit)}, cost {_money(chosen.cost)}"
    )
    if chosen.sets:
        print("action sets by net profit (customers, served, net profit):")
        for s in chosen.sets[:SHOW_SETS]:
            print(f"  {s.customers:5d} {s.served:5d} {_money(s.net_profit):>12}  {set_text(s.key)}")
        if len(chosen.sets) > SHOW_SETS:
            print(f"  ... and {len(chosen.sets) - SHOW_SETS} more in {args.out}")
    print(f"wrote {args.out}")
    if private is not None and not private["ok"]:
        print(f"MISMATCH: {private['mismatches']} private plan(s) differ from the oracle's", file=sys.stderr)
        return 1
    return 0


def _private_plans(
    args: argparse.Namespace, model: TreeModel, costs: Any, customers: Any, threshold: Fraction
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score and plan privately across processes; check every plan against the oracle."""
    from crm.churn.data import Customers
    from crm.churn.plan_forms import compile_plan
    from crm.churn.plan_private import plan_from_json, same_plan
    from crm.churn.score import run_private_plan
    from mpc.errors import ProtocolError

    if args.customers is not None and args.customers < 1:
        raise ParameterError("--customers must be at least 1")
    compile_plan(model, costs, segment_threshold=threshold)  # what the SP will refuse, refused here first
    n = len(customers.ids) if args.customers is None else min(args.customers, len(customers.ids))
    some = Customers(customers.ids[:n], customers.rows[:n], customers.columns, customers.label, source=customers.source)
    oracle = plan_all(model, costs, some, segment_threshold=threshold)
    report = run_private_plan(args, model, some, str(threshold))
    got = {cid: plan_from_json(cid, d) for cid, d in (report.get("plans") or {}).items()}
    missing = [cid for cid in some.ids if cid not in got]
    if missing:  # the admin or a server failed: nothing private to write (the logs say why)
        raise ProtocolError(
            f"no private plan for {len(missing)} of {n} customers (e.g. {missing[0]}); scores "
            f"{'matched' if report['ok'] else 'did not match'}; see the processes' output above"
        )
    mismatches = [cid for cid in some.ids if not same_plan(got[cid], oracle[cid])]
    print(
        f"  {n - len(mismatches)}/{n} private plans equal the oracle's; planning "
        f"{report['phases_s'].get('planning', 0):.1f} s after scoring {report['phases_s'].get('scoring', 0):.1f} s"
    )
    summary = {
        "ok": bool(report["ok"]) and not mismatches,
        "mismatches": len(mismatches),
        "scores_match": bool(report["ok"]),
        "key_bits": args.key_bits,
        "scoring_s": report["phases_s"].get("scoring"),
        "planning_s": report["phases_s"].get("planning"),
        "sp_planning_s": report.get("sp_planning_s"),
        "total_s": report["total_s"],
        "bytes_sent": report["bytes_sent"],
    }
    return {cid: got[cid] for cid in some.ids}, summary


def _number(option: str, text: str) -> Fraction:
    try:
        return to_fraction(text)
    except ParameterError as exc:
        raise ParameterError(f"{option}: {exc}") from None


def _money(x: Fraction) -> str:
    return f"{float(x):,.2f}"


def _write_json(path: str, doc: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


ACTIONS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "train": ("train the churn tree and write model.json", _add_train, _run_train),
    "plan": (
        "plan retention actions privately (after private scoring) and check them against the oracle",
        _add_plan,
        _run_plan,
    ),
    "score": (
        "score every customer privately: PSP, SP and customers as processes over gRPC",
        add_score_arguments,
        run_score,
    ),
    "report": (
        "write an HTML report: loyal/unloyal split, scores, churn by segment, profit of actions",
        add_report_arguments,
        run_report,
    ),
}
"""name -> (help, add its arguments, run it)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="churn_action", metavar="ACTION", required=True)
    for name, (help_text, add, run_action) in ACTIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        p.set_defaults(_churn_run=run_action)


def run(args: argparse.Namespace) -> int:
    return int(args._churn_run(args))
