"""Multi-exponentiation prod_i b_i^(e_i) mod m for many bases and small exponents >= 0.

Why: the protocols form linear combinations sum_i e_i * ct_i of ciphertexts with
small known coefficients (tens of bits). Raising each base on its own costs
about |e| squarings and |e|/5 multiplications per base; sharing the squarings
(Straus) or sorting the bases into buckets by exponent digit (Pippenger) does
the same work with a fraction of the modular multiplications, and those are
all that costs (one is ~4 us at 4,096 bits, far above Python's overhead).

Algorithms, picked by an operation-count model (``method="auto"``):

* ``product``: every exponent is 0 or 1, a subset product: k - 1
  multiplications for k ones.
* ``straus``: interleaved sliding windows. Each base gets its odd powers
  b, b^3, ..., b^(2^w - 1) (one squaring, 2^(w-1) - 1 multiplications, w chosen
  per base from its exponent length); one chain of max|e_i| - 1 squarings of the
  accumulator is shared by all bases, plus one multiplication per window digit
  (about |e_i| / (w + 1) per base). Best for few bases (20 bases of 50 bits:
  ~380 operations, against ~1,200 for one powmod per base).
* ``pippenger``: cut the exponents into W windows of c bits (widths as equal as
  possible, W from the model). In each window every base is multiplied into the
  bucket of its digit, folded into a running product from the top digit down, and
  the running products are multiplied together: sum_d d * B_d in one
  multiplication per base plus about 2^c per window. Windows are combined by
  Horner (c squarings each). About n * |e| / c + (|e| / c) * 2^c operations:
  best for many bases (1,000 bases of 41 bits: ~6,500 against ~50,000).

Measured at 4,096 bits (scripts/bench_multiexp.py, one core): 20 x 50 bits
2.0 ms against 5.0 ms with gmpy2.powmod per base; 1,000 x 41 bits 33 ms against
210 ms; 7 x 1,000 x 41 bits (multiexp_many) 0.23 s against 1.5 s. A subset
product gains nothing (it is k - 1 multiplications either way). Signed digits
are not used: they need inverses mod N^2, which cost more than they save here.

Zero exponents are skipped, exponent 1 costs one multiplication, and the
recoding (windows, digits, buckets) is done once and shared between all the
products of :func:`multiexp_many` and both components of
:func:`multiexp_ciphertexts`. Counts are exact and computed from the recoding
(no per-operation bookkeeping): pass an :class:`OpCounter` to read them.

Raw maths only: nothing here imports networking.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gmpy2 import f_mod, mpz

from mpc.elgamal.opcount import OPS
from mpc.elgamal.scheme import Ciphertext, PublicKey
from mpc.errors import ParameterError

IntLike = int | mpz
"""An integer: a Python int or a gmpy2 mpz."""
Method = Literal["auto", "product", "straus", "pippenger"]
METHODS: tuple[str, ...] = ("auto", "product", "straus", "pippenger")

SQUARING_WEIGHT = 0.9
"""Cost of a squaring relative to a multiplication in the model (measured ~0.87)."""
MAX_STRAUS_WIDTH = 10
MAX_BUCKET_BITS = 20


@dataclass
class OpCounter:
    """Running totals of modular multiplications and squarings, for reports.

    Pass the same counter to several calls to add them up; ``methods`` counts
    the calls per algorithm. Not thread-safe: one counter per thread.
    """

    multiplications: int = 0
    squarings: int = 0
    calls: int = 0
    methods: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Multiplications plus squarings."""
        return self.multiplications + self.squarings

    def reset(self) -> None:
        self.multiplications = self.squarings = self.calls = 0
        self.methods.clear()

    def as_dict(self) -> dict[str, object]:
        return {
            "multiplications": self.multiplications,
            "squarings": self.squarings,
            "total": self.total,
            "calls": self.calls,
            "methods": dict(self.methods),
        }

    def _add(self, method: str, mults: int, squarings: int) -> None:
        self.multiplications += mults
        self.squarings += squarings
        self.calls += 1
        self.methods[method] = self.methods.get(method, 0) + 1


# -- input checks ---------------------------------------------------------------------------


def _check_modulus(modulus: IntLike) -> mpz:
    try:
        m = mpz(operator.index(modulus))
    except TypeError:
        raise ParameterError(f"modulus must be an integer, got {type(modulus).__name__}") from None
    if m < 2:
        raise ParameterError(f"modulus must be at least 2, got {m}")
    return m


