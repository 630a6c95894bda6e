"""``mpc-crm churn score``: private churn scoring with the PSP, the SP and the customers as processes.

Fresh certificates and configs in a work directory; the SP gets the tree
(model.json), the PSP never sees it. Then:

1. upload: customer front-end processes (certificates of role "frontend", named in
   the SP's ``frontends``: only they may upload other customers' records) encrypt
   every customer's attributes under the PSP's curve key (read from the PSP) and
   upload them to the SP;
2. scoring: the admin process asks the SP to score everyone and polls the job
   (a progress bar here); the SP and the PSP run ``churn-score`` chunk by
   chunk; the admin opens the sealed results with its own key;
3. the parent compares every private P(loyal) with model.json's plaintext
   answer and writes ``{"customers": {"<id>": {"p_loyal", "p_loyal_plain",
   "segment", "match"}}, "total_s", ...}``; it exits 1 on any mismatch.

The parent never creates a gRPC object: it starts processes and reads files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from mpc.errors import MpcError, ParameterError
from mpc.parties.simulate import report_worker, work_directory

__all__ = ["PlanSetup", "add_score_arguments", "run_private_plan", "run_score"]


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="customers CSV (the Telco format)")
    p.add_argument("--model", required=True, help="model.json from `mpc-crm churn train`")
    p.add_argument("--out", help="write the scores (JSON) to this file")
    p.add_argument(
        "--customers", type=int, default=None, help="score only the first N customers (default all)"
    )
    p.add_argument("--key-bits", type=int, default=2048, choices=(1024, 2048))
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="upload processes and SP worker processes (default 2)",
    )
    p.add_argument(
        "--segment-threshold",
        type=float,
        default=0.5,
        help="loyal if P(loyal) >= this (default 0.5)",
    )
    p.add_argument(
        "--workdir", help="where certificates, configs, data and logs go (default: a temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory afterwards")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")


def run_score(args: argparse.Namespace) -> int:
    from crm.churn.data import load_customers
    from crm.churn.model import TreeModel, encode_row

    if args.customers is not None and args.customers < 1:
        raise ParameterError("--customers must be at least 1")
    if not 0 <= args.segment_threshold <= 1:
        raise ParameterError("--segment-threshold must be in [0, 1]")
    model = TreeModel.load(args.model)
    customers = load_customers(args.data)
    n = len(customers.ids) if args.customers is None else min(args.customers, len(customers.ids))
    ids, rows = customers.ids[:n], customers.rows[:n]
    encoded = {cid: encode_row(model, row) for cid, row in zip(ids, rows, strict=True)}
    plain = {
        cid: model.p_loyal_exact(model.leaf_of(row)) for cid, row in zip(ids, rows, strict=True)
    }
    with work_directory(args, "mpc-churn-") as root:
        report = _Run(root, args, model, ids, encoded, plain).run()
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


def run_private_plan(args: argparse.Namespace, model: Any, customers: Any, threshold: str) -> dict[str, Any]:
    """Score, then plan, privately across processes (``mpc-crm churn plan``): the report of
    :class:`_Run`, with the admin's plans (exact numbers as text) under ``"plans"``."""
    from argparse import Namespace

    from crm.churn.model import encode_row

    ids, rows = customers.ids, customers.rows
    encoded = {cid: encode_row(model, row) for cid, row in zip(ids, rows, strict=True)}
    plain = {cid: model.p_loyal_exact(model.leaf_of(row)) for cid, row in zip(ids, rows, strict=True)}
    plan = PlanSetup(Path(args.costs), threshold, {cid: dict(row) for cid, row in zip(ids, rows, strict=True)})
    run_args = Namespace(**{**vars(args), "segment_threshold": float(Fraction(threshold))})
    with work_directory(run_args, "mpc-churn-plan-") as root:
        return _Run(root, run_args, model, list(ids), encoded, plain, plan).run()


def _bar(done: int, total: int, t: float, phase: str = "scoring", width: int = 30) -> str:
    filled = int(width * done / total) if total else width
    rate = done / t if t > 0 else 0.0
    return f"\r  {phase} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} customers, {t:.0f} s ({rate:.0f}/s)"


@dataclass
class PlanSetup:
    """Private planning after scoring (``mpc-crm churn plan``): the SP's cost file, the
    segment threshold, the customers' raw rows (their front ends split them)."""

    costs: Path
    threshold: str
    rows: dict[str, dict[str, str]]


