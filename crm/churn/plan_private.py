"""Protocol "churn-plan": the leaf-node search on XOR-shared attributes (roles sp, psp).

The SP holds the compiled search (:mod:`crm.churn.plan_forms`: the model,
the costs, every contender's key as an integer linear form). Each customer
splits the bits of its attributes (one-hot values, the encoded numeric
features) into two XOR shares, one for each server. For a batch of
customers the servers then run, all customers at once:

1. ``ot-key`` / ``shuffle-key``: their base-OT keys (fresh per server start).
2. ``gt-choices`` / ``gt-garbled``: one garbled comparison
   [x_f < t + 1] per numeric threshold t of the tree, on the PSP's share of
   x_f XOR the SP's (free in the circuit), output masked by a fresh bit of
   the SP's: the node bits [x_f > t] as XOR shares. The PSP inputs its
   shares of each numeric feature once per threshold; the thresholds are
   the SP's constants.
3. ``ole-choices`` / ``ole``: every contender's key, a linear form with the
   SP's secret coefficients in the XOR-shared bits (one-hot values, node
   bits, bits of the numeric values), as additive shares modulo 2^W
   (:mod:`mpc.comparison.ole`: one OT per bit of the PSP's).
4. ``shuffle`` / ``shuffle.pads``: an oblivious permute-and-share of each
   customer's contenders in an order pi of the SP's
   (:func:`mpc.comparison.shuffle.holder_pads_mod`; the PSP holds, the SP
   permutes); ``reshuffle`` / ``reshuffle.pads``: the same in an order
   sigma of the PSP's (the SP holds). Nobody knows both orders.
5. ``t<r>-pairs``, ``t<r>-choices``, ``t<r>-garbled``: a knockout
   tournament for the largest key, driven by the PSP: round r compares the
   survivors in pairs by the garbled comparison of values the servers hold
   (the modular difference's sign: [u_low < v_low] XOR the top bits), the
   bit revealed to the PSP. Keys are distinct and the positions uniformly
   permuted, so the outcomes are uniformly random whatever the keys.
6. ``result`` (with an admin key, as in the service): the PSP's winner
   position k*, sigma(k*) and its share of the winner's key modulo 2^PB,
   sealed to the admin; the SP keeps pi and its shares modulo 2^PB for the
   admin. The admin finds the contender pi(sigma(k*)) and its payload, the
   low PB bits of the key (:func:`admin_open`, :func:`open_chunk`).

Customers upload a seed (the SP's share) and their bits XOR that share,
sealed to the PSP's curve key (:func:`customer_record`); the SP passes the
sealed shares in the session's start (:func:`start_inputs`), the PSP opens
them (:func:`psp_inputs`).

Leakage (docs/protocols/churn-plan.md): the SP learns sizes; the PSP learns
sizes (customers, contenders, the upload layout: which categorical values
and numeric features are inputs, and the largest number of thresholds on
one numeric feature) and tournament outcomes that are uniform; the admin learns each
customer's winning contender (the target leaf and moves, or "no plan") and
its payload (the profit and the "from" of each action), which the plan
reports anyway.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import coincurve
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crm.churn import private
from crm.churn.plan import CustomerPlan
from crm.churn.plan_forms import PlanForms
from mpc.comparison import ole, ot, shuffle
from mpc.comparison.pools import PspPools, SpPools
from mpc.errors import EncodingError, ParameterError, ProtocolError
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
from mpc.protocols import compare, shuffling
from mpc.protocols.wire import parse_message
from mpc.transport import DEFAULT_MAX_PAYLOAD
from mpc.v1 import churn_pb2, compare_pb2

__all__ = [
    "PlanLayout",
    "PlanOutput",
    "PsPlanOutput",
    "SpPlan",
    "admin_open",
    "check_record",
    "customer_bits",
    "customer_record",
    "layout_bits",
    "layout_from_dict",
    "layout_of",
    "layout_to_dict",
    "layout_version",
    "open_chunk",
    "plan_from_json",
    "plan_to_json",
    "psp_inputs",
    "psp_open_boxes",
    "record_bytes",
    "result_aad",
    "same_plan",
    "sp_shares",
    "split_customers",
    "start_inputs",
]

MAX_ROUNDS = 16


@dataclass(frozen=True)
class PlanLayout:
    """What both servers and the customers know: the upload bits and the sizes, no constants.

    ``inputs``: the customer's bits, ``("oh", column, value)`` and
    ``("bit", feature, i)``; ``gt``: the feature of each threshold comparison
    (one per node bit, in order); ``variables``: the OLE's variables as
    ``("in", index into inputs)`` or ``("gt", index into gt)``.
    """

    inputs: tuple[tuple[str, str, object], ...]
    gt: tuple[str, ...]
    variables: tuple[tuple[str, int], ...]
    feature_bits: tuple[tuple[str, int], ...]
    contenders: int
    modulus_bits: int
    payload_bits: int

    @property
    def limbs(self) -> int:
        return self.modulus_bits // ole.LIMB_BITS

    @property
    def width(self) -> int:
        return shuffle.size_for(self.contenders)

    @property
    def gt_bits(self) -> int:
        bits = dict(self.feature_bits)
        return max((bits[f] for f in self.gt), default=1)

    def offsets(self, feature: str) -> list[int]:
        """Indexes in ``inputs`` of the bits of ``feature``, least significant first."""
        return [i for i, (k, f, _) in enumerate(self.inputs) if k == "bit" and f == feature]

    def compared_bits(self, shares: np.ndarray) -> np.ndarray:
        """(customers, comparisons, gt_bits): one side's shares of the bits of the feature each
        threshold comparison reads, zero-extended (the SP's flip the PSP's labels)."""
        out = np.zeros((shares.shape[0], len(self.gt), self.gt_bits), dtype=np.uint8)
        for k, f in enumerate(self.gt):
            idx = self.offsets(f)
            out[:, k, : len(idx)] = shares[:, idx]
        return out

    def variable_bits(self, shares: np.ndarray, node_bits: np.ndarray) -> np.ndarray:
        """(customers, variables): one side's XOR shares of the OLE's variables, from its shares
        of the inputs and of the node bits."""
        return np.stack([shares[:, k] if kind == "in" else node_bits[:, k] for kind, k in self.variables], axis=1)


def layout_to_dict(layout: PlanLayout) -> dict[str, Any]:
    return {
        "format": "mpc-crm/churn-plan-layout", "inputs": [list(v) for v in layout.inputs],
        "gt": list(layout.gt), "variables": [list(v) for v in layout.variables],
        "feature_bits": [list(v) for v in layout.feature_bits], "contenders": layout.contenders,
        "modulus_bits": layout.modulus_bits, "payload_bits": layout.payload_bits,
    }


def layout_from_dict(doc: Any) -> PlanLayout:
    """A layout from JSON (what customers and the PSP get); anything malformed is an EncodingError."""
    try:
        if doc.get("format") != "mpc-crm/churn-plan-layout":
            raise EncodingError("not a churn plan layout")
        layout = PlanLayout(
            tuple((str(k), str(n), int(a) if k == "bit" else str(a)) for k, n, a in doc["inputs"]),
            tuple(str(f) for f in doc["gt"]),
            tuple((str(k), int(i)) for k, i in doc["variables"]),
            tuple((str(f), int(b)) for f, b in doc["feature_bits"]),
            int(doc["contenders"]), int(doc["modulus_bits"]), int(doc["payload_bits"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EncodingError(f"churn plan layout: {exc}") from None
    bits = dict(layout.feature_bits)
    if not (2 <= layout.contenders <= 1 << 15 and layout.modulus_bits % ole.LIMB_BITS == 0
            and 32 <= layout.modulus_bits <= 4096 and 1 <= layout.payload_bits < layout.modulus_bits):
        raise EncodingError("churn plan layout: sizes out of range")
    if any(f not in bits or not layout.offsets(f) for f in layout.gt) or any(not 1 <= b <= 64 for b in bits.values()):
        raise EncodingError("churn plan layout: a compared feature without bits")
    for kind, k in layout.variables:
        if kind not in ("in", "gt") or not 0 <= k < (len(layout.inputs) if kind == "in" else len(layout.gt)):
            raise EncodingError("churn plan layout: a variable out of range")
    return layout


def layout_version(layout: PlanLayout) -> int:
    """A fingerprint of the layout: uploads carry it, so a changed cost file is noticed."""
    raw = json.dumps(layout_to_dict(layout), sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big")


SEED_BYTES = 16
_BOX_OVERHEAD = 33 + 12 + 16
_SEAL_INFO = b"mpc-crm/churn-plan share v1"


def record_bytes(layout: PlanLayout) -> int:
    """A customer's plan record: the SP's seed, then the PSP's share sealed to its curve key."""
    return SEED_BYTES + _BOX_OVERHEAD + (len(layout.inputs) + 7) // 8


