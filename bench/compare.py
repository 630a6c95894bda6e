"""Benchmark of the secure comparison (protocol "compare"), written as JSON.

``scripts/bench_compare.py --bits 2048 --l 32 --batch 1000 --json FILE`` (or
``mpc-crm bench compare`` once registered) runs batches of comparisons
[x_k >= y_k] of l-bit values, for each output ("psp": the bit revealed to the
PSP; "encrypted": the bit encrypted under the joint key, kept by the SP) and
each method asked for (``--methods``, default both: "gc", the garbled circuit
over IKNP oblivious transfer, once; "dgk", once per digit width), so that one
run gives their ratio (``ratio_dgk_over_gc``). Every row has a ``method`` key
and reports:

* ``ms_per_comparison``: wall-clock time of the whole batch over
  :func:`mpc.protocol.run_local` divided by the batch size. Both parties run in
  ONE process and, in the default "serial" mode, in one thread: their work adds
  up on one core, as if SP and PSP took turns on one machine. In a deployment
  each party has its own host, so the SP and PSP figures do not add up there;
* ``sp_ms`` / ``psp_ms``: each party's share (CPU time of its step functions),
  ``steps_ms`` per step, ``decryption_ms`` (the two partial decryptions of the
  packed values), ``packing_ms`` (the SP's first step: E(x - y), Horner
  packing, masks, re-randomisation), ``comparison_ms`` (the comparison of
  c^ with r^ after the decryption: for "dgk" the terms, zero tests and hints,
  for "gc" the OT choices, garbling, evaluation and the SP's unmasking),
  ``messaging_ms`` (the rest: in-memory transport, protobuf);
* ``ops``: partial decryptions, curve scalar multiplications (variable-base,
  fixed-base comb), zero tests (ECDH), joint-key encryptions, bytes sent;
* ``precomputed``: what the pools held before the clock started, how many
  items the batch used and what they cost to make (``ms_per_comparison``):
  encryptions of zero under the joint key (both methods: the SP's
  re-randomisation of packed values, the PSP's encrypted output bits) and, for
  "dgk" only, the SP's encryptions of bits under its curve key and the PSP's
  term randomizers and dummy terms ("gc" has no other pool; its base OTs are
  made once per pair of servers, here in the warm-up). That work is done in
  idle time and is NOT in ``ms_per_comparison``;
* with ``--overlap``, a second run where each party's crypto runs in its own
  thread, so the two partial decryptions (and the roles' waits) overlap on two
  cores; with ``--cold``, a run with empty pools (everything online).

The inputs are encrypted before the clock starts. Results are checked against
plaintext (output "encrypted": a sample of 64 is decrypted). The machine may
be shared: the load average is recorded before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import secrets
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gmpy2

import mpc.protocols.compare as cmp
from bench.common import loadavg, machine_info, publish, standalone
from mpc.comparison import ec
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import KeyShare, PublicKey, combine, local_joint_keys, params_for
from mpc.elgamal.curve import CurvePrivateKey
from mpc.errors import MpcError
from mpc.protocol import run_local
from mpc.transport import InMemoryNetwork

TARGET_MS = 2.0
"""Speed target: amortised ms per 32-bit comparison in batches of 1000 (2048-bit keys)."""

METHODS = (cmp.METHOD_GC, cmp.METHOD_DGK)
"""The comparison methods measured by default, in this order."""

Log = Callable[[str], None]


class StepClock:
    """A ``run_crypto`` for a role that times each step function (wall and thread CPU)."""

    def __init__(self, executor: ThreadPoolExecutor | None = None) -> None:
        self.executor = executor
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "?")
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args)
        finally:
            self.cpu[name] += time.thread_time() - c0
            self.wall[name] += time.perf_counter() - w0

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.executor is None:
            return self._timed(fn, *args)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._timed, fn, *args)


def _pairs(count: int, bits: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Random l-bit pairs, a quarter of them equal, with the edges 0 and 2^l - 1."""
    top = (1 << bits) - 1
    xs, ys = [], []
    for k in range(count):
        x = rng.getrandbits(bits)
        y = x if k % 4 == 0 else rng.getrandbits(bits)
        xs.append(x)
        ys.append(y)
    for k, (x, y) in enumerate([(0, 0), (top, top), (0, top), (top, 0)][:count]):
        xs[k], ys[k] = x, y
    return xs, ys


