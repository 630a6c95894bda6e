"""Tests of mpc.packing: layout bounds, pack/unpack, signed offsets, per-slot masks, Horner."""

from __future__ import annotations

import random
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.errors import LayoutError, ParameterError
from mpc.packing import (
    SignedCodec,
    SlotLayout,
    pack_bits,
    pack_ciphertexts,
    pack_ciphertexts_many,
    pack_masks,
    pack_masks_many,
    random_masks,
    term_bits_for,
    unblind,
    unblind_packed,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- a test-only additive "ciphertext": a plaintext mod a modulus, with the operators ------


class FakeCt:
    """Stands in for a ciphertext: + and - add, * multiplies by a known int, - negates."""

    def __init__(self, m: int, modulus: int) -> None:
        self.m = m % modulus
        self.modulus = modulus

    def _check(self, other: object) -> FakeCt:
        assert isinstance(other, FakeCt) and other.modulus == self.modulus
        return other

    def __add__(self, other: FakeCt) -> FakeCt:
        return FakeCt(self.m + self._check(other).m, self.modulus)

    def __sub__(self, other: FakeCt) -> FakeCt:
        return FakeCt(self.m - self._check(other).m, self.modulus)

    def __mul__(self, k: int) -> FakeCt:
        assert isinstance(k, int) and not isinstance(k, bool)
        return FakeCt(self.m * k, self.modulus)

    def __neg__(self) -> FakeCt:
        return FakeCt(-self.m, self.modulus)


class ShiftingCt(FakeCt):
    """A FakeCt with shift_left, counting its calls, to check pack_ciphertexts prefers it."""

    shifts = 0

    def _wrap(self, ct: FakeCt) -> ShiftingCt:
        return ShiftingCt(ct.m, ct.modulus)

    def __add__(self, other: FakeCt) -> ShiftingCt:
        return self._wrap(super().__add__(other))

    def __mul__(self, k: int) -> ShiftingCt:
        raise AssertionError("shift_left should have been used")

    def shift_left(self, bits: int) -> ShiftingCt:
        ShiftingCt.shifts += 1
        return ShiftingCt(self.m << bits, self.modulus)


def modulus_for(layout: SlotLayout) -> int:
    """An odd modulus N with N.bit_length() - 1 == plaintext_bits, like a real one."""
    return (1 << layout.plaintext_bits) + 1


@st.composite
def layouts(draw: st.DrawFn, max_value_bits: int = 64, blindable: bool = False) -> SlotLayout:
    value_bits = draw(st.integers(1, max_value_bits))
    terms = draw(st.integers(1, 5000))
    kappa = draw(st.integers(1 if blindable else 0, 80))
    guard = draw(st.integers(1, 3))
    width = value_bits + term_bits_for(terms) + kappa + guard
    slots = draw(st.integers(1, 40))
    extra = draw(st.integers(0, width - 1))
    return SlotLayout(value_bits, terms, slots * width + extra, kappa=kappa, guard=guard)


# -- layout arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "bits"),
    [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (1000, 10), (1024, 10), (1025, 11)],
)
def test_term_bits(terms: int, bits: int) -> None:
    assert term_bits_for(terms) == bits
    assert terms <= 1 << bits


def test_worked_example_2048() -> None:
    layout = SlotLayout(16, 1000, 2047)
    assert layout.term_bits == 10
    assert layout.required_slot_bits == layout.slot_bits == 16 + 10 + 40 + 1 == 67
    assert layout.capacity == layout.slots == 30
    assert layout.total_bits == 2010 and layout.spare_bits == 37
    assert layout.mask_bits == 66
    assert layout.max_sum == 1000 * 65535
    n = (1 << 2047) + 12345  # any 2048-bit modulus
    assert SlotLayout.for_modulus(n, 16, 1000) == layout


