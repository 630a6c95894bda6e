"""Private co-purchase counts: customers upload encrypted packed contributions, the SP sums.

The private version of :mod:`crm.recommender.copurchase` (DESIGN 4, "dynamic
recommendations"). Each customer computes, on its own device, the co-purchase
pairs of its basket(s), packs the 0/1 indicators (or counts) into a fixed
number of plaintexts and encrypts them under the joint key; the SP multiplies
the uploads position by position (adding the plaintexts); the SP and the PSP
jointly decrypt only the aggregate (protocol ``aggregate-decrypt``), and the
result equals :func:`crm.recommender.copurchase.cooccurrence` exactly.

Encoding (:class:`CopurchaseLayout`). For the sorted item list ``items`` (n
items) a contribution is a vector of ``n(n-1)/2 + n + 1`` counts:

- positions ``0 .. n(n-1)/2 - 1``: pair ``(i, j)`` at
  :func:`~crm.recommender.copurchase.pair_index` (how many of the customer's
  baskets hold both);
- the next n positions: item i (how many of its baskets hold item i, the
  diagonal ``C(i, i)``);
- the last position: the customer's number of baskets.

Position v goes to plaintext ``v // slots``, slot ``v % slots`` of a
:class:`~mpc.packing.SlotLayout` with ``value_bits`` = bits of
``max_baskets`` (1 for one basket a customer), ``terms`` = the number of
customers, ``kappa = 0`` and no guard bit: the aggregate is decrypted as it
is (it is the public output), never blinded, so a slot needs only the bits of
its largest possible sum. At 2048 bits with up to 9,835 one-basket customers
and 169 items: 15-bit slots, 136 a plaintext, 14,366 positions, 106
ciphertexts a customer. Every customer uploads all of them, whatever it
bought: the number of non-zero plaintexts would tell what it bought.

Functions: :func:`contribution` (one basket) and :func:`customer_contribution`
(several) give the packed plaintexts; :func:`encrypt_contribution` and
:func:`encrypt_contributions` (many customers through one shared
:class:`~mpc.elgamal.batch.BatchEncryptor`) encrypt them;
:class:`Aggregator` / :func:`aggregate` is the SP's sum, refusing malformed
contributions and more customers than the slots can count;
:func:`decrypt_counts` / :func:`counts_from_plaintexts` turn the decrypted
aggregate into a :class:`~crm.recommender.copurchase.Cooccurrence`;
:func:`decrypt_local` and :func:`run_local_copurchase` run the whole thing in
one process (tests, demo, benchmark). See docs/protocols/copurchase.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from gmpy2 import f_mod, gcd, mpz

from crm.recommender.copurchase import Cooccurrence, basket_pairs, cooccurrence, pair_count
from mpc.elgamal import Ciphertext, KeyShare, PublicKey, combine_many
from mpc.errors import DecryptionError, EncodingError, LayoutError, ParameterError
from mpc.packing import SlotLayout
from mpc.protocol import run_local
from mpc.protocols import aggregate_decrypt as ad

if TYPE_CHECKING:
    from mpc.elgamal.batch import BatchEncryptor

__all__ = [
    "KIND",
    "Aggregate",
    "Aggregator",
    "CopurchaseLayout",
    "CopurchaseStats",
    "MalformedContribution",
    "aggregate",
    "contribution",
    "counts_from_plaintexts",
    "customer_contribution",
    "decrypt_counts",
    "decrypt_local",
    "encrypt_contribution",
    "encrypt_contributions",
    "run_local_copurchase",
    "upload_plaintexts",
]

KIND = "copurchase"
"""The record kind of an upload, and the label of its aggregate decryption."""


class MalformedContribution(EncodingError):
    """A contribution does not have the layout's shape (size, key, or bytes)."""


# -- the layout ------------------------------------------------------------------------