class _Run:
    def __init__(
        self,
        root: Path,
        args: argparse.Namespace,
        model: Any,
        ids: list[str],
        encoded: dict[str, dict[str, int]],
        plain: dict[str, Fraction],
        plan: PlanSetup | None = None,
    ) -> None:
        from mpc.parties.simulate import Simulation

        self.root, self.args, self.model, self.ids = root, args, model, ids
        self.encoded, self.plain, self.plan = encoded, plain, plan
        self.sim = Simulation(root, args)
        self.phases: dict[str, float] = {}

    def spawn_worker(self, name: str, argv: list[str]) -> Any:
        return self.sim.spawn(name, argv, stdout_to_file=True, module="crm.churn.score")

    def run(self) -> dict[str, Any]:
        from mpc.parties.deploy import write_deployment
        from mpc.parties.simulate import read_json

        a = self.args
        workers = max(1, a.workers)
        fronts = [f"frontend-{k}" for k in range(min(workers, len(self.ids)))]
        print(
            f"Private churn scoring in {self.root}: {len(self.ids)} customers, {a.key_bits}-bit keys, "
            f"tree of depth {self.model.depth} with {len(self.model.internal_nodes())} splits, "
            f"{len(fronts)} upload process(es)"
        )
        deadline = time.monotonic() + a.timeout
        t_all = time.perf_counter()
        try:
            t = time.perf_counter()
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "customers.json").write_text(json.dumps(self.encoded))
            plan_args: list[str] = []
            if self.plan:
                (self.root / "plan_rows.json").write_text(json.dumps(self.plan.rows))
                plan_args = ["--plan-rows", str(self.root / "plan_rows.json")]
            dep = write_deployment(
                self.root,
                ["admin"],
                key_bits=a.key_bits,
                workers=workers,
                deadline_s=600.0,
                churn_model=Path(a.model),
                churn_costs=self.plan.costs if self.plan else None,
                admins=["admin"],
                frontends=fronts,  # certificates of role "frontend", named in the SP's config
            )
            self.phases["certificates_and_configs"] = time.perf_counter() - t

            servers = self.sim.start_servers(dep, deadline, self.phases)

            t = time.perf_counter()
            ups = [
                self.spawn_worker(
                    f"upload-{k}",
                    [
                        "upload",
                        "--config",
                        str(dep.frontend_configs[f]),
                        "--customers",
                        str(self.root / "customers.json"),
                        "--share",
                        f"{k}/{len(fronts)}",
                        *plan_args,
                    ],
                )
                for k, f in enumerate(fronts)
            ]
            up_reports = self.sim.wait_reports(ups, servers, deadline, "upload worker(s)")
            self.phases["upload"] = time.perf_counter() - t
            enc_s = sum(r["encrypt_s"] for r in up_reports)
            print(
                f"  {len(self.ids)} customers encrypted and uploaded in {self.phases['upload']:.1f} s "
                f"({enc_s / len(self.ids) * 1e3:.1f} ms of encryption each)"
            )

            t = time.perf_counter()
            progress = self.root / "progress.json"
            admin = self.spawn_worker(
                "admin",
                [
                    "admin",
                    "--config",
                    str(dep.user_configs["admin"]),
                    "--progress",
                    str(progress),
                    "--timeout",
                    str(a.timeout),
                    *(
                        ["--plan-threshold", self.plan.threshold, "--model", str(a.model),
                         "--costs", str(self.plan.costs)]
                        if self.plan else []
                    ),
                ],
            )
            tty = sys.stdout.isatty()
            shown, phase, t_phase = -1, "scoring", t
            while admin.proc.poll() is None and time.monotonic() < deadline:
                self.sim.check_servers(servers)
                state = read_json(progress)
                if state.get("phase", "scoring") != phase:  # scoring done: planning starts
                    if tty:
                        print()
                    phase, shown, t_phase = state["phase"], -1, time.perf_counter()
                    self.phases["scoring"] = t_phase - t
                done, total = state.get("done", 0), state.get("total", len(self.ids)) or 1
                # On a terminal a live bar; in a log one line per tenth.
                if state and (tty or done * 10 // total > shown):
                    shown = done * 10 // total
                    line = _bar(done, total, time.perf_counter() - t_phase, phase)
                    print(line if tty else line.lstrip("\r"), end="" if tty else "\n", flush=True)
                time.sleep(0.5)
            if tty:
                print()
            (admin_report,) = self.sim.wait_reports([admin], servers, deadline, "admin")
            if phase == "planning":
                self.phases["planning"] = time.perf_counter() - t_phase
            else:
                self.phases["scoring"] = time.perf_counter() - t
            stats = self.sim.stop_servers(servers, self.phases)
        finally:
            self.sim._kill_all()
        return self._report(admin_report, up_reports, stats, time.perf_counter() - t_all)

    def _report(
        self, admin: dict[str, Any], ups: list[Any], stats: dict[str, Any], total: float
    ) -> dict[str, Any]:
        thr = self.args.segment_threshold
        got = {cid: Fraction(v) for cid, v in admin["scores"].items()}
        out: dict[str, Any] = {}
        for cid in self.ids:
            p, q = got.get(cid), self.plain[cid]
            pf = None if p is None else p.numerator / p.denominator
            out[cid] = {
                "p_loyal": pf,
                "p_loyal_plain": q.numerator / q.denominator,
                "segment": None if pf is None else ("loyal" if pf >= thr else "unloyal"),
                "match": p == q,
            }
        mismatches = [cid for cid, v in out.items() if not v["match"]]
        loyal = sum(1 for v in out.values() if v["segment"] == "loyal")
        report = {
            "ok": not mismatches,
            "params": {
                "data": str(self.args.data),
                "model": str(self.args.model),
                "customers": len(self.ids),
                "key_bits": self.args.key_bits,
                "depth": self.model.depth,
                "segment_threshold": thr,
                "workers": self.args.workers,
            },
            "customers": out,
            "plans": admin.get("plans"),
            "sp_planning_s": admin.get("plan_job_s"),
            "total_s": total,
            "scoring_s": self.phases.get("scoring"),
            "sp_scoring_s": admin.get("job_s"),
            "phases_s": self.phases,
            "bytes_sent": {
                "sp": stats.get("sp", {}).get("bytes_sent", 0),
                "psp": stats.get("psp", {}).get("bytes_sent", 0),
                "users": sum(int(r.get("bytes_sent", 0)) for r in [*ups, admin]),
            },
        }
        print(
            f"  {len(self.ids) - len(mismatches)}/{len(self.ids)} private scores equal the plaintext model's; "
            f"{loyal} loyal, {len(self.ids) - loyal} unloyal (P(loyal) >= {thr})"
        )
        print(
            f"  scoring {self.phases.get('scoring', 0):.1f} s, end to end {total:.1f} s; bytes sent: "
            + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in report["bytes_sent"].items())
        )
        if mismatches:
            print(
                f"  MISMATCH for {len(mismatches)} customer(s), e.g. {mismatches[0]}",
                file=sys.stderr,
            )
        return report