def test_one_bit_too_small_refused_exact_accepted() -> None:
    required = SlotLayout(16, 1000, 2047).required_slot_bits
    ok = SlotLayout(16, 1000, 2047, slot_bits=required)
    assert ok.slot_bits == required
    with pytest.raises(LayoutError) as e:
        SlotLayout(16, 1000, 2047, slot_bits=required - 1)
    msg = str(e.value)
    assert f"slot_bits={required - 1}" in msg and f"= {required} bits" in msg
    wider = SlotLayout(16, 1000, 2047, slot_bits=required + 5)
    assert wider.slot_bits == required + 5 and wider.capacity == 2047 // (required + 5)


@FAST
@given(layouts())
def test_one_bit_too_small_refused_everywhere(layout: SlotLayout) -> None:
    kw = {"kappa": layout.kappa, "guard": layout.guard}
    args = (layout.value_bits, layout.terms, layout.plaintext_bits)
    assert SlotLayout(*args, slot_bits=layout.required_slot_bits, **kw) == layout
    with pytest.raises(LayoutError, match="too small by 1 bit"):
        SlotLayout(*args, slot_bits=layout.required_slot_bits - 1, **kw)


def test_too_many_slots_refused() -> None:
    layout = SlotLayout(16, 1000, 2047)
    assert SlotLayout(16, 1000, 2047, slots=30).capacity == 30
    assert SlotLayout(16, 1000, 2047, slots=3).capacity == 3
    with pytest.raises(LayoutError, match=r"slots=31 of 67 bits need 2077 bits.*at most 30"):
        SlotLayout(16, 1000, 2047, slots=31)
    # exactly filling the plaintext is fine, one bit less is not
    assert SlotLayout(16, 1000, 30 * 67, slots=30) == SlotLayout(16, 1000, 2010)
    with pytest.raises(LayoutError):
        SlotLayout(16, 1000, 30 * 67 - 1, slots=30)
    assert layout.count_plaintexts(61) == 3


def test_zero_slots_refused() -> None:
    with pytest.raises(LayoutError, match="no slot fits"):
        SlotLayout(16, 1000, 66)
    assert SlotLayout(16, 1000, 67).capacity == 1
    with pytest.raises(LayoutError, match="slots must be >= 1"):
        SlotLayout(16, 1000, 2047, slots=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"value_bits": 0},
        {"value_bits": -3},
        {"terms": 0},
        {"terms": -1},
        {"plaintext_bits": 0},
        {"kappa": -1},
        {"guard": -1},
        {"slots": -2},
        {"slot_bits": 0},
        {"slot_bits": -67},
        {"guard": 0},  # kappa = 40 needs a guard bit for the carry
    ],
)
def test_bad_sizes_refused(kwargs: dict[str, int]) -> None:
    args = {"value_bits": 16, "terms": 10, "plaintext_bits": 2047} | kwargs
    with pytest.raises(LayoutError):
        SlotLayout(**args)


def test_non_integers_refused() -> None:
    with pytest.raises(ParameterError):
        SlotLayout(16.0, 10, 2047)  # type: ignore[arg-type]
    with pytest.raises(ParameterError):
        SlotLayout(16, True, 2047)  # type: ignore[arg-type]


def test_unblinded_layout() -> None:
    """kappa = 0 (and even guard = 0) is a valid layout that is never blinded."""
    layout = SlotLayout(8, 4, 100, kappa=0, guard=0)
    assert layout.slot_bits == 10 and layout.capacity == 10 and not layout.blindable
    vectors = [[255] * 10] * 4
    total = sum(layout.pack(v) for v in vectors)
    assert layout.unpack(total) == [4 * 255] * 10
    with pytest.raises(LayoutError, match="not meant for blinding"):
        random_masks(layout)
    with pytest.raises(LayoutError, match="not meant for blinding"):
        pack_masks(layout, [0])
    assert not SlotLayout(8, 4, 100, kappa=0).blindable


def test_layout_is_frozen() -> None:
    layout = SlotLayout(16, 10, 2047)
    with pytest.raises(AttributeError):
        layout.slots = 100  # type: ignore[misc]


