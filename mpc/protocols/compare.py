"""Protocol "compare": secure comparison [x_k >= y_k] for a batch (DESIGN 3.5).

The SP holds joint-key encryptions of l-bit values x_k and y_k (or of x_k - y_k),
l <= 64, for k = 1..K. The result bits are either revealed to the PSP
(``output="psp"``) or returned to the SP encrypted under the joint key
(``output="encrypted"``), nobody learning them. The maths and the leakage
statement are in docs/protocols/compare.md; the raw maths in
:mod:`mpc.comparison`. Two methods (``CompareParams.method``) share the
first two steps; one message each, carrying the whole batch.

Method "gc" (the default, :mod:`mpc.comparison.gc` and :mod:`mpc.comparison.ot`):

1. ``masked`` (SP -> PSP): the packed, masked values as below, with the SP's
   base-OT key (128 points; its Delta stays with it).
2. ``partials`` (SP -> PSP): as below; the PSP reads c_k = z_k + r_k.
3. ``choices`` (PSP -> SP): one IKNP extension choosing the labels of the
   bits of c_k mod 2^l.
4. ``garbled`` (SP -> PSP): garbled borrow chains of [c^ < r^], decoded by the
   PSP into z_k XOR mu_k (mu_k = 0 for output "psp": its result).
5. ``result`` (PSP -> SP, output "encrypted" only): E(z_k XOR mu_k); the SP
   removes its mu_k under encryption.

Method "dgk":

1. ``masked`` (SP -> PSP): z_k = 2^l + x_k - y_k plus the SP's mask r_k,
   packed many per ciphertext and re-randomised (:mod:`mpc.comparison.masking`);
   with them, the digit thermometers of a_k = 2^l - 1 - (r_k mod 2^l) encrypted
   under the SP's own curve key (from a pool filled in idle time), and that key.
2. ``partials`` (SP -> PSP): the SP's partial decryptions of the packed values.
   The PSP computes its own meanwhile, combines, and reads c_k = z_k + r_k.
3. ``terms`` (PSP -> SP): DGK terms comparing a_k with b_k = 2^l - 1 -
   (c_k mod 2^l), blinded and shuffled (:mod:`mpc.comparison.dgk`), with the
   PSP's random bit delta_k; for output "encrypted" also E(u_k),
   u_k = (c_k bit l) XOR delta_k, under the joint key.
4. ``hints`` (SP -> PSP, output "psp" only): the SP zero-tests the terms and
   gets lambda_k = [c_k mod 2^l < r_k mod 2^l] XOR delta_k; it sends
   v_k = (r_k bit l) XOR lambda_k, and the PSP's result is
   (c_k bit l) XOR delta_k XOR v_k. For output "encrypted" the SP computes
   E([x_k >= y_k]) = E(u_k XOR v_k) itself: three messages in all.

The step functions below (``sp_masked``, ``psp_masked``, ``sp_partials``;
"gc": ``psp_choices``, ``sp_garble``, ``psp_evaluate``, ``sp_unmask``; "dgk":
``psp_terms``, ``sp_result``, ``psp_finish``) are pure apart from their
randomness and take and return serialised messages; the roles' ``run`` only
moves those between them. Other protocols reuse the comparison inside their
own sessions with :func:`compare_batch` and :func:`compare_steps`.

SP inputs: ``pk``, ``share``, ``params`` (:class:`CompareParams`), ``diffs`` or
``xs`` and ``ys`` (lists of joint-key ciphertexts), optional ``pools``
(:class:`~mpc.comparison.pools.SpPools`: its OT key; for "dgk" its curve key and bit encryptions),
``run_crypto``, ``rerandomize``. PSP inputs: ``pk``, ``share``, optional
``params`` (checked against the SP's; required for a pipelined batch),
``pools`` (:class:`~mpc.comparison.pools.PspPools`: base OTs per SP key; for
"dgk" term randomizers and dummies), ``run_crypto``, ``min_kappa`` (the fewest statistical
bits it accepts from the SP: its config's ``kappa``, never below :data:`MIN_KAPPA`). Results:
SP, a list of K ciphertexts (output "encrypted") or None; PSP, a list of K bits (output "psp") or
None.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mpc.comparison import dgk, ec, gc, ot
from mpc.comparison.masking import (
    compare_layout,
    differences,
    draw_masks,
    mask_and_pack,
    negate_plus_one,
)
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import Ciphertext, KeyShare, PublicKey, combine_many
from mpc.elgamal.curve import CurvePrivateKey
from mpc.errors import EncodingError, LayoutError, ParameterError, ProtocolError
from mpc.packing import DEFAULT_KAPPA, SlotLayout
from mpc.protocol import (
    ProtocolSpec,
    RoleFactory,
    RunCrypto,
    SessionContext,
    Step,
    register_protocol,
    require_responder,
    run_inline,
)
from mpc.protocols.wire import (
    ciphertext_batch,
    ciphertexts_from_batch,
    element_batch,
    elements_from_batch,
    parse_message,
)
from mpc.v1 import common_pb2, compare_pb2

__all__ = [
    "DEFAULT_DIGIT_BITS",
    "DEFAULT_METHOD",
    "MAX_MESSAGE_BYTES",
    "METHOD_DGK",
    "METHOD_GC",
    "MIN_KAPPA",
    "OUTPUT_ENCRYPTED",
    "OUTPUT_PSP",
    "PIPELINE",
    "Compare",
    "CompareParams",
    "PspState",
    "SpState",
    "check_kappa",
    "check_peer_params",
    "chunk_sizes",
    "compare_batch",
    "compare_steps",
    "held_steps",
    "psp_choices",
    "psp_compare",
    "psp_compare_held",
    "psp_evaluate",
    "psp_finish",
    "psp_held_choices",
    "psp_held_result",
    "psp_masked",
    "psp_terms",
    "required_kappa",
    "sp_compare",
    "sp_compare_held",
    "sp_garble",
    "sp_held_garble",
    "sp_masked",
    "sp_message",
    "sp_partials",
    "sp_result",
    "sp_rounds",
    "sp_unmask",
]

OUTPUT_PSP = "psp"
OUTPUT_ENCRYPTED = "encrypted"
METHOD_GC = "gc"
METHOD_DGK = "dgk"
_METHODS = {METHOD_GC: compare_pb2.COMPARE_METHOD_GC, METHOD_DGK: compare_pb2.COMPARE_METHOD_DGK}
_METHOD_NAMES = {v: k for k, v in _METHODS.items()}
DEFAULT_METHOD = METHOD_GC
"""What every protocol's comparisons use unless it says otherwise: the garbled circuit
measures about 2x faster than DGK online and needs no precomputed curve work
(docs/protocols/compare.md, section 8)."""
_OUTPUTS = {
    OUTPUT_PSP: compare_pb2.COMPARE_OUTPUT_PSP,
    OUTPUT_ENCRYPTED: compare_pb2.COMPARE_OUTPUT_ENCRYPTED,
}
_OUTPUT_NAMES = {v: k for k, v in _OUTPUTS.items()}

DEFAULT_DIGIT_BITS = 4
"""Digit width of the DGK step. At l = 32, 4-bit digits need 9 terms (blindings
at the PSP, zero tests at the SP) per comparison instead of 33 for the bitwise
protocol, for 120 SP bit encryptions instead of 32, all precomputed in idle time;
see docs/protocols/compare.md and the benchmark for the trade-off."""

MAX_CHUNKS = 16
"""The most parts a pipelined batch may have (the steps of each are declared)."""

PIPELINE = 4
"""The parts other protocols cut their comparison batches into (``CompareParams.chunks``):
enough for the SP and the PSP to work at the same time, few enough to keep messages
large."""

MIN_CHUNK = 64
"""A pipelined batch (``chunks`` > 1) is cut into parts of at least this many
comparisons, so that packing stays full and messages stay few."""

MAX_MESSAGE_BYTES = 192 * 1024 * 1024
"""A batch whose biggest message would exceed this is refused: split it."""

MIN_KAPPA = 40
"""The fewest statistical blinding bits a server accepts from its peer (issue #12): a mask
kappa bits wider than a value hides it to 2^-kappa, so an SP proposing kappa = 1 would show
the PSP nearly unmasked values. A server's config (``PartyConfig.kappa``) may only raise it."""


_W = dgk.CIPHERTEXT_BYTES


def _nonneg_int(v: object, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ParameterError(f"{what} must be a non-negative int, got {v!r}")
    return v


# -- parameters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareParams:
    """One batch: ``count`` comparisons of ``bits``-bit values, and where the result goes."""

    bits: int
    count: int
    output: str = OUTPUT_PSP
    digit_bits: int = DEFAULT_DIGIT_BITS
    kappa: int = DEFAULT_KAPPA
    chunks: int = 1
    """Pipelining: the batch runs as up to this many concurrent parts (:func:`chunk_sizes`)."""
    method: str = DEFAULT_METHOD
    """How c^ and r^ are compared: ``"gc"`` (garbled circuit, the default) or ``"dgk"``."""
    plan: dgk.DigitPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", dgk.DigitPlan.create(self.bits, self.digit_bits))
        count = _nonneg_int(self.count, "count")
        if count < 1:
            raise ParameterError("a comparison batch needs at least one comparison")
        if self.output not in _OUTPUTS:
            raise ParameterError(
                f"output must be {OUTPUT_PSP!r} or {OUTPUT_ENCRYPTED!r}, got {self.output!r}"
            )
        if not 1 <= _nonneg_int(self.chunks, "chunks") <= MAX_CHUNKS:
            raise ParameterError(f"chunks must be in [1, {MAX_CHUNKS}], got {self.chunks}")
        kappa = _nonneg_int(self.kappa, "kappa")
        if not 1 <= kappa <= 256:
            raise ParameterError(f"kappa must be in [1, 256], got {kappa}")
        if self.method not in _METHODS:
            raise ParameterError(f"method must be {METHOD_GC!r} or {METHOD_DGK!r}, got {self.method!r}")
        if self.method == METHOD_GC:
            biggest = count * self.bits * 2 * gc.LABEL_BYTES  # the garbled tables
        else:
            biggest = count * max(self.plan.levels, self.plan.terms) * _W
        if biggest > MAX_MESSAGE_BYTES:
            raise ParameterError(
                f"{count} comparisons would need a {biggest >> 20} MiB message "
                f"(limit {MAX_MESSAGE_BYTES >> 20} MiB): split the batch"
            )

    def layout(self, pk: PublicKey) -> SlotLayout:
        """The slot layout of the masked values under ``pk``'s modulus."""
        return compare_layout(pk.params, self.bits, self.kappa)

    def to_proto(self) -> compare_pb2.CompareParams:
        return compare_pb2.CompareParams(
            bits=self.bits,
            count=self.count,
            output=_OUTPUTS[self.output],
            digit_bits=self.digit_bits,
            kappa=self.kappa,
            chunks=self.chunks,
            method=_METHODS[self.method],
        )

    @classmethod
    def from_proto(cls, msg: compare_pb2.CompareParams) -> CompareParams:
        output = _OUTPUT_NAMES.get(msg.output)
        if output is None:
            raise EncodingError(f"comparison parameters: unknown output {msg.output}")
        method = _METHOD_NAMES.get(msg.method)
        if method is None:
            raise EncodingError(f"comparison parameters: unknown method {msg.method}")
        try:
            return cls(msg.bits, msg.count, output, msg.digit_bits, msg.kappa, msg.chunks or 1, method)
        except ParameterError as exc:
            raise EncodingError(f"comparison parameters: {exc}") from exc

    @classmethod
    def from_bytes(cls, raw: bytes) -> CompareParams:
        return cls.from_proto(parse_message(compare_pb2.CompareParams, raw, "comparison parameters"))


# -- what a server accepts from its peer ----------------------------------------------------


def required_kappa(party: Any) -> int:
    """The fewest statistical bits ``party`` accepts from its peer: its config's ``kappa``
    (a minimum), never below :data:`MIN_KAPPA` (also for a party without a config)."""
    configured = getattr(getattr(party, "config", None), "kappa", MIN_KAPPA)
    return max(MIN_KAPPA, int(configured))


def check_kappa(kappa: int, minimum: int = MIN_KAPPA, what: str = "comparison parameters") -> None:
    """ParameterError unless the peer's ``kappa`` is at least ``minimum`` (and :data:`MIN_KAPPA`)."""
    floor = max(MIN_KAPPA, minimum)
    if kappa < floor:
        raise ParameterError(
            f"{what}: the peer proposes kappa = {kappa} statistical bits; this server requires "
            f"kappa >= {floor} (config key 'kappa')"
        )


def check_peer_params(params: CompareParams, party: Any) -> CompareParams:
    """Refuse comparison parameters the peer proposes that ``party``'s own configuration does
    not allow: kappa below its minimum, a method it does not accept (config ``compare_methods``)."""
    check_kappa(params.kappa, required_kappa(party))
    methods = tuple(getattr(getattr(party, "config", None), "compare_methods", tuple(_METHODS)))
    if params.method not in methods:
        raise ParameterError(
            f"comparison parameters: the peer proposes method {params.method!r}; this server "
            f"accepts {list(methods)} (config key 'compare_methods')"
        )
    return params


def _blob(batch: common_pb2.Batch, count: int, what: str) -> bytes:
    if batch.width != _W:
        raise EncodingError(f"{what}: element width {batch.width}, expected {_W}")
    if batch.count != count:
        raise EncodingError(f"{what}: {batch.count} elements, expected {count}")
    if len(batch.blob) != count * _W:
        raise EncodingError(f"{what}: blob of {len(batch.blob)} bytes, expected {count * _W}")
    return batch.blob


def _pack_bits(bits: Sequence[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for k, b in enumerate(bits):
        if b:
            out[k >> 3] |= 1 << (k & 7)
    return bytes(out)


def _unpack_bits(data: bytes, count: int, what: str) -> list[int]:
    if len(data) != (count + 7) // 8:
        raise EncodingError(f"{what}: {len(data)} bytes for {count} bits")
    if count % 8 and data[-1] >> (count % 8):
        raise EncodingError(f"{what}: padding bits are not zero")
    return [(data[k >> 3] >> (k & 7)) & 1 for k in range(count)]


# -- the SP's steps ------------------------------------------------------------------------


@dataclass
class SpState:
    """The SP's secrets for one batch: the masks r_k (never sent) and its zero-test key."""

    pk: PublicKey
    params: CompareParams
    layout: SlotLayout
    masks: list[int]
    packed: list[Ciphertext]
    key: CurvePrivateKey
    ot_key: ot.OtDeltaKey | None = None
    mu: list[int] = field(default_factory=list)

    def top(self, k: int) -> int:
        """Bit l of r_k."""
        return (self.masks[k] >> self.params.bits) & 1


def sp_message(
    pk: PublicKey,
    params: CompareParams,
    layout: SlotLayout,
    masks: list[int],
    packed: list[Ciphertext],
    pools: SpPools | None = None,
) -> tuple[SpState, bytes]:
    """The ``masked`` message for packed, masked ciphertexts, with the SP's base-OT key
    (method "gc") or its thermometers (method "dgk").

    The thermometers are those of a_k = 2^l - 1 - (r_k mod 2^l), encrypted under the
    SP's curve key from its pool of bit encryptions (a byte copy each).
    """
    pools = pools if pools is not None else SpPools()
    if params.method == METHOD_GC:
        gmsg = compare_pb2.CompareMasked(
            params=params.to_proto(), ciphertexts=ciphertext_batch(pk, packed), ot_key=pools.ot.public()
        )
        state = SpState(pk, params, layout, masks, packed, pools.key, pools.ot)
        return state, gmsg.SerializeToString()
    low = (1 << params.bits) - 1
    blob = dgk.encrypt_thermometers(params.plan, [low - (m & low) for m in masks], pools.bits)
    msg = compare_pb2.CompareMasked(
        params=params.to_proto(),
        ciphertexts=ciphertext_batch(pk, packed),
        curve_key=pools.key.public_key.to_bytes(),
        thermometers=common_pb2.Batch(count=params.count * params.plan.levels, width=_W, blob=blob),
    )
    return SpState(pk, params, layout, masks, packed, pools.key), msg.SerializeToString()


def sp_masked(
    pk: PublicKey,
    params: CompareParams,
    *,
    diffs: Sequence[Ciphertext] | None = None,
    xs: Sequence[Ciphertext] | None = None,
    ys: Sequence[Ciphertext] | None = None,
    rerandomize: bool = True,
    pools: SpPools | None = None,
) -> tuple[SpState, bytes]:
    """Step ``masked``: pack E(2^l + x_k - y_k + r_k), keep the masks, add the thermometers.

    Give either ``diffs`` (E(x_k - y_k)) or ``xs`` and ``ys``.
    """
    if diffs is None:
        if xs is None or ys is None:
            raise ParameterError("give either diffs, or both xs and ys")
        d = differences(pk, xs, ys)
    else:
        if xs is not None or ys is not None:
            raise ParameterError("give either diffs, or both xs and ys, not both")
        d = list(diffs)
        for c in d:
            if not isinstance(c, Ciphertext) or c.pk != pk:
                raise ParameterError("every input must be a Ciphertext under the joint key")
    if len(d) != params.count:
        raise ParameterError(f"{len(d)} comparisons given, params say {params.count}")
    layout = params.layout(pk)
    masks = draw_masks(layout, params.count)
    packed = mask_and_pack(pk, layout, d, params.bits, masks, rerandomize=rerandomize)
    return sp_message(pk, params, layout, masks, packed, pools)


def sp_partials(state: SpState, share: KeyShare) -> bytes:
    """Step ``partials``: the SP's partial decryptions of the packed ciphertexts."""
    partials = share.partial_decrypt_many(state.packed)
    msg = compare_pb2.ComparePartials(partials=element_batch(state.pk.params, partials))
    return msg.SerializeToString()


def sp_result(
    state: SpState, payload: bytes, *, rerandomize: bool = False
) -> tuple[bytes | None, list[Ciphertext] | None]:
    """Step ``terms`` at the SP: zero tests, then the hints (output "psp") or E([x_k >= y_k]).

    lambda_k = [c^ < r^] XOR delta_k from the zero tests; v_k = (r_k bit l) XOR
    lambda_k. Output "psp": the hints v_k for the PSP (step ``hints``). Output
    "encrypted": E(u_k) from the PSP becomes E(u_k XOR v_k): E(u_k) if v_k = 0,
    E(1 - u_k) if v_k = 1. The PSP chose the randomness of E(u_k); pass
    ``rerandomize`` (or re-randomise before showing the results to the PSP, as
    every protocol does) to make them unlinkable.
    """
    p = state.params
    msg = parse_message(compare_pb2.CompareTerms, payload, "comparison terms")
    blob = _blob(msg.terms, p.count * p.plan.terms, "comparison terms")
    if p.output == OUTPUT_PSP and (msg.ciphertexts.count or msg.ciphertexts.blob):
        raise EncodingError("comparison terms: output 'psp' carries no ciphertexts")
    if p.output == OUTPUT_ENCRYPTED and msg.ciphertexts.count != p.count:
        raise EncodingError(
            f"comparison terms: {msg.ciphertexts.count} ciphertexts, expected {p.count}"
        )
    lam = dgk.lambdas(dgk.zero_counts(p.plan, blob, p.count, state.key))
    vs = [state.top(k) ^ lam[k] for k in range(p.count)]
    if p.output == OUTPUT_PSP:
        return compare_pb2.CompareHints(hints=_pack_bits(vs)).SerializeToString(), None
    us = ciphertexts_from_batch(state.pk, msg.ciphertexts, "comparison result")
    return None, _flip(state.pk, us, vs, rerandomize)


def _flip(pk: PublicKey, us: list[Ciphertext], bits: Sequence[int], rerandomize: bool) -> list[Ciphertext]:
    """E(u_k XOR bits_k): E(1 - u_k) where the bit is set."""
    flip = [k for k, b in enumerate(bits) if b]
    out = list(us)
    for k, ct in zip(flip, negate_plus_one(pk, [us[k] for k in flip]), strict=True):
        out[k] = ct
    if rerandomize:
        out = [pk.rerandomize(c) for c in out]
    return out


def sp_garble(state: SpState, payload: bytes) -> bytes:
    """Step ``choices`` at the SP (method "gc"): garble [c^ < r^] on the PSP's OT labels.

    The output bit the PSP reads is [c^ < r^] XOR (r_k bit l) XOR mu_k, with mu_k = 0
    for output "psp" and a fresh secret bit of the SP's for output "encrypted".
    """
    p = state.params
    if state.ot_key is None:
        raise ProtocolError("this comparison batch was not started with method 'gc'")
    low = (1 << p.bits) - 1
    encrypted = p.output == OUTPUT_ENCRYPTED
    mu = [secrets.randbits(1) if encrypted else 0 for _ in range(p.count)]
    out = [state.top(k) ^ mu[k] for k in range(p.count)]
    garbled = sp_held_garble(state.ot_key, [m & low for m in state.masks], p.bits, payload, out)
    state.mu = mu  # only once the PSP's message was accepted: a refused one changes nothing
    return garbled


def sp_unmask(state: SpState, payload: bytes, *, rerandomize: bool = False) -> list[Ciphertext]:
    """Step ``result`` at the SP (method "gc", output "encrypted"): E(z_k XOR mu_k) -> E(z_k)."""
    p = state.params
    if len(state.mu) != p.count:
        raise ProtocolError("comparison result before the circuits were garbled (step 'choices')")
    msg = parse_message(compare_pb2.CompareResult, payload, "comparison result")
    if msg.ciphertexts.count != p.count:
        raise EncodingError(f"comparison result: {msg.ciphertexts.count} ciphertexts, expected {p.count}")
    us = ciphertexts_from_batch(state.pk, msg.ciphertexts, "comparison result")
    return _flip(state.pk, us, state.mu, rerandomize)


# -- the PSP's steps -----------------------------------------------------------------------


@dataclass
class PspState:
    """The PSP's view of one batch: the packed ciphertexts, then the values c_k = z_k + r_k."""

    pk: PublicKey
    params: CompareParams
    layout: SlotLayout
    packed: list[Ciphertext]
    own_partials: list[int]
    sp_key: bytes
    """The SP's base-OT key (method "gc") or its curve zero-test key (method "dgk")."""
    thermometers: bytes
    values: list[int] = field(default_factory=list)
    deltas: list[int] = field(default_factory=list)
    labels: np.ndarray | None = None

    def top(self, k: int) -> int:
        """Bit l of c_k."""
        return (self.values[k] >> self.params.bits) & 1


def psp_masked(
    pk: PublicKey, share: KeyShare, payload: bytes, params: CompareParams | None = None,
    min_kappa: int = MIN_KAPPA,
) -> PspState:
    """Step ``masked`` at the PSP: check the batch and compute its own partial decryptions.

    The SP's kappa must be at least ``min_kappa`` (and :data:`MIN_KAPPA`), also when the PSP
    takes the parameters from this message (``params`` None)."""
    msg = parse_message(compare_pb2.CompareMasked, payload, "masked comparison values")
    if not msg.HasField("params"):
        raise EncodingError("masked comparison values: parameters missing")
    theirs = CompareParams.from_proto(msg.params)
    check_kappa(theirs.kappa, min_kappa, "masked comparison values")
    if params is not None and theirs != params:
        raise ProtocolError(f"the SP runs {theirs}, this PSP was started for {params}")
    layout = theirs.layout(pk)
    need = layout.count_plaintexts(theirs.count)
    if msg.ciphertexts.count != need:
        raise EncodingError(
            f"masked comparison values: {msg.ciphertexts.count} ciphertexts, expected {need}"
        )
    if theirs.method == METHOD_GC:
        if len(msg.ot_key) != ot.PUBLIC_BYTES:
            raise EncodingError(
                f"masked comparison values: OT key of {len(msg.ot_key)} bytes, expected {ot.PUBLIC_BYTES}"
            )
        packed = ciphertexts_from_batch(pk, msg.ciphertexts, "masked comparison values")
        mine = share.partial_decrypt_many(packed)
        return PspState(pk, theirs, layout, packed, mine, bytes(msg.ot_key), b"")
    key = bytes(msg.curve_key)
    ec.parse_compressed(key, "SP curve key")
    therm = _blob(msg.thermometers, theirs.count * theirs.plan.levels, "thermometer ciphertexts")
    packed = ciphertexts_from_batch(pk, msg.ciphertexts, "masked comparison values")
    return PspState(pk, theirs, layout, packed, share.partial_decrypt_many(packed), key, therm)


def psp_terms(state: PspState, payload: bytes, pools: PspPools | None = None) -> bytes:
    """Step ``terms``: decrypt c_k; blinded DGK terms for [c^ < r^] XOR delta_k; E(u_k).

    The terms compare the SP's a_k = 2^l - 1 - r^ with b_k = 2^l - 1 - c^
    (a_k < b_k iff c^ < r^); delta_k is the PSP's fresh bit. Output
    "encrypted": also E(u_k), u_k = (c_k bit l) XOR delta_k, under the joint key.
    """
    p = state.params
    if p.method != METHOD_DGK:
        raise ProtocolError(f"DGK terms for a batch of method {p.method!r}")
    _open(state, payload)
    low = (1 << p.bits) - 1
    state.deltas = [secrets.randbits(1) for _ in range(p.count)]
    pools = pools if pools is not None else PspPools()
    terms = dgk.blind_terms(
        p.plan,
        state.thermometers,
        [low - (v & low) for v in state.values],
        state.deltas,
        pools.randomizers(state.sp_key),
        pools.dummies,
    )
    out = compare_pb2.CompareTerms(
        terms=common_pb2.Batch(count=p.count * p.plan.terms, width=_W, blob=terms)
    )
    if p.output == OUTPUT_ENCRYPTED:
        us = [state.top(k) ^ state.deltas[k] for k in range(p.count)]
        out.ciphertexts.CopyFrom(ciphertext_batch(state.pk, [state.pk.encrypt_from_pool(u) for u in us]))
    return out.SerializeToString()


def _open(state: PspState, payload: bytes) -> None:
    """Combine the SP's partial decryptions with the PSP's own: c_k = z_k + r_k."""
    msg = parse_message(compare_pb2.ComparePartials, payload, "SP partial decryptions")
    if msg.partials.count != len(state.packed):
        raise EncodingError(
            f"SP partial decryptions: {msg.partials.count}, expected {len(state.packed)}"
        )
    theirs = elements_from_batch(state.pk.params, msg.partials, "SP partial decryptions")
    plain = combine_many(state.packed, [theirs, state.own_partials])
    try:
        state.values = state.layout.unpack_many(plain, state.params.count)
    except LayoutError as exc:
        raise ProtocolError(f"a decrypted comparison slot is out of range: {exc}") from exc


def psp_choices(state: PspState, payload: bytes, pools: PspPools | None = None) -> bytes:
    """Step ``partials`` at the PSP (method "gc"): decrypt c_k, then one OT extension
    choosing the labels of the bits of c^ = c_k mod 2^l."""
    p = state.params
    if p.method != METHOD_GC:
        raise ProtocolError(f"OT choices for a batch of method {p.method!r}")
    _open(state, payload)
    low = (1 << p.bits) - 1
    pools = pools if pools is not None else PspPools()
    state.labels, msg = psp_held_choices(pools, state.sp_key, [v & low for v in state.values], p.bits)
    return msg


def psp_evaluate(state: PspState, payload: bytes) -> tuple[list[int] | None, bytes | None]:
    """Step ``garbled`` at the PSP: evaluate, z_k XOR mu_k = output bit XOR (c_k bit l).

    Output "psp": the bits [x_k >= y_k] (mu_k = 0). Output "encrypted": the
    ``result`` message, E(z_k XOR mu_k) under the joint key.
    """
    p = state.params
    if state.labels is None:
        raise ProtocolError("garbled comparison before the OT choices were made (step 'partials')")
    read = psp_held_result(state.labels, payload)
    zs = [read[k] ^ state.top(k) for k in range(p.count)]
    if p.output == OUTPUT_PSP:
        return zs, None
    cts = [state.pk.encrypt_from_pool(z) for z in zs]
    return None, compare_pb2.CompareResult(ciphertexts=ciphertext_batch(state.pk, cts)).SerializeToString()


def psp_finish(state: PspState, payload: bytes) -> list[int]:
    """Step ``hints`` (output "psp"): [x_k >= y_k] = (c_k bit l) XOR delta_k XOR hint_k."""
    p = state.params
    if len(state.deltas) != p.count:
        raise ProtocolError("comparison hints before the terms were made (step 'terms')")
    msg = parse_message(compare_pb2.CompareHints, payload, "comparison hints")
    hints = _unpack_bits(bytes(msg.hints), p.count, "comparison hints")
    return [state.top(k) ^ state.deltas[k] ^ h for k, h in enumerate(hints)]


_STEP_NAMES = ("masked", "partials", "terms", "hints", "choices", "garbled", "result")
_SENDERS = {
    "masked": "sp", "partials": "sp", "terms": "psp", "hints": "sp",  # both methods, then DGK's
    "choices": "psp", "garbled": "sp", "result": "psp",  # method "gc"
}


def chunk_sizes(count: int, chunks: int, minimum: int = MIN_CHUNK) -> list[int]:
    """How a pipelined batch of ``count`` is cut: at most ``chunks`` consecutive parts
    of at least ``minimum`` each (one part when the batch is small), sizes differing by
    at most one. Both roles compute it from the count, so no message carries it."""
    if chunks < 1:
        raise ParameterError(f"chunks must be >= 1, got {chunks}")
    parts = max(1, min(chunks, count // max(1, minimum)))
    base, extra = divmod(count, parts)
    return [base + (1 if j < extra else 0) for j in range(parts)]


def _parts(params: CompareParams, prefix: str) -> list[tuple[int, CompareParams, str]]:
    """A pipelined batch's parts: (first index, the part's params, the part's step prefix)."""
    sizes = chunk_sizes(params.count, params.chunks)
    starts = [sum(sizes[:j]) for j in range(len(sizes))]
    return [
        (a, dataclasses.replace(params, count=n, chunks=1), prefix if len(sizes) == 1 else f"{prefix}{j}.")
        for j, (a, n) in enumerate(zip(starts, sizes, strict=True))
    ]


def compare_steps(prefix: str = "", chunks: int = 1) -> tuple[Step, ...]:
    """The comparison's steps, named ``prefix + name``: include them in a protocol that
    runs comparisons inside its own sessions (with :func:`compare_batch`).

    With ``chunks`` > 1 (a pipelined batch), also the steps of every part,
    named ``prefix + "<j>." + name``.
    """
    prefixes = [prefix] + [f"{prefix}{j}." for j in range(chunks if chunks > 1 else 0)]
    return tuple(
        Step(p + s, _SENDERS[s], "psp" if _SENDERS[s] == "sp" else "sp")
        for p in prefixes
        for s in _STEP_NAMES
    )


async def sp_compare(
    ctx: SessionContext,
    *,
    pk: PublicKey,
    share: KeyShare,
    params: CompareParams,
    diffs: Sequence[Ciphertext] | None = None,
    xs: Sequence[Ciphertext] | None = None,
    ys: Sequence[Ciphertext] | None = None,
    pools: SpPools | None = None,
    run_crypto: RunCrypto | None = None,
    rerandomize: bool = True,
    prefix: str = "",
    **_: Any,
) -> list[Ciphertext] | None:
    """The SP's side of one batch inside ``ctx`` (steps named with ``prefix``).

    ``params.chunks`` > 1 pipelines the batch: its parts (:func:`chunk_sizes`)
    run as concurrent sub-batches, so that the SP masks or blinds one part
    while the PSP decrypts or zero-tests another.
    """
    rc = run_crypto or run_inline
    parts = _parts(params, prefix)
    if len(parts) > 1:
        if diffs is None:
            if xs is None or ys is None:
                raise ParameterError("give either diffs, or both xs and ys")
            diffs = await rc(differences, pk, xs, ys)
        elif xs is not None or ys is not None:
            raise ParameterError("give either diffs, or both xs and ys, not both")
        if len(diffs) != params.count:
            raise ParameterError(f"{len(diffs)} comparisons given, params say {params.count}")
        outs = await asyncio.gather(
            *(
                sp_compare(
                    ctx, pk=pk, share=share, params=part, diffs=diffs[a : a + part.count],
                    pools=pools, run_crypto=rc, rerandomize=rerandomize, prefix=pre,
                )
                for a, part, pre in parts
            )
        )
        if params.output == OUTPUT_PSP:
            return None
        return [c for out in outs for c in (out or [])]
    state, masked = await rc(
        functools.partial(
            sp_masked, pk, params, diffs=diffs, xs=xs, ys=ys, rerandomize=rerandomize, pools=pools
        )
    )
    return await sp_rounds(ctx, state, masked, share, rc, prefix)


async def sp_rounds(
    ctx: SessionContext,
    state: SpState,
    masked: bytes,
    share: KeyShare,
    rc: RunCrypto,
    prefix: str = "",
) -> list[Ciphertext] | None:
    """The SP's messages once ``masked`` is made (for protocols that pack their own values)."""
    await ctx.send("psp", prefix + "masked", masked)
    await ctx.send("psp", prefix + "partials", await rc(sp_partials, state, share))
    if state.params.method == METHOD_GC:
        choices = await ctx.receive("psp", prefix + "choices")
        await ctx.send("psp", prefix + "garbled", await rc(sp_garble, state, choices))
        if state.params.output == OUTPUT_PSP:
            return None
        return await rc(sp_unmask, state, await ctx.receive("psp", prefix + "result"))  # type: ignore[no-any-return]
    terms = await ctx.receive("psp", prefix + "terms")
    hints, out = await rc(sp_result, state, terms)
    if hints is not None:
        await ctx.send("psp", prefix + "hints", hints)
    return out


async def psp_compare(
    ctx: SessionContext,
    *,
    pk: PublicKey,
    share: KeyShare,
    params: CompareParams | None = None,
    pools: PspPools | None = None,
    run_crypto: RunCrypto | None = None,
    prefix: str = "",
    min_kappa: int = MIN_KAPPA,
    **_: Any,
) -> list[int] | None:
    """The PSP's side of one batch inside ``ctx`` (steps named with ``prefix``).

    A pipelined batch (``params.chunks`` > 1, see :func:`sp_compare`) needs
    ``params`` here, since the parts follow from its count. The SP's kappa must be at
    least ``min_kappa`` (and :data:`MIN_KAPPA`).
    """
    rc = run_crypto or run_inline
    if pools is None:
        pools = PspPools()
    if params is not None and len(parts := _parts(params, prefix)) > 1:
        outs = await asyncio.gather(
            *(
                psp_compare(
                    ctx, pk=pk, share=share, params=part, pools=pools, run_crypto=rc, prefix=pre,
                    min_kappa=min_kappa,
                )
                for _, part, pre in parts
            )
        )
        if params.output != OUTPUT_PSP:
            return None
        return [b for out in outs for b in (out or [])]
    masked = await ctx.receive("sp", prefix + "masked")
    state = await rc(psp_masked, pk, share, masked, params, min_kappa)
    partials = await ctx.receive("sp", prefix + "partials")
    if state.params.method == METHOD_GC:
        await ctx.send("sp", prefix + "choices", await rc(psp_choices, state, partials, pools))
        bits, result = await rc(psp_evaluate, state, await ctx.receive("sp", prefix + "garbled"))
        if result is not None:
            await ctx.send("sp", prefix + "result", result)
        return bits  # type: ignore[no-any-return]
    await ctx.send("sp", prefix + "terms", await rc(psp_terms, state, partials, pools))
    if state.params.output != OUTPUT_PSP:
        return None
    hints = await ctx.receive("sp", prefix + "hints")
    return await rc(psp_finish, state, hints)  # type: ignore[no-any-return]


# -- values the two servers hold in the clear ---------------------------------------------


def held_steps(prefix: str = "") -> tuple[Step, ...]:
    """The steps of :func:`sp_compare_held` / :func:`psp_compare_held`."""
    return (Step(prefix + "choices", "psp", "sp"), Step(prefix + "garbled", "sp", "psp"))


def choices_message(seeds: ot.OtChoiceSeeds, choices: np.ndarray) -> tuple[np.ndarray, bytes, bytes]:
    """The chooser's side of one OT extension: its labels, the fresh nonce, and the message
    (``CompareChoices``) the Delta holder reads; for every protocol that extends OTs."""
    nonce = secrets.token_bytes(ot.NONCE_BYTES)
    columns, labels = ot.extend_choices(seeds, choices.reshape(-1), nonce)
    msg = compare_pb2.CompareChoices(point=seeds.point, nonce=nonce, columns=columns)
    return labels, nonce, msg.SerializeToString()


def psp_held_choices(pools: PspPools, sp_ot_key: bytes, values: Sequence[int], bits: int) -> tuple[np.ndarray, bytes]:
    """PSP: one OT extension for the bits of its values a_k; its labels and the message."""
    if not values:
        raise ParameterError("a comparison batch needs at least one comparison")
    labels, _, msg = choices_message(pools.ot_seeds(sp_ot_key), gc.value_bits(values, bits))
    return labels.reshape(len(values), bits, gc.LABEL_BYTES), msg


def sp_held_garble(
    ot_key: ot.OtDeltaKey, values: Sequence[int], bits: int, payload: bytes, masks: Sequence[int] | None = None,
    flips: np.ndarray | None = None,
) -> bytes:
    """SP: garble [a_k < b_k] XOR masks_k for its values b_k on the PSP's OT labels.

    The default masks (all ones) make the PSP read [a_k >= b_k]; method "gc" of the
    masked comparison passes its own. ``flips`` (count, bits) of 0/1, the SP's XOR
    shares of the PSP's bits: then a_k is the PSP's bits XOR flips_k (free: the
    zero labels swap)."""
    msg = parse_message(compare_pb2.CompareChoices, payload, "comparison OT choices")
    count = len(values)
    q = ot.extend_delta(ot_key, bytes(msg.point), bytes(msg.columns), count * bits, bytes(msg.nonce))
    if flips is not None:
        if flips.shape != (count, bits):
            raise ParameterError(f"flips of shape {flips.shape}, expected {(count, bits)}")
        q = q ^ (ot_key.delta_array()[None, :] * flips.reshape(-1, 1).astype(np.uint8))
    nonce = secrets.token_bytes(gc.GATE_NONCE_BYTES)
    out = np.ones(count, dtype=np.uint8) if masks is None else np.array(masks, dtype=np.uint8)
    garbled = gc.garble_less_than(
        ot_key.delta_array(), q.reshape(count, bits, gc.LABEL_BYTES), gc.value_bits(values, bits), out, nonce
    )
    start, tables, decode = garbled.to_bytes()
    return compare_pb2.CompareGarbled(nonce=nonce, start=start, tables=tables, decode=decode).SerializeToString()


def psp_held_result(labels: np.ndarray, payload: bytes) -> list[int]:
    """PSP: evaluate, [a_k < b_k] XOR masks_k for every k ([a_k >= b_k] with the default masks)."""
    count, bits = labels.shape[0], labels.shape[1]
    msg = parse_message(compare_pb2.CompareGarbled, payload, "garbled comparison")
    if len(msg.nonce) != gc.GATE_NONCE_BYTES:
        raise EncodingError(f"garbled comparison: nonce of {len(msg.nonce)} bytes")
    garbled = gc.Garbled.from_bytes(bytes(msg.start), bytes(msg.tables), bytes(msg.decode), count, bits)
    return [int(b) for b in gc.evaluate_less_than(labels, garbled, bytes(msg.nonce))]


async def sp_compare_held(
    ctx: SessionContext, *, ot_key: ot.OtDeltaKey, values: Sequence[int], bits: int,
    prefix: str = "", run_crypto: RunCrypto | None = None,
) -> None:
    """[a_k >= b_k] revealed to the PSP, for b_k the SP's and a_k the PSP's ``bits``-bit values.

    Two messages (``choices``, ``garbled``: :func:`held_steps`), the garbled borrow chain
    of section 8 of docs/protocols/compare.md without the masked first step: for values
    the servers already hold in the clear, such as additive shares of a masked value.
    The PSP must have the SP's ``ot_key.public()`` (sent by the calling protocol).
    """
    rc = run_crypto or run_inline
    choices = await ctx.receive("psp", prefix + "choices")
    await ctx.send("psp", prefix + "garbled", await rc(sp_held_garble, ot_key, values, bits, choices))


async def psp_compare_held(
    ctx: SessionContext, *, pools: PspPools, sp_ot_key: bytes, values: Sequence[int], bits: int,
    prefix: str = "", run_crypto: RunCrypto | None = None,
) -> list[int]:
    """The PSP's side of :func:`sp_compare_held`: the bits [a_k >= b_k]."""
    rc = run_crypto or run_inline
    labels, choices = await rc(psp_held_choices, pools, sp_ot_key, values, bits)
    await ctx.send("sp", prefix + "choices", choices)
    return await rc(psp_held_result, labels, await ctx.receive("sp", prefix + "garbled"))  # type: ignore[no-any-return]


async def compare_batch(ctx: SessionContext, **inputs: Any) -> list[Ciphertext] | list[int] | None:
    """Run one comparison batch as this party's role (``ctx.role``: "sp" or "psp").

    ``inputs`` are the role's inputs (see the module docstring) and may include
    ``prefix``, the prefix of the steps in ``ctx.protocol``
    (see :func:`compare_steps`).
    """
    if ctx.role == "sp":
        return await sp_compare(ctx, **inputs)
    if ctx.role == "psp":
        return await psp_compare(ctx, **inputs)
    raise ProtocolError(f"the comparison has roles 'sp' and 'psp', not {ctx.role!r}")


class SpCompare:
    async def run(self, ctx: SessionContext) -> object:
        return await sp_compare(ctx, **ctx.inputs)


class PspCompare:
    async def run(self, ctx: SessionContext) -> object:
        return await psp_compare(ctx, **ctx.inputs)


@register_protocol
class Compare(ProtocolSpec):
    name = "compare"
    roles = ("sp", "psp")
    steps = compare_steps(chunks=MAX_CHUNKS)
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpCompare, "psp": PspCompare}

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        """The PSP's inputs when the SP starts a session; ``raw`` is a CompareParams.

        The SP's proposal is checked against the PSP's own config (:func:`check_peer_params`:
        kappa at least its ``kappa``, a method among its ``compare_methods``; sizes are bounded
        by :class:`CompareParams`). The PSP's pools (term randomizers per SP key, dummies) live
        on the party as ``compare_pools``, created empty on first use.
        """
        require_responder(party, "a comparison")
        params = check_peer_params(CompareParams.from_bytes(raw), party)
        pk, share = party.require_key()
        pools = getattr(party, "compare_pools", None)
        if not isinstance(pools, PspPools):
            pools = PspPools()
            party.compare_pools = pools
        return {
            "pk": pk,
            "share": share,
            "params": params,
            "pools": pools,
            "run_crypto": party.run_crypto,
            "min_kappa": required_kappa(party),
        }
