"""``mpc-crm simulate --baskets FILE``: private co-purchase counts across real processes.

The parent reads the baskets (one a line, one customer each; the first
``--customers`` lines), writes the public parameters (``copurchase.json``:
the catalogue is every product in the file, the layout counts exactly these
customers) and a deployment with a certificate per customer and one admin,
starts the PSP and the SP (mTLS gRPC on loopback), then:

1. upload: ``--workers`` uploader processes (this module's ``upload``
   command) each act for a share of the customers, with each customer's own
   certificate: the customer encodes its own basket, encrypts every
   plaintext of its contribution and uploads it (kind ``"copurchase"``).
   Customers of one process share the key's fixed-base tables (public data),
   never randomness. A progress bar follows the uploads;
2. publish: the admin's process asks the SP to publish (the SP sums the
   stored uploads and decrypts the sum jointly with the PSP), then reads the
   published counts and the top-k lists of ``--product``;
3. the parent compares every count (the matrix with its diagonal, the number
   of baskets) and each list with the plaintext
   :func:`crm.recommender.copurchase.cooccurrence`, prints a summary and
   exits 1 on any difference.

An uploader learns only its own customers' baskets (``baskets.json`` holds
everyone's because one machine plays everybody).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

from mpc.errors import MpcError, ParameterError
from mpc.parties.simulate import Simulation, read_json, work_directory

ADMIN = "admin"
MIN_CUSTOMERS = 10  # the PSP decrypts only sums of at least 10 uploads (aggregate-decrypt's default)


# -- parent -----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    from crm.recommender.data import load_baskets

    everyone = load_baskets(args.baskets)
    n = _customers(args.customers, len(everyone))
    if args.k < 0:
        raise ParameterError(f"--k must be >= 0, got {args.k}")
    with work_directory(args, "mpc-copurchase-sim-") as root:
        report = CopurchaseSimulation(root, args, everyone, n).run()
    out = args.out or args.json_out
    if out:
        Path(out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return 0 if report["ok"] else 1


def _customers(spec: str, available: int) -> int:
    if str(spec) == "all":
        return available
    try:
        n = int(spec)
    except ValueError:
        raise ParameterError(f"--customers {spec!r}: a number or 'all'") from None
    if not MIN_CUSTOMERS <= n <= available:
        raise ParameterError(
            f"--customers must be in {MIN_CUSTOMERS}..{available} (the PSP decrypts only sums of at least "
            f"{MIN_CUSTOMERS} uploads; the file has {available} baskets)"
        )
    return n


def check_counts(plain: Any, got: Any, lists: dict[str, Any], k: int) -> list[str]:
    """Every difference between the published counts and the plaintext oracle (none: equal)."""
    problems: list[str] = []
    if got.items != plain.items:
        problems.append(f"the catalogue differs ({len(got.items)} items published, {len(plain.items)} expected)")
        return problems
    if got.baskets != plain.baskets:
        problems.append(f"{got.baskets} baskets published, {plain.baskets} expected")
    wrong = int(np.count_nonzero(got.matrix != plain.matrix))
    if wrong:
        problems.append(f"{wrong} of {plain.matrix.size} counts C(X, Y) differ from the plaintext")
    for product, entry in lists.items():
        if entry["baskets_with"] != plain.support(product):
            problems.append(f"{product}: in {entry['baskets_with']} baskets, expected {plain.support(product)}")
        exp = [[y, c] for y, c in plain.recommend_for(product, k)]
        if entry["recommendations"] != exp:
            problems.append(f"{product}: top-{k} list differs from the plaintext")
    return problems


class ProgressBar:
    """A one-line bar on a terminal (rate and ETA); otherwise a line at each 10 % step, at
    most one every 5 s (logs stay short for short runs)."""

    def __init__(self, total: int, what: str, stream: IO[str] | None = None, width: int = 30) -> None:
        self.total, self.what, self.width = total, what, width
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self.step = 0
        self.printed = self.t0

    def update(self, done: int) -> float | None:
        """Show ``done``; returns the estimated seconds left (None before the first one)."""
        elapsed = time.monotonic() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        tail = f"{done}/{self.total} {self.what}  {rate:.1f}/s" + (f"  ETA {_clock(eta)}" if eta is not None else "")
        if self.tty:
            fill = self.width * done // max(1, self.total)
            self.stream.write(f"\r  [{'#' * fill}{'.' * (self.width - fill)}] {tail}   ")
            self.stream.flush()
        elif 10 * done // max(1, self.total) > self.step and time.monotonic() - self.printed >= 5.0:
            self.step = 10 * done // max(1, self.total)
            self.printed = time.monotonic()
            print(f"  {100 * done // max(1, self.total):3d}%  {tail}", file=self.stream, flush=True)
        return eta

    def finish(self, done: int) -> None:
        if self.tty:
            self.update(done)
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class CopurchaseSimulation:
    def __init__(self, root: Path, args: argparse.Namespace, everyone: list[tuple[str, ...]], n: int) -> None:
        from crm.recommender.copurchase import cooccurrence
        from mpc.parties.certs import user_ids

        self.root, self.args = root, args
        self.items = sorted({i for b in everyone for i in b})  # the shop's catalogue: the whole file's
        self.names = user_ids(n)
        self.baskets = dict(zip(self.names, everyone[:n], strict=True))
        self.plain = cooccurrence(list(self.baskets.values()), self.items)
        self.products = list(args.product) or [
            self.plain.items[i] for i in np.argsort(-np.diag(self.plain.matrix), kind="stable")[:3]
        ]
        for x in self.products:
            self.plain.support(x)  # an unknown product: ParameterError with close matches, before any process
        self.sim = Simulation(root, args)
        self.phases: dict[str, float] = {}

    def spawn_module(self, name: str, argv: list[str]) -> Any:
        return self.sim.spawn(name, argv, stdout_to_file=True, module="crm.recommender.copurchase_simulate")

    def run(self) -> dict[str, Any]:
        from crm.recommender.catalog import CopurchaseParams
        from mpc.parties.deploy import write_deployment

        a, n = self.args, len(self.names)
        workers = max(1, min(a.workers, n))
        print(
            f"Co-purchase simulation in {self.root}: {n} customers (one basket each), {len(self.items)} "
            f"products, {a.key_bits}-bit keys, {workers} uploader process(es)"
        )
        deadline = time.monotonic() + a.timeout
        try:
            t = time.perf_counter()
            self.root.mkdir(parents=True, exist_ok=True)
            params = CopurchaseParams(tuple(self.items), customers=n)
            params.save(self.root / "copurchase.json")
            (self.root / "baskets.json").write_text(json.dumps({u: list(b) for u, b in self.baskets.items()}))
            dep = write_deployment(
                self.root, [*self.names, ADMIN], key_bits=a.key_bits, deadline_s=a.deadline,
                copurchase=self.root / "copurchase.json", admins=[ADMIN],
            )
            self.phases["certificates_and_configs"] = time.perf_counter() - t

            servers = self.sim.start_servers(dep, deadline, self.phases)

            common = ["--configs", str(self.root / "users")]
            t = time.perf_counter()
            progress = self.root / "progress"
            progress.mkdir(exist_ok=True)
            ups = [
                self.spawn_module(
                    f"upload-{k}",
                    ["upload", *common, "--baskets", str(self.root / "baskets.json"), "--shard", str(k),
                     "--shards", str(workers), "--progress", str(progress / f"upload-{k}.json")],
                )
                for k in range(workers)
            ]
            up_reports = self._wait_uploads(ups, servers, deadline, progress)
            self.phases["encrypt_and_upload"] = time.perf_counter() - t

            t = time.perf_counter()
            argv = ["publish", *common, "--admin", ADMIN, "--k", str(a.k)]
            for x in self.products:
                argv += ["--product", x]
            (pub,) = self.sim.wait_reports([self.spawn_module("publish", argv)], servers, deadline)
            self.phases["publish_and_read"] = time.perf_counter() - t

            stats = self.sim.stop_servers(servers, self.phases)
        finally:
            self.sim._kill_all()
        return self._report(up_reports, pub, stats, workers)

    def _wait_uploads(
        self, ups: list[Any], servers: list[Any], deadline: float, progress: Path
    ) -> list[dict[str, Any]]:
        """Wait for the uploaders with a progress bar; stop at the first one that fails."""
        total = len(self.names)
        bar = ProgressBar(total, "customers")
        warned = False
        done = 0
        while True:
            self.sim.check_servers(servers)
            for c in ups:
                if c.proc.poll() not in (None, 0):
                    self.sim.wait_reports([c], servers, deadline)  # raises with the worker's error
            done = sum(int(read_json(progress / f"upload-{k}.json").get("done", 0)) for k in range(len(ups)))
            eta = bar.update(done)
            if all(c.proc.poll() is not None for c in ups):
                break
            if not warned and eta is not None and done >= max(5, total // 50) and time.monotonic() + eta > deadline:
                warned = True
                print(
                    f"\n  warning: at this rate the uploads need about {_clock(eta)} more, beyond --timeout "
                    f"{self.args.timeout:.0f} s",
                    file=sys.stderr,
                )
            if time.monotonic() > deadline:
                raise MpcError(f"timed out after {self.args.timeout:.0f} s with {done}/{total} customers uploaded")
            time.sleep(0.2)
        bar.finish(total if done == total else done)
        return self.sim.wait_reports(ups, servers, deadline)

    def _report(
        self, ups: list[dict[str, Any]], pub: dict[str, Any], stats: dict[str, Any], workers: int
    ) -> dict[str, Any]:
        from crm.recommender.catalog import counts_from_flat

        got = counts_from_flat(pub["items"], pub["counts"], pub["baskets"])
        problems = check_counts(self.plain, got, pub["products"], self.args.k)
        if pub["contributors"] != len(self.names):
            problems.append(f"{pub['contributors']} contributors published, {len(self.names)} expected")
        enc = [x for r in ups for x in r["encrypt_s"]]
        upl = [x for r in ups for x in r["upload_s"]]
        n = len(self.names)
        layout = ups[0]["layout"]
        report = {
            "ok": not problems,
            "params": {
                "baskets": str(self.args.baskets),
                "customers": n,
                "products": len(self.items),
                "key_bits": self.args.key_bits,
                "upload_workers": workers,
                "layout": layout,
            },
            "phases_s": self.phases,
            "per_customer": {
                "ciphertexts": layout["ciphertexts_per_customer"],
                "upload_bytes": ups[0]["upload_bytes"],
                "encrypt_ms_median": 1000 * statistics.median(enc),
                "encrypt_ms_mean": 1000 * statistics.fmean(enc),
                "upload_ms_median": 1000 * statistics.median(upl),
            },
            "customers_per_s": n / self.phases["encrypt_and_upload"],
            "publish": pub["publish"],
            "read_s": pub["read_s"],
            "bytes_sent": {
                "sp": stats.get("sp", {}).get("bytes_sent", 0),
                "psp": stats.get("psp", {}).get("bytes_sent", 0),
                "customers": sum(int(r["bytes_sent"]) for r in ups),
                "admin": pub["bytes_sent"],
            },
            "check": {"equal_to_plaintext": not problems, "problems": problems},
            "products": {
                x: {"baskets_with": e["baskets_with"], "recommendations": [{"item": y, "count": c} for y, c in e["recommendations"]]}
                for x, e in pub["products"].items()
            },
        }
        self._print(report)
        return report

    def _print(self, rep: dict[str, Any]) -> None:
        c, p, t = rep["per_customer"], rep["publish"], rep["phases_s"]
        n = rep["params"]["customers"]
        print(
            f"  {n} customers encrypted and uploaded in {t['encrypt_and_upload']:.2f} s "
            f"({rep['customers_per_s']:.1f}/s): {c['ciphertexts']} ciphertexts = {c['upload_bytes'] / 1000:.1f} kB "
            f"each, encryption {c['encrypt_ms_median']:.0f} ms and upload {c['upload_ms_median']:.0f} ms (medians)"
        )
        print(
            f"  published: the SP summed {p['contributors']} uploads in {p['sum_s']:.2f} s; joint decryption with "
            f"the PSP {p['decrypt_s']:.2f} s"
        )
        print(
            f"  other phases: certificates and configs {t['certificates_and_configs']:.2f} s, servers and joint key "
            f"{t['start_and_keygen']:.2f} s, publish and read {t['publish_and_read']:.2f} s, "
            f"shutdown {t['shutdown']:.2f} s"
        )
        b = rep["bytes_sent"]
        print(f"Bytes sent: SP {b['sp']:,}, PSP {b['psp']:,}, customers {b['customers']:,}, admin {b['admin']:,}")
        for x, e in rep["products"].items():
            print(f"{x}: in {e['baskets_with']} of {n} baskets; bought with it (published counts):")
            for rank, r in enumerate(e["recommendations"], 1):
                share = 100 * r["count"] / e["baskets_with"] if e["baskets_with"] else 0.0
                print(f"  {rank:2d}. {r['item']:<28} {r['count']:5d}  ({share:.1f}% of its baskets)")
        if rep["check"]["equal_to_plaintext"]:
            print(f"Published counts equal the plaintext counts: all {len(self.items) ** 2:,} C(X, Y), {n} baskets")
        else:
            print("Published counts DIFFER from the plaintext counts:")
            for problem in rep["check"]["problems"]:
                print(f"  {problem}")
        print("OK" if rep["ok"] else "FAILED")


# -- workers (child processes) -----------------------------------------------------------------
class _Progress:
    """The uploader's count of finished customers, in a small file the parent polls."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.last = path, 0.0

    def write(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.path is None or (not force and now - self.last < 0.2):
            return
        self.last = now
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"done": done}))
        tmp.replace(self.path)