def _aad(customer: str, version: int) -> bytes:
    return f"mpc-crm/churn-plan|{customer}|{version}".encode()


def _share_of_seed(seed: bytes, count: int) -> np.ndarray:
    raw = hashlib.shake_256(b"mpc-crm/churn-plan/sp-share" + seed).digest((count + 7) // 8)
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:count]


def _curve_kdf(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(shared)


def customer_record(layout: PlanLayout, version: int, psp_curve_key: bytes, customer: str, bits: np.ndarray) -> bytes:
    """What a customer uploads for planning: a seed (the SP's share is derived from it) and its
    bits XOR that share, sealed to the PSP's curve key (ECDH on secp256k1, HKDF, AES-GCM)."""
    seed = secrets.token_bytes(SEED_BYTES)
    share = bits.astype(np.uint8) ^ _share_of_seed(seed, len(layout.inputs))
    try:
        peer = coincurve.PublicKey(psp_curve_key)
    except (ValueError, TypeError) as exc:
        raise EncodingError(f"the PSP's curve key: {exc}") from None
    eph = coincurve.PrivateKey()
    key = _curve_kdf(eph.ecdh(peer.format()))
    nonce = secrets.token_bytes(12)
    box = AESGCM(key).encrypt(nonce, np.packbits(share, bitorder="little").tobytes(), _aad(customer, version))
    return seed + eph.public_key.format() + nonce + box


def sp_shares(layout: PlanLayout, records: Sequence[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """SP: its XOR shares (customers, inputs) and the sealed boxes for the PSP."""
    size = record_bytes(layout)
    if any(len(r) != size for r in records):
        raise EncodingError(f"a plan record must have {size} bytes")
    shares = np.stack([_share_of_seed(r[:SEED_BYTES], len(layout.inputs)) for r in records])
    return shares, [r[SEED_BYTES:] for r in records]


def check_record(layout: PlanLayout, record: bytes, who: str) -> None:
    if len(record) != record_bytes(layout):
        raise EncodingError(f"{who}: a plan record of {len(record)} bytes, expected {record_bytes(layout)}")
    try:
        coincurve.PublicKey(record[SEED_BYTES : SEED_BYTES + 33])
    except (ValueError, TypeError):
        raise EncodingError(f"{who}: the sealed share does not start with a curve point") from None


def psp_open_boxes(curve_key: Any, layout: PlanLayout, version: int, customers: Sequence[str], boxes: Sequence[bytes]) -> np.ndarray:
    """PSP: its XOR shares (customers, inputs) from the sealed boxes; a box that does not open
    (another key, another customer, altered) is an EncodingError naming the customer."""
    secret = coincurve.PrivateKey(curve_key.to_bytes())
    out = np.zeros((len(customers), len(layout.inputs)), dtype=np.uint8)
    nbytes = (len(layout.inputs) + 7) // 8
    for k, (cid, box) in enumerate(zip(customers, boxes, strict=True)):
        try:
            key = _curve_kdf(secret.ecdh(box[:33]))
            raw = AESGCM(key).decrypt(box[33:45], box[45:], _aad(cid, version))
        except (InvalidTag, ValueError, TypeError):
            raise EncodingError(f"customer {cid}: its plan share does not open (wrong key, customer or layout, or altered)") from None
        if len(raw) != nbytes:
            raise EncodingError(f"customer {cid}: its plan share has {len(raw)} bytes, expected {nbytes}")
        out[k] = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[: len(layout.inputs)]
    return out


def layout_of(forms: PlanForms) -> PlanLayout:
    """The public layout of a compiled search (what the PSP is given)."""
    numeric = forms.numeric_inputs()
    bits = {f: forms.model.encoding_of(f).bits for f in numeric}
    inputs: list[tuple[str, str, object]] = [v for v in forms.variables if v[0] == "oh"]
    for f in numeric:
        inputs += [("bit", f, i) for i in range(bits[f])]
    index = {v: i for i, v in enumerate(inputs)}
    gt: list[str] = []
    variables: list[tuple[str, int]] = []
    for kind, name, arg in forms.variables:
        if kind == "oh":
            variables.append(("in", index[(kind, name, arg)]))
        elif kind == "gt":
            variables.append(("gt", len(gt)))
            gt.append(name)
        else:
            variables.append(("in", index[("bit", name, arg)]))
    w = ole.LIMB_BITS * ole.limbs_for(forms.key_bits + 1)
    return PlanLayout(
        tuple(inputs), tuple(gt), tuple(variables), tuple(bits.items()), len(forms.contenders), w,
        forms.payload_bits,
    )


def layout_bits(layout: PlanLayout, row: Mapping[str, str], ints: Mapping[str, int]) -> np.ndarray:
    """A customer's upload bits (before sharing), in ``layout.inputs`` order, from its raw
    categorical values and its encoded numeric features (what its front end knows)."""
    out = np.zeros(len(layout.inputs), dtype=np.uint8)
    for i, (kind, name, arg) in enumerate(layout.inputs):
        out[i] = int(row[name] == arg) if kind == "oh" else (ints[name] >> arg) & 1  # type: ignore[operator]
    return out


def customer_bits(forms: PlanForms, layout: PlanLayout, row: Mapping[str, str]) -> np.ndarray:
    """:func:`layout_bits` for a raw row, encoded with the model."""
    from crm.churn.model import encode_row

    return layout_bits(layout, row, encode_row(forms.model, row))


def split_customers(forms: PlanForms, layout: PlanLayout, rows: Sequence[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """What the customers upload: the SP's and the PSP's XOR shares (customers, inputs)."""
    x = np.stack([customer_bits(forms, layout, r) for r in rows]) if rows else np.zeros((0, len(layout.inputs)), np.uint8)
    sp = np.frombuffer(secrets.token_bytes(x.size), dtype=np.uint8).reshape(x.shape) & 1
    return sp, x ^ sp


@dataclass
class SpPlan:
    """The SP's constants, from the compiled search."""

    coefs: np.ndarray  # (variables, contenders, limbs)
    consts: np.ndarray  # (contenders, limbs)
    thresholds: list[int]  # per gt comparison

    @classmethod
    def of(cls, forms: PlanForms, layout: PlanLayout) -> SpPlan:
        n = layout.limbs
        keys = [forms.key_form(c) for c in forms.contenders]
        coefs = ole.to_limbs([k.coefs.get(v, 0) for v in forms.variables for k in keys], n)
        consts = ole.to_limbs([k.const for k in keys], n)
        thresholds = [int(arg) for kind, _, arg in forms.variables if kind == "gt"]  # type: ignore[call-overload]
        return cls(coefs.reshape(len(forms.variables), len(keys), n), consts, thresholds)


def _pairs_message(pairs: np.ndarray) -> bytes:
    return pairs.astype("<u2").tobytes()


def _read_pairs(data: bytes, customers: int, count: int, width: int) -> np.ndarray:
    if len(data) != customers * count * 4:
        raise EncodingError(f"tournament pairs: {len(data)} bytes for {customers} x {count} pairs")
    pairs = np.frombuffer(data, dtype="<u2").reshape(customers, count, 2).astype(np.int64)
    if (pairs >= width).any() or (pairs[..., 0] == pairs[..., 1]).any():
        raise EncodingError("tournament pairs: a position out of range or compared with itself")
    return pairs


def _differences(shares: np.ndarray, pairs: np.ndarray, negate: bool) -> np.ndarray:
    """(customers, pairs, limbs): shares[a] - shares[b] (or b - a) modulo 2^W."""
    rows = np.arange(shares.shape[0])[:, None]
    a, b = shares[rows, pairs[..., 0]], shares[rows, pairs[..., 1]]
    if negate:
        a, b = b, a
    return ole.normalize(a + ole.neg(b.copy()))


def _low_and_top(diffs: np.ndarray, w: int) -> tuple[list[int], np.ndarray]:
    values = ole.from_limbs(diffs)
    top = np.array([v >> (w - 1) for v in values], dtype=np.uint8)
    low = [v & ((1 << (w - 1)) - 1) for v in values]
    return low, top


def _rounds(contenders: int) -> int:
    return max(0, (contenders - 1).bit_length())


# -- roles -----------------------------------------------------------------------------------------
class SpPlanRole:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        forms: PlanForms = i["forms"]
        layout: PlanLayout = i["layout"]
        a: np.ndarray = i["shares"]  # (customers, inputs)
        rc: RunCrypto = i.get("run_crypto") or run_inline
        pools: SpPools = i.get("compare_pools") or SpPools()
        plan: SpPlan = i.get("sp_plan") or SpPlan.of(forms, layout)
        customers = a.shape[0]
        if a.shape != (customers, len(layout.inputs)) or customers == 0:
            raise ParameterError(f"the SP's shares have shape {a.shape}, expected (customers, {len(layout.inputs)})")
        await ctx.send("psp", "ot-key", pools.ot.public())
        seeds = await rc(pools.shuffle_seeds.get, await ctx.receive("psp", "shuffle-key"))

        # 2. node bits, XOR-shared: the SP keeps m, the PSP reads [x > t] XOR m.
        g = layout.gt_bits
        m = np.frombuffer(secrets.token_bytes(customers * len(layout.gt)), dtype=np.uint8).reshape(customers, -1) & 1
        if layout.gt:
            flips = layout.compared_bits(a)
            bound = (1 << g) - 1
            values = [min(max(t + 1, 0), bound) for t in plan.thresholds] * customers
            choices = await ctx.receive("psp", "gt-choices")
            await ctx.send("psp", "gt-garbled", await rc(
                compare.sp_held_garble, pools.ot, values, g, choices, (m ^ 1).reshape(-1).tolist(),
                flips.reshape(-1, g),
            ))

        # 3. every contender's key, additive shares modulo 2^W.
        mine = layout.variable_bits(a, m)
        msg = parse_message(compare_pb2.CompareChoices, await ctx.receive("psp", "ole-choices"), "OLE choices")
        keys, corrections = await rc(
            ole.sp_corrections, pools.ot, bytes(msg.point), bytes(msg.columns), bytes(msg.nonce),
            plan.coefs, plan.consts, mine,
        )
        await ctx.send("psp", "ole", corrections)

        # 4. shuffle (the SP permutes), reshuffle (the SP holds).
        n, width = layout.limbs, layout.width
        perms = [shuffle.random_order(layout.contenders, width) for _ in range(customers)]
        c = await shuffling.permute_mod(ctx, "shuffle", seeds, perms, n, rc)
        padded = np.zeros((customers, width, n), dtype=np.uint64)
        padded[:, : layout.contenders] = keys
        held = ole.normalize(c + padded[np.arange(customers)[:, None], np.array(perms)])
        coins = await shuffling.hold_mod(ctx, "reshuffle", pools.ot, held, rc)

        # 5. the tournament: the SP's side of each comparison is v = M_b - M_a.
        w = layout.modulus_bits
        alive = layout.contenders  # the PSP knows which positions; the SP only how many pairs
        for rnd in range(_rounds(layout.contenders)):
            pairs = _read_pairs(await ctx.receive("psp", f"t{rnd}-pairs"), customers, alive // 2, width)
            low, top = _low_and_top(_differences(coins, pairs, negate=True), w)
            choices = await ctx.receive("psp", f"t{rnd}-choices")
            await ctx.send("psp", f"t{rnd}-garbled", await rc(
                compare.sp_held_garble, pools.ot, low, w - 1, choices, (top ^ 1).tolist(),
            ))
            alive = alive // 2 + alive % 2
        mask = (1 << layout.payload_bits) - 1
        out = PlanOutput(
            perms=perms, shares=[[v & mask for v in ole.from_limbs(coins[b])] for b in range(customers)],
        )
        if not i.get("sealed_result"):
            return out
        return out, await ctx.receive("psp", "result")


class PspPlanRole:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        layout: PlanLayout = i["layout"]
        b: np.ndarray = i["shares"]
        rc: RunCrypto = i.get("run_crypto") or run_inline
        pools: PspPools = i.get("compare_pools") or PspPools()
        customers = b.shape[0]
        if b.shape != (customers, len(layout.inputs)) or customers == 0:
            raise ParameterError(f"the PSP's shares have shape {b.shape}, expected (customers, {len(layout.inputs)})")
        sp_key = await ctx.receive("sp", "ot-key")
        if len(sp_key) != ot.PUBLIC_BYTES:
            raise EncodingError(f"the SP's OT key: {len(sp_key)} bytes, expected {ot.PUBLIC_BYTES}")
        await ctx.send("sp", "shuffle-key", pools.shuffle_key.public())

        # 2. node bits.
        seeds = pools.ot_seeds(sp_key)
        gt_bits = np.zeros((customers, len(layout.gt)), dtype=np.uint8)
        if layout.gt:  # its shares of the compared values' bits, least significant first
            labels, _, choices = await rc(compare.choices_message, seeds, layout.compared_bits(b))
            labels = labels.reshape(customers * len(layout.gt), layout.gt_bits, -1)
            await ctx.send("sp", "gt-choices", choices)
            out = await rc(compare.psp_held_result, labels, await ctx.receive("sp", "gt-garbled"))
            gt_bits = np.array(out, dtype=np.uint8).reshape(customers, len(layout.gt))  # [x > t] XOR m

        # 3. keys.
        mine = layout.variable_bits(b, gt_bits)
        labels, nonce, choices = await rc(compare.choices_message, seeds, mine)
        await ctx.send("sp", "ole-choices", choices)
        n, width = layout.limbs, layout.width
        keys = await rc(ole.psp_finish, labels, nonce, mine, await ctx.receive("sp", "ole"), layout.contenders, n)

        # 4. shuffle (the PSP holds), reshuffle (the PSP permutes).
        padded = np.zeros((customers, width, n), dtype=np.uint64)
        padded[:, : layout.contenders] = keys
        coins = await shuffling.hold_mod(ctx, "shuffle", pools.shuffle_key, padded, rc)
        sigmas = [shuffle.random_order(layout.contenders, width) for _ in range(customers)]
        d = await shuffling.permute_mod(ctx, "reshuffle", seeds, sigmas, n, rc)
        held = ole.normalize(d + coins[np.arange(customers)[:, None], np.array(sigmas)])

        # 5. the tournament, the same bracket for every customer.
        w = layout.modulus_bits
        alive = np.tile(np.arange(layout.contenders), (customers, 1))
        for rnd in range(_rounds(layout.contenders)):
            count = alive.shape[1] // 2
            pairs = np.stack([alive[:, 0 : 2 * count : 2], alive[:, 1 : 2 * count : 2]], axis=2)
            await ctx.send("sp", f"t{rnd}-pairs", _pairs_message(pairs))
            low, top = _low_and_top(_differences(held, pairs, negate=False), w)
            labels, choices = await rc(compare.psp_held_choices, pools, sp_key, low, w - 1)
            await ctx.send("sp", f"t{rnd}-choices", choices)
            out = await rc(compare.psp_held_result, labels, await ctx.receive("sp", f"t{rnd}-garbled"))
            first = (np.array(out, dtype=np.uint8) ^ top).reshape(customers, count).astype(bool)  # X_a >= X_b
            winners = np.where(first, pairs[..., 0], pairs[..., 1])
            alive = np.concatenate([winners, alive[:, 2 * count :]], axis=1)
        if alive.shape[1] != 1:
            raise ProtocolError("the tournament did not end with one winner")
        mask = (1 << layout.payload_bits) - 1
        k = alive[:, 0]
        values = ole.from_limbs(held[np.arange(customers), k])
        out = PsPlanOutput(
            winners=[(int(k[r]), sigmas[r][int(k[r])]) for r in range(customers)],
            shares=[v & mask for v in values],
        )
        if "admin_key" not in i:
            return out
        box = private.seal(i["admin_key"], out.to_bytes(layout), result_aad(i["chunk"], customers))
        await ctx.send("sp", "result", box)
        return None


def result_aad(chunk: str, count: int) -> bytes:
    """Associated data of the PSP's sealed part of a chunk."""
    return f"mpc-crm/churn-plan result|{chunk}|{count}".encode()


def _share_bytes(values: Sequence[int], pb: int) -> bytes:
    width = (pb + 7) // 8
    return b"".join(int(v).to_bytes(width, "little") for v in values)


def _read_shares(raw: bytes, count: int, pb: int, what: str) -> list[int]:
    width = (pb + 7) // 8
    if len(raw) != count * width:
        raise EncodingError(f"{what}: {len(raw)} bytes of shares for {count}")
    out = [int.from_bytes(raw[k * width : (k + 1) * width], "little") for k in range(count)]
    if any(v >> pb for v in out):
        raise EncodingError(f"{what}: a share above 2^{pb}")
    return out


@dataclass
class PlanOutput:
    """The SP's part of the admin's result: pi per customer and its payload shares."""

    perms: list[list[int]]
    shares: list[list[int]]

    def to_bytes(self, layout: PlanLayout) -> bytes:
        flat = [v for row in self.shares for v in row]
        return churn_pb2.ChurnPlanPart(
            positions=[p for perm in self.perms for p in perm], shares=_share_bytes(flat, layout.payload_bits)
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, raw: bytes, layout: PlanLayout, count: int) -> PlanOutput:
        msg = parse_message(churn_pb2.ChurnPlanPart, raw, "the SP's plan part")
        w = layout.width
        if len(msg.positions) != count * w:
            raise EncodingError(f"the SP's plan part: {len(msg.positions)} positions for {count} customers")
        perms = [list(msg.positions[k * w : (k + 1) * w]) for k in range(count)]
        if any(sorted(p) != list(range(w)) for p in perms):
            raise EncodingError("the SP's plan part: not a permutation")
        flat = _read_shares(bytes(msg.shares), count * w, layout.payload_bits, "the SP's plan part")
        return cls(perms, [flat[k * w : (k + 1) * w] for k in range(count)])


@dataclass
class PsPlanOutput:
    """The PSP's part: per customer the winner's position k*, sigma(k*) and its payload share."""

    winners: list[tuple[int, int]]
    shares: list[int]

    def to_bytes(self, layout: PlanLayout) -> bytes:
        return churn_pb2.ChurnPlanPart(
            positions=[p for w in self.winners for p in w], shares=_share_bytes(self.shares, layout.payload_bits)
        ).SerializeToString()

    @classmethod
    def from_bytes(cls, raw: bytes, layout: PlanLayout, count: int) -> PsPlanOutput:
        msg = parse_message(churn_pb2.ChurnPlanPart, raw, "the PSP's plan part")
        if len(msg.positions) != 2 * count or any(p >= layout.width for p in msg.positions):
            raise EncodingError(f"the PSP's plan part: bad positions for {count} customers")
        winners = [(msg.positions[2 * k], msg.positions[2 * k + 1]) for k in range(count)]
        return cls(winners, _read_shares(bytes(msg.shares), count, layout.payload_bits, "the PSP's plan part"))


MAX_CHUNK = 1024
"""Customers in one session at most."""
MAX_MESSAGE_BYTES = DEFAULT_MAX_PAYLOAD
"""The biggest message a session start implies (OLE corrections, shuffle pads) may not exceed
what the transport takes: the PSP refuses such a start at once."""


def largest_message(layout: PlanLayout, count: int) -> int:
    """Bytes of a session's biggest messages for ``count`` customers: the SP's OLE corrections
    (:func:`mpc.comparison.ole.sp_corrections`) or one shuffle's pads
    (:func:`mpc.comparison.shuffle.holder_pads_mod`)."""
    corrections = count * len(layout.variables) * layout.contenders * layout.limbs * 4
    width = layout.width
    pads = count * (2 * (width.bit_length() - 1) - 1) * (width // 2) * 16 * layout.limbs
    return max(corrections, pads)


def start_inputs(
    layout: PlanLayout, version: int, customers: Sequence[str], boxes: Sequence[bytes], admin_key: bytes, chunk: str
) -> churn_pb2.ChurnPlanInputs:
    return churn_pb2.ChurnPlanInputs(
        layout_json=json.dumps(layout_to_dict(layout)), count=len(customers), boxes=b"".join(boxes),
        admin_key=admin_key, chunk=chunk, customer_ids=list(customers), layout_version=version,
    )


def psp_inputs(raw: bytes, curve_key: Any) -> dict[str, Any]:
    """The PSP's inputs from the session start: the layout and its shares, opened."""
    msg = parse_message(churn_pb2.ChurnPlanInputs, raw, "churn-plan inputs")
    try:
        doc = json.loads(msg.layout_json)
    except ValueError as exc:
        raise EncodingError(f"churn plan layout: not JSON ({exc})") from None
    layout = layout_from_dict(doc)
    if layout_version(layout) != msg.layout_version:
        raise ParameterError(
            f"churn-plan inputs: the SP proposes layout_version = {msg.layout_version}, but the layout "
            f"it sends has version {layout_version(layout)}: the layout does not match its version"
        )
    if not 1 <= msg.count <= MAX_CHUNK or len(msg.customer_ids) != msg.count:
        raise ParameterError(
            f"churn-plan: the SP proposes count = {msg.count} customers with {len(msg.customer_ids)} ids; "
            f"a chunk holds 1..{MAX_CHUNK} customers with their ids"
        )
    size = largest_message(layout, msg.count)
    if size > MAX_MESSAGE_BYTES:
        raise ParameterError(
            f"churn-plan: count = {msg.count} customers of {layout.contenders} contenders, "
            f"{len(layout.variables)} variables and modulus_bits = {layout.modulus_bits} need a "
            f"{size >> 20} MiB message, more than {MAX_MESSAGE_BYTES >> 20} MiB: a smaller chunk"
        )
    if len(msg.admin_key) != 32:
        raise EncodingError(f"admin key of {len(msg.admin_key)} bytes; an X25519 key has 32")
    if not 0 < len(msg.chunk) <= 128:
        raise EncodingError("chunk name must be 1..128 characters")
    size = record_bytes(layout) - SEED_BYTES
    if len(msg.boxes) != msg.count * size:
        raise EncodingError(f"churn-plan inputs: {len(msg.boxes)} bytes of boxes for {msg.count} customers")
    boxes = [bytes(msg.boxes[k * size : (k + 1) * size]) for k in range(msg.count)]
    shares = psp_open_boxes(curve_key, layout, msg.layout_version, list(msg.customer_ids), boxes)
    return {"layout": layout, "shares": shares, "admin_key": bytes(msg.admin_key), "chunk": msg.chunk}


def admin_open(
    forms: PlanForms, sp: PlanOutput, psp: PsPlanOutput, customers: Sequence[str], p_loyal: Sequence[Fraction]
) -> list[CustomerPlan]:
    """The admin: each customer's winning contender and payload, then its plan."""
    mask = (1 << forms.payload_bits) - 1
    out = []
    for r, cid in enumerate(customers):
        k, j = psp.winners[r]
        contender = sp.perms[r][j]
        if not 0 <= contender < len(forms.contenders):
            raise ProtocolError(f"customer {cid}: the winner is not a contender")
        payload = (psp.shares[r] + sp.shares[r][k]) & mask
        out.append(forms.decode(contender, payload, cid, p_loyal[r]))
    return out


def open_chunk(
    forms: PlanForms, layout: PlanLayout, admin_key: Any, chunk: churn_pb2.PlannedChunk,
    p_loyal: Mapping[str, Fraction],
) -> list[CustomerPlan]:
    """The admin: one planned chunk's plans (``p_loyal`` from scoring, by customer id)."""
    ids = list(chunk.customer_ids)
    sp = PlanOutput.from_bytes(bytes(chunk.sp_part), layout, len(ids))
    raw = private.unseal(admin_key, bytes(chunk.psp_sealed), result_aad(chunk.chunk, len(ids)))
    psp = PsPlanOutput.from_bytes(raw, layout, len(ids))
    return admin_open(forms, sp, psp, ids, [p_loyal[c] for c in ids])


def plan_to_json(plan: CustomerPlan) -> dict[str, Any]:
    """A plan with exact numbers as text (what the admin worker reports)."""
    return {
        "target": plan.target, "p_target": None if plan.p_target is None else str(plan.p_target),
        "p_loyal": str(plan.p_loyal), "segment": plan.segment, "net": str(plan.net_profit),
        "actions": [[a.attribute, a.old, a.new, str(a.cost)] for a in plan.actions],
    }


def plan_from_json(cid: str, doc: Mapping[str, Any]) -> CustomerPlan:
    from crm.churn.plan import Action

    return CustomerPlan(
        cid, -1, Fraction(doc["p_loyal"]), doc["segment"], doc["target"],
        None if doc["p_target"] is None else Fraction(doc["p_target"]),
        tuple(Action(a, o, n, Fraction(c)) for a, o, n, c in doc["actions"]), Fraction(doc["net"]),
    )


def same_plan(a: CustomerPlan, b: CustomerPlan) -> bool:
    """Equal outcomes (the leaf S is not part of it: the admin never learns it)."""
    return (a.target, a.p_target, a.actions, a.net_profit, a.segment, a.p_loyal) == (
        b.target, b.p_target, b.actions, b.net_profit, b.segment, b.p_loyal,
    )


def _tournament_steps() -> tuple[Step, ...]:
    out: list[Step] = []
    for rnd in range(MAX_ROUNDS):
        out += [Step(f"t{rnd}-pairs", "psp", "sp"), *compare.held_steps(f"t{rnd}-")]
    return tuple(out)


@register_protocol
class ChurnPlan(ProtocolSpec):
    name = "churn-plan"
    roles = ("sp", "psp")
    steps = (
        Step("ot-key", "sp", "psp"),
        Step("shuffle-key", "psp", "sp"),
        *compare.held_steps("gt-"),
        Step("ole-choices", "psp", "sp"),
        Step("ole", "sp", "psp"),
        *shuffling.shuffle_steps("shuffle"),
        *shuffling.shuffle_steps("reshuffle", permuter="psp"),
        *_tournament_steps(),
        Step("result", "psp", "sp"),
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpPlanRole, "psp": PspPlanRole}

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        require_responder(party, "churn planning")
        inputs = psp_inputs(raw, party.curve_key)
        pools = getattr(party, "compare_pools", None)
        if not isinstance(pools, PspPools):
            pools = party.compare_pools = PspPools()
        inputs["compare_pools"] = pools
        inputs["run_crypto"] = party.run_crypto
        return inputs