# -- worker processes --------------------------------------------------------------------------


async def _upload(args: argparse.Namespace) -> dict[str, Any]:
    from crm.churn.private import encrypt_record
    from crm.churn.service import ChurnClient
    from mpc.comparison.pools import bit_encryption_pool
    from mpc.parties.user import UserConfig

    k, of = (int(x) for x in args.share.split("/"))
    everyone = json.loads(Path(args.customers).read_text())
    ids = sorted(everyone)[k::of]
    async with ChurnClient(UserConfig.load(args.config)) as client:
        key = await client.scoring_key(wait_s=60.0)
        layout, version = await client.layout()
        pool = bit_encryption_pool(key)
        loop = asyncio.get_running_loop()
        t = time.perf_counter()
        records = await loop.run_in_executor(
            None, lambda: [encrypt_record(layout, everyone[c], pool) for c in ids]
        )
        enc = time.perf_counter() - t
        stored = await client.upload_customers(version, ids, records)
        if args.plan_rows:  # the plan's XOR shares: one seed for the SP, the rest sealed to the PSP
            from crm.churn import plan_private

            rows = json.loads(Path(args.plan_rows).read_text())
            playout, pversion = await client.plan_layout()
            t = time.perf_counter()
            precs = await loop.run_in_executor(None, lambda: [
                plan_private.customer_record(
                    playout, pversion, key, c, plan_private.layout_bits(playout, rows[c], everyone[c])
                )
                for c in ids
            ])
            enc += time.perf_counter() - t
            await client.upload_plan_shares(pversion, ids, precs)
        return {"ok": True, "stored": stored, "encrypt_s": enc, "bytes_sent": client.bytes_sent}