@dataclass(frozen=True)
class CopurchaseLayout:
    """Where each count of a contribution goes, and the slot layout that bounds the sums.

    ``modulus``: the key's N; ``items``: the product catalogue (sorted here,
    duplicates removed); ``customers``: the most contributions the SP will
    ever sum (the slots are sized for it); ``max_baskets``: the most baskets
    one customer may fold into its contribution (1: a 0/1 vector).
    """

    modulus: int
    items: tuple[str, ...]
    customers: int
    max_baskets: int = 1
    index: dict[str, int] = field(init=False, repr=False, compare=False)
    slots: SlotLayout = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        items = tuple(sorted(set(self.items)))
        if len(items) < 2:
            raise ParameterError(f"co-purchase counts need at least 2 items, got {len(items)}")
        for name, v in (("customers", self.customers), ("max_baskets", self.max_baskets)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"{name} must be an integer >= 1, got {v!r}")
        object.__setattr__(self, "modulus", int(self.modulus))
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "index", {name: k for k, name in enumerate(items)})
        object.__setattr__(
            self,
            "slots",
            SlotLayout.for_modulus(
                int(self.modulus),
                value_bits=self.max_baskets.bit_length(),
                terms=self.customers,
                kappa=0,  # never blinded: the aggregate is the public output
                guard=0,  # no mask, so no carry to absorb
            ),
        )

    @classmethod
    def for_key(
        cls, pk: PublicKey, items: Iterable[str], customers: int, max_baskets: int = 1
    ) -> CopurchaseLayout:
        return cls(int(pk.params.n), tuple(items), customers, max_baskets)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_pairs(self) -> int:
        return pair_count(self.n_items)

    @property
    def support_offset(self) -> int:
        """Position of item 0's count (the diagonal); item i is at support_offset + i."""
        return self.n_pairs

    @property
    def baskets_position(self) -> int:
        """Position of the customer's number of baskets (the last one)."""
        return self.n_pairs + self.n_items

    @property
    def positions(self) -> int:
        """Counts in one contribution: n(n-1)/2 pairs + n items + 1."""
        return self.n_pairs + self.n_items + 1

    @property
    def ciphertexts(self) -> int:
        """Ciphertexts in one contribution (and in the aggregate)."""
        return self.slots.count_plaintexts(self.positions)

    @cached_property
    def version(self) -> int:
        """A 31-bit tag of this layout, for the upload's ``layout_version``.

        Derived from N, the catalogue, ``customers`` and ``max_baskets``:
        uploads made for another layout are refused by their tag alone.
        """
        h = hashlib.sha256()
        h.update(f"copurchase/v1|{int(self.modulus)}|{self.customers}|{self.max_baskets}|".encode())
        h.update("\0".join(self.items).encode())
        return int.from_bytes(h.digest()[:4], "big") & 0x7FFFFFFF

    def describe(self) -> dict[str, Any]:
        s = self.slots
        return {
            "modulus_bits": int(self.modulus).bit_length(),
            "items": self.n_items,
            "pairs": self.n_pairs,
            "positions": self.positions,
            "customers": self.customers,
            "max_baskets": self.max_baskets,
            "slot_bits": s.slot_bits,
            "slots_per_plaintext": s.slots,
            "ciphertexts_per_customer": self.ciphertexts,
            "version": self.version,
        }

    def check_key(self, pk: PublicKey) -> None:
        if int(pk.params.n) != int(self.modulus):
            raise ParameterError("the key's modulus N is not the one this layout was made for")


# -- the customer's side ---------------------------------------------------------------


def customer_contribution(baskets: Sequence[Iterable[str]], layout: CopurchaseLayout) -> list[int]:
    """The packed plaintexts of one customer's baskets (``layout.ciphertexts`` ints).

    Counts, over the customer's baskets, of each pair, each item and the
    baskets themselves (an item repeated in a basket counts once). At most
    ``layout.max_baskets`` baskets (LayoutError otherwise); an item outside
    the catalogue is a ParameterError. No basket at all is a valid (all-zero)
    contribution.
    """
    if len(baskets) > layout.max_baskets:
        raise LayoutError(
            f"{len(baskets)} baskets for one customer, but the layout counts at most "
            f"{layout.max_baskets} per customer (value_bits={layout.slots.value_bits})"
        )
    slots, width = layout.slots.slots, layout.slots.slot_bits
    packed = [0] * layout.ciphertexts
    for basket in baskets:
        basket = tuple(basket)  # read twice below
        pairs = basket_pairs(basket, layout.index)  # ParameterError for an unknown item
        own = {layout.index[i] for i in basket}
        positions = [*pairs, *(layout.support_offset + i for i in own), layout.baskets_position]
        for v in positions:
            j, s = divmod(v, slots)
            packed[j] += 1 << (s * width)
    return packed


