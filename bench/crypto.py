"""Micro-benchmark of the crypto building blocks (DESIGN 3.1-3.3), written as JSON.

``mpc-crm bench crypto --bits 2048 --json FILE [--repeat N]`` (or
``scripts/bench_crypto.py``) measures, in this one thread (one core):

* ``ops_ms``: median milliseconds per operation of threshold ElGamal over
  Z*_{N^2} (encrypt, rerandomize from a pre-filled pool, add, scalar_mul by a
  64-bit scalar, partial_decrypt, combine), Horner packing of 40 ciphertexts
  into one (``pack40``), and the secp256k1 zero-test ElGamal (curve_encrypt of
  random bits with the public key, curve_is_zero by the key owner);
* ``raw_powmod_ms``: one gmpy2.powmod with an |N|+128-bit exponent mod N^2,
  the cost of one exponentiation without a fixed-base table (an encryption
  needs two);
* ``table_build_s``: building the fixed-base tables of g and h, done before
  any timing;
* ``phe_encrypt_ms``: python-paillier's encryption at the same modulus size,
  measured in the same run, for comparison;

and with every core, ``batch_encrypt_per_s`` through :class:`BatchEncryptor`
(worker processes, tables built in :meth:`BatchEncryptor.warm_up` before the
clock starts). ``batch_speedup`` divides it by the one-core rate of the same
batch, timed in alternation with it so that both see the same machine load
(``batch_speedup_vs_encrypt_per_s`` divides by ``encrypt_per_s`` instead).
Each figure is the median of ``--repeat`` samples taken after a
warm-up; a sample times ``inner`` back-to-back calls (more for fast operations,
so the timer's resolution does not matter) and divides.

Targets are printed as PASS/MISS next to the figures, for information only:
the command never fails on them (the machine may be shared and loaded).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import secrets
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gmpy2

from bench.common import loadavg, machine_info, publish, standalone
from mpc.elgamal import KeyShare, combine, local_joint_keys, params_for
from mpc.elgamal.batch import BatchEncryptor
from mpc.errors import LayoutError, MpcError
from mpc.packing import SlotLayout, pack_ciphertexts

OP_NAMES = (
    "encrypt",
    "rerandomize",
    "add",
    "scalar_mul",
    "partial_decrypt",
    "combine",
    "prove",
    "verify",
    "pack40",
    "curve_encrypt",
    "curve_is_zero",
)

KEY_ORDER = (
    "bits",
    "ops_ms",
    "prove_ms",
    "verify_ms",
    "proven_encrypt_vs_encrypt",
    "encrypt_per_s",
    "batch_encrypt_per_s",
    "batch_speedup",
    "phe_encrypt_ms",
    "ratio_encrypt_vs_phe",
    "speedup_vs_phe",
    "raw_powmod_ms",
    "table_build_s",
    "targets",
)
"""Keys that come first in the JSON, for a reader."""

PACK_SLOTS = 40
PACK_VALUE_BITS = 8
PACK_TERMS = 20
PACK_KAPPA = 40
SCALAR_BITS = 64
RERANDOMIZE_INNER = 20  # pool pairs drawn per rerandomize sample


@dataclass(frozen=True)
class Target:
    """A figure to compare against: ``value <= limit`` (or ``>=`` when ``at_least``)."""

    key: str
    limit: float
    unit: str
    at_least: bool = False

    def check(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit

    def describe(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g} {self.unit}"


TARGETS = (
    Target("encrypt", 3.0, "ms"),
    Target("curve_encrypt", 0.1, "ms"),
    Target("curve_is_zero", 0.06, "ms"),
    Target("batch_speedup", 1.6, "x one-core rate", at_least=True),
)


# -- timing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Median and spread of one operation, in milliseconds per call."""

    median_ms: float
    min_ms: float
    max_ms: float
    samples: int
    inner: int


def _calibrate(fn: Callable[[], object], sample_s: float, max_inner: int) -> int:
    """Calls per sample so that a sample takes about ``sample_s`` seconds."""
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(max_inner, round(sample_s / one)))