async def _admin(args: argparse.Namespace) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from crm.churn.private import admin_key_bytes, open_scores, unseal
    from crm.churn.protocol import aad
    from crm.churn.service import ChurnClient
    from mpc.parties.user import UserConfig

    key = X25519PrivateKey.generate()  # fresh for this run; a real admin keeps one
    progress = Path(args.progress)
    async with ChurnClient(UserConfig.load(args.config)) as client:
        await client.public_key(wait_s=60.0)
        job = await client.start_scoring(admin_key_bytes(key))
        give_up = time.monotonic() + args.timeout
        st = await _poll(lambda: client.scoring_status(job.job), progress, "scoring", give_up)
        scores: dict[str, str] = {}
        for ch in st.chunks:
            ids = list(ch.customer_ids)
            results = unseal(key, ch.sealed, aad(ch.chunk, len(ids)))
            for cid, p in zip(ids, open_scores(results, ch.seed, len(ids), st.depth), strict=True):
                scores[cid] = str(p)
        report: dict[str, Any] = {"ok": True, "scores": scores, "job_s": st.seconds}
        if args.plan_threshold is not None:
            report.update(await _admin_plan(args, client, key, {c: Fraction(p) for c, p in scores.items()}, progress, give_up))
        report["bytes_sent"] = client.bytes_sent
        return report


async def _poll(status: Any, progress: Path, phase: str, give_up: float) -> Any:
    """Poll a job (``status()``, a coroutine) until it finishes, writing its progress for the
    parent's bar; a failed or late job is an MpcError."""
    while True:
        st = await status()
        tmp = progress.with_suffix(".tmp")
        tmp.write_text(json.dumps({"phase": phase, "done": st.done, "total": st.total}))
        tmp.replace(progress)
        if st.finished:
            break
        if time.monotonic() > give_up:
            raise MpcError(f"{phase} did not finish in time")
        await asyncio.sleep(0.5)
    if st.error:
        raise MpcError(f"the SP reports: {st.error}")
    return st


async def _admin_plan(
    args: argparse.Namespace, client: Any, key: Any, p_loyal: dict[str, Fraction], progress: Path, give_up: float
) -> dict[str, Any]:
    """The admin's planning job: start it, poll it, open every chunk with the compiled search
    (the admin has the model and the cost file) and the private P(loyal) from scoring."""
    from crm.churn import plan_private
    from crm.churn.costs import load_costs
    from crm.churn.model import TreeModel
    from crm.churn.plan_forms import compile_plan
    from crm.churn.private import admin_key_bytes

    forms = compile_plan(TreeModel.load(args.model), load_costs(args.costs, None), segment_threshold=args.plan_threshold)
    layout = plan_private.layout_of(forms)
    job = await client.start_planning(admin_key_bytes(key), args.plan_threshold)
    st = await _poll(lambda: client.planning_status(job.job), progress, "planning", give_up)
    plans = {}
    for ch in await client.planning_results(job.job):
        for plan in plan_private.open_chunk(forms, layout, key, ch, p_loyal):
            plans[plan.customer] = plan_private.plan_to_json(plan)
    return {"plans": plans, "plan_job_s": st.seconds}


def worker_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m crm.churn.score", description="churn scoring worker"
    )
    p.add_argument("action", choices=("upload", "admin"))
    p.add_argument("--config", required=True, help="this worker's client config (TOML): a front end's or the admin's")
    p.add_argument("--customers", help="upload: JSON of every customer's encoded attributes")
    p.add_argument(
        "--share", default="0/1", help="upload: K/N, this worker takes every N-th customer from K"
    )
    p.add_argument("--progress", help="admin: file to write the job's progress to")
    p.add_argument("--plan-rows", help="upload: JSON of every customer's raw row, to upload plan shares")
    p.add_argument("--plan-threshold", help="admin: plan after scoring, with this segment threshold")
    p.add_argument("--model", help="admin, planning: model.json")
    p.add_argument("--costs", help="admin, planning: the cost file")
    p.add_argument("--timeout", type=float, default=1800.0)
    args = p.parse_args(argv)
    return report_worker(_upload(args) if args.action == "upload" else _admin(args))


if __name__ == "__main__":
    sys.exit(worker_main())