# -- bounds: the extreme values ---------------------------------------------------------------


@FAST
@given(layouts())
def test_round_trip_zero_and_max(layout: SlotLayout) -> None:
    k = layout.capacity
    assert layout.pack([0] * k) == 0
    assert layout.unpack(0) == [0] * k
    top = [layout.max_value] * k
    assert layout.unpack(layout.pack(top)) == top
    assert layout.pack(top) < 1 << layout.plaintext_bits


@FAST
@given(layouts(blindable=True))
def test_max_terms_plus_full_mask_never_overflows(layout: SlotLayout) -> None:
    """terms packed vectors of all-max values plus the largest mask in every slot."""
    k = layout.capacity
    packed = layout.pack([layout.max_value] * k)
    total = sum([packed] * layout.terms)
    masks = [layout.max_mask] * k
    blinded = total + pack_masks(layout, masks)
    assert layout.max_sum + layout.max_mask <= layout.max_slot
    assert blinded < 1 << layout.total_bits <= 1 << layout.plaintext_bits
    slots = layout.unpack(blinded)
    assert slots == [layout.max_sum + layout.max_mask] * k
    assert unblind(slots, masks) == [layout.max_sum] * k
    assert unblind_packed(layout, blinded, masks) == [layout.max_sum] * k


@FAST
@given(layouts(blindable=True), st.randoms(use_true_random=False))
def test_max_terms_plus_random_masks(layout: SlotLayout, rnd: random.Random) -> None:
    k = layout.capacity
    vectors = [
        [rnd.choice([0, layout.max_value, rnd.getrandbits(layout.value_bits)]) for _ in range(k)]
        for _ in range(min(layout.terms, 50))
    ]
    # pad to exactly `terms` terms with all-max vectors without building them all
    extra = layout.terms - len(vectors)
    total = sum(layout.pack(v) for v in vectors) + extra * layout.pack([layout.max_value] * k)
    sums = [sum(col) + extra * layout.max_value for col in zip(*vectors, strict=True)]
    masks = random_masks(layout, rng=rnd)
    blinded = total + pack_masks(layout, masks)
    assert unblind(layout.unpack(blinded), masks) == sums


def test_guard_bit_is_needed() -> None:
    """With terms a power of two the extreme sum + mask reaches 2^(width - 1): the guard is used."""
    for value_bits, terms, kappa in [(1, 1, 0), (16, 1024, 40), (8, 2, 1)]:
        layout = SlotLayout(value_bits, terms, 4096, kappa=kappa)
        assert layout.max_sum + layout.max_mask >= 1 << (layout.slot_bits - 1)


# -- values that do not fit -------------------------------------------------------------------


def test_values_out_of_range_name_the_index() -> None:
    layout = SlotLayout(8, 1, 2047, kappa=0)
    ok = [0, 255, 1, 2]
    assert layout.unpack(layout.pack(ok), 4) == ok
    with pytest.raises(LayoutError, match=r"index 3 is -1"):
        layout.pack([0, 1, 2, -1])
    with pytest.raises(LayoutError, match=r"index 1 is 256"):
        layout.pack([0, 256])
    values = [1] * 1000
    values[777] = 1 << 8
    with pytest.raises(LayoutError, match="index 777"):
        layout.pack_many(values)
    with pytest.raises(ParameterError, match="index 2"):
        layout.pack([1, 2, "3"])  # type: ignore[list-item]


def test_too_many_values_refused() -> None:
    layout = SlotLayout(8, 1, 100, kappa=0, guard=0)
    assert layout.capacity == 12
    layout.pack([1] * 12)
    with pytest.raises(LayoutError, match="13 values do not fit 12 slots"):
        layout.pack([1] * 13)


def test_unpack_checks_range() -> None:
    layout = SlotLayout(8, 1, 100, kappa=0, guard=0)
    assert layout.unpack((1 << layout.total_bits) - 1) == [255] * 12
    with pytest.raises(LayoutError, match="negative"):
        layout.unpack(-1)
    with pytest.raises(LayoutError, match="overflowed"):
        layout.unpack(1 << layout.total_bits)
    with pytest.raises(ParameterError):
        layout.unpack(5, count=13)
    assert layout.unpack(5, count=0) == []