def contribution(basket: Iterable[str], layout: CopurchaseLayout) -> list[int]:
    """The packed plaintexts of a customer with one basket (see :func:`customer_contribution`)."""
    return customer_contribution([basket], layout)


def _check_packed(layout: CopurchaseLayout, packed: Sequence[int]) -> list[int]:
    if len(packed) != layout.ciphertexts:
        raise MalformedContribution(
            f"a contribution has {layout.ciphertexts} plaintexts for this layout, got {len(packed)}"
        )
    return [layout.slots.check_packed(x) for x in packed]


def upload_plaintexts(pk: PublicKey, packed: Sequence[int], layout: CopurchaseLayout) -> list[int]:
    """One customer's packed plaintexts, checked for this key and layout, ready to encrypt and
    prove for an upload (:meth:`mpc.parties.user.UserClient.upload`)."""
    layout.check_key(pk)
    return _check_packed(layout, packed)


def encrypt_contribution(
    pk: PublicKey,
    packed: Sequence[int],
    layout: CopurchaseLayout,
    *,
    encryptor: BatchEncryptor | None = None,
    from_pool: bool = False,
) -> list[Ciphertext]:
    """Encrypt one customer's packed plaintexts: ``layout.ciphertexts`` fresh ciphertexts.

    Every plaintext is encrypted, zero or not. ``encryptor`` spreads the work
    over a :class:`~mpc.elgamal.batch.BatchEncryptor`'s processes;
    ``from_pool`` takes precomputed encryptions of zero from ``pk.pool``
    (filled in idle time, see :class:`~mpc.elgamal.scheme.ZeroPool`), so the
    upload itself costs one multiplication a ciphertext.
    """
    layout.check_key(pk)
    packed = _check_packed(layout, packed)
    if encryptor is not None:
        if encryptor.pk != pk:
            raise ParameterError("the batch encryptor works for another key")
        return encryptor.encrypt(packed)
    if from_pool:
        return [pk.encrypt_from_pool(m) for m in packed]
    return [pk.encrypt(m) for m in packed]


def encrypt_contributions(
    pk: PublicKey,
    packed: Sequence[Sequence[int]],
    layout: CopurchaseLayout,
    encryptor: BatchEncryptor | None = None,
) -> list[list[Ciphertext]]:
    """Encrypt many customers' contributions at once (customers simulated in one process).

    With a shared ``encryptor`` all ciphertexts go out as one batch, which
    keeps every worker busy to the end; the result is one list per customer.
    """
    layout.check_key(pk)
    flat = [m for p in packed for m in _check_packed(layout, p)]
    if encryptor is not None:
        if encryptor.pk != pk:
            raise ParameterError("the batch encryptor works for another key")
        cts = encryptor.encrypt(flat)
    else:
        cts = [pk.encrypt(m) for m in flat]
    k = layout.ciphertexts
    return [cts[i : i + k] for i in range(0, len(cts), k)]


# -- the SP's sum ----------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregate:
    """The SP's homomorphic sum: ``layout.ciphertexts`` ciphertexts over ``contributors`` uploads."""

    ciphertexts: list[Ciphertext]
    contributors: int


