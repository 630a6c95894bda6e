#!/usr/bin/env python3
"""Benchmark of mpc.elgamal.multiexp against computing every power on its own.

    python scripts/bench_multiexp.py --bits 2048 --json bench-multiexp.json [--repeat 3]

Cases (modulus N^2 of a --bits N, exponents uniform below 2^bits):
20 bases of 50 bits, 1,000 of 41 bits, 1,000 of 1 bit (a subset product), and
7 x 1,000 bases of 41 bits through multiexp_many (7 products sharing the
exponents, like 7 packed ciphertexts per user). Each is timed, in one thread,
against the naive way (gmpy2.powmod per base, then multiply) and a
gmpy2.powmod_base_list variant (one call per distinct exponent, or per row for
the 7-column case); the three are timed in alternation so that they see the
same machine load, and the median of --repeat samples is reported, together
with the exact operation counts of multiexp and the load average
(/proc/loadavg) before and after. Every result is checked against the naive one.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    try:
        import mpc  # noqa: F401
    except ImportError:  # run from a checkout without installing: use the tree above
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gmpy2
from gmpy2 import f_mod, mpz

from mpc.elgamal import params_for
from mpc.elgamal.multiexp import OpCounter, multiexp, multiexp_many

CASES: tuple[tuple[str, int, int, int], ...] = (
    # name, bases, columns, exponent bits
    ("20x50bit", 20, 1, 50),
    ("1000x41bit", 1000, 1, 41),
    ("1000x1bit", 1000, 1, 1),
    ("7x1000x41bit_many", 1000, 7, 41),
)


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "unavailable"


# -- the two naive ways ----------------------------------------------------------------------


def naive_powmod(rows: Sequence[Sequence[mpz]], exps: Sequence[int], m: mpz) -> list[mpz]:
    """One gmpy2.powmod per base, then multiply (per column)."""
    out = [mpz(1)] * len(rows[0])
    for row, e in zip(rows, exps, strict=True):
        for j, b in enumerate(row):
            out[j] = f_mod(out[j] * gmpy2.powmod(b, e, m), m)
    return out


def naive_base_list(rows: Sequence[Sequence[mpz]], exps: Sequence[int], m: mpz) -> list[mpz]:
    """gmpy2.powmod_base_list on all bases sharing an exponent, then multiply."""
    width = len(rows[0])
    groups: dict[int, list[int]] = {}
    for i, e in enumerate(exps):
        groups.setdefault(e, []).append(i)
    out = [mpz(1)] * width
    for e, idx in groups.items():
        flat = [b for i in idx for b in rows[i]]
        powers = gmpy2.powmod_base_list(flat, e, m)
        for k, p in enumerate(powers):
            j = k % width
            out[j] = f_mod(out[j] * p, m)
    return out


# -- timing ----------------------------------------------------------------------------------


def unit_cost_us(m: mpz, rng: random.Random, count: int = 2000) -> dict[str, float]:
    """Microseconds of one multiplication and one squaring mod m (distinct operands)."""
    xs = [mpz(rng.randrange(int(m))) for _ in range(count + 1)]
    t = time.perf_counter()
    for a, b in itertools.pairwise(xs):
        f_mod(a * b, m)
    mul = time.perf_counter() - t
    t = time.perf_counter()
    for a in xs[:count]:
        f_mod(a * a, m)
    sqr = time.perf_counter() - t
    return {"mul": round(mul / count * 1e6, 3), "sqr": round(sqr / count * 1e6, 3)}


def run_case(
    name: str, n: int, width: int, bits: int, m: mpz, rng: random.Random, repeat: int
) -> dict[str, Any]:
    rows = [[mpz(rng.randrange(1, int(m))) for _ in range(width)] for _ in range(n)]
    exps = [rng.getrandbits(bits) for _ in range(n)]
    cols = [[r[j] for r in rows] for j in range(width)]

    counter = OpCounter()
    if width == 1:
        ours = [multiexp(cols[0], exps, m, counter=counter)]

        def fast() -> list[mpz]:
            return [multiexp(cols[0], exps, m)]
    else:
        ours = multiexp_many(rows, exps, m, counter=counter)

        def fast() -> list[mpz]:
            return multiexp_many(rows, exps, m)

    candidates: dict[str, Callable[[], list[mpz]]] = {
        "multiexp": fast,
        "naive_powmod": lambda: naive_powmod(rows, exps, m),
        "naive_powmod_base_list": lambda: naive_base_list(rows, exps, m),
    }
    if width > 1:
        candidates["multiexp_per_column"] = lambda: [multiexp(c, exps, m) for c in cols]

    reference = naive_powmod(rows, exps, m)
    match = ours == reference and naive_base_list(rows, exps, m) == reference
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(repeat):
        for key, fn in candidates.items():  # alternate, so all see the same load
            gc.collect()
            t = time.perf_counter()
            out = fn()
            samples[key].append(time.perf_counter() - t)
            match = match and out == reference
    ms = {k: round(statistics.median(v) * 1e3, 3) for k, v in samples.items()}
    nonzero = [e for e in exps if e]
    return {
        "name": name,
        "bases": n,
        "columns": width,
        "exp_bits": bits,
        "nonzero_exponents": len(nonzero),
        "method": next(iter(counter.methods)),
        "ops": {k: counter.as_dict()[k] for k in ("multiplications", "squarings", "total")},
        "ops_per_product": counter.total // width,
        # any square-and-multiply needs |e| - 1 squarings per base: a floor for the naive way
        "naive_squarings_at_least": width * sum(e.bit_length() - 1 for e in nonzero),
        "naive_product_multiplications": width * max(len(nonzero) - 1, 0),
        "ms": ms,
        "ms_samples": {k: [round(s * 1e3, 3) for s in v] for k, v in samples.items()},
        "us_per_op": round(ms["multiexp"] * 1e3 / max(counter.total, 1), 3),
        "speedup_vs_powmod": round(ms["naive_powmod"] / ms["multiexp"], 2),
        "speedup_vs_powmod_base_list": round(ms["naive_powmod_base_list"] / ms["multiexp"], 2),
        "matches_naive": match,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, default=2048, choices=(1024, 2048), help="bits of N")
    ap.add_argument("--repeat", type=int, default=3, help="samples per timing (median)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the random bases/exponents")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    m = params_for(args.bits).n2
    rng = random.Random(args.seed)
    report: dict[str, Any] = {
        "benchmark": "multiexp",
        "bits": args.bits,
        "modulus_bits": int(m.bit_length()),
        "repeat": args.repeat,
        "seed": args.seed,
        "machine": {
            "loadavg_start": loadavg(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "gmpy2": gmpy2.version(),
            "gmp": gmpy2.mp_version(),
        },
        "unit_us": unit_cost_us(m, rng),
        "cases": [],
    }
    print(f"multiexp mod N^2 ({report['modulus_bits']} bits), load {loadavg()}")
    print(
        f"one multiplication {report['unit_us']['mul']} us, squaring {report['unit_us']['sqr']} us"
    )
    for name, n, width, bits in CASES:
        case = run_case(name, n, width, bits, m, rng, args.repeat)
        report["cases"].append(case)
        print(
            f"{name:>18}: {case['method']:>9} {case['ms']['multiexp']:9.2f} ms "
            f"({case['ops']['total']} ops, {case['us_per_op']} us/op) | powmod "
            f"{case['ms']['naive_powmod']:9.2f} ms (x{case['speedup_vs_powmod']}) | base_list "
            f"{case['ms']['naive_powmod_base_list']:9.2f} ms (x{case['speedup_vs_powmod_base_list']})"
            f"{'' if case['matches_naive'] else '  MISMATCH'}"
        )
    report["machine"]["loadavg_end"] = loadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(c["matches_naive"] for c in report["cases"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