def test_mpz_accepted() -> None:
    gmpy2 = pytest.importorskip("gmpy2")
    layout = SlotLayout(8, 1, 100, kappa=0, guard=0)
    x = layout.pack([gmpy2.mpz(3), 4])
    assert isinstance(x, int)
    assert layout.unpack(gmpy2.mpz(x), 2) == [3, 4]


# -- several plaintexts -----------------------------------------------------------------------


@FAST
@given(layouts(max_value_bits=24), st.data())
def test_pack_many_round_trip(layout: SlotLayout, data: st.DataObject) -> None:
    values = data.draw(st.lists(st.integers(0, layout.max_value), max_size=3 * layout.capacity + 2))
    chunks = layout.chunks(values)
    assert all(1 <= len(c) <= layout.capacity for c in chunks)
    assert [v for c in chunks for v in c] == values
    packed = layout.pack_many(values)
    assert len(packed) == layout.count_plaintexts(len(values)) == len(chunks)
    assert layout.unpack_many(packed, len(values)) == values


def test_unpack_many_wrong_count_refused() -> None:
    layout = SlotLayout(8, 1, 100, kappa=0, guard=0)
    packed = layout.pack_many(list(range(30)))
    assert len(packed) == 3
    with pytest.raises(ParameterError, match="need 2 plaintexts, got 3"):
        layout.unpack_many(packed, 24)
    assert layout.unpack_many([], 0) == []


# -- signed values ----------------------------------------------------------------------------


@pytest.mark.parametrize("value_bits", [1, 2, 8, 16, 63])
def test_signed_edges(value_bits: int) -> None:
    codec = SignedCodec(value_bits)
    lo, hi = -(1 << (value_bits - 1)), (1 << (value_bits - 1)) - 1
    assert (codec.min_value, codec.max_value) == (lo, hi)
    assert codec.encode(lo) == 0
    assert codec.encode(hi) == (1 << value_bits) - 1
    for v in sorted({lo, lo + 1, -1, 0, hi - 1, hi}):
        assert codec.decode(codec.encode(v)) == v
        assert codec.decode_sum(codec.encode(v), 1) == v
    for bad in (lo - 1, hi + 1):
        with pytest.raises(LayoutError, match="does not fit"):
            codec.encode(bad)
    with pytest.raises(LayoutError, match="index 1"):
        codec.encode_many([0, hi + 1])


@FAST
@given(
    st.integers(1, 32),
    st.integers(1, 300),
    st.data(),
)
def test_signed_sums_through_a_layout(value_bits: int, terms: int, data: st.DataObject) -> None:
    layout = SlotLayout(value_bits, terms, 1024)
    codec = layout.signed
    lo, hi = codec.min_value, codec.max_value
    k = min(layout.capacity, 5)
    edge = st.sampled_from([lo, hi, 0 if lo < 0 else lo, -1 if lo < 0 else lo])
    vectors = data.draw(
        st.lists(
            st.lists(edge | st.integers(lo, hi), min_size=k, max_size=k),
            min_size=1,
            max_size=min(terms, 20),
        )
    )
    # the worst cases: all-min or all-max up to exactly `terms` terms
    fill = data.draw(st.sampled_from([lo, hi]))
    extra = terms - len(vectors)
    total = sum(layout.pack([layout.encode_signed(v) for v in vec]) for vec in vectors)
    total += extra * layout.pack([layout.encode_signed(fill)] * k)
    slots = layout.unpack(total, k)
    for i in range(k):
        expected = sum(vec[i] for vec in vectors) + extra * fill
        assert layout.decode_signed_sum(slots[i], terms) == expected