class Aggregator:
    """The SP's running sum of contributions, position by position.

    :meth:`add` refuses a contribution of the wrong size or under another key
    (:class:`MalformedContribution`), and any contribution beyond
    ``layout.customers`` (LayoutError: the slots could overflow). The sum is
    kept as raw residues mod N^2 (one multiplication per component and
    position), so adding a customer at 2048 bits costs ~106 x 2
    multiplications.
    """

    def __init__(self, pk: PublicKey, layout: CopurchaseLayout) -> None:
        layout.check_key(pk)
        self.pk = pk
        self.layout = layout
        self._n2 = pk.params.n2
        self._c1 = [mpz(1)] * layout.ciphertexts
        self._c2 = [mpz(1)] * layout.ciphertexts
        self.contributors = 0

    def _room(self) -> None:
        if self.contributors >= self.layout.customers:
            s = self.layout.slots
            raise LayoutError(
                f"the layout's {s.slot_bits}-bit slots count at most {self.layout.customers} "
                f"customers (terms={s.terms}); refusing contribution {self.contributors + 1}"
            )

    def add(self, cts: Sequence[Ciphertext], who: str | None = None) -> None:
        """Add one customer's contribution (``who`` names it in errors)."""
        name = who or f"contribution {self.contributors + 1}"
        if len(cts) != self.layout.ciphertexts:
            raise MalformedContribution(
                f"{name} has {len(cts)} ciphertexts; this layout needs exactly "
                f"{self.layout.ciphertexts} (one per plaintext of {self.layout.slots.slots} slots)"
            )
        for c in cts:
            if not isinstance(c, Ciphertext):
                raise MalformedContribution(f"{name}: expected ciphertexts, got {type(c).__name__}")
            if c.pk is not self.pk and c.pk != self.pk:
                raise MalformedContribution(f"{name} is encrypted under another key")
        self._room()
        n2 = self._n2
        self._c1 = [f_mod(a * c.c1, n2) for a, c in zip(self._c1, cts, strict=True)]
        self._c2 = [f_mod(a * c.c2, n2) for a, c in zip(self._c2, cts, strict=True)]
        self.contributors += 1

    def add_bytes(self, blob: bytes, who: str | None = None) -> None:
        """Add a contribution as stored (fixed-width ciphertexts back to back), validating it."""
        name = who or f"contribution {self.contributors + 1}"
        want = self.layout.ciphertexts * self.pk.ciphertext_bytes
        if len(blob) != want:
            raise MalformedContribution(
                f"{name} is {len(blob)} bytes; this layout needs {self.layout.ciphertexts} "
                f"ciphertexts of {self.pk.ciphertext_bytes} bytes = {want}"
            )
        try:
            cts = self.pk.ciphertexts_from_bytes(blob, self.layout.ciphertexts)
        except EncodingError as exc:
            raise MalformedContribution(f"{name}: {exc}") from None
        self.add(cts, who)

    def add_stored(self, blob: bytes, who: str | None = None) -> None:
        """Add a contribution that was validated when it was uploaded (as the SP stores it).

        Checks the length and that every element is in 0 < c < N^2, but not
        each element's invertibility (the gcd with N, most of the cost of
        :meth:`add_bytes`): a product mod N^2 is invertible exactly when
        every factor is, so :meth:`result` checks the sum once instead.
        """
        name = who or f"contribution {self.contributors + 1}"
        k, e = self.layout.ciphertexts, self.pk.params.element_bytes
        if len(blob) != 2 * k * e:
            raise MalformedContribution(
                f"{name} is {len(blob)} bytes; this layout needs {k} ciphertexts of {2 * e} bytes"
            )
        self._room()
        n2 = self._n2
        c1, c2 = list(self._c1), list(self._c2)
        mv = memoryview(blob)
        for j in range(k):
            a = mpz(int.from_bytes(mv[2 * j * e : (2 * j + 1) * e], "big"))
            b = mpz(int.from_bytes(mv[(2 * j + 1) * e : (2 * j + 2) * e], "big"))
            if not (0 < a < n2 and 0 < b < n2):
                raise MalformedContribution(f"{name}: ciphertext {j} is outside Z_(N^2)")
            c1[j] = f_mod(c1[j] * a, n2)
            c2[j] = f_mod(c2[j] * b, n2)
        self._c1, self._c2 = c1, c2
        self.contributors += 1

    def result(self) -> Aggregate:
        """The sum so far; MalformedContribution if an element of it is not invertible mod N^2."""
        if self.contributors == 0:
            raise ParameterError("nothing to aggregate: no contribution was added")
        n = self.pk.params.n
        if any(gcd(x, n) != 1 for x in (*self._c1, *self._c2)):
            raise MalformedContribution(
                "the sum holds an element that is not invertible mod N^2: a stored contribution "
                "is not a ciphertext"
            )
        return Aggregate(
            [Ciphertext(self.pk, a, b) for a, b in zip(self._c1, self._c2, strict=True)],
            self.contributors,
        )