def _check_exponents(exps: Sequence[IntLike]) -> list[int]:
    """Exponents as Python ints (fast for shifts and masks); negatives are refused."""
    out: list[int] = []
    for i, e in enumerate(exps):
        try:
            v = operator.index(e)
        except TypeError:
            raise ParameterError(
                f"exponent {i} must be an integer, got {type(e).__name__}"
            ) from None
        if v < 0:
            raise ParameterError(
                f"exponent {i} is negative ({v}): multi-exponentiation takes exponents >= 0; "
                "invert the base (for a ciphertext, use -ct) or offset the exponent first"
            )
        out.append(int(v))
    return out


def _reduce(b: IntLike, m: mpz) -> mpz:
    """One base as an mpz in [0, m); anything but an integer is a ParameterError."""
    if not isinstance(b, mpz):
        try:
            b = mpz(operator.index(b))
        except TypeError:
            raise ParameterError(f"bases must be integers, got {type(b).__name__}") from None
    return b if 0 <= b < m else b % m


# -- cost model -----------------------------------------------------------------------------


@functools.cache
def _straus_width(bits: int) -> tuple[int, float]:
    """(window width, modelled operations) for one base of a ``bits``-bit exponent in Straus."""
    best_w, best = 1, 1 + (bits - 1) / 2
    for w in range(2, min(bits, MAX_STRAUS_WIDTH) + 1):
        cost = SQUARING_WEIGHT + (1 << (w - 1)) - 1 + 1 + (bits - w) / (w + 1)
        if cost < best:
            best_w, best = w, cost
    return best_w, best


def _straus_cost(bit_lengths: Sequence[int]) -> float:
    return sum(_straus_width(b)[1] for b in bit_lengths) + SQUARING_WEIGHT * (max(bit_lengths) - 1)


def _split(total: int, parts: int) -> list[int]:
    """``total`` bits in ``parts`` windows as equal as possible, the wider ones at the bottom."""
    q, r = divmod(total, parts)
    return [q + 1] * r + [q] * (parts - r)


def _pippenger_cost(sorted_bits: Sequence[int], widths: Sequence[int]) -> float:
    n = len(sorted_bits)
    cost, start = 0.0, 0
    for k, c in enumerate(widths):
        reach = n - bisect.bisect_right(sorted_bits, start)  # bases with a digit here
        if reach:
            cost += reach * (1 - 2.0**-c) + (1 << c) - 1
        if k < len(widths) - 1:
            cost += SQUARING_WEIGHT * c + 1
        start += c
    return cost