class _Parties:
    """SP and PSP state that lives across batches: keys, tables, pools."""

    def __init__(self, bits: int) -> None:
        params = params_for(bits)
        pk, (s_sp, s_psp) = local_joint_keys(params)
        # Separate key objects: each party has its own tables and pools, as in a deployment.
        self.pk_sp = PublicKey(params, pk.h)
        self.pk_psp = PublicKey(params, pk.h)
        self.share_sp: KeyShare = s_sp
        self.share_psp: KeyShare = s_psp
        self.curve = CurvePrivateKey.generate()
        self.sp_pools = SpPools(self.curve)  # the SP's zero-test key
        self.psp_pools = PspPools()

    def warm(self, methods: Sequence[str]) -> None:
        self.pk_sp.encrypt(0)
        self.pk_psp.encrypt(0)
        if cmp.METHOD_DGK in methods:
            ec.base_comb()
            ec.comb_for(self.curve.public_key.to_bytes())

    def decrypt(self, ct: Any) -> int:
        return combine(ct, [self.share_sp.partial_decrypt(ct), self.share_psp.partial_decrypt(ct)])

    def pools(self, method: str) -> dict[str, Any]:
        """The pools a batch of ``method`` draws from (for "gc": the joint-key zeros only)."""
        joint = {"sp_joint_zero_pool": self.pk_sp.pool, "psp_joint_zero_pool": self.pk_psp.pool}
        if method != cmp.METHOD_DGK:
            return joint
        y = self.curve.public_key.to_bytes()
        return {
            "sp_bit_encryptions": self.sp_pools.bits,
            "psp_randomizers": self.psp_pools.randomizers(y),
            "psp_dummies": self.psp_pools.dummies,
            **joint,
        }


def _pool_counts(pool: Any) -> tuple[int, int]:
    """(items drawn, items computed on demand) so far."""
    return pool.drawn, pool.on_demand


def _fill(parties: _Parties, params: cmp.CompareParams, log: Log) -> dict[str, float]:
    """Fill every pool for one batch; return the seconds per item of each."""
    k = params.count
    plan = params.plan
    packed = params.layout(parties.pk_sp).count_plaintexts(k)
    want = {
        "sp_bit_encryptions": k * plan.levels,
        "psp_randomizers": k * plan.terms,
        "psp_dummies": k * plan.terms // 2 + 16,
        "sp_joint_zero_pool": packed,
        "psp_joint_zero_pool": k if params.output == cmp.OUTPUT_ENCRYPTED else 0,
    }
    per_item: dict[str, float] = {}
    for name, pool in parties.pools(params.method).items():
        need = max(0, want[name] - len(pool))
        t0 = time.perf_counter()
        pool.fill(need)
        dt = time.perf_counter() - t0
        if need:
            per_item[name] = dt / need
        log(f"  precomputed {need} x {name} in {dt:.2f} s")
    return per_item


async def _one_batch(
    parties: _Parties,
    params: cmp.CompareParams,
    xs: Sequence[Any],
    ys: Sequence[Any],
    overlap: bool,
) -> tuple[dict[str, object], float, StepClock, StepClock, InMemoryNetwork]:
    ex_sp = ThreadPoolExecutor(1, "sp-crypto") if overlap else None
    ex_psp = ThreadPoolExecutor(1, "psp-crypto") if overlap else None
    clock_sp, clock_psp = StepClock(ex_sp), StepClock(ex_psp)
    net = InMemoryNetwork()
    try:
        t0 = time.perf_counter()
        out = await run_local(
            "compare",
            {
                "sp": {
                    "pk": parties.pk_sp,
                    "share": parties.share_sp,
                    "params": params,
                    "xs": xs,
                    "ys": ys,
                    "pools": parties.sp_pools,
                    "run_crypto": clock_sp,
                },
                "psp": {
                    "pk": parties.pk_psp,
                    "share": parties.share_psp,
                    "params": params,
                    "pools": parties.psp_pools,
                    "run_crypto": clock_psp,
                },
            },
            net,
            timeout=None,
        )
        wall = time.perf_counter() - t0
    finally:
        for ex in (ex_sp, ex_psp):
            if ex is not None:
                ex.shutdown()
    return out, wall, clock_sp, clock_psp, net