async def _upload_worker(args: argparse.Namespace) -> dict[str, Any]:
    from crm.recommender.catalog import KIND, CatalogClient
    from crm.recommender.private_copurchase import contribution, upload_plaintexts
    from mpc.elgamal.proofs import UploadContext, encrypt_proven
    from mpc.parties.user import UserClient, UserConfig

    everyone = json.loads(Path(args.baskets).read_text())
    names = sorted(everyone)[args.shard :: args.shards]
    own = {u: everyone[u] for u in names}
    del everyone

    def config(u: str) -> UserConfig:
        return UserConfig.load(Path(args.configs) / f"{u}.toml")

    sent = 0
    async with UserClient(config(names[0])) as first:
        pk = await first.public_key(wait_s=60.0, precompute=True)
        lay = await CatalogClient(first).layout(pk)
        sent += first.bytes_sent
    pk.encrypt(0)  # the fixed-base tables, built once for this process's customers
    encrypting = ThreadPoolExecutor(max_workers=1)  # one core: encryption holds the GIL
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(args.concurrency)
    progress = _Progress(Path(args.progress) if args.progress else None)
    enc_s: list[float] = []
    up_s: list[float] = []
    done = 0

    def encrypt(u: str) -> tuple[bytes, bytes]:
        t = time.perf_counter()
        context = UploadContext(pk, u, KIND, lay.version).digest()
        cts, proofs = encrypt_proven(pk, upload_plaintexts(pk, contribution(own[u], lay), lay), context)
        enc_s.append(time.perf_counter() - t)
        return pk.ciphertexts_to_bytes(cts), proofs

    async def one(u: str) -> None:
        nonlocal sent, done
        async with sem:
            blob, proofs = await loop.run_in_executor(encrypting, encrypt, u)
            async with UserClient(config(u)) as client:
                t = time.perf_counter()
                await client.upload_proven(KIND, blob, proofs, lay.ciphertexts, lay.version)
                up_s.append(time.perf_counter() - t)
                sent += client.bytes_sent
            done += 1
            progress.write(done)

    try:
        await asyncio.gather(*(one(u) for u in names))
    finally:
        encrypting.shutdown(wait=False, cancel_futures=True)
    progress.write(done, force=True)
    return {
        "ok": True,
        "customers": len(names),
        "layout": lay.describe(),
        "upload_bytes": lay.ciphertexts * pk.ciphertext_bytes,
        "encrypt_s": enc_s,
        "upload_s": up_s,
        "bytes_sent": sent,
    }