def aggregate(
    pk: PublicKey, layout: CopurchaseLayout, contributions: Iterable[Sequence[Ciphertext]]
) -> Aggregate:
    """The homomorphic sum of all ``contributions`` (see :class:`Aggregator`)."""
    agg = Aggregator(pk, layout)
    for k, cts in enumerate(contributions, 1):
        agg.add(cts, f"contribution {k}")
    return agg.result()


# -- the decrypted aggregate -----------------------------------------------------------


def counts_from_plaintexts(
    layout: CopurchaseLayout, plaintexts: Sequence[int], contributors: int
) -> Cooccurrence:
    """The :class:`Cooccurrence` held by the decrypted aggregate of ``contributors`` uploads.

    Checks what it can: every slot within its bound (no overflow, nothing in
    the unused slots), every count at most ``contributors * max_baskets``,
    and ``C(X, Y) <= min(C(X, X), C(Y, Y))`` (which any sum of honest
    contributions satisfies). A failure is a DecryptionError.
    """
    if len(plaintexts) != layout.ciphertexts:
        raise DecryptionError(
            f"the aggregate has {layout.ciphertexts} plaintexts for this layout, got {len(plaintexts)}"
        )
    s = layout.slots
    try:
        values = s.unpack_many([int(x) for x in plaintexts], layout.positions)
    except LayoutError as exc:
        raise DecryptionError(f"decrypted aggregate does not fit the layout: {exc}") from None
    used = layout.positions - (layout.ciphertexts - 1) * s.slots
    if int(plaintexts[-1]) >> (used * s.slot_bits):
        raise DecryptionError("decrypted aggregate has non-zero unused slots")
    bound = contributors * layout.max_baskets
    v = np.asarray(values, dtype=np.int64)
    if v.size and int(v.max()) > bound:
        raise DecryptionError(
            f"a decrypted count is {int(v.max())}, more than {contributors} contributors "
            f"x {layout.max_baskets} basket(s) allow"
        )
    n = layout.n_items
    pairs = v[: layout.n_pairs]
    support = v[layout.support_offset : layout.support_offset + n]
    matrix = np.zeros((n, n), dtype=np.int64)
    iu, ju = np.triu_indices(n, k=1)  # the order of pair_index
    matrix[iu, ju] = pairs
    matrix[ju, iu] = pairs
    if np.any(matrix > np.minimum.outer(support, support)):
        raise DecryptionError(
            "decrypted aggregate is inconsistent: a pair count exceeds an item count"
        )
    matrix[np.arange(n), np.arange(n)] = support
    items = list(layout.items)
    return Cooccurrence(items, dict(layout.index), matrix, int(v[layout.baskets_position]))


def decrypt_counts(
    layout: CopurchaseLayout, agg: Aggregate, partials: Sequence[Sequence[int]]
) -> Cooccurrence:
    """Decrypt the aggregate with every key holder's partials (``partials[j]``: holder j's list)."""
    if len(agg.ciphertexts) != layout.ciphertexts:
        raise MalformedContribution(
            f"the aggregate has {len(agg.ciphertexts)} ciphertexts; this layout needs {layout.ciphertexts}"
        )
    return counts_from_plaintexts(layout, combine_many(agg.ciphertexts, partials), agg.contributors)


async def decrypt_local(
    pk: PublicKey,
    layout: CopurchaseLayout,
    agg: Aggregate,
    sp_share: KeyShare,
    psp_share: KeyShare,
    *,
    min_contributors: int | None = None,
    timeout: float | None = 120.0,
) -> Cooccurrence:
    """Run protocol ``aggregate-decrypt`` in memory (both servers here) and read the counts."""
    psp: dict[str, Any] = {
        "pk": pk,
        "share": psp_share,
        "start": ad.start_message(KIND, agg.contributors, len(agg.ciphertexts)),
    }
    if min_contributors is not None:
        psp["min_contributors"] = min_contributors
    out = await run_local(
        ad.AggregateDecrypt.name,
        {"sp": {"pk": pk, "share": sp_share, "ciphertexts": agg.ciphertexts}, "psp": psp},
        timeout=timeout,
    )
    return counts_from_plaintexts(layout, out["sp"], agg.contributors)  # type: ignore[arg-type]


# -- everything in one process ---------------------------------------------------------


