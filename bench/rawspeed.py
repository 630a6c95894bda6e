"""What the counted operations would cost at the raw speed of their primitives.

A benchmark counts the operations a run did (:data:`mpc.elgamal.opcount.OPS`
mod N^2, :data:`mpc.comparison.ec.OPS` on the curve), measures here, in the
same process and moments, the time of each primitive in a tight loop, and
prices the counts. Two prices for the mod N^2 side:

- ``as_run``: the operations the code actually did (table exponentiations as
  their 8-bit-window multiplications, multi-exponentiations as the
  multiplications and squarings of the algorithm, plain powmods by their
  exponent bits): wall time over this is the overhead of everything else
  (Python, serialisation, scheduling);
- ``naive``: every exponentiation as its own gmpy2.powmod (the issue's "if
  every exponentiation ran at the raw gmpy2 speed"): this over the wall time
  is what fixed-base tables and multi-exponentiation save.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import gmpy2
from gmpy2 import f_mod, mpz

__all__ = ["curve_seconds", "modular_seconds", "price"]


def modular_seconds(n2: int, exp_bits: int = 2176, repeat: int = 40) -> dict[str, float]:
    """Seconds per exponent bit of powmod mod ``n2``, per modular multiplication, per inversion."""
    m = mpz(n2)
    bases = [f_mod(mpz(secrets.randbits(m.bit_length() + 64)), m) for _ in range(repeat)]
    exps = [mpz(secrets.randbits(exp_bits)) | 1 for _ in range(repeat)]
    t = time.perf_counter()
    for b, e in zip(bases, exps, strict=True):
        gmpy2.powmod(b, e, m)
    per_bit = (time.perf_counter() - t) / (repeat * exp_bits)
    reps = 200 * repeat
    t = time.perf_counter()
    acc = bases[0]
    for i in range(reps):
        acc = f_mod(acc * bases[i % repeat], m)
    mulmod = (time.perf_counter() - t) / reps
    t = time.perf_counter()
    for b in bases:
        gmpy2.invert(b, m)
    invert = (time.perf_counter() - t) / repeat
    return {"powmod_per_bit": per_bit, "mulmod": mulmod, "invert": invert}


def curve_seconds() -> dict[str, float]:
    """Seconds per secp256k1 primitive call (comb, mul, ecdh, add) in tight loops."""
    from mpc.comparison import ec
    from mpc.elgamal.curve import CurvePrivateKey

    key = CurvePrivateKey.generate()
    comb = ec.base_comb()
    scalars = ec.random_scalars(2000)
    points = [comb.mul(s) for s in scalars[:200]]
    out: dict[str, float] = {}
    t = time.perf_counter()
    for s in scalars:
        comb.mul(s)
    out["comb"] = (time.perf_counter() - t) / len(scalars)
    t = time.perf_counter()
    for p, s in zip(points * 10, scalars, strict=False):
        ec.mul(p, s)
    out["mul"] = (time.perf_counter() - t) / len(scalars)
    secret = key.to_bytes()
    t = time.perf_counter()
    for p in points * 10:
        ec.ecdh_digest(secret, p)
    out["ecdh"] = (time.perf_counter() - t) / (10 * len(points))
    t = time.perf_counter()
    for i in range(len(points) - 1):
        for _ in range(10):
            ec.add([points[i], points[i + 1]])
    out["add"] = (time.perf_counter() - t) / (10 * (len(points) - 1))
    return out


def price(
    ops: Mapping[str, int], curve_ops: Mapping[str, int], mod: Mapping[str, float], curve: Mapping[str, float]
) -> dict[str, Any]:
    """The counted operations at raw speed: ``as_run`` and ``naive`` seconds (module docstring)."""
    bit, mul, inv = mod["powmod_per_bit"], mod["mulmod"], mod["invert"]
    curve_s = sum(curve_ops.get(k, 0) * curve[k] for k in curve)
    common = (
        ops.get("powmod_bits", 0) * bit
        + ops.get("partial_decrypt_bits", 0) * bit
        + ops.get("mulmod", 0) * mul
        + ops.get("invert", 0) * inv
        + curve_s
    )
    as_run = common + (ops.get("fixed_base_bits", 0) / 8 + ops.get("multiexp_mulmods", 0)) * mul
    naive = common + (ops.get("fixed_base_bits", 0) + ops.get("multiexp_bits", 0)) * bit + ops.get(
        "multiexp_terms", 0
    ) * mul
    return {"as_run_s": as_run, "naive_s": naive, "curve_s": curve_s}