async def _publish_worker(args: argparse.Namespace) -> dict[str, Any]:
    from crm.recommender.catalog import CatalogClient
    from mpc.parties.user import UserClient, UserConfig

    async with UserClient(UserConfig.load(Path(args.configs) / f"{args.admin}.toml")) as admin:
        await admin.public_key(wait_s=60.0)
        cat = CatalogClient(admin)
        t = time.perf_counter()
        r = await cat.publish()
        publish_s = time.perf_counter() - t
        t = time.perf_counter()
        got = await cat.copurchase(args.product, args.k, counts=True)
        read_s = time.perf_counter() - t
        sent = admin.bytes_sent
    return {
        "ok": True,
        "publish": {
            "epoch": r.epoch,
            "contributors": r.contributors,
            "baskets": r.baskets,
            "sum_s": r.sum_s,
            "decrypt_s": r.decrypt_s,
            "call_s": publish_s,
        },
        "read_s": read_s,
        "contributors": got.contributors,
        "baskets": got.baskets,
        "items": list(got.items),
        "counts": list(got.counts),
        "products": {
            e.product: {"baskets_with": e.baskets_with, "recommendations": [[x.item, x.count] for x in e.recommendations]}
            for e in got.products
        },
        "bytes_sent": sent,
    }


def worker_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crm.recommender.copurchase_simulate", description="simulation worker")
    p.add_argument("action", choices=("upload", "publish"))
    p.add_argument("--configs", required=True, help="directory of the users' TOML configs")
    p.add_argument("--baskets", help="upload: JSON {customer: basket}")
    p.add_argument("--shard", type=int, default=0, help="upload: this worker's share, 0..shards-1")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--progress", help="upload: file where the count of finished customers is kept")
    p.add_argument("--concurrency", type=int, default=4, help="upload: customers in flight")
    p.add_argument("--admin", default=ADMIN, help="publish: the admin's user name")
    p.add_argument("--product", action="append", default=[], help="publish: products whose list is read")
    p.add_argument("--k", type=int, default=5)
    args = p.parse_args(argv)
    try:
        fn = _upload_worker if args.action == "upload" else _publish_worker
        report = asyncio.run(fn(args))
    except MpcError as exc:
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(report), flush=True)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(worker_main())
