"""DGK comparison of a key holder's a with a blinder's b, on digits, with Veugen's equality term.

The *key holder* holds a and a curve key, the *blinder* holds b, both l-bit.
With a random bit delta chosen by the blinder, the key holder learns
lambda = [a < b] XOR delta and nothing else; the blinder learns nothing. In
protocol "compare" the SP is the key holder (a = 2^l - 1 - its mask) and the
PSP the blinder; in churn scoring the customer encrypts (a = an attribute)
under the PSP's key and the SP blinds (b = a threshold). See
docs/protocols/compare.md for the derivation and the leakage statement; in
short:

* Digits. a and b are cut into m = ceil(l / beta) digits of beta bits (the
  top digit takes what is left), least significant first; digit i has width
  w_i and base B_i = 2^w_i.
* The key holder sends, for every digit, the *thermometer* of its digit a_i,
  T_{i,v} = [a_i >= v] for v = 1 .. B_i - 1, each bit encrypted under its
  curve key. With T_{i,0} = 1 and T_{i,B_i} = 0 the blinder has, linearly,

      lt_i = [a_i < b_i] = 1 - T_{i,b_i}        gt_i = [a_i > b_i] = T_{i,b_i+1}
      ne_i = [a_i != b_i] = lt_i + gt_i         S_i  = sum_{j > i} ne_j

  (beta = 1 is the classic bitwise DGK: T_{i,1} = a_i, ne_i = a_i XOR b_i.)
* The blinder forms m + 1 terms, all non-negative integers at most m + 1:

      delta = 0:  f_i = (1 - lt_i) + S_i   (zero iff digit i decides a < b)
                  plus one dummy
      delta = 1:  g_i = (1 - gt_i) + S_i   (zero iff digit i decides a > b)
                  plus Veugen's equality term S_{-1} = sum_j ne_j (zero iff a = b)

  At most one term is zero, and one is iff [a < b] (delta = 0), resp.
  [a >= b] (delta = 1): lambda = [a < b] XOR delta.
* A term that cannot be zero whatever a is (f_i with b_i = 0, g_i with
  b_i = B_i - 1, the delta = 0 pad) is sent as a *dummy*, two independent
  uniform points, which costs nothing online (Garay, Schoenmakers and
  Villegas' observation, extended to digits).
* Every real term is blinded: the blinder adds fresh randomness of its own
  (sG, sY) and multiplies by a fresh uniform non-zero rho:
  (rho (C1 + sG), rho (C2 + sY)). Then C1' is uniform and C2' - x C1' is
  rho * term * G, uniform and non-zero unless the term is zero, and
  independent of C1': the key holder's knowledge of its own encryption
  randomness is of no use. The m + 1 terms of a comparison are shuffled.
* The key holder zero-tests every term (one ECDH each) and counts the zeros.

Raw maths: nothing here imports networking.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from mpc.comparison import ec
from mpc.comparison.pools import BitEncryption, Pool
from mpc.elgamal.curve import CurveCiphertext, CurvePrivateKey
from mpc.errors import EncodingError, ParameterError, ProtocolError

__all__ = [
    "CIPHERTEXT_BYTES",
    "MAX_BITS",
    "MAX_DIGIT_BITS",
    "TERM_BYTES",
    "DigitPlan",
    "Form",
    "as_curve_ciphertext",
    "blind_terms",
    "encrypt_thermometers",
    "evaluate",
    "lambdas",
    "zero_counts",
]

MAX_BITS = 64
MAX_DIGIT_BITS = 8
CIPHERTEXT_BYTES = 2 * ec.POINT_BYTES
"""One curve ciphertext on the wire: C1 || C2, both uncompressed (130 bytes)."""
TERM_BYTES = CIPHERTEXT_BYTES

Form = tuple[int, tuple[tuple[int, int], ...]]
"""A linear form over one comparison's thermometer ciphertexts:
(constant, ((sign, index), ...)) with sign +1 or -1."""


def _shuffled(items: list[bytes]) -> list[bytes]:
    """A uniformly random permutation: sort by independent 128-bit random keys."""
    raw = secrets.token_bytes(16 * len(items))
    order = sorted(range(len(items)), key=lambda i: raw[16 * i : 16 * i + 16])
    return [items[i] for i in order]


@dataclass(frozen=True)
class DigitPlan:
    """How l-bit values are cut into digits, and where each thermometer bit goes."""

    bits: int
    digit_bits: int
    widths: tuple[int, ...]
    """Width of each digit, least significant first (the top one may be narrower)."""
    offsets: tuple[int, ...]
    """Index of T_{i,1} in one comparison's list of thermometer bits."""
    levels: int
    """Thermometer bits (= the key holder's ciphertexts) per comparison: sum of 2^w_i - 1."""

    @classmethod
    def create(cls, bits: int, digit_bits: int) -> DigitPlan:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
            raise ParameterError(f"bits must be an int in [1, {MAX_BITS}], got {bits!r}")
        if (
            isinstance(digit_bits, bool)
            or not isinstance(digit_bits, int)
            or not 1 <= digit_bits <= MAX_DIGIT_BITS
        ):
            raise ParameterError(
                f"digit_bits must be an int in [1, {MAX_DIGIT_BITS}], got {digit_bits!r}"
            )
        m = -(-bits // digit_bits)
        widths = tuple([digit_bits] * (m - 1) + [bits - digit_bits * (m - 1)])
        offsets = []
        total = 0
        for w in widths:
            offsets.append(total)
            total += (1 << w) - 1
        return cls(bits, digit_bits, widths, tuple(offsets), total)

    @property
    def digit_count(self) -> int:
        return len(self.widths)

    @property
    def terms(self) -> int:
        """Terms per comparison: one per digit plus the equality term (or its dummy)."""
        return len(self.widths) + 1

    def digits(self, value: int) -> list[int]:
        """The digits of ``value`` (in [0, 2^bits)), least significant first."""
        if not 0 <= value < (1 << self.bits):
            raise ParameterError(f"value {value} is outside [0, 2^{self.bits})")
        out = []
        for w in self.widths:
            out.append(value & ((1 << w) - 1))
            value >>= w
        return out

    def thermometer(self, value: int) -> list[int]:
        """T_{i,v} = [digit_i >= v] for every digit i and v = 1 .. 2^w_i - 1, in wire order."""
        out: list[int] = []
        for d, w in zip(self.digits(value), self.widths, strict=True):
            levels = (1 << w) - 1
            out.extend([1] * d)
            out.extend([0] * (levels - d))
        return out

    def forms(self, b: int, delta: int) -> list[Form | None]:
        """The m + 1 terms for the blinder's value b and bit delta, before blinding and shuffling.

        Entry i < m is digit i's term, entry m the equality term (delta = 1) or
        None (delta = 0). None marks a term that cannot be zero (sent as a dummy).
        """
        if delta not in (0, 1):
            raise ParameterError(f"delta must be 0 or 1, got {delta!r}")
        bd = self.digits(b)
        m = len(self.widths)
        out: list[Form | None] = [None] * (m + 1)
        s_const = 0
        s_entries: tuple[tuple[int, int], ...] = ()
        for i in range(m - 1, -1, -1):
            top = (1 << self.widths[i]) - 1  # B_i - 1
            base = self.offsets[i] - 1  # index of T_{i,v} is base + v
            bi = bd[i]
            if delta == 0:
                if bi >= 1:  # f_i = T_{i,b_i} + S_i
                    out[i] = (s_const, ((1, base + bi), *s_entries))
            elif bi <= top - 1:  # g_i = 1 - T_{i,b_i+1} + S_i
                out[i] = (1 + s_const, ((-1, base + bi + 1), *s_entries))
            # S_{i-1} = S_i + ne_i, ne_i = 1 - T_{i,b_i} + T_{i,b_i+1}
            if bi == 0:
                s_entries = ((1, base + 1), *s_entries)
            elif bi == top:
                s_const += 1
                s_entries = ((-1, base + top), *s_entries)
            else:
                s_const += 1
                s_entries = ((-1, base + bi), (1, base + bi + 1), *s_entries)
        if delta == 1:
            out[m] = (s_const, s_entries)
        return out


def evaluate(form: Form, thermometer: Sequence[int]) -> int:
    """The value of a form on plaintext thermometer bits (the reference for tests)."""
    const, entries = form
    return const + sum(sign * thermometer[idx] for sign, idx in entries)


# -- key holder: encrypt the thermometers -------------------------------------------------


def encrypt_thermometers(
    plan: DigitPlan, values: Sequence[int], pool: Pool[BitEncryption]
) -> bytes:
    """The thermometer bits of every value, encrypted from the pool, as one blob.

    Layout: comparison k, then its ``plan.levels`` ciphertexts of 130 bytes
    (C1 || C2, uncompressed). A drawn item gives C1 and the C2 of the bit.
    """
    items = pool.draw(len(values) * plan.levels)
    parts: list[bytes] = []
    n = 0
    for value in values:
        for bit in plan.thermometer(value):
            c1, c20, c21 = items[n]
            n += 1
            parts.append(c1)
            parts.append(c21 if bit else c20)
    return b"".join(parts)


# -- blinder: blinded, shuffled terms -----------------------------------------------------


def _check_prefixes(blob: bytes, what: str) -> None:
    """Every 65-byte point of a blob starts with 0x04 (full parsing happens on use)."""
    if blob[:: ec.POINT_BYTES].strip(b"\x04"):
        raise EncodingError(f"{what}: a point is not in uncompressed form (prefix 0x04)")


def blind_terms(
    plan: DigitPlan,
    blob: bytes,
    bs: Sequence[int],
    deltas: Sequence[int],
    randomizers: Pool[tuple[ec.Point, ec.Point]],
    dummies: Pool[bytes],
) -> bytes:
    """The blinder's blinded, shuffled terms for every comparison, as one blob.

    ``blob`` is the key holder's thermometer encryptions (see
    :func:`encrypt_thermometers`); ``bs`` the blinder's values and ``deltas``
    its bits. Output: comparison k, then ``plan.terms`` terms of 130 bytes
    (C1' || C2', uncompressed). Only the ciphertexts a term uses are parsed
    (and so validated); the rest of the blob is checked for length and point
    prefixes only, since it influences nothing.
    """
    count = len(bs)
    w = CIPHERTEXT_BYTES
    per = plan.levels * w
    if len(deltas) != count:
        raise ParameterError(f"{len(deltas)} deltas for {count} comparisons")
    if len(blob) != count * per:
        raise EncodingError(
            f"thermometer ciphertexts: {len(blob)} bytes, expected {count} x {plan.levels} x {w}"
        )
    _check_prefixes(blob, "thermometer ciphertexts")
    all_forms = [plan.forms(b, d) for b, d in zip(bs, deltas, strict=True)]
    real = sum(1 for forms in all_forms for f in forms if f is not None)
    rand = randomizers.draw(real)
    dummy = dummies.draw(count * plan.terms - real)
    rhos = ec.random_scalars(real)
    used_r = used_d = 0
    out: list[bytes] = []
    small, add_mul = ec.small_multiple, ec.add_mul
    for k, forms in enumerate(all_forms):
        base = k * per
        cache: dict[int, tuple[ec.Point, ec.Point]] = {}
        terms: list[bytes] = []
        for form in forms:
            if form is None:
                terms.append(dummy[used_d])
                used_d += 1
                continue
            const, entries = form
            sg, sy = rand[used_r]
            c1s = [sg]
            c2s = [sy]
            for sign, idx in entries:
                key = idx if sign > 0 else -1 - idx
                pts = cache.get(key)
                if pts is None:
                    pos = cache.get(idx)
                    if pos is None:
                        o = base + idx * w
                        pos = (
                            ec.parse(blob[o : o + 65], "thermometer C1"),
                            ec.parse(blob[o + 65 : o + 130], "thermometer C2"),
                        )
                        cache[idx] = pos
                    pts = pos if sign > 0 else (ec.neg(pos[0]), ec.neg(pos[1]))
                    cache[key] = pts
                c1s.append(pts[0])
                c2s.append(pts[1])
            if const:
                c2s.append(small(const))
            rho = rhos[used_r]
            used_r += 1
            terms.append(ec.serialize_pair(add_mul(c1s, rho), add_mul(c2s, rho)))
        out.extend(_shuffled(terms))
    return b"".join(out)


# -- key holder: zero tests ---------------------------------------------------------------


def zero_counts(plan: DigitPlan, blob: bytes, count: int, key: CurvePrivateKey) -> list[int]:
    """How many of each comparison's terms encrypt zero (0 or 1 in a correct run).

    Every point is parsed (so a malformed one raises EncodingError); a term is
    zero iff ECDH(x, C1') equals SHA-256 of C2' compressed.
    """
    w = TERM_BYTES
    t = plan.terms
    if len(blob) != count * t * w:
        raise EncodingError(f"terms: {len(blob)} bytes, expected {count} x {t} x {w}")
    secret = key.to_bytes()
    parse, ecdh, digest, compressed = ec.parse, ec.ecdh_digest, ec.digest, ec.compressed
    out = []
    o = 0
    for _ in range(count):
        zeros = 0
        for _ in range(t):
            c1 = parse(blob[o : o + 65], "term C1")
            c2 = blob[o + 65 : o + 130]
            parse(c2, "term C2")
            if ecdh(secret, c1) == digest(compressed(c2)):
                zeros += 1
            o += w
        out.append(zeros)
    return out


def lambdas(counts: Sequence[int]) -> list[int]:
    """lambda per comparison from its zero count; more than one zero is a protocol error."""
    bad = [k for k, c in enumerate(counts) if c > 1]
    if bad:
        raise ProtocolError(
            f"comparison {bad[0]} has {counts[bad[0]]} zero terms; a correct run has at most one"
        )
    return list(counts)


def as_curve_ciphertext(term: bytes) -> CurveCiphertext:
    """A 130-byte term or thermometer ciphertext as a :class:`CurveCiphertext` (tests)."""
    if len(term) != CIPHERTEXT_BYTES:
        raise EncodingError(f"expected {CIPHERTEXT_BYTES} bytes, got {len(term)}")
    ec.parse(term[:65])
    ec.parse(term[65:])
    return CurveCiphertext.from_bytes(ec.compressed(term[:65]) + ec.compressed(term[65:]))