def _pippenger_plan(bit_lengths: Sequence[int]) -> tuple[list[int], float]:
    """The window widths (bottom first) with the fewest modelled operations."""
    sorted_bits = sorted(bit_lengths)
    top = sorted_bits[-1]
    best: tuple[list[int], float] | None = None
    seen: set[int] = set()
    for c in range(1, min(top, MAX_BUCKET_BITS) + 1):
        windows = -(-top // c)
        if windows in seen:
            continue
        seen.add(windows)
        widths = _split(top, windows)
        cost = _pippenger_cost(sorted_bits, widths)
        if best is None or cost < best[1]:
            best = (widths, cost)
    assert best is not None
    return best


def _plan(bit_lengths: Sequence[int], method: str) -> tuple[str, list[int] | None]:
    """Resolve ``method`` for these (non-zero) exponent lengths; widths for Pippenger."""
    if method not in METHODS:
        raise ParameterError(f"unknown multiexp method {method!r}; choose one of {METHODS}")
    top = max(bit_lengths)
    if method == "product":
        if top > 1:
            raise ParameterError("method 'product' needs every exponent to be 0 or 1")
        return "product", None
    if method == "straus":
        return "straus", None
    if method == "pippenger":
        return "pippenger", _pippenger_plan(bit_lengths)[0]
    if top == 1:
        return "product", None
    widths, pip = _pippenger_plan(bit_lengths)
    if _straus_cost(bit_lengths) <= pip:
        return "straus", None
    return "pippenger", widths


def choose_method(exps: Sequence[IntLike]) -> str:
    """The algorithm ``method="auto"`` would use for these exponents ("none" if all are 0)."""
    bits = [e.bit_length() for e in _check_exponents(exps) if e]
    return _plan(bits, "auto")[0] if bits else "none"


# -- algorithms (on columns: several base lists sharing one list of exponents) ---------------


def _sliding_window(e: int, w: int) -> list[tuple[int, int]]:
    """e as sum of d * 2^pos with odd digits d < 2^w, top first: [(pos, d), ...]."""
    out: list[tuple[int, int]] = []
    top = e.bit_length() - 1
    while top >= 0:
        lo = max(top - w + 1, 0)
        d = (e >> lo) & ((1 << (top - lo + 1)) - 1)
        tz = (d & -d).bit_length() - 1
        d >>= tz
        lo += tz
        out.append((lo, d))
        e &= (1 << lo) - 1
        top = e.bit_length() - 1
    return out


def _product(cols: list[list[mpz]], m: mpz) -> tuple[list[mpz], int, int]:
    results = []
    for col in cols:
        acc = col[0]
        for b in col[1:]:
            acc = f_mod(acc * b, m)
        results.append(acc)
    return results, len(cols[0]) - 1, 0


def _straus(cols: list[list[mpz]], exps: list[int], m: mpz) -> tuple[list[mpz], int, int]:
    """Interleaved sliding windows; returns (results, multiplications, squarings) per column."""
    events: list[list[tuple[int, int]]] = [[] for _ in range(max(exps).bit_length())]
    max_digit = [1] * len(exps)
    for i, e in enumerate(exps):
        for pos, d in _sliding_window(e, _straus_width(e.bit_length())[0]):
            events[pos].append((i, d >> 1))  # table index of the odd digit d
            if d > max_digit[i]:
                max_digit[i] = d
    top = max(p for p, ev in enumerate(events) if ev)
    n_events = sum(len(ev) for ev in events)
    mults = n_events - 1 + sum((d - 1) // 2 for d in max_digit)
    squarings = top + sum(1 for d in max_digit if d > 1)

    results = []
    for col in cols:
        tables: list[Sequence[mpz]] = []
        for b, d in zip(col, max_digit, strict=True):
            if d == 1:
                tables.append((b,))
                continue
            b2 = f_mod(b * b, m)
            row = [b]
            x = b
            for _ in range((d - 1) // 2):
                x = f_mod(x * b2, m)
                row.append(x)
            tables.append(row)
        acc: mpz | None = None
        for pos in range(top, -1, -1):
            if acc is not None:
                acc = f_mod(acc * acc, m)
            for i, k in events[pos]:
                v = tables[i][k]
                acc = v if acc is None else f_mod(acc * v, m)
        assert acc is not None
        results.append(acc)
    return results, mults, squarings


def _pippenger(
    cols: list[list[mpz]], exps: list[int], m: mpz, widths: list[int]
) -> tuple[list[mpz], int, int]:
    """Bucket method over the given windows (bottom first); (results, mults, squarings)."""
    starts = [sum(widths[:k]) for k in range(len(widths))]
    masks = [(1 << c) - 1 for c in widths]
    n_windows = len(widths)
    buckets: list[dict[int, list[int]]] = [{} for _ in widths]
    for i, e in enumerate(exps):
        for k in range(n_windows):
            x = e >> starts[k]
            if not x:
                break
            d = x & masks[k]
            if d:
                members = buckets[k].get(d)
                if members is None:
                    buckets[k][d] = [i]
                else:
                    members.append(i)

    mults = squarings = 0
    started = False
    for k in range(n_windows - 1, -1, -1):
        if started:
            squarings += widths[k]
        if buckets[k]:
            placed = sum(len(v) for v in buckets[k].values())
            mults += placed - 1 + max(buckets[k]) - 1 + (1 if started else 0)
            started = True

    results = []
    for col in cols:
        acc: mpz | None = None
        for k in range(n_windows - 1, -1, -1):
            if acc is not None:
                for _ in range(widths[k]):
                    acc = f_mod(acc * acc, m)
            window = buckets[k]
            if not window:
                continue
            # sum_d d * B_d: running = B_top * ... * B_d, total = product of the runnings.
            running: mpz | None = None
            total: mpz | None = None
            for d in range(max(window), 0, -1):
                members = window.get(d)
                if members is not None:
                    for i in members:
                        running = col[i] if running is None else f_mod(running * col[i], m)
                assert running is not None
                total = running if total is None else f_mod(total * running, m)
            assert total is not None
            acc = total if acc is None else f_mod(acc * total, m)
        assert acc is not None
        results.append(acc)
    return results, mults, squarings


def _run(
    cols: list[list[mpz]],
    exps: list[int],
    m: mpz,
    method: str,
    counter: OpCounter | None,
) -> list[mpz]:
    """Dispatch on non-empty columns whose exponents are all > 0."""
    name, widths = _plan([e.bit_length() for e in exps], method)
    if name == "product":
        results, mults, squarings = _product(cols, m)
    elif name == "straus":
        results, mults, squarings = _straus(cols, exps, m)
    else:
        assert widths is not None
        results, mults, squarings = _pippenger(cols, exps, m, widths)
    if counter is not None:
        counter._add(name, mults * len(cols), squarings * len(cols))
    OPS["multiexp_terms"] += len(exps) * len(cols)
    OPS["multiexp_bits"] += sum(e.bit_length() for e in exps) * len(cols)
    OPS["multiexp_mulmods"] += (mults + squarings) * len(cols)
    return results


# -- public API -----------------------------------------------------------------------------


def multiexp(
    bases: Sequence[IntLike],
    exps: Sequence[IntLike],
    modulus: IntLike,
    *,
    counter: OpCounter | None = None,
    method: Method = "auto",
) -> mpz:
    """prod_i bases[i]^exps[i] mod ``modulus`` (exponents >= 0); 1 for no bases.

    Bases may be any integers (reduced first). Raises ParameterError on a
    negative or non-integer exponent, a length mismatch or a modulus below 2.
    """
    return multiexp_many(
        [(b,) for b in bases], exps, modulus, columns=1, counter=counter, method=method
    )[0]


def multiexp_many(
    bases_rows: Sequence[Sequence[IntLike]],
    exps: Sequence[IntLike],
    modulus: IntLike,
    *,
    columns: int | None = None,
    counter: OpCounter | None = None,
    method: Method = "auto",
) -> list[mpz]:
    """Several products with the same exponents: result[j] = prod_i bases_rows[i][j]^exps[i].

    Row i holds the bases that exponent i applies to (say the 7 packed
    ciphertext components of user i); the recoding and bucket assignment are
    computed once for all columns. Every row must have the same length;
    ``columns`` fixes it (and is what an empty input returns, as that many 1s;
    without it, no rows give ``[]``).
    """
    if method not in METHODS:
        raise ParameterError(f"unknown multiexp method {method!r}; choose one of {METHODS}")
    m = _check_modulus(modulus)
    e = _check_exponents(exps)
    if len(bases_rows) != len(e):
        raise ParameterError(f"{len(bases_rows)} rows of bases for {len(e)} exponents")
    width = columns
    if width is not None and width < 1:
        raise ParameterError(f"columns must be positive, got {width}")
    for i, row in enumerate(bases_rows):
        if width is None:
            width = len(row)
        if len(row) != width:
            raise ParameterError(f"row {i} has {len(row)} bases, expected {width}")
    if width is None:
        return []
    keep = [i for i, v in enumerate(e) if v]
    if not keep:
        return [mpz(1)] * width
    cols = [[_reduce(bases_rows[i][j], m) for i in keep] for j in range(width)]
    return _run(cols, [e[i] for i in keep], m, method, counter)


def multiexp_ciphertexts(
    pk: PublicKey,
    cts: Sequence[Ciphertext],
    exps: Sequence[IntLike],
    *,
    counter: OpCounter | None = None,
    method: Method = "auto",
) -> Ciphertext:
    """sum_i exps[i] * cts[i] homomorphically, one multi-exponentiation per component.

    c1 and c2 share the recoding (the counter sees both). No ciphertexts (or all
    exponents 0) give Ciphertext(pk, 1, 1), the deterministic encryption of 0.
    Like the Ciphertext operators, the result is not re-randomised.
    """
    for i, ct in enumerate(cts):
        if not isinstance(ct, Ciphertext):
            raise ParameterError(f"item {i} is not a Ciphertext but {type(ct).__name__}")
        if ct.pk is not pk and (ct.pk.params.n != pk.params.n or ct.pk.h != pk.h):
            raise ParameterError(f"ciphertext {i} is under a different key")
    c1, c2 = multiexp_many(
        [(ct.c1, ct.c2) for ct in cts],
        exps,
        pk.params.n2,
        columns=2,
        counter=counter,
        method=method,
    )
    return Ciphertext(pk, c1, c2)


__all__ = [
    "METHODS",
    "IntLike",
    "Method",
    "OpCounter",
    "choose_method",
    "multiexp",
    "multiexp_ciphertexts",
    "multiexp_many",
]