def measure(
    fn: Callable[[], object],
    *,
    repeat: int,
    warmup: int,
    inner: int | None = None,
    sample_s: float = 0.005,
    max_inner: int = 2000,
) -> Timing:
    """Median time of ``fn()`` over ``repeat`` samples of ``inner`` calls, after a warm-up.

    ``inner`` defaults to a calibrated count (one call if a call takes longer than
    ``sample_s``). The garbage collector is off while timing, as in :mod:`timeit`.
    """
    for _ in range(warmup):
        fn()
    if inner is None:
        inner = _calibrate(fn, sample_s, max_inner)
    loop = range(inner)
    samples = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in loop:
                fn()
            samples.append((time.perf_counter() - t0) * 1000.0 / inner)
    finally:
        if was_enabled:
            gc.enable()
    return Timing(
        median_ms=statistics.median(samples),
        min_ms=min(samples),
        max_ms=max(samples),
        samples=repeat,
        inner=inner,
    )


def _cycle(items: Sequence[Any]) -> Callable[[], Any]:
    """A zero-argument function returning the items in turn, forever."""
    it = itertools.cycle(items)
    return it.__next__


# -- the pieces ------------------------------------------------------------------------------


def pack_layout(plaintext_bits: int) -> SlotLayout:
    """40 slots of (8-bit values, 20 terms, kappa 40) if they fit, else narrower, else fewer.

    At 2048 bits (2047 plaintext bits, at most 51 bits a slot) the values are
    reduced to 5 bits; at 1024 bits not even 1-bit values fit 40 slots, so the
    layout keeps 8-bit values and takes as many slots as fit.
    """
    for terms in (PACK_TERMS, 1):
        for vb in range(PACK_VALUE_BITS, 0, -1):
            try:
                return SlotLayout(
                    value_bits=vb,
                    terms=terms,
                    kappa=PACK_KAPPA,
                    plaintext_bits=plaintext_bits,
                    slots=PACK_SLOTS,
                )
            except LayoutError:
                continue
    return SlotLayout(
        value_bits=PACK_VALUE_BITS, terms=PACK_TERMS, kappa=PACK_KAPPA, plaintext_bits=plaintext_bits
    )


def _decrypt(ct: Any, shares: Sequence[KeyShare]) -> int:
    return combine(ct, [s.partial_decrypt(ct) for s in shares])


def _phe_benchmark(bits: int, repeat: int, warmup: int) -> dict[str, Any]:
    """python-paillier key generation and encryption at ``bits``, or why it was skipped."""
    try:
        from phe import paillier
    except ImportError as exc:
        return {"phe_encrypt_ms": None, "phe_skipped": f"python-paillier not installed ({exc})"}
    t0 = time.perf_counter()
    ppk, _ = paillier.generate_paillier_keypair(n_length=bits)
    keygen_s = time.perf_counter() - t0
    values = [secrets.randbelow(ppk.max_int) for _ in range(16)]
    nxt = _cycle(values)
    t = measure(lambda: ppk.encrypt(nxt()), repeat=repeat, warmup=warmup)
    return {"phe_encrypt_ms": t.median_ms, "phe_bits": bits, "phe_keygen_s": keygen_s}


# -- the benchmark ---------------------------------------------------------------------------