@dataclass
class CopurchaseStats:
    """Timings of :func:`run_local_copurchase` (seconds) and the projection to all customers."""

    layout: dict[str, Any]
    customers: int
    workers: int
    encrypt_s: float
    aggregate_s: float
    decrypt_s: float
    equal_to_plaintext: bool | None = None
    projected_customers: int | None = None

    @property
    def encrypt_per_customer_s(self) -> float:
        return self.encrypt_s / self.customers

    @property
    def aggregate_per_customer_s(self) -> float:
        return self.aggregate_s / self.customers

    def projected_encrypt_s(self, customers: int | None = None) -> float:
        """User-side CPU to encrypt ``customers`` contributions at the measured rate."""
        return self.encrypt_per_customer_s * (
            customers or self.projected_customers or self.customers
        )

    def to_dict(self) -> dict[str, Any]:
        total = self.projected_customers or self.customers
        return {
            "layout": self.layout,
            "customers": self.customers,
            "workers": self.workers,
            "encrypt_s": round(self.encrypt_s, 3),
            "encrypt_per_customer_ms": round(1000 * self.encrypt_per_customer_s, 2),
            "aggregate_s": round(self.aggregate_s, 3),
            "aggregate_per_customer_ms": round(1000 * self.aggregate_per_customer_s, 3),
            "decrypt_s": round(self.decrypt_s, 3),
            "projected_customers": total,
            "projected_encrypt_s": round(self.projected_encrypt_s(total), 1),
            "projected_aggregate_s": round(self.aggregate_per_customer_s * total, 1),
            "equal_to_plaintext": self.equal_to_plaintext,
        }


def _equal(a: Cooccurrence, b: Cooccurrence) -> bool:
    return a.items == b.items and a.baskets == b.baskets and np.array_equal(a.matrix, b.matrix)


def run_local_copurchase(
    baskets: Sequence[Iterable[str]],
    pk: PublicKey,
    sp_share: KeyShare,
    psp_share: KeyShare,
    *,
    items: Iterable[str] | None = None,
    layout_customers: int | None = None,
    workers: int | None = 0,
    min_contributors: int | None = None,
    check: bool = True,
    projected_customers: int | None = None,
) -> tuple[Cooccurrence, CopurchaseStats]:
    """Every step for one customer per basket, in one process: the demo and benchmark path.

    ``items``: the catalogue (default: every item in ``baskets``);
    ``layout_customers``: the slots' customer bound (default
    ``len(baskets)``; pass the real population, e.g. 9,835, to time the real
    layout on a few customers); ``workers``: 0 encrypts in this process,
    None or a number uses a shared BatchEncryptor with that many processes
    (None: one per core; the caller must then run under
    ``if __name__ == "__main__"``, as the workers are spawned). ``check``
    compares with the plaintext :func:`cooccurrence`. Returns the counts and
    the timings.
    """
    baskets = [tuple(b) for b in baskets]
    if not baskets:
        raise ParameterError("no baskets")
    catalogue = sorted(set(items) if items is not None else {i for b in baskets for i in b})
    layout = CopurchaseLayout.for_key(pk, catalogue, layout_customers or len(baskets))
    packed = [contribution(b, layout) for b in baskets]

    t0 = time.perf_counter()
    if workers == 0:
        uploads = encrypt_contributions(pk, packed, layout)
        used = 1
    else:
        from mpc.elgamal.batch import BatchEncryptor

        with BatchEncryptor(pk, workers=workers) as enc:
            enc.warm_up()
            t0 = time.perf_counter()  # worker start-up and tables are not per-customer costs
            uploads = encrypt_contributions(pk, packed, layout, enc)
            used = enc.workers
    t1 = time.perf_counter()
    agg = aggregate(pk, layout, uploads)
    t2 = time.perf_counter()
    counts = asyncio.run(
        decrypt_local(pk, layout, agg, sp_share, psp_share, min_contributors=min_contributors)
    )
    t3 = time.perf_counter()
    stats = CopurchaseStats(
        layout=layout.describe(),
        customers=len(baskets),
        workers=used,
        encrypt_s=t1 - t0,
        aggregate_s=t2 - t1,
        decrypt_s=t3 - t2,
        projected_customers=projected_customers,
    )
    if check:
        stats.equal_to_plaintext = _equal(counts, cooccurrence(baskets, catalogue))
    return counts, stats