def test_signed_weighted_sum() -> None:
    codec = SignedCodec(8)
    values, weights = [-128, 127, -1, 5], [3, 1, 7, 2]
    s = sum(w * codec.encode(v) for v, w in zip(values, weights, strict=True))
    assert codec.decode_sum(s, sum(weights)) == sum(
        w * v for v, w in zip(values, weights, strict=True)
    )


# -- per-slot masks ---------------------------------------------------------------------------


def test_blinded_value_differs_in_every_slot() -> None:
    layout = SlotLayout(16, 1000, 2047)
    values = [secrets.randbelow(1 << 16) for _ in range(layout.capacity)]
    values[0], values[-1] = 0, layout.max_value
    masks = random_masks(layout)
    assert len(masks) == layout.capacity
    blinded = layout.unpack(layout.pack(values) + pack_masks(layout, masks))
    # each slot is hidden by its own 66-bit mask: equality has probability 2^-66 per slot
    assert all(b != v for b, v in zip(blinded, values, strict=True))
    assert unblind(blinded, masks) == values


def test_masks_are_independent_and_full_width() -> None:
    """One mask per slot over the full mask width, never one narrow number over the whole value."""
    layout = SlotLayout(16, 1000, 2047)
    rng = random.Random(20240601)
    draws = [random_masks(layout, rng=rng) for _ in range(64)]
    for masks in draws:
        assert all(0 <= r <= layout.max_mask for r in masks)
        assert len(set(masks)) == len(masks)
        packed = pack_masks(layout, masks)
        # the top slot carries its own mask: the packed mask is not confined to the low bits
        assert packed >> (layout.slot_bits * (layout.capacity - 1)) == masks[-1]
    # every slot position reaches the full width in some draw
    for i in range(layout.capacity):
        assert max(d[i] for d in draws).bit_length() == layout.mask_bits
    assert len(random_masks(layout, 0)) == 0
    assert len(random_masks(layout, 3 * layout.capacity + 1)) == 3 * layout.capacity + 1


def test_masks_use_secrets_by_default_and_accept_getrandbits() -> None:
    layout = SlotLayout(16, 10, 2047)

    class OnlyGetrandbits:
        def getrandbits(self, k: int) -> int:
            return (1 << k) - 1

    assert random_masks(layout, 2, rng=OnlyGetrandbits()) == [layout.max_mask] * 2

    class TooWide:
        def randbits(self, k: int) -> int:
            return 1 << k

    with pytest.raises(ParameterError, match="outside"):
        random_masks(layout, 1, rng=TooWide())
    with pytest.raises(ParameterError):
        random_masks(layout, 1, rng=object())
    with pytest.raises(ParameterError):
        random_masks(layout, -1)


def test_pack_masks_checks() -> None:
    layout = SlotLayout(16, 10, 2047)
    with pytest.raises(LayoutError, match=r"mask at index 2 is"):
        pack_masks(layout, [0, 1, layout.max_mask + 1])
    with pytest.raises(LayoutError, match=r"mask at index 0 is -1"):
        pack_masks(layout, [-1])
    with pytest.raises(LayoutError, match="do not fit"):
        pack_masks(layout, [0] * (layout.capacity + 1))
    masks = random_masks(layout, 2 * layout.capacity + 3)
    packed = pack_masks_many(layout, masks)
    assert len(packed) == 3
    assert pack_bits(masks[: layout.capacity], layout.slot_bits) == packed[0]
    with pytest.raises(ParameterError, match="must match"):
        unblind([1, 2, 3], [1, 2])


# -- homomorphic packing (Horner) -------------------------------------------------------------


@FAST
@given(layouts(blindable=True), st.data())
def test_horner_equals_plaintext_packing(layout: SlotLayout, data: st.DataObject) -> None:
    n = modulus_for(layout)
    count = data.draw(st.integers(1, layout.capacity))
    values = data.draw(st.lists(st.integers(0, layout.max_value), min_size=count, max_size=count))
    cts = [FakeCt(v, n) for v in values]
    packed = pack_ciphertexts(layout, cts)
    assert packed.m == layout.pack(values)
    assert layout.unpack(packed.m, count) == values