def run_benchmark(
    bits: int = 2048,
    *,
    repeat: int = 15,
    warmup: int = 3,
    batch_size: int = 400,
    batch_rounds: int = 3,
    workers: int | None = None,
    with_phe: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """Run every measurement and return the result as a JSON-ready dict."""
    if repeat < 1 or warmup < 0 or batch_size < 1 or batch_rounds < 1:
        raise MpcError("repeat, batch size and batch rounds must be positive, warm-up >= 0")
    from mpc.elgamal.curve import CurvePrivateKey

    result: dict[str, Any] = {"bits": bits, "loadavg_start": loadavg()}
    params = params_for(bits)
    log(f"joint key generation ({params.name}) ...")
    t0 = time.perf_counter()
    pk, shares = local_joint_keys(params)
    result["keygen_s"] = time.perf_counter() - t0

    log("fixed-base tables for g and h ...")
    t0 = time.perf_counter()
    pk.g_pow(1)  # builds both tables (g and h) on first use
    result["table_build_s"] = time.perf_counter() - t0
    rows = -(-params.exponent_bits // pk.window)
    result["table"] = {
        "window": pk.window,
        "exponent_bits": params.exponent_bits,
        "entries_per_base": rows * ((1 << pk.window) - 1),
        "approx_mb_both": round(2 * rows * ((1 << pk.window) - 1) * params.element_bytes / 2**20, 1),
    }

    n = int(params.n)
    timings: dict[str, Timing] = {}
    kw: dict[str, Any] = {"repeat": repeat, "warmup": warmup}

    # sanity first: a wrong result makes every timing meaningless
    m0 = secrets.randbelow(n)
    if _decrypt(pk.encrypt(m0), shares) != m0:
        raise MpcError("encryption does not decrypt: refusing to benchmark")

    log("one-core ElGamal operations ...")
    msgs = _cycle([secrets.randbelow(n) for _ in range(32)])
    timings["encrypt"] = measure(lambda: pk.encrypt(msgs()), **kw)

    cts = [pk.encrypt(secrets.randbelow(n)) for _ in range(16)]
    nxt_ct = _cycle(cts)
    pool_pairs = (repeat + warmup) * RERANDOMIZE_INNER
    pk.pool.fill(pool_pairs)
    misses = pk.pool.on_demand
    timings["rerandomize"] = measure(
        lambda: pk.rerandomize(nxt_ct()), inner=RERANDOMIZE_INNER, **kw
    )
    result["rerandomize_pool_misses"] = pk.pool.on_demand - misses
    result["rerandomize_pool_pairs"] = pool_pairs

    pairs = _cycle(list(zip(cts, cts[1:] + cts[:1], strict=True)))

    def add() -> object:
        a, b = pairs()
        return a + b

    timings["add"] = measure(add, **kw)

    scaled = _cycle([(c, secrets.randbits(SCALAR_BITS) | (1 << (SCALAR_BITS - 1))) for c in cts])

    def scalar_mul() -> object:
        c, k = scaled()
        return c * k

    timings["scalar_mul"] = measure(scalar_mul, **kw)
    timings["partial_decrypt"] = measure(lambda: shares[0].partial_decrypt(nxt_ct()), **kw)

    with_partials = _cycle([(c, [s.partial_decrypt(c) for s in shares]) for c in cts[:8]])

    def combine_one() -> int:
        c, ds = with_partials()
        return combine(c, ds)

    timings["combine"] = measure(combine_one, **kw)

    log("upload proofs (prove, verify) ...")
    from mpc.elgamal.proofs import UploadContext, prove, verify

    context = UploadContext(pk, "bench-user", "values", 1).digest()
    proven = []
    for i in range(16):
        r = pk.random_exponent()
        ct = pk.encrypt(secrets.randbelow(n), r)
        proven.append((ct, r, prove(pk, ct, r, context, i), i))
    if not all(verify(pk, ct, pr, context, i) for ct, _, pr, i in proven):
        raise MpcError("upload proofs do not verify: refusing to benchmark")
    nxt_proven = _cycle(proven)

    def prove_one() -> object:
        ct, r, _, i = nxt_proven()
        return prove(pk, ct, r, context, i)

    def verify_one() -> bool:
        ct, _, pr, i = nxt_proven()
        return verify(pk, ct, pr, context, i)

    timings["prove"] = measure(prove_one, **kw)
    timings["verify"] = measure(verify_one, **kw)
    result["prove_ms"] = timings["prove"].median_ms
    result["verify_ms"] = timings["verify"].median_ms

    log("packing ...")
    layout = pack_layout(params.plaintext_bits)
    values = [secrets.randbits(layout.value_bits) for _ in range(layout.slots)]
    to_pack = [pk.encrypt(v) for v in values]
    if layout.unpack(_decrypt(pack_ciphertexts(layout, to_pack), shares)) != values:
        raise MpcError("packed ciphertext does not decrypt to the packed values")
    timings["pack40"] = measure(lambda: pack_ciphertexts(layout, to_pack), **kw)
    result["pack_layout"] = {
        "slots": layout.slots,
        "value_bits": layout.value_bits,
        "terms": layout.terms,
        "kappa": layout.kappa,
        "guard": layout.guard,
        "slot_bits": layout.slot_bits,
        "total_bits": layout.total_bits,
        "plaintext_bits": layout.plaintext_bits,
    }

    log("curve (secp256k1) zero tests ...")
    priv = CurvePrivateKey.generate()
    cpk = priv.public_key
    bits_in = _cycle([secrets.randbits(1) for _ in range(64)])
    timings["curve_encrypt"] = measure(lambda: cpk.encrypt(bits_in()), **kw)
    curve_plain = [0, 1] * 16
    curve_cts = [cpk.encrypt(m) for m in curve_plain]
    if [priv.is_zero(c) for c in curve_cts] != [m == 0 for m in curve_plain]:
        raise MpcError("curve zero test gives wrong answers: refusing to benchmark")
    nxt_curve = _cycle(curve_cts)
    timings["curve_is_zero"] = measure(lambda: priv.is_zero(nxt_curve()), **kw)

    log("raw powmod ...")
    base = pk.encrypt(1).c2
    exps = _cycle([gmpy2.mpz(secrets.randbits(params.exponent_bits)) for _ in range(8)])
    raw = measure(lambda: gmpy2.powmod(base, exps(), params.n2), **kw)

    result["ops_ms"] = {name: timings[name].median_ms for name in OP_NAMES}
    result["ops_detail"] = {
        name: {
            "min_ms": t.min_ms,
            "max_ms": t.max_ms,
            "samples": t.samples,
            "calls_per_sample": t.inner,
        }
        for name, t in timings.items()
    }
    result["raw_powmod_ms"] = raw.median_ms
    result["encrypt_per_s"] = 1000.0 / timings["encrypt"].median_ms
    result["encrypt_vs_raw_powmod"] = raw.median_ms / timings["encrypt"].median_ms
    # what an upload costs the user per ciphertext, with its proof, over encryption alone
    result["proven_encrypt_vs_encrypt"] = (timings["encrypt"].median_ms + result["prove_ms"]) / timings[
        "encrypt"
    ].median_ms

    if with_phe:
        log(f"python-paillier {bits}-bit (key generation, then encryption) ...")
        result.update(_phe_benchmark(bits, repeat, warmup))
    else:
        result.update({"phe_encrypt_ms": None, "phe_skipped": "--no-phe"})
    phe_ms = result["phe_encrypt_ms"]
    enc_ms = timings["encrypt"].median_ms
    result["ratio_encrypt_vs_phe"] = enc_ms / phe_ms if phe_ms else None
    result["speedup_vs_phe"] = phe_ms / enc_ms if phe_ms else None

    workers = workers or os.cpu_count() or 1
    log(f"batch encryption with {workers} worker processes ...")
    batch_msgs = [secrets.randbelow(n) for _ in range(batch_size)]
    rates: list[float] = []
    serial_rates: list[float] = []
    with BatchEncryptor(pk, workers=workers) as be:
        t0 = time.perf_counter()
        be.warm_up()
        result["batch_warm_up_s"] = time.perf_counter() - t0
        out = be.encrypt(batch_msgs[:4])  # one small batch through the whole path
        if [_decrypt(c, shares) for c in out] != batch_msgs[:4]:
            raise MpcError("batch encryption does not decrypt: refusing to benchmark")
        # The same batch on one core (this thread) and on every core, in turn, so that
        # both rates see the same machine load: the speedup is their ratio.
        for _ in range(batch_rounds):
            t0 = time.perf_counter()
            pk.encrypt_many(batch_msgs)
            serial_rates.append(batch_size / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            be.encrypt(batch_msgs)
            rates.append(batch_size / (time.perf_counter() - t0))
    result["batch_encrypt_per_s"] = statistics.median(rates)
    result["batch_one_core_per_s"] = statistics.median(serial_rates)
    result["batch_workers"] = workers
    result["batch_chunk"] = be.chunk
    result["batch_size"] = batch_size
    result["batch_rounds"] = batch_rounds
    # batch rate over the one-core rate of the same batch measured alongside it; the
    # ratio to encrypt_per_s (timed earlier, under possibly different load) is also kept
    result["batch_speedup"] = result["batch_encrypt_per_s"] / result["batch_one_core_per_s"]
    result["batch_speedup_vs_encrypt_per_s"] = (
        result["batch_encrypt_per_s"] / result["encrypt_per_s"]
    )

    result["targets"] = {}
    for tgt in TARGETS:
        value = result["ops_ms"].get(tgt.key, result.get(tgt.key))
        result["targets"][tgt.key] = {
            "target": tgt.describe(),
            "value": value,
            "pass": tgt.check(value),
        }
    result["repeat"] = repeat
    result["warmup"] = warmup
    result["loadavg_end"] = loadavg()
    first = [k for k in KEY_ORDER if k in result]
    return {k: result[k] for k in first + [k for k in result if k not in KEY_ORDER]}


# -- output ----------------------------------------------------------------------------------


def format_table(res: dict[str, Any]) -> str:
    """The result as a readable table, with PASS/MISS against the targets."""
    targets = res.get("targets", {})

    def status(key: str) -> tuple[str, str]:
        t = targets.get(key)
        if not t or t["pass"] is None:
            return "", ""
        return t["target"], "PASS" if t["pass"] else "MISS"

    lines = [
        f"crypto benchmark, {res['bits']}-bit N, one core unless noted "
        f"(median of {res['repeat']} samples after {res['warmup']} warm-up calls)",
        f"{'operation':<20}{'ms/op':>12}{'ops/s':>12}   {'target':<24}status",
        "-" * 76,
    ]
    for name in OP_NAMES:
        ms = res["ops_ms"][name]
        tgt, st = status(name)
        lines.append(f"{name:<20}{ms:>12.4f}{1000.0 / ms:>12.0f}   {tgt:<24}{st}")
    lines.append(f"{'raw_powmod':<20}{res['raw_powmod_ms']:>12.4f}{1000 / res['raw_powmod_ms']:>12.0f}")
    phe = res.get("phe_encrypt_ms")
    if phe:
        lines.append(f"{'phe_encrypt':<20}{phe:>12.4f}{1000.0 / phe:>12.0f}")
    lines.append("-" * 76)
    tgt, st = status("batch_speedup")
    one_label = f"batch of {res['batch_size']}, one core:"
    all_label = f"batch of {res['batch_size']}, {res['batch_workers']} workers:"
    lines += [
        f"encrypt, one core:          {res['encrypt_per_s']:10.1f} /s (from the median above)",
        f"{one_label:<28}{res['batch_one_core_per_s']:10.1f} /s",
        f"{all_label:<28}{res['batch_encrypt_per_s']:10.1f} /s",
        f"batch speedup:              {res['batch_speedup']:10.2f} x   {tgt:<24}{st}",
        f"fixed-base tables (g, h):   {res['table_build_s']:10.2f} s "
        f"(window {res['table']['window']}, ~{res['table']['approx_mb_both']} MB)",
        f"batch warm-up (workers):    {res['batch_warm_up_s']:10.2f} s",
        f"encrypt vs raw powmod:      {res['encrypt_vs_raw_powmod']:10.2f} x faster",
    ]
    if phe:
        lines.append(
            f"encrypt vs phe ({res['phe_bits']}-bit):   {res['speedup_vs_phe']:10.2f} x faster "
            f"(ratio ours/phe = {res['ratio_encrypt_vs_phe']:.3f})"
        )
    else:
        lines.append(f"phe: skipped ({res.get('phe_skipped')})")
    lay = res["pack_layout"]
    lines.append(
        f"pack40 layout: {lay['slots']} slots x {lay['slot_bits']} bits (values {lay['value_bits']} "
        f"bits, {lay['terms']} terms, kappa {lay['kappa']}) = {lay['total_bits']} "
        f"of {lay['plaintext_bits']} bits"
    )
    lines.append(f"load average: start {res['loadavg_start']}, end {res['loadavg_end']}")
    return "\n".join(line.rstrip() for line in lines)


# -- command line ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mpc-crm bench crypto``."""
    parser.add_argument(
        "--bits", type=int, default=2048, choices=(1024, 2048), help="size of N (default 2048)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the result as JSON ('-': stdout)")
    parser.add_argument(
        "--repeat", type=int, default=15, metavar="N", help="timed samples per operation (default 15)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, metavar="N", help="untimed calls first (default 3)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=400, metavar="N", help="plaintexts per batch (default 400)"
    )
    parser.add_argument(
        "--batch-rounds", type=int, default=3, metavar="N", help="timed batches (default 3)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, metavar="N", help="batch workers (default: all cores)"
    )
    parser.add_argument(
        "--no-phe", action="store_true", help="skip the python-paillier comparison"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark with parsed arguments; print the table, write the JSON."""
    command = getattr(args, "_command", None) or shlex.join(["mpc-crm", *sys.argv[1:]])

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[bench crypto] {msg}", file=sys.stderr, flush=True)

    res = run_benchmark(
        args.bits,
        repeat=args.repeat,
        warmup=args.warmup,
        batch_size=args.batch_size,
        batch_rounds=args.batch_rounds,
        workers=args.workers,
        with_phe=not args.no_phe,
        log=log,
    )
    return publish(res, {**machine_info(("gmpy2", "coincurve", "phe")), "gmp": gmpy2.mp_version()}, command, args.json, format_table, log)


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``scripts/bench_crypto.py``)."""
    return standalone("bench_crypto", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
