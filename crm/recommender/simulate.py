"""``mpc-crm simulate --ratings FILE``: the private recommender across real processes.

The parent reads the ratings (the first ``--users`` users in user order),
writes the public parameters (``rec.json``) and a deployment whose servers load
them, starts the PSP and the SP, then:

1. upload: ``--workers`` worker processes (this module's ``upload`` command),
   each acting for a share of the users with each user's own certificate: the
   user encodes its own ratings, encrypts and uploads them (kind "rec"); the SP
   replicates each record to the PSP;
2. fetch: one worker process fetches every target's recommendations in turn
   (the SP computes on demand, protocol "recommend"; delivery through both
   partial decryptions), decodes and ranks them locally;
3. the parent compares each target's decrypted sums and counts and its ranked
   list with the plaintext oracle (threshold mode) and writes the JSON report.

The target learns how many neighbours it has (the last ciphertext of its
result), never who they are: the report gives that number under
``"neighbours"``; the oracle's neighbour ids are listed under ``plain`` and
their number must match too.

A worker learns only the ratings of the users it acts for (``ratings.json``
holds every user's ratings because one machine plays everybody; a worker reads
its own users' entries only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from mpc.errors import MpcError, ParameterError
from mpc.parties.simulate import Simulation, read_json, report_worker, work_directory

DEFAULT_THRESHOLD = "1/2"


# -- parent -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from crm.recommender.data import load_ratings, parse_scale, synthetic_ratings

    scale = parse_scale(args.scale) if args.scale else None
    if getattr(args, "synthetic", None):
        full = synthetic_ratings(args.synthetic, seed=args.seed)
    else:
        full = load_ratings(args.ratings, scale)
    with work_directory(args, "mpc-rec-sim-") as root:
        report = RecSimulation(root, args, full).run()
    out = args.out or args.json_out
    if out:
        Path(out).write_text(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


def _subset(full: Any, n: int | None) -> Any:
    from crm.recommender.data import build_ratings

    users = full.users if n is None else full.users[:n]
    if n is not None and not 2 <= n <= len(full.users):
        raise ParameterError(f"--users must be in 2..{len(full.users)} (users in {full.source})")
    triples = []
    for u in users:
        row = full.d[full.user_index[u]]
        for i, item in enumerate(full.items):
            if row[i]:
                triples.append((u, item, int(row[i]) - 1 + full.lo))
    return build_ratings(triples, scale=(full.lo, full.hi), source=full.source)


def _targets(users: list[str], spec: str, eligible: list[str] | None = None) -> list[str]:
    """``all``, or N targets spread over user order among ``eligible`` users.

    Users who rated none of the dense items have similarity 0 with everyone
    (no neighbours above a positive threshold); they are chosen only by ``all``.
    """
    if spec == "all":
        return list(users)
    try:
        t = int(spec)
    except ValueError:
        raise ParameterError(f"--targets {spec!r}: a number or 'all'") from None
    pool = eligible or users
    if not 1 <= t <= len(pool):
        raise ParameterError(f"--targets must be in 1..{len(pool)}")
    return [pool[k * len(pool) // t] for k in range(t)]  # spread over user order


def _own(r: Any, u: str) -> dict[str, int]:
    row = r.d[r.user_index[u]]
    return {r.items[i]: int(row[i]) - 1 + r.lo for i in range(len(r.items)) if row[i]}


class RecSimulation:
    def __init__(self, root: Path, args: argparse.Namespace, full: Any) -> None:

        self.root = root
        self.args = args
        self.r = _subset(full, args.users)
        self.sim = Simulation(root, args)  # reuse its process handling (spawn, stop, kill)
        self.phases: dict[str, float] = {}

    def spawn_module(self, name: str, argv: list[str]) -> Any:
        """A worker: ``python -m crm.recommender.simulate ...``, stdout to logs/NAME.out."""
        return self.sim.spawn(name, argv, stdout_to_file=True, module="crm.recommender.simulate")

    def _wait_precompute(self, users: int, servers: list[Any], deadline: float, t0: float) -> None:
        """Until the SP reports every user's recommendations current (its precompute.json)."""
        from crm.recommender.service import PRECOMPUTE_FILE

        tty, shown = sys.stdout.isatty(), -1
        path = self.root / "sp" / PRECOMPUTE_FILE
        while time.monotonic() < deadline:
            self.sim.check_servers(servers)
            state = read_json(path)
            done, total = state.get("done", 0), state.get("total", 0)
            if total and (tty or done * 10 // total > shown):
                shown = done * 10 // total
                dt = time.perf_counter() - t0
                line = f"  precomputing: {done}/{total} users' recommendations, {dt:.0f} s"
                print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
            if total == users and done == total:
                if tty:
                    print()
                return
            time.sleep(0.5)
        raise MpcError("the SP did not precompute every user's recommendations in time (see --timeout)")

    def run(self) -> dict[str, Any]:
        from crm.recommender.plain import PlainParams, Recommender
        from crm.recommender.service import RecParams
        from mpc.parties.deploy import write_deployment

        a, r = self.args, self.r
        threshold = a.threshold if a.threshold is not None else DEFAULT_THRESHOLD
        top_n = getattr(a, "top_n", 0) or 0
        if top_n:
            plain = PlainParams(dense=a.dense, shift=a.shift, top_n=top_n, k=0)
        else:
            plain = PlainParams(dense=a.dense, shift=a.shift, threshold=threshold, k=0)
        oracle = Recommender(r, plain)
        params = RecParams.from_ratings(
            r, oracle.dense_items, a.shift, plain.delta or 0, a.key_bits, top_n,  # type: ignore[arg-type]
            getattr(a, "selection", "shuffle"),
        )
        eligible = [u for i, u in enumerate(r.users) if oracle.vectors[i].any()]
        targets = _targets(list(r.users), a.targets, eligible)
        workers = max(1, min(a.workers, len(r.users)))
        print(
            f"Recommender simulation in {self.root}: {len(r.users)} users, {len(r.items)} items, "
            f"{a.key_bits}-bit keys, {f'top {top_n}' if top_n else f'delta {plain.delta}'}, "
            f"{len(targets)} target(s), {workers} upload worker(s)"
        )
        deadline = time.monotonic() + a.timeout
        ok = False
        try:
            t = time.perf_counter()
            self.root.mkdir(parents=True, exist_ok=True)
            params.save(self.root / "rec.json")
            (self.root / "ratings.json").write_text(json.dumps({u: _own(r, u) for u in r.users}))
            dep = write_deployment(
                self.root, list(r.users), key_bits=a.key_bits, deadline_s=a.deadline,
                recommender=self.root / "rec.json", precompute=getattr(a, "precompute", False),
                workers=getattr(a, "server_workers", 2),
            )
            self.phases["certificates_and_configs"] = time.perf_counter() - t

            servers = self.sim.start_servers(dep, deadline, self.phases)

            common = ["--params", str(self.root / "rec.json"), "--ratings", str(self.root / "ratings.json"),
                      "--configs", str(self.root / "users")]
            t = time.perf_counter()
            shares = [list(r.users)[k::workers] for k in range(workers)]
            ups = [self.spawn_module(f"upload-{k}", ["upload", *common, "--users", ",".join(s)])
                   for k, s in enumerate(shares)]
            up_reports = self.sim.wait_reports(ups, servers, deadline)
            self.phases["upload"] = time.perf_counter() - t
            print(f"  {len(r.users)} users uploaded in {self.phases['upload']:.2f} s")
            if getattr(a, "settle", 0):
                # Idle time: the servers precompute the comparisons' randomness meanwhile.
                print(f"  servers idle for {a.settle:.0f} s (precomputation)")
                time.sleep(a.settle)
            if getattr(a, "precompute", False):
                t = time.perf_counter()
                self._wait_precompute(len(r.users), servers, deadline, t)
                self.phases["precompute_all"] = time.perf_counter() - t

            t = time.perf_counter()
            gap = ["--gap", str(a.gap)] if getattr(a, "gap", 0) else []
            fetcher = self.spawn_module("fetch", ["fetch", *common, "--users", ",".join(targets), *gap])
            (fetch_report,) = self.sim.wait_reports([fetcher], servers, deadline)
            self.phases["fetch_targets"] = time.perf_counter() - t

            stats = self.sim.stop_servers(servers, self.phases)
        finally:
            self.sim._kill_all()

        out_targets: dict[str, Any] = {}
        for u in targets:
            got = fetch_report["targets"][u]
            exp = oracle.recommend(u)
            match = (
                got["sums"] == [int(x) for x in exp.sums]
                and got["counts"] == [int(x) for x in exp.counts]
                and got["recommendations"] == [x.to_dict() for x in exp.recommendations]
                and got["neighbours"] == len(exp.neighbours)
            )
            out_targets[u] = {
                "neighbours": got["neighbours"],
                "recommendations": got["recommendations"],
                "plain": {"neighbours": exp.neighbours, "recommendations": [x.to_dict() for x in exp.recommendations]},
                "match": match,
                "fetch_s": got["fetch_s"],
            }
        ok = all(t["match"] for t in out_targets.values())
        fetch_times = [t["fetch_s"] for t in out_targets.values()]
        report = {
            "ok": ok,
            "params": {
                "ratings": str(a.ratings) if a.ratings else f"synthetic:{a.synthetic}:seed={a.seed}",
                "users": len(r.users),
                "items": len(r.items),
                "dense": a.dense,
                "shift": a.shift,
                "threshold": None if top_n else str(threshold),
                "delta": plain.delta,
                "top_n": top_n or None,
                "lo": r.lo,
                "hi": r.hi,
                "key_bits": a.key_bits,
                "layout_version": params.layout_version,
                "targets": len(targets),
                "upload_workers": workers,
            "server_workers": getattr(a, "server_workers", 2),
            },
            "targets": out_targets,
            "per_target_s": statistics.median(fetch_times),
            "first_fetch_s": fetch_times,
            "gap_s": getattr(a, "gap", 0.0),
            "cached_fetch_s": fetch_report.get("cached_fetch_s"),
            "phases_s": self.phases,
            "bytes_sent": {
                "sp": stats.get("sp", {}).get("bytes_sent", 0),
                "psp": stats.get("psp", {}).get("bytes_sent", 0),
                "users": sum(int(x.get("bytes_sent", 0)) for x in [*up_reports, fetch_report]),
            },
            "server_stats": {k: v.get("recommender") for k, v in stats.items()},
        }
        self._print(report)
        return report

    def _print(self, rep: dict[str, Any]) -> None:
        print()
        for k, v in rep["phases_s"].items():
            print(f"  {k:<28} {v:8.2f} s")
        times = ", ".join(f"{t:.2f}" for t in rep["first_fetch_s"])
        print(f"  per target (compute + delivery): median {rep['per_target_s']:.2f} s ({times})")
        b = rep["bytes_sent"]
        print(f"Bytes sent: SP {b['sp']:,}, PSP {b['psp']:,}, users {b['users']:,}")
        titles = _titles(getattr(self.args, "titles", None))
        for user, t in rep["targets"].items():
            recs = t["recommendations"]
            print(f"user {user}: {len(recs)} recommendations{' (match)' if t['match'] else ' (MISMATCH)'}")
            for k, rec in enumerate(recs[:5], 1):
                name = titles.get(rec["item"], rec["item"])
                print(f"  {k}. {rec['score']:5.2f} ({rec['count']} neighbours)  {name}")
        good = sum(1 for t in rep["targets"].values() if t["match"])
        print(f"Targets equal to the plaintext oracle: {good}/{len(rep['targets'])}")
        print("OK" if rep["ok"] else "FAILED")


def _titles(path: str | None) -> dict[str, str]:
    if not path:
        return {}
    from crm.recommender.data import load_titles

    return load_titles(path)


# -- workers (child processes) -----------------------------------------------------------------
async def _upload_worker(args: argparse.Namespace) -> dict[str, Any]:
    from crm.recommender.service import RecParams, upload_ratings
    from mpc.parties.user import UserClient, UserConfig

    params = RecParams.load(args.params)
    users = [u for u in args.users.split(",") if u]
    everyone = json.loads(Path(args.ratings).read_text())
    own = {u: everyone[u] for u in users}
    del everyone
    sent = 0
    first = UserClient(UserConfig.load(Path(args.configs) / f"{users[0]}.toml"))
    try:
        pk = await first.public_key(wait_s=60.0, precompute=True)
        sent += first.bytes_sent
    finally:
        await first.close()
    sem = asyncio.Semaphore(args.concurrency)
    times: list[float] = []

    async def one(u: str) -> None:
        nonlocal sent
        async with sem, UserClient(UserConfig.load(Path(args.configs) / f"{u}.toml")) as client:
            t = time.perf_counter()
            await upload_ratings(client, params, own[u], pk=pk)
            times.append(time.perf_counter() - t)
            sent += client.bytes_sent

    await asyncio.gather(*(one(u) for u in users))
    return {"ok": True, "users": len(users), "upload_s": times, "bytes_sent": sent}


async def _fetch_worker(args: argparse.Namespace) -> dict[str, Any]:
    from crm.recommender.service import RecParams, fetch_recommendations
    from mpc.parties.user import UserClient, UserConfig

    params = RecParams.load(args.params)
    everyone = json.loads(Path(args.ratings).read_text())
    out: dict[str, Any] = {}
    sent = 0
    cached: list[float] = []
    for k, u in enumerate(u for u in args.users.split(",") if u):
        if k and args.gap:
            await asyncio.sleep(args.gap)  # idle time: the servers refill their pools
        own = everyone[u]
        async with UserClient(UserConfig.load(Path(args.configs) / f"{u}.toml")) as client:
            await client.public_key(wait_s=60.0)
            t = time.perf_counter()
            ranked, sums, counts, neighbours = await fetch_recommendations(client, params, own)
            dt = time.perf_counter() - t
            if k == 0:  # once: the second fetch comes from the SP's cache
                t = time.perf_counter()
                again = (await fetch_recommendations(client, params, own)).ranked
                cached.append(time.perf_counter() - t)
                if again != ranked:
                    raise MpcError(f"{u}: the cached recommendations differ from the computed ones")
            sent += client.bytes_sent
        out[u] = {"recommendations": [x.to_dict() for x in ranked], "sums": sums, "counts": counts,
                  "neighbours": neighbours, "fetch_s": dt}
    return {"ok": True, "targets": out, "cached_fetch_s": cached, "bytes_sent": sent}


def worker_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crm.recommender.simulate", description="simulation worker")
    p.add_argument("action", choices=("upload", "fetch"))
    p.add_argument("--params", required=True)
    p.add_argument("--ratings", required=True)
    p.add_argument("--configs", required=True, help="directory of the users' TOML configs")
    p.add_argument("--users", required=True, help="comma-separated user ids this worker acts for")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--gap", type=float, default=0.0, help="fetch: seconds of idle time between targets")
    args = p.parse_args(argv)
    return report_worker((_upload_worker if args.action == "upload" else _fetch_worker)(args))


if __name__ == "__main__":
    sys.exit(worker_main())
