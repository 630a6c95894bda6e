"""Fixed-base exponentiation with a window table.

For a base b used again and again (g and h of a key), precompute
b^(d * 2^(w*i)) for every window i and digit d < 2^w. Then b^e is the product
of one table entry per non-zero w-bit digit of e: about |e|/w modular
multiplications and no squarings, against roughly |e| squarings plus |e|/5
multiplications for a plain powmod. With w = 8 and a 2,176-bit exponent that is
272 multiplications instead of some 2,600, a factor of about eight here.

Memory: ceil(|e|/w) * (2^w - 1) elements; for a 4,096-bit modulus and w = 8
that is about 35 MB per base.
"""

from __future__ import annotations

import gmpy2
from gmpy2 import f_mod, mpz

from mpc.elgamal.opcount import OPS
from mpc.errors import ParameterError


class FixedBaseTable:
    """Precomputed powers of one base modulo ``modulus`` for exponents below 2^exp_bits."""

    __slots__ = ("base", "exp_bits", "modulus", "rows", "window")

    def __init__(self, base: int, modulus: int, exp_bits: int, window: int = 8) -> None:
        if not 1 <= window <= 16:
            raise ParameterError(f"window must be 1..16 bits, got {window}")
        if exp_bits < 1:
            raise ParameterError("exp_bits must be positive")
        self.base = mpz(base)
        self.modulus = mpz(modulus)
        self.exp_bits = exp_bits
        self.window = window
        n_windows = (exp_bits + window - 1) // window
        rows: list[list[mpz]] = []
        b = self.base % self.modulus
        m = self.modulus
        for _ in range(n_windows):
            row = [mpz(1), b]
            acc = b
            for _d in range(2, 1 << window):
                acc = f_mod(acc * b, m)
                row.append(acc)
            rows.append(row)
            b = f_mod(acc * b, m)  # b^(2^w): the next window's base
        self.rows = rows

    def pow(self, e: int) -> mpz:
        """base^e mod modulus; falls back to powmod for exponents outside the table."""
        if e < 0 or e.bit_length() > self.exp_bits:
            OPS["powmod"] += 1
            OPS["powmod_bits"] += int(e).bit_length()
            return gmpy2.powmod(self.base, e, self.modulus)
        OPS["fixed_base"] += 1
        OPS["fixed_base_bits"] += int(e).bit_length()
        w = self.window
        m = self.modulus
        acc = None
        if w == 8:
            digits = int(e).to_bytes(len(self.rows), "little")
        else:
            e = int(e)
            mask = (1 << w) - 1
            digits = [(e >> (w * i)) & mask for i in range(len(self.rows))]
        for row, d in zip(self.rows, digits, strict=True):
            if d:
                acc = row[d] if acc is None else f_mod(acc * row[d], m)
        return mpz(1) if acc is None else acc