@FAST
@given(layouts(blindable=True), st.data())
def test_horner_full_slots_and_masks(layout: SlotLayout, data: st.DataObject) -> None:
    """Slots may hold sums up to max_sum plus a mask; Horner packs them without interference."""
    n = modulus_for(layout)
    count = data.draw(st.integers(1, layout.capacity))
    sums = data.draw(
        st.lists(
            st.sampled_from([0, layout.max_sum]) | st.integers(0, layout.max_sum),
            min_size=count,
            max_size=count,
        )
    )
    masks = data.draw(
        st.lists(
            st.sampled_from([0, layout.max_mask]) | st.integers(0, layout.max_mask),
            min_size=count,
            max_size=count,
        )
    )
    packed = pack_ciphertexts(layout, [FakeCt(s, n) for s in sums])
    blinded = packed + FakeCt(pack_masks(layout, masks), n)
    assert blinded.m < n
    assert unblind_packed(layout, blinded.m, masks) == sums
    # the same with per-slot blinding before packing
    pre = pack_ciphertexts(layout, [FakeCt(s + r, n) for s, r in zip(sums, masks, strict=True)])
    assert pre.m == blinded.m


def test_horner_prefers_shift_left() -> None:
    layout = SlotLayout(16, 10, 2047)
    n = modulus_for(layout)
    values = list(range(1, layout.capacity + 1))
    ShiftingCt.shifts = 0
    packed = pack_ciphertexts(layout, [ShiftingCt(v, n) for v in values])
    assert packed.m == layout.pack(values)
    assert ShiftingCt.shifts == layout.capacity - 1
    single = pack_ciphertexts(layout, [ShiftingCt(7, n)])
    assert single.m == 7


def test_horner_checks_count() -> None:
    layout = SlotLayout(16, 10, 2047)
    n = modulus_for(layout)
    with pytest.raises(LayoutError, match="do not fit"):
        pack_ciphertexts(layout, [FakeCt(1, n)] * (layout.capacity + 1))
    with pytest.raises(ParameterError):
        pack_ciphertexts(layout, [])
    values = list(range(2 * layout.capacity + 5))
    packed = pack_ciphertexts_many(layout, [FakeCt(v, n) for v in values])
    assert [p.m for p in packed] == layout.pack_many(values)


def test_horner_with_elgamal() -> None:
    """The same packing on the project's threshold ElGamal ciphertexts (an import failure fails)."""
    from mpc.elgamal import combine, local_joint_keys, params_for

    params = params_for(1024)
    pk, shares = local_joint_keys(params)
    plaintext_bits = params.plaintext_bits
    assert plaintext_bits == params.n.bit_length() - 1
    layout = SlotLayout(16, 4, plaintext_bits)
    assert layout.capacity == plaintext_bits // (16 + 2 + 40 + 1)

    def decrypt(ct: object) -> int:
        return combine(ct, [s.partial_decrypt(ct) for s in shares])

    k = layout.capacity
    vectors = [
        [layout.max_value] * k,
        [0] * k,
        list(range(k)),
        [layout.max_value - i for i in range(k)],
    ]
    # per-slot sums of `terms` encrypted values, then packed homomorphically
    cts = [pk.encrypt(v) for v in vectors[0]]
    for vec in vectors[1:]:
        cts = [c + pk.encrypt(v) for c, v in zip(cts, vec, strict=True)]
    packed = pack_ciphertexts(layout, cts)
    sums = [sum(col) for col in zip(*vectors, strict=True)]
    assert (
        decrypt(packed) == pack_bits(sums, layout.slot_bits) == sum(layout.pack(v) for v in vectors)
    )
    masks = random_masks(layout)
    blinded = packed + pk.encrypt(pack_masks(layout, masks))
    opened = layout.unpack(decrypt(blinded))
    assert all(o != s for o, s in zip(opened, sums, strict=True))
    assert unblind(opened, masks) == sums
