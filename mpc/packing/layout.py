"""Slot layouts: how many values share one plaintext, and why they cannot overflow.

A plaintext of ``plaintext_bits`` bits is cut into ``slots`` slots of
``slot_bits`` bits each, little-endian: slot i occupies bits
[i * slot_bits, (i + 1) * slot_bits). The packed integer is

    x = sum_i v_i * 2^(i * slot_bits)

and because the slots are homomorphically added slot by slot (adding two
packed integers adds their slots), each slot must be wide enough for the
largest thing that will ever be added into it. DESIGN 3.3 asks that the
layout object computes this and refuses anything that could overflow.

The bound (all values non-negative integers):

* one value is below 2^value_bits;
* a slot holds the sum of at most ``terms`` values, so it is at most
  terms * (2^value_bits - 1) < 2^(value_bits + term_bits), with
  term_bits = ceil(log2(terms)) (0 when terms = 1);
* before a decryption the slot is blinded with its own mask drawn uniformly
  below 2^(value_bits + term_bits + kappa); the mask is wider than the sum by
  kappa bits, so the blinded slot is statistically close (distance < 2^-kappa)
  to a uniform value and reveals nothing about the sum;
* sum + mask < 2^(value_bits + term_bits) + 2^(value_bits + term_bits + kappa)
  <= 2^(value_bits + term_bits + kappa + 1), so one guard bit absorbs the
  carry, the slot never reaches 2^slot_bits, and nothing spills into the next
  slot.

Hence the required slot width is value_bits + term_bits + kappa + guard, and
slots * slot_bits must not exceed plaintext_bits. For a modulus N use
plaintext_bits = N.bit_length() - 1, so every packed value is below
2^(N.bit_length() - 1) <= N and survives reduction mod N unchanged.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from mpc.errors import LayoutError, ParameterError

DEFAULT_KAPPA = 40
DEFAULT_GUARD = 1

T = TypeVar("T")


def _integer(name: str, x: object) -> int:
    """x as a Python int (accepts int, gmpy2.mpz, anything with __index__; not bool)."""
    if isinstance(x, bool):
        raise ParameterError(f"{name} must be an integer, got a bool")
    try:
        return operator.index(x)  # type: ignore[arg-type]
    except TypeError:
        raise ParameterError(f"{name} must be an integer, got {type(x).__name__}") from None


def term_bits_for(terms: int) -> int:
    """ceil(log2(terms)): bits a sum of ``terms`` values needs beyond one value (0 for 1)."""
    terms = _integer("terms", terms)
    if terms < 1:
        raise LayoutError(f"terms must be >= 1, got {terms}")
    return (terms - 1).bit_length()


def pack_bits(values: Sequence[int], width: int) -> int:
    """Little-endian concatenation of ``values``, ``width`` bits each (no range checks)."""
    acc = 0
    for v in reversed(values):
        acc = (acc << width) | v
    return acc


def unpack_bits(x: int, width: int, count: int) -> list[int]:
    """Inverse of :func:`pack_bits`: the lowest ``count`` fields of ``width`` bits."""
    mask = (1 << width) - 1
    out = []
    for _ in range(count):
        out.append(x & mask)
        x >>= width
    return out


@dataclass(frozen=True)
class SignedCodec:
    """Signed values through an offset, so that packing sees only non-negative slots.

    A value v in [-2^(value_bits-1), 2^(value_bits-1)) is encoded as
    v + 2^(value_bits-1), which lies in [0, 2^value_bits) and so fits a slot of
    a layout with the same ``value_bits``. Encodings add like the values plus
    one offset per term: a sum of t encodings is (sum of values) + t * offset,
    which :meth:`decode_sum` removes. The same holds for a weighted sum with
    non-negative integer weights w_j: pass t = sum of the weights.
    """

    value_bits: int

    def __post_init__(self) -> None:
        bits = _integer("value_bits", self.value_bits)
        if bits < 1:
            raise LayoutError(f"value_bits must be >= 1 for signed values, got {bits}")
        object.__setattr__(self, "value_bits", bits)

    @property
    def offset(self) -> int:
        """2^(value_bits-1), added to every encoded value."""
        return 1 << (self.value_bits - 1)

    @property
    def min_value(self) -> int:
        """Smallest signed value: -2^(value_bits-1)."""
        return -self.offset

    @property
    def max_value(self) -> int:
        """Largest signed value: 2^(value_bits-1) - 1."""
        return self.offset - 1

    def encode(self, v: int) -> int:
        """v + 2^(value_bits-1); LayoutError if v is outside the signed range."""
        v = _integer("value", v)
        if not self.min_value <= v <= self.max_value:
            raise LayoutError(
                f"signed value {v} does not fit {self.value_bits} bits: "
                f"it must be in [{self.min_value}, {self.max_value}]"
            )
        return v + self.offset

    def encode_many(self, values: Sequence[int]) -> list[int]:
        """encode() each value; the LayoutError names the index of a value that does not fit."""
        out = []
        for i, v in enumerate(values):
            try:
                out.append(self.encode(v))
            except LayoutError as e:
                raise LayoutError(f"value at index {i}: {e}") from None
        return out

    def decode(self, u: int) -> int:
        """Inverse of encode() for one value (no range check: u may come from a sum)."""
        return _integer("encoded value", u) - self.offset

    def decode_sum(self, s: int, terms_summed: int) -> int:
        """Signed sum from the sum ``s`` of ``terms_summed`` encodings: s - terms_summed * offset."""
        t = _integer("terms_summed", terms_summed)
        if t < 0:
            raise ParameterError(f"terms_summed must be >= 0, got {t}")
        return _integer("encoded sum", s) - t * self.offset


@dataclass(frozen=True)
class SlotLayout:
    """How values share one plaintext: slot width, number of slots, and the overflow bound.

    Arguments: ``value_bits`` (bits of one value: values are in
    [0, 2^value_bits)), ``terms`` (at most this many values are summed into one
    slot), ``plaintext_bits`` (bits usable in one plaintext: N.bit_length() - 1
    for a modulus N, see :meth:`for_modulus`), ``kappa`` (statistical security
    bits of the per-slot blinding mask; 0 for a layout that is never blinded),
    ``guard`` (guard bits, at least 1 for a layout that may be blinded),
    ``slots`` (how many slots; default as many as fit), ``slot_bits`` (an
    explicit slot width; default the required one).

    The required slot width is value_bits + term_bits + kappa + guard with
    term_bits = ceil(log2(terms)): a slot holds a sum of at most ``terms``
    values (< 2^(value_bits + term_bits)) plus a mask
    (< 2^(value_bits + term_bits + kappa)), and their sum is
    < 2^(value_bits + term_bits + kappa + 1), so one guard bit absorbs the
    carry and no slot spills into the next. Any layout that could overflow is
    refused with a LayoutError that gives the numbers: an explicit slot width
    below the required one (even by one bit), more slots than fit, no slot at
    all, non-positive sizes.

    After construction ``slots`` and ``slot_bits`` hold the resolved values, so
    ``dataclasses.replace(layout, terms=...)`` re-checks the new terms against
    the old width (build a new layout to get a new width).
    """

    value_bits: int
    terms: int
    plaintext_bits: int
    kappa: int = DEFAULT_KAPPA
    guard: int = DEFAULT_GUARD
    slots: int = field(default=None)  # type: ignore[assignment]
    slot_bits: int = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        vb = _integer("value_bits", self.value_bits)
        terms = _integer("terms", self.terms)
        pb = _integer("plaintext_bits", self.plaintext_bits)
        kappa = _integer("kappa", self.kappa)
        guard = _integer("guard", self.guard)
        if vb < 1:
            raise LayoutError(f"value_bits must be >= 1, got {vb}")
        if terms < 1:
            raise LayoutError(f"terms must be >= 1, got {terms}")
        if pb < 1:
            raise LayoutError(f"plaintext_bits must be >= 1, got {pb}")
        if kappa < 0:
            raise LayoutError(f"kappa must be >= 0, got {kappa}")
        if guard < 0:
            raise LayoutError(f"guard must be >= 0, got {guard}")
        if kappa > 0 and guard < 1:
            raise LayoutError(
                f"kappa={kappa} means slots will be blinded, and sum + mask needs a guard "
                f"bit for the carry: guard must be >= 1, got {guard}"
            )
        tb = term_bits_for(terms)
        required = vb + tb + kappa + guard
        why = (
            f"value_bits={vb} + term_bits={tb} (terms={terms}) + kappa={kappa} "
            f"+ guard={guard} = {required} bits"
        )

        if self.slot_bits is None:
            width = required
        else:
            width = _integer("slot_bits", self.slot_bits)
            if width < 1:
                raise LayoutError(f"slot_bits must be >= 1, got {width}")
            if width < required:
                raise LayoutError(
                    f"slot_bits={width} is too small by {required - width} bit(s): "
                    f"a slot must hold {why}"
                )

        fit = pb // width
        if self.slots is None:
            if fit < 1:
                raise LayoutError(
                    f"no slot fits: plaintext_bits={pb} is smaller than one slot of "
                    f"{width} bits ({why})"
                )
            count = fit
        else:
            count = _integer("slots", self.slots)
            if count < 1:
                raise LayoutError(f"slots must be >= 1, got {count}")
            if count > fit:
                raise LayoutError(
                    f"slots={count} of {width} bits need {count * width} bits, but "
                    f"plaintext_bits={pb} holds at most {fit} such slot(s) ({why})"
                )

        for name, v in (
            ("value_bits", vb),
            ("terms", terms),
            ("plaintext_bits", pb),
            ("kappa", kappa),
            ("guard", guard),
            ("slots", count),
            ("slot_bits", width),
        ):
            object.__setattr__(self, name, v)

    @classmethod
    def for_modulus(
        cls,
        n: int,
        value_bits: int,
        terms: int = 1,
        *,
        kappa: int = DEFAULT_KAPPA,
        guard: int = DEFAULT_GUARD,
        slots: int | None = None,
        slot_bits: int | None = None,
    ) -> SlotLayout:
        """A layout for plaintexts mod ``n``: plaintext_bits = n.bit_length() - 1 (so x < n)."""
        n = _integer("n", n)
        if n < 2:
            raise ParameterError(f"modulus must be >= 2, got {n}")
        return cls(
            value_bits,
            terms,
            n.bit_length() - 1,
            kappa=kappa,
            guard=guard,
            slots=slots,  # type: ignore[arg-type]
            slot_bits=slot_bits,  # type: ignore[arg-type]
        )

    # -- derived sizes ---------------------------------------------------------------
    @property
    def term_bits(self) -> int:
        """ceil(log2(terms)); 0 when terms = 1."""
        return term_bits_for(self.terms)

    @property
    def required_slot_bits(self) -> int:
        """The smallest safe slot width: value_bits + term_bits + kappa + guard."""
        return self.value_bits + self.term_bits + self.kappa + self.guard

    @property
    def capacity(self) -> int:
        """Number of slots in one plaintext."""
        return self.slots

    @property
    def total_bits(self) -> int:
        """Bits used by a packed plaintext: slots * slot_bits (<= plaintext_bits)."""
        return self.slots * self.slot_bits

    @property
    def spare_bits(self) -> int:
        """plaintext_bits - total_bits: unused top bits."""
        return self.plaintext_bits - self.total_bits

    @property
    def max_value(self) -> int:
        """Largest value one slot accepts at pack time: 2^value_bits - 1."""
        return (1 << self.value_bits) - 1

    @property
    def max_sum(self) -> int:
        """Largest sum of ``terms`` values: terms * (2^value_bits - 1)."""
        return self.terms * self.max_value

    @property
    def sum_bits(self) -> int:
        """Bits that bound a slot sum: value_bits + term_bits (max_sum < 2^sum_bits)."""
        return self.value_bits + self.term_bits

    @property
    def mask_bits(self) -> int:
        """Width of a per-slot blinding mask: value_bits + term_bits + kappa."""
        return self.value_bits + self.term_bits + self.kappa

    @property
    def max_mask(self) -> int:
        """Largest per-slot mask: 2^mask_bits - 1."""
        return (1 << self.mask_bits) - 1

    @property
    def max_slot(self) -> int:
        """Largest value a slot can hold: 2^slot_bits - 1 (max_sum + max_mask stays below)."""
        return (1 << self.slot_bits) - 1

    @property
    def blindable(self) -> bool:
        """Whether per-slot masks may be added: kappa >= 1 and a guard bit for the carry."""
        return self.kappa >= 1 and self.guard >= 1

    def count_plaintexts(self, count: int) -> int:
        """How many plaintexts (ciphertexts) ``count`` values need: ceil(count / capacity)."""
        count = _integer("count", count)
        if count < 0:
            raise ParameterError(f"count must be >= 0, got {count}")
        return -(-count // self.slots)

    # -- one plaintext ----------------------------------------------------------------
    def check_values(self, values: Sequence[int]) -> list[int]:
        """The values as ints, each checked in [0, 2^value_bits); LayoutError names the index."""
        out = []
        bound = 1 << self.value_bits
        for i, v in enumerate(values):
            try:
                v = _integer("value", v)
            except ParameterError as e:
                raise ParameterError(f"value at index {i}: {e}") from None
            if not 0 <= v < bound:
                raise LayoutError(
                    f"value at index {i} is {v}, outside [0, 2^{self.value_bits}) "
                    f"= [0, {bound - 1}]"
                )
            out.append(v)
        return out

    def pack(self, values: Sequence[int]) -> int:
        """One plaintext: slot i (bits i*slot_bits and up) holds values[i].

        Each value must be in [0, 2^value_bits) (LayoutError naming the index
        otherwise) and there may be at most ``capacity`` values.
        """
        if len(values) > self.slots:
            raise LayoutError(f"{len(values)} values do not fit {self.slots} slots")
        return pack_bits(self.check_values(values), self.slot_bits)

    def check_packed(self, x: int) -> int:
        """x as an int, checked in [0, 2^total_bits); LayoutError otherwise."""
        x = _integer("packed value", x)
        if x < 0:
            raise LayoutError(f"packed value is negative ({x})")
        if x.bit_length() > self.total_bits:
            raise LayoutError(
                f"packed value has {x.bit_length()} bits, more than the layout's "
                f"{self.slots} slots * {self.slot_bits} bits = {self.total_bits}: "
                "a slot overflowed or the value belongs to another layout"
            )
        return x

    def unpack(self, x: int, count: int | None = None) -> list[int]:
        """The first ``count`` slots (default all) of a packed value, as ints.

        Slots hold whatever was summed into them (up to 2^slot_bits - 1), not
        only values below 2^value_bits. x must be in [0, 2^total_bits).
        """
        x = self.check_packed(x)
        if count is None:
            count = self.slots
        count = _integer("count", count)
        if not 0 <= count <= self.slots:
            raise ParameterError(f"count must be in [0, {self.slots}], got {count}")
        return unpack_bits(x, self.slot_bits, count)

    # -- many plaintexts --------------------------------------------------------------
    def chunks(self, values: Sequence[T]) -> list[list[T]]:
        """Split ``values`` into consecutive lists of at most ``capacity`` (one per plaintext)."""
        k = self.slots
        return [list(values[i : i + k]) for i in range(0, len(values), k)]

    def pack_many(self, values: Sequence[int]) -> list[int]:
        """Pack a long list into ceil(len / capacity) plaintexts; the last may be partly empty.

        A LayoutError for a value that does not fit names its index in ``values``.
        """
        checked = self.check_values(values)
        return [pack_bits(c, self.slot_bits) for c in self.chunks(checked)]

    def unpack_many(self, packed: Sequence[int], count: int) -> list[int]:
        """Inverse of :meth:`pack_many`: the first ``count`` slots over the plaintexts, in order."""
        count = _integer("count", count)
        need = self.count_plaintexts(count)
        if len(packed) != need:
            raise ParameterError(
                f"{count} values in slots of {self.slots} need {need} plaintexts, got {len(packed)}"
            )
        out: list[int] = []
        for j, x in enumerate(packed):
            out.extend(self.unpack(x, min(self.slots, count - j * self.slots)))
        return out

    # -- signed values ----------------------------------------------------------------
    @property
    def signed(self) -> SignedCodec:
        """The offset codec for signed values of ``value_bits`` bits."""
        return SignedCodec(self.value_bits)

    def encode_signed(self, v: int) -> int:
        """v + 2^(value_bits-1) for v in [-2^(value_bits-1), 2^(value_bits-1))."""
        return self.signed.encode(v)

    def decode_signed_sum(self, s: int, terms_summed: int) -> int:
        """Signed sum from a slot holding ``terms_summed`` encodings: s - terms_summed * offset."""
        return self.signed.decode_sum(s, terms_summed)

    def decode_signed(self, u: int) -> int:
        """One value back from its encoding: u - 2^(value_bits-1)."""
        return self.signed.decode(u)