def run_batch(
    parties: _Parties,
    params: cmp.CompareParams,
    values: tuple[list[int], list[int]],
    cts: tuple[list[Any], list[Any]],
    *,
    mode: str,
    log: Log,
) -> dict[str, Any]:
    """One measured batch; ``mode`` is "serial", "overlap" or "cold" (empty pools)."""
    k = params.count
    per_item = {} if mode == "cold" else _fill(parties, params, log)
    pools = parties.pools(params.method)
    before = {name: _pool_counts(p) for name, p in pools.items()}
    stock = {name: len(p) for name, p in pools.items()}
    ec.OPS.clear()
    out, wall, c_sp, c_psp, net = asyncio.run(
        _one_batch(parties, params, cts[0], cts[1], overlap=(mode == "overlap"))
    )
    expected = [int(x >= y) for x, y in zip(*values, strict=True)]
    if params.output == cmp.OUTPUT_PSP:
        correct = out["psp"] == expected
    else:
        sample = random.Random(7).sample(range(k), min(64, k))
        got = out["sp"]
        assert isinstance(got, list)
        correct = all(parties.decrypt(got[i]) == expected[i] for i in sample)
    if not correct:
        raise MpcError(f"comparison results differ from plaintext ({params})")

    ms = 1000.0 / k
    sp_ms = sum(c_sp.cpu.values()) * ms
    psp_ms = sum(c_psp.cpu.values()) * ms
    steps = {f"sp.{n}": round(v * ms, 4) for n, v in c_sp.cpu.items()}
    steps |= {f"psp.{n}": round(v * ms, 4) for n, v in c_psp.cpu.items()}
    packed = params.layout(parties.pk_sp).count_plaintexts(k)
    precomputed: dict[str, Any] = {}
    for name, pool in pools.items():
        drawn, on_demand = (a - b for a, b in zip(_pool_counts(pool), before[name], strict=True))
        if not drawn:
            continue
        entry: dict[str, Any] = {
            "stock_before": stock[name],
            "used": drawn,
            "computed_online": on_demand,
        }
        if name in per_item:
            entry["us_per_item"] = round(per_item[name] * 1e6, 2)
            entry["ms_per_comparison"] = round((drawn - on_demand) * per_item[name] * ms, 4)
        precomputed[name] = entry
    ops = {
        "partial_decryptions": 2 * packed,
        "packed_ciphertexts": packed,
        "slots_per_ciphertext": params.layout(parties.pk_sp).capacity,
        "curve_mul_variable_base": ec.OPS["mul"],
        "curve_mul_fixed_base_comb": ec.OPS["comb"],
        "zero_tests_ecdh": ec.OPS["ecdh"],
        "curve_point_sums": ec.OPS["add"],
        "curve_points_parsed": ec.OPS["parse"],
        "joint_encryptions_psp": k if params.output == cmp.OUTPUT_ENCRYPTED else 0,
        "bytes_sp_to_psp": net.transport("sp").bytes_sent,
        "bytes_psp_to_sp": net.transport("psp").bytes_sent,
    }
    per_cmp = {
        key: round(v / k, 3)
        for key, v in ops.items()
        if key.startswith(("curve_", "zero_", "bytes_"))
    }
    decryption = (c_sp.cpu.get("sp_partials", 0.0) + c_psp.cpu.get("psp_masked", 0.0)) * ms
    dgk = params.method == cmp.METHOD_DGK
    steps_of_comparison = (
        ("psp_terms", "sp_result", "psp_finish")
        if dgk
        else ("psp_choices", "sp_garble", "psp_evaluate", "sp_unmask")
    )
    comparison = sum(c_sp.cpu.get(n, 0.0) + c_psp.cpu.get(n, 0.0) for n in steps_of_comparison) * ms
    result = {
        "method": params.method,
        "output": params.output,
        "digit_bits": params.digit_bits if dgk else None,
        "mode": mode,
        "chunks": params.chunks,
        "ms_per_comparison": round(wall * ms, 4),
        "sp_ms": round(sp_ms, 4),
        "psp_ms": round(psp_ms, 4),
        "decryption_ms": round(decryption, 4),
        "packing_ms": round(c_sp.cpu.get("sp_masked", 0.0) * ms, 4),
        "comparison_ms": round(comparison, 4),
        "messaging_ms": round(max(0.0, wall * ms - sp_ms - psp_ms), 4)
        if mode != "overlap"
        else None,
        "steps_ms": steps,
        "ops": ops,
        "ops_per_comparison": per_cmp,
        "precomputed": precomputed,
        "precomputed_ms_per_comparison": round(
            sum(v.get("ms_per_comparison", 0.0) for v in precomputed.values()), 4
        ),
        "precomputed_note": None
        if dgk
        else (
            "method gc precomputes nothing but the joint-key encryptions of zero (both methods "
            "use them); its base OTs are made once per pair of servers (here in the warm-up)"
        ),
        "correct": correct,
    }
    beta = f"beta={params.digit_bits}" if dgk else "      "
    log(
        f"  {params.method:3s} {params.output:9s} {beta} {mode:7s}: {result['ms_per_comparison']:.3f} ms/cmp "
        f"(SP {sp_ms:.3f}, PSP {psp_ms:.3f}, decryption {decryption:.3f}, comparison {comparison:.3f}; "
        f"precomputed {result['precomputed_ms_per_comparison']:.3f})"
    )
    return result


