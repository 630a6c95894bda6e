"""The operation counts benchmarks report: each kind counted where it happens, priced sensibly."""

from __future__ import annotations

from bench.rawspeed import price
from mpc.elgamal import local_joint_keys, params_for
from mpc.elgamal.multiexp import multiexp_ciphertexts
from mpc.elgamal.opcount import OPS

P = params_for(1024)


def test_each_operation_is_counted_by_kind() -> None:
    pk, (a, _) = local_joint_keys(P)
    c = pk.encrypt(5)
    OPS.clear()
    d = pk.encrypt(7)  # fixed-base tables (or plain powmods without them): two exponentiations
    assert OPS["fixed_base"] + OPS["powmod"] == 2 and OPS["mulmod"] == 1
    OPS.clear()
    e = c + d
    assert OPS == {"mulmod": 2}
    OPS.clear()
    f = e * 3
    assert OPS["powmod"] == 2 and OPS["powmod_bits"] == 4
    OPS.clear()
    g = multiexp_ciphertexts(pk, [c, d, f], [1, 2, 5])
    assert OPS["multiexp_terms"] == 6 and OPS["multiexp_bits"] == 2 * (1 + 2 + 3)
    assert OPS["multiexp_mulmods"] > 0
    OPS.clear()
    a.partial_decrypt_many([g, g])
    assert OPS["partial_decrypt"] == 2 and OPS["partial_decrypt_bits"] == 2 * (int(a.x).bit_length() + 1)


def test_price_as_run_and_naive() -> None:
    mod = {"powmod_per_bit": 1e-6, "mulmod": 1e-5, "invert": 1e-4}
    curve = {"comb": 1e-5, "mul": 2e-5, "ecdh": 3e-5, "add": 1e-6}
    ops = {"fixed_base_bits": 800, "multiexp_bits": 1000, "multiexp_terms": 10, "multiexp_mulmods": 50,
           "mulmod": 3, "invert": 1, "powmod_bits": 100}
    got = price(ops, {"comb": 2, "ecdh": 1}, mod, curve)
    common = 100e-6 + 3e-5 + 1e-4 + (2e-5 + 3e-5)
    assert abs(got["as_run_s"] - (common + (100 + 50) * 1e-5)) < 1e-12
    assert abs(got["naive_s"] - (common + 1800e-6 + 10 * 1e-5)) < 1e-12
    assert abs(got["curve_s"] - 5e-5) < 1e-12
