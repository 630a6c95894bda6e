"""Private scoring of a decision tree: the maths of protocol ``churn-score`` (no networking).

The SP holds a decision tree (``model.json``); a customer's attributes are
encrypted under the PSP's curve key and stored by the SP; the admin learns
the customer's P(loyal) and nothing else; the SP learns nothing; the PSP
learns nothing (it sees uniformly random bits and a uniformly random leaf
position). docs/protocols/churn-score.md has the full argument; in short:

* Upload (:func:`encrypt_record`, the customer). For every numeric feature f
  (``bits_f`` bits after fixed-point encoding) the digit thermometers of its
  value, as in the DGK comparison (:mod:`mpc.comparison.dgk`, 4-bit digits):
  ``levels_f`` curve ciphertexts. For every one-hot feature, one curve
  ciphertext of its bit. The same ciphertexts serve every tree the SP may
  train later: the upload depends on the feature list, not on the tree.
* The tree is padded to a complete tree of depth D (:class:`TreeSpec`): a leaf
  at depth d < D becomes 2^(D-d) copies under dummy ("pad") nodes. Per
  customer, the SP flips every node with a fresh random bit s (swaps its
  children) and, for every node of the flipped tree in heap order, sends a
  *node*: ``t`` curve ciphertexts ("terms", shuffled) of which exactly
  lambda = right XOR s encrypt zero, where right = [x_f > threshold]:

  - numeric node: the DGK terms comparing the customer's thermometers with
    b = threshold_int + 1 and delta = 1 XOR s (the PSP would learn
    [x < b] XOR delta = right XOR s), padded with dummies;
  - one-hot node: one term encrypting 1 - (x XOR s), blinded like a DGK term
    (multiplied by a fresh non-zero rho after fresh randomness is added), and
    dummies;
  - pad node: one encryption of zero with probability 1/2, and dummies.

  All terms are blinded (zero, or a uniform non-zero multiple of G) or
  dummies (two uniform points), so every node looks alike to the PSP whatever
  its kind, feature or threshold, and its lambda is a uniform bit.
* The SP also sends a *table*: for every leaf position q of the flipped tree,
  (v_q + m_q) mod 2^64, where v_q encodes the leaf's P(loyal) as a reduced
  fraction (numerator << 32 | denominator) and m_q is a mask derived from a
  per-customer seed that only the admin receives.
* The PSP walks the flipped tree (:func:`psp_walk`): at a node it zero-tests
  the node's terms, lambda = the number of zeros, and goes to child lambda.
  The flipped child lambda is the real child lambda XOR s = right: it reaches
  the customer's leaf, at a position that is uniform whatever the leaf (the
  flips are uniform and independent). It tests only the D nodes on its path.
  It seals (position, table entry) to the admin's public key.
* The admin opens the sealed entries (:func:`open_scores`) with the seeds
  from the SP: v = entry - m_position, P(loyal) = numerator / denominator.

Every function here is pure apart from its randomness; the roles' ``run`` in
:mod:`crm.churn.protocol` only moves the messages between them.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mpc.comparison import dgk, ec
from mpc.comparison.pools import BitEncryption, Pool, dummy_pool, randomizer_pool
from mpc.elgamal.curve import CurvePrivateKey
from mpc.errors import EncodingError, ParameterError, ProtocolError

__all__ = [
    "DIGIT_BITS",
    "MAX_DEPTH",
    "SEED_BYTES",
    "SpRandomness",
    "TreeSpec",
    "UploadLayout",
    "admin_key_bytes",
    "check_record",
    "encrypt_record",
    "flipped_order",
    "leaf_value",
    "mask_table",
    "masks",
    "new_seed",
    "open_scores",
    "psp_walk",
    "psp_walk_many",
    "seal",
    "sp_nodes",
    "unseal",
    "value_fraction",
]

DIGIT_BITS = 4
"""Digit width of the uploaded thermometers (see :mod:`mpc.comparison.dgk`)."""
MAX_DEPTH = 16
"""Deepest tree scored privately: 2^16 leaf positions a customer is already a lot."""
SEED_BYTES = 16
W = dgk.CIPHERTEXT_BYTES
ENTRY_BYTES = 8
RESULT_BYTES = 2 + ENTRY_BYTES
"""What the PSP seals per customer: its leaf position (2 bytes) and the table entry."""
_MASK = (1 << 64) - 1


# -- the upload ------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadLayout:
    """Which ciphertexts a customer uploads: public, from model.json's features and encoding."""

    numeric: tuple[tuple[str, int], ...]
    """(feature, bits) for every numeric feature, in the model's feature order."""
    onehot: tuple[str, ...]
    """Every other feature: a 0/1 indicator ``Column=Value``."""
    digit_bits: int = DIGIT_BITS

    def __post_init__(self) -> None:
        names = [f for f, _ in self.numeric] + list(self.onehot)
        if len(set(names)) != len(names):
            raise ParameterError("a feature appears twice in the upload layout")
        if not names:
            raise ParameterError("the upload layout has no feature")

    @classmethod
    def from_model(cls, model: Any) -> UploadLayout:
        """The layout for a :class:`~crm.churn.model.TreeModel` (its features and encoding)."""
        enc = model.encoding

        def bits(e: Any) -> int:
            return int(e["bits"] if isinstance(e, Mapping) else e.bits)

        numeric = tuple((f, bits(enc[f])) for f in model.features if f in enc)
        onehot = tuple(f for f in model.features if f not in enc)
        return cls(numeric, onehot)

    @cached_property
    def plans(self) -> dict[str, dgk.DigitPlan]:
        return {f: dgk.DigitPlan.create(bits, self.digit_bits) for f, bits in self.numeric}

    @cached_property
    def offsets(self) -> dict[str, int]:
        """Index of each feature's first ciphertext in a record."""
        out: dict[str, int] = {}
        n = 0
        for f, _ in self.numeric:
            out[f] = n
            n += self.plans[f].levels
        for f in self.onehot:
            out[f] = n
            n += 1
        return out

    @cached_property
    def ciphertexts(self) -> int:
        """Curve ciphertexts in one customer's record."""
        return sum(p.levels for p in self.plans.values()) + len(self.onehot)

    @property
    def record_bytes(self) -> int:
        return self.ciphertexts * W

    @cached_property
    def max_terms(self) -> int:
        """Terms per node: the most any numeric feature's comparison needs (at least 1)."""
        return max([p.terms for p in self.plans.values()] + [1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": [[f, b] for f, b in self.numeric],
            "onehot": list(self.onehot),
            "digit_bits": self.digit_bits,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> UploadLayout:
        try:
            numeric = tuple((str(f), int(b)) for f, b in raw["numeric"])
            onehot = tuple(str(f) for f in raw["onehot"])
            digit_bits = int(raw.get("digit_bits", DIGIT_BITS))
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError(f"malformed upload layout: {exc}") from exc
        return cls(numeric, onehot, digit_bits)

    @cached_property
    def version(self) -> int:
        """A 31-bit fingerprint: an upload made for another layout is refused."""
        text = repr(self.to_dict()).encode()
        return int.from_bytes(hashlib.sha256(text).digest()[:4], "big") >> 1

    def check_values(self, ints: Mapping[str, int]) -> None:
        for f, bits in self.numeric:
            if f not in ints:
                raise ParameterError(f"no value for feature {f!r}")
            x = ints[f]
            if not 0 <= x <= (1 << bits) - 2:
                raise ParameterError(f"{f}: encoded value {x} is outside [0, 2^{bits} - 2]")
        for f in self.onehot:
            if ints.get(f) not in (0, 1):
                raise ParameterError(f"{f}: a one-hot feature must be 0 or 1, got {ints.get(f)!r}")


def encrypt_record(
    layout: UploadLayout, ints: Mapping[str, int], pool: Pool[BitEncryption]
) -> bytes:
    """One customer's upload: thermometers of its numeric values, then its one-hot bits.

    ``ints``: feature -> encoded integer (see :func:`crm.churn.model.encode_value`);
    ``pool``: encryptions of bits under the PSP's curve public key
    (:func:`mpc.comparison.pools.bit_encryption_pool` with the public key).
    """
    layout.check_values(ints)
    parts = [dgk.encrypt_thermometers(layout.plans[f], [ints[f]], pool) for f, _ in layout.numeric]
    items = pool.draw(len(layout.onehot))
    for f, (c1, c20, c21) in zip(layout.onehot, items, strict=True):
        parts.append(c1 + (c21 if ints[f] else c20))
    return b"".join(parts)


def check_record(layout: UploadLayout, blob: bytes, who: str = "record") -> None:
    """Length and point-prefix checks of an uploaded record (points are parsed when used)."""
    if len(blob) != layout.record_bytes:
        raise EncodingError(
            f"{who}: {len(blob)} bytes, expected {layout.ciphertexts} curve ciphertexts "
            f"of {W} bytes ({layout.record_bytes})"
        )
    if blob[:: ec.POINT_BYTES].strip(b"\x04"):
        raise EncodingError(f"{who}: a point is not in uncompressed form (prefix 0x04)")


# -- the SP's tree -------------------------------------------------------------------------


def value_fraction(p: Fraction) -> int:
    """A probability as the 64-bit integer numerator << 32 | denominator (reduced)."""
    if not 0 <= p <= 1 or p.denominator >= 1 << 32:
        raise ParameterError(f"leaf probability {p} cannot be encoded in 64 bits")
    return (p.numerator << 32) | p.denominator


def leaf_value(value: int) -> Fraction:
    """Inverse of :func:`value_fraction` (refuses a zero denominator: a wrong mask)."""
    num, den = value >> 32, value & 0xFFFFFFFF
    if den == 0 or num > den:
        raise ProtocolError(
            f"opened leaf value {value:#x} is not a probability: wrong seed or entry"
        )
    return Fraction(num, den)


Node = tuple[Any, ...]
"""("num", feature, b) | ("bit", feature, const) | ("pad",).

For "bit", const is None (right = x) or a constant 0/1 (a threshold outside [0, 1))."""


@dataclass(frozen=True)
class TreeSpec:
    """The SP's tree as a complete tree of depth ``depth`` (heap order), ready to score."""

    depth: int
    nodes: tuple[Node, ...]
    """2^depth - 1 internal nodes, heap order (children of i: 2i + 1 left, 2i + 2 right)."""
    leaves: tuple[int, ...]
    """2^depth leaf values (:func:`value_fraction`), left to right."""

    @classmethod
    def from_model(cls, model: Any, layout: UploadLayout, threshold_int: Any = None) -> TreeSpec:
        """Pad ``model`` (a :class:`~crm.churn.model.TreeModel`) to a complete tree.

        ``threshold_int(model, node)``: the node's threshold on the encoded integers
        (default :func:`crm.churn.model.threshold_int`).
        """
        if threshold_int is None:
            from crm.churn.model import threshold_int

        raw = model.to_dict()
        nodes_in = raw["nodes"]
        depth = max(1, int(model.depth))
        if depth > MAX_DEPTH:
            raise ParameterError(
                f"the tree is {depth} deep; private scoring takes at most {MAX_DEPTH}"
            )
        n_int = (1 << depth) - 1
        nodes: list[Node] = [("pad",)] * n_int
        leaves: list[int] = [0] * (1 << depth)
        bits = dict(layout.numeric)

        def fill(model_node: int, heap: int, level: int) -> None:
            node = nodes_in[model_node]
            if "feature" not in node:  # a leaf: every position below heap gets its value
                p = Fraction(int(node["loyal"]) + 1, int(node["loyal"]) + int(node["churn"]) + 2)
                span = 1 << (depth - level)
                first = heap
                for _ in range(depth - level):
                    first = 2 * first + 1
                for q in range(first - n_int, first - n_int + span):
                    leaves[q] = value_fraction(p)
                return
            f = node["feature"]
            if f in bits:
                b = min(max(threshold_int(model, model_node) + 1, 0), (1 << bits[f]) - 1)
                nodes[heap] = ("num", f, b)
            elif f in layout.onehot:
                t = float(node["threshold"])
                nodes[heap] = ("bit", f, None if 0 <= t < 1 else (1 if t < 0 else 0))
            else:
                raise ParameterError(f"the tree splits on {f!r}, which customers do not upload")
            fill(int(node["left"]), 2 * heap + 1, level + 1)
            fill(int(node["right"]), 2 * heap + 2, level + 1)

        fill(int(raw.get("root", 0)), 0, 0)
        return cls(depth, tuple(nodes), tuple(leaves))

    @property
    def internal(self) -> int:
        return len(self.nodes)

    def comparisons(self) -> int:
        """Numeric nodes: DGK comparisons per customer."""
        return sum(1 for n in self.nodes if n[0] == "num")


# -- SP: one customer's nodes and table ----------------------------------------------------


@dataclass
class SpRandomness:
    """The SP's precomputable randomness for the PSP's key: term randomizers and dummies."""

    psp_key: bytes
    randomizers: Pool[tuple[ec.Point, ec.Point]] = field(init=False)
    dummies: Pool[bytes] = field(default_factory=dummy_pool)

    def __post_init__(self) -> None:
        self.randomizers = randomizer_pool(self.psp_key)


def _shuffle(items: list[bytes]) -> list[bytes]:
    for i in range(len(items) - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        items[i], items[j] = items[j], items[i]
    return items


def _blinded(c1s: list[ec.Point], c2s: list[ec.Point], rnd: SpRandomness) -> bytes:
    """rho * (sum + fresh randomness): zero stays zero, anything else becomes uniform."""
    sg, sy = rnd.randomizers.draw_one()
    rho = ec.random_scalar()
    return ec.serialize_pair(ec.add_mul([sg, *c1s], rho), ec.add_mul([sy, *c2s], rho))


def _node_terms(
    node: Node, s: int, layout: UploadLayout, record: bytes, rnd: SpRandomness
) -> list[bytes]:
    """The terms of one node flipped by s: exactly (right XOR s) of them encrypt zero."""
    kind = node[0]
    if kind == "num":
        _, f, b = node
        plan = layout.plans[f]
        o = layout.offsets[f] * W
        blob = dgk.blind_terms(
            plan, record[o : o + plan.levels * W], [b], [1 ^ s], rnd.randomizers, rnd.dummies
        )
        terms = [blob[i : i + W] for i in range(0, len(blob), W)]
    elif kind == "bit":
        _, f, const = node
        if const is None:  # right = x; the term is 1 - (x XOR s): 1 - x if s = 0, x if s = 1
            o = layout.offsets[f] * W
            c1 = ec.parse(record[o : o + 65], f"{f} C1")
            c2 = ec.parse(record[o + 65 : o + W], f"{f} C2")
            if s:
                terms = [_blinded([c1], [c2], rnd)]
            else:
                terms = [_blinded([ec.neg(c1)], [ec.neg(c2), ec.G], rnd)]
        else:
            terms = [_blinded([], [ec.G] if 1 - (const ^ s) else [], rnd)]
    else:  # pad: a uniform bit
        terms = [ec.serialize_pair(*rnd.randomizers.draw_one())] if secrets.randbits(1) else []
    terms.extend(rnd.dummies.draw(layout.max_terms - len(terms)))
    return _shuffle(terms)


def flipped_order(spec: TreeSpec, flips: Sequence[int]) -> list[int]:
    """Heap index of the flipped tree -> heap index of the padded tree (internal nodes, then leaves)."""
    n = spec.internal
    v = [0] * (2 * n + 1)
    for j in range(n):
        vj = v[j]
        s = flips[vj]
        v[2 * j + 1] = 2 * vj + 1 + s
        v[2 * j + 2] = 2 * vj + 2 - s
    return v


def sp_nodes(
    spec: TreeSpec, layout: UploadLayout, record: bytes, rnd: SpRandomness
) -> tuple[bytes, list[int]]:
    """One customer's flipped tree: its nodes' terms in heap order, and the unmasked table.

    The flips are fresh for every call, so no two queries of one customer look alike.
    """
    check_record(layout, record)
    n = spec.internal
    flips = [secrets.randbits(1) for _ in range(n)]
    v = flipped_order(spec, flips)
    parts: list[bytes] = []
    for j in range(n):
        parts.extend(_node_terms(spec.nodes[v[j]], flips[v[j]], layout, record, rnd))
    table = [spec.leaves[v[n + q] - n] for q in range(n + 1)]
    return b"".join(parts), table


def masks(seed: bytes, index: int, count: int) -> list[int]:
    """The masks of customer ``index`` of a chunk: 64-bit words from SHAKE-128 of the seed."""
    stream = hashlib.shake_128(
        b"mpc-crm/churn-score mask|" + seed + struct.pack(">I", index)
    ).digest(ENTRY_BYTES * count)
    return [
        int.from_bytes(stream[i : i + ENTRY_BYTES], "big")
        for i in range(0, len(stream), ENTRY_BYTES)
    ]


def mask_table(table: Sequence[int], seed: bytes, index: int) -> bytes:
    """Entries (v_q + m_q) mod 2^64, 8 bytes each, big-endian."""
    ms = masks(seed, index, len(table))
    return b"".join(
        ((v + m) & _MASK).to_bytes(ENTRY_BYTES, "big") for v, m in zip(table, ms, strict=True)
    )


# -- PSP: the walk ---------------------------------------------------------------------------


def psp_walk(
    depth: int, terms: int, nodes: bytes, table: bytes, key: CurvePrivateKey
) -> tuple[int, bytes]:
    """Walk one customer's flipped tree: (leaf position, its table entry).

    Only the ``depth`` nodes on the path are zero-tested; a node with more than
    one zero term is a protocol error (a correct SP sends at most one).
    """
    n = (1 << depth) - 1
    node_len = terms * W
    if len(nodes) != n * node_len:
        raise EncodingError(f"nodes: {len(nodes)} bytes, expected {n} x {terms} x {W}")
    if len(table) != (n + 1) * ENTRY_BYTES:
        raise EncodingError(f"table: {len(table)} bytes, expected {n + 1} x {ENTRY_BYTES}")
    secret = key.to_bytes()
    parse, ecdh, digest, compressed = ec.parse, ec.ecdh_digest, ec.digest, ec.compressed
    j = 0
    while j < n:
        o = j * node_len
        zeros = 0
        for _ in range(terms):
            c1 = parse(nodes[o : o + 65], "term C1")
            c2 = nodes[o + 65 : o + W]
            parse(c2, "term C2")
            if ecdh(secret, c1) == digest(compressed(c2)):
                zeros += 1
            o += W
        if zeros > 1:
            raise ProtocolError(f"node {j} has {zeros} zero terms; a correct run has at most one")
        j = 2 * j + 1 + zeros
    q = j - n
    return q, table[q * ENTRY_BYTES : (q + 1) * ENTRY_BYTES]


def psp_walk_many(
    depth: int, terms: int, count: int, nodes: bytes, tables: bytes, key: CurvePrivateKey
) -> bytes:
    """Walk ``count`` customers; returns per customer position (2 bytes) || entry (8 bytes)."""
    n = (1 << depth) - 1
    nl, tl = n * terms * W, (n + 1) * ENTRY_BYTES
    if len(nodes) != count * nl or len(tables) != count * tl:
        raise EncodingError(
            f"{count} customers need {count * nl} bytes of nodes and {count * tl} of tables, "
            f"got {len(nodes)} and {len(tables)}"
        )
    out = []
    for k in range(count):
        q, entry = psp_walk(
            depth, terms, nodes[k * nl : (k + 1) * nl], tables[k * tl : (k + 1) * tl], key
        )
        out.append(struct.pack(">H", q) + entry)
    return b"".join(out)


# -- the admin: sealed results -----------------------------------------------------------------

_INFO = b"mpc-crm/churn-score seal v1"


def _kdf(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(shared)


def seal(admin_public: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt for the admin (X25519 + HKDF-SHA256 + AES-256-GCM): eph || nonce || ct."""
    try:
        peer = X25519PublicKey.from_public_bytes(admin_public)
    except ValueError as exc:
        raise EncodingError(f"admin public key: {exc}") from exc
    eph = X25519PrivateKey.generate()
    key = _kdf(eph.exchange(peer))
    nonce = secrets.token_bytes(12)
    eph_pub = eph.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return eph_pub + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(admin_key: X25519PrivateKey, box: bytes, aad: bytes) -> bytes:
    """Open a :func:`seal`ed box; a box for another key or tampered with is an EncodingError."""
    if len(box) < 32 + 12 + 16:
        raise EncodingError(f"sealed box of {len(box)} bytes is too short")
    try:
        key = _kdf(admin_key.exchange(X25519PublicKey.from_public_bytes(box[:32])))
        return AESGCM(key).decrypt(box[32:44], box[44:], aad)
    except (InvalidTag, ValueError) as exc:
        raise EncodingError(
            "sealed box does not open with this admin key (wrong key or altered)"
        ) from exc


def open_scores(results: bytes, seed: bytes, count: int, depth: int) -> list[Fraction]:
    """The admin's P(loyal) for each customer of a chunk from the unsealed PSP results."""
    if len(results) != count * RESULT_BYTES:
        raise EncodingError(f"results: {len(results)} bytes for {count} customers")
    out = []
    for k in range(count):
        q, entry = struct.unpack_from(">HQ", results, k * RESULT_BYTES)
        if q >= 1 << depth:
            raise ProtocolError(f"customer {k}: leaf position {q} outside the tree")
        m = masks(seed, k, q + 1)[q]
        out.append(leaf_value((entry - m) & _MASK))
    return out


def admin_key_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def new_seed() -> bytes:
    return secrets.token_bytes(SEED_BYTES)