def _best(runs: Sequence[dict[str, Any]], method: str, mode: str, output: str) -> dict[str, Any]:
    """The fastest run of ``method`` in ``mode`` for ``output`` (over the digit widths)."""
    return min(
        (r for r in runs if (r["method"], r["mode"], r["output"]) == (method, mode, output)),
        key=lambda r: r["ms_per_comparison"],
    )


def run_benchmark(
    bits: int = 2048,
    l_bits: int = 32,
    batch: int = 1000,
    *,
    methods: Sequence[str] = METHODS,
    digit_bits: Sequence[int] = (cmp.DEFAULT_DIGIT_BITS,),
    outputs: Sequence[str] = (cmp.OUTPUT_PSP, cmp.OUTPUT_ENCRYPTED),
    kappa: int = 40,
    overlap: bool = False,
    chunks: int = 4,
    cold: bool = False,
    seed: int | None = None,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    methods = list(dict.fromkeys(methods))
    for m in methods:
        if m not in METHODS:
            raise MpcError(f"unknown comparison method {m!r} (known: {', '.join(METHODS)})")
    modes = ["serial"] + (["overlap"] if overlap else []) + (["cold"] if cold else [])
    res: dict[str, Any] = {
        "benchmark": "compare",
        "config": {
            "key_bits": bits,
            "l": l_bits,
            "batch": batch,
            "kappa": kappa,
            "methods": methods,
            "digit_bits": list(digit_bits),
            "outputs": list(outputs),
            "modes": modes,
            "overlap_chunks": chunks if overlap else None,
        },
        "note": (
            "One process: SP and PSP run in the same process over the in-memory transport. "
            "'serial': one thread, SP and PSP work add up on one core. 'overlap': each party's "
            "crypto in its own thread (two cores, as two hosts would be), the batch pipelined "
            "in 'chunks' concurrent parts. 'cold': empty pools, everything online. "
            "ms_per_comparison excludes the precomputation of the pools (idle time), reported "
            "separately as precomputed_ms_per_comparison. Method 'gc' (garbled circuit, IKNP "
            "OT) runs once; method 'dgk' once per digit width (digit_bits is null for 'gc')."
        ),
        "loadavg_start": loadavg(),
    }
    setup: dict[str, float] = {}
    t0 = time.perf_counter()
    parties = _Parties(bits)
    setup["keygen_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    parties.warm(methods)
    setup["tables_s"] = time.perf_counter() - t0
    rng = random.Random(seed if seed is not None else secrets.randbits(64))
    values = _pairs(batch, l_bits, rng)
    log(f"encrypting {2 * batch} inputs ({bits}-bit key) ...")
    t0 = time.perf_counter()
    cts = (
        [parties.pk_sp.encrypt(v) for v in values[0]],
        [parties.pk_sp.encrypt(v) for v in values[1]],
    )
    setup["encrypt_inputs_s"] = time.perf_counter() - t0
    for method in methods:  # tables, and for "gc" the base OTs (once per pair of servers)
        t0 = time.perf_counter()
        warm_params = cmp.CompareParams(
            l_bits, 4, cmp.OUTPUT_PSP, digit_bits=digit_bits[0], kappa=kappa, method=method
        )
        run_batch(
            parties,
            warm_params,
            (values[0][:4], values[1][:4]),
            (cts[0][:4], cts[1][:4]),
            mode="serial",
            log=lambda _: None,
        )
        setup[f"warmup_{method}_s"] = time.perf_counter() - t0
    res["setup_s"] = {k: round(v, 3) for k, v in setup.items()}

    runs = []
    for method in methods:
        betas = digit_bits if method == cmp.METHOD_DGK else [cmp.DEFAULT_DIGIT_BITS]
        for beta in betas:
            for output in outputs:
                params = cmp.CompareParams(
                    l_bits, batch, output, digit_bits=beta, kappa=kappa, method=method
                )
                for mode in modes:
                    what = f"digit bits {beta}, " if method == cmp.METHOD_DGK else ""
                    log(f"batch of {batch}: method {method}, output {output}, {what}{mode} ...")
                    p = dataclasses.replace(params, chunks=chunks) if mode == "overlap" else params
                    runs.append(run_batch(parties, p, values, cts, mode=mode, log=log))
    res["runs"] = runs
    res["summary"] = {
        m: {
            out: {
                "best_ms_per_comparison": (b := _best(runs, m, "serial", out))["ms_per_comparison"],
                "digit_bits": b["digit_bits"],
            }
            for out in outputs
        }
        for m in methods
    }
    if cmp.METHOD_GC in methods and cmp.METHOD_DGK in methods:
        res["ratio_dgk_over_gc"] = {
            mode: {
                out: round(
                    _best(runs, cmp.METHOD_DGK, mode, out)["ms_per_comparison"]
                    / max(_best(runs, cmp.METHOD_GC, mode, out)["ms_per_comparison"], 1e-9),
                    2,
                )
                for out in outputs
            }
            for mode in modes
        }

    def verdicts(mode: str) -> dict[str, dict[str, str]]:
        return {
            m: {
                out: (
                    "PASS" if _best(runs, m, mode, out)["ms_per_comparison"] <= TARGET_MS else "MISS"
                )
                for out in outputs
            }
            for m in methods
        }

    res["targets"] = {
        "amortised_ms_per_comparison": {
            "limit": TARGET_MS,
            "applies": bits == 2048 and l_bits == 32 and batch >= 1000,
            "serial": verdicts("serial"),
        }
    }
    if overlap:
        res["targets"]["amortised_ms_per_comparison"]["overlap"] = verdicts("overlap")
    res["loadavg_end"] = loadavg()
    return res


def format_table(res: dict[str, Any]) -> str:
    c = res["config"]
    lines = [
        f"secure comparison: {c['key_bits']}-bit key, l = {c['l']}, batches of {c['batch']} (one process)",
        f"{'method':6s} {'output':10s} {'beta':>4s} {'mode':8s} {'ms/cmp':>8s} {'SP':>7s} {'PSP':>7s} "
        f"{'decrypt':>8s} {'pack':>7s} {'compare':>7s} {'precomp':>8s}",
    ]
    for r in res["runs"]:
        mode = r["mode"] + (f"/{r['chunks']}" if r.get("chunks", 1) > 1 else "")
        beta = "-" if r["digit_bits"] is None else str(r["digit_bits"])
        lines.append(
            f"{r['method']:6s} {r['output']:10s} {beta:>4s} {mode:8s} {r['ms_per_comparison']:8.3f} "
            f"{r['sp_ms']:7.3f} {r['psp_ms']:7.3f} {r['decryption_ms']:8.3f} {r['packing_ms']:7.3f} "
            f"{r['comparison_ms']:7.3f} {r['precomputed_ms_per_comparison']:8.3f}"
        )
    for r in res.get("processes", []):
        lines.append(
            f"{r['method']:6s} {r['output']:10s}      processes/{r['chunks']} {r['ms_per_comparison']:8.3f}"
            "  (SP here, PSP in a child process, gRPC with mTLS)"
        )
    for mode, ratios in res.get("ratio_dgk_over_gc", {}).items():
        lines.append(f"dgk / gc ({mode}): " + ", ".join(f"{o} x{v:.2f}" for o, v in ratios.items()))
    t = res["targets"]["amortised_ms_per_comparison"]
    lines.append(
        f"target <= {t['limit']} ms/cmp (applies: {t['applies']}): serial {t['serial']}"
        + (f", overlap {t['overlap']}" if "overlap" in t else "")
        + (f", processes {t['processes']}" if "processes" in t else "")
    )
    lines.append(f"load average: start {res['loadavg_start']}, end {res['loadavg_end']}")
    return "\n".join(lines)


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _method_list(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated methods among {', '.join(METHODS)}, got {text!r}"
        )
    return list(dict.fromkeys(methods))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mpc-crm bench compare``."""
    parser.add_argument(
        "--bits", type=int, default=2048, choices=(1024, 2048), help="size of N (default 2048)"
    )
    parser.add_argument(
        "--l", type=int, default=32, dest="l_bits", help="bits of the values compared (default 32)"
    )
    parser.add_argument(
        "--batch", type=int, default=1000, help="comparisons per batch (default 1000)"
    )
    parser.add_argument(
        "--methods",
        type=_method_list,
        default=list(METHODS),
        help="comma-separated comparison methods: gc (garbled circuit, run once), dgk (once per "
        "--digit-bits value); default gc,dgk, which gives their ratio",
    )
    parser.add_argument(
        "--digit-bits",
        type=_int_list,
        default=[cmp.DEFAULT_DIGIT_BITS],
        help=f"DGK digit width(s), comma-separated (default {cmp.DEFAULT_DIGIT_BITS})",
    )
    parser.add_argument(
        "--outputs",
        default="psp,encrypted",
        help="comma-separated: psp (bit revealed to the PSP), encrypted (joint-key bit at the SP)",
    )
    parser.add_argument(
        "--kappa", type=int, default=40, help="statistical security bits (default 40)"
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="also run with each party in its own thread, the batch pipelined (--chunks)",
    )
    parser.add_argument(
        "--chunks",
        type=int,
        default=4,
        help=f"parts of a pipelined batch in --overlap runs (1..{cmp.MAX_CHUNKS}, default 4)",
    )
    parser.add_argument("--cold", action="store_true", help="also run with empty pools")
    parser.add_argument(
        "--processes",
        action="store_true",
        help="also run the batch between two server processes over gRPC with mTLS (--chunks parts)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="--processes: crypto threads of each server (default 1: the two servers share this "
        "machine's cores; on two hosts each would use its own)",
    )
    parser.add_argument("--seed", type=int, help="seed of the input values")
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON ('-': stdout)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "_command", None) or shlex.join(["mpc-crm", *sys.argv[1:]])

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench compare] {msg}", file=sys.stderr, flush=True)

    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()]
    res = run_benchmark(
        args.bits,
        args.l_bits,
        args.batch,
        methods=args.methods,
        digit_bits=args.digit_bits,
        outputs=outputs,
        kappa=args.kappa,
        overlap=args.overlap,
        chunks=args.chunks,
        cold=args.cold,
        seed=args.seed,
        log=log,
    )
    if args.processes:
        from bench.compare_processes import run_processes

        log(f"batch of {args.batch} between two processes over gRPC ({', '.join(args.methods)}) ...")
        proc = run_processes(
            args.bits, args.l_bits, args.batch, args.chunks, outputs, log,
            workers=args.server_workers, methods=args.methods,
        )
        res["processes"] = proc
        verdicts: dict[str, dict[str, str]] = {}
        for r in proc:
            verdicts.setdefault(r["method"], {})[r["output"]] = (
                "PASS" if r["ms_per_comparison"] <= TARGET_MS else "MISS"
            )
        res["targets"]["amortised_ms_per_comparison"]["processes"] = verdicts
    return publish(res, {**machine_info(("gmpy2", "coincurve")), "gmp": gmpy2.mp_version()}, command, args.json, format_table, log)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``scripts/bench_compare.py``)."""
    return standalone("bench_compare", __doc__, add_arguments, run, argv)
