"""Private co-purchase counts: packed encrypted uploads, the SP's sum, joint decryption.

The private counts must equal crm.recommender.copurchase.cooccurrence exactly.
The real data (../shared/data/groceries.csv) is used when present: the whole
file through the packing arithmetic in the clear at the 2048-bit layout, and a
slice of it through encryption at 1024 bits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mpc.protocols  # noqa: F401  (registers the protocols)
from crm.recommender.copurchase import cooccurrence, pair_index
from crm.recommender.data import load_baskets
from crm.recommender.private_copurchase import (
    KIND,
    Aggregator,
    CopurchaseLayout,
    MalformedContribution,
    aggregate,
    contribution,
    counts_from_plaintexts,
    customer_contribution,
    decrypt_counts,
    decrypt_local,
    encrypt_contribution,
    encrypt_contributions,
)
from mpc.elgamal import KeyShare, PublicKey, local_joint_keys, params_for
from mpc.elgamal.batch import BatchEncryptor
from mpc.elgamal.params import RSA_2048
from mpc.errors import DecryptionError, EncodingError, LayoutError, ParameterError, ProtocolError
from mpc.protocol import get_protocol, run_local
from mpc.protocols import aggregate_decrypt as ad

GROCERIES = Path(__file__).parents[3] / "shared" / "data" / "groceries.csv"
P = params_for(1024)
TINY = ("bread", "butter", "jam", "milk")


@pytest.fixture(scope="module")
def keys() -> tuple[PublicKey, list[KeyShare]]:
    return local_joint_keys(P)


@pytest.fixture(scope="module")
def groceries() -> list[tuple[str, ...]]:
    if not GROCERIES.exists():
        pytest.skip(f"{GROCERIES} is not there")
    return load_baskets(GROCERIES)


def _sum_packed(contributions: list[list[int]]) -> list[int]:
    """What the homomorphic sum decrypts to: position-wise sums (all below N, so no wrap)."""
    return [sum(col) for col in zip(*contributions, strict=True)]


def _partials(agg, shares: list[KeyShare]) -> list[list[int]]:
    return [s.partial_decrypt_many(agg.ciphertexts) for s in shares]


def _same(a, b) -> None:
    assert a.items == b.items
    assert a.baskets == b.baskets
    assert np.array_equal(a.matrix, b.matrix)


# -- the layout ------------------------------------------------------------------------


def test_layout_numbers_at_2048_bits() -> None:
    items = [f"item{k:03d}" for k in range(169)]
    lay = CopurchaseLayout(RSA_2048, tuple(items), customers=9835)
    assert (lay.n_pairs, lay.positions) == (14196, 14196 + 169 + 1)
    s = lay.slots
    assert (s.value_bits, s.term_bits, s.kappa, s.guard) == (1, 14, 0, 0)
    assert (s.slot_bits, s.slots, lay.ciphertexts) == (15, 136, 106)
    # The bound is right at its edge: 2^14 customers still fit 15 bits, one more needs 16.
    assert CopurchaseLayout(RSA_2048, tuple(items), customers=1 << 14).slots.slot_bits == 15
    assert CopurchaseLayout(RSA_2048, tuple(items), customers=(1 << 14) + 1).slots.slot_bits == 16
    # Several baskets a customer widen the values.
    assert (
        CopurchaseLayout(RSA_2048, tuple(items), customers=9835, max_baskets=3).slots.slot_bits
        == 16
    )


def test_layout_version_names_the_layout() -> None:
    a = CopurchaseLayout(int(P.n), TINY, 10)
    assert a.version == CopurchaseLayout(int(P.n), tuple(reversed(TINY)), 10).version
    assert a.version != CopurchaseLayout(int(P.n), TINY, 11).version
    assert a.version != CopurchaseLayout(int(P.n), (*TINY, "eggs"), 10).version
    assert a.version != CopurchaseLayout(RSA_2048, TINY, 10).version
    assert 0 <= a.version < 1 << 31
    with pytest.raises(ParameterError):
        CopurchaseLayout(int(P.n), ("only",), 10)
    with pytest.raises(ParameterError):
        CopurchaseLayout(int(P.n), TINY, 0)


def test_slots_hold_the_largest_sum_without_spilling() -> None:
    # 2^k customers who all bought everything: every slot reaches its maximum,
    # 2^k = 2^term_bits, and must not carry into its neighbour.
    items = [f"p{k:02d}" for k in range(40)]  # 820 pairs + 40 + 1 = 861 positions
    customers = 64
    lay = CopurchaseLayout(int(P.n), tuple(items), customers)
    assert lay.slots.slot_bits == 7 and lay.ciphertexts > 1
    full = contribution(items, lay)
    assert all(x < P.n for x in full)
    total = _sum_packed([full] * customers)
    assert all(x < P.n for x in total)  # the plaintexts survive reduction mod N
    co = counts_from_plaintexts(lay, total, customers)
    assert co.baskets == customers
    assert np.all(co.matrix == customers)


def test_packing_the_whole_file_at_2048_bits_gives_the_plaintext_counts(groceries) -> None:
    items = sorted({i for b in groceries for i in b})
    assert len(items) == 169 and len(groceries) == 9835
    lay = CopurchaseLayout(RSA_2048, tuple(items), customers=len(groceries))
    assert lay.ciphertexts == 106
    total = [0] * lay.ciphertexts
    for b in groceries:
        for j, x in enumerate(contribution(b, lay)):
            total[j] += x
    private = counts_from_plaintexts(lay, total, len(groceries))
    plain = cooccurrence(groceries)
    _same(private, plain)
    assert np.array_equal(private.pair_vector(), plain.pair_vector())


def test_several_baskets_per_customer_are_counted() -> None:
    customers = [
        [("bread", "butter"), ("bread", "butter", "jam"), ("milk",)],
        [("jam", "milk")],
        [],
        [("bread", "milk", "milk"), ("butter", "bread")],
    ]
    lay = CopurchaseLayout(int(P.n), TINY, len(customers), max_baskets=3)
    total = _sum_packed([customer_contribution(c, lay) for c in customers])
    co = counts_from_plaintexts(lay, total, len(customers))
    _same(co, cooccurrence([b for c in customers for b in c], TINY))
    with pytest.raises(LayoutError, match="at most 3"):
        customer_contribution([("bread",)] * 4, lay)
    with pytest.raises(ParameterError, match="unknown item"):
        contribution(("bread", "caviar"), lay)
    assert contribution(iter(["jam", "bread", "jam"]), lay) == contribution(("bread", "jam"), lay)


def test_inconsistent_or_overflowing_aggregates_are_refused() -> None:
    lay = CopurchaseLayout(int(P.n), TINY, 4)
    width = lay.slots.slot_bits
    # A pair without its items (no honest basket does that).
    bad = [1 << (pair_index(0, 1, 4) * width)]
    with pytest.raises(DecryptionError, match="inconsistent"):
        counts_from_plaintexts(lay, bad, 4)
    # Something in a slot the layout does not use.
    honest = contribution(("bread", "jam"), lay)
    with pytest.raises(DecryptionError, match="unused"):
        counts_from_plaintexts(lay, [honest[0] | 1 << (lay.positions * width)], 1)
    # More than the contributors can have put there.
    with pytest.raises(DecryptionError, match="more than"):
        counts_from_plaintexts(lay, _sum_packed([honest] * 3), 2)
    with pytest.raises(DecryptionError, match="plaintexts"):
        counts_from_plaintexts(lay, [], 1)


# -- encrypted, summed, decrypted ------------------------------------------------------


async def test_private_counts_equal_the_plaintext_counts_on_real_baskets(keys, groceries) -> None:
    pk, shares = keys
    items = sorted({i for b in groceries for i in b})  # the whole catalogue, as deployed
    slice_ = groceries[2000:2040]
    lay = CopurchaseLayout.for_key(pk, items, customers=len(slice_))
    uploads = encrypt_contributions(pk, [contribution(b, lay) for b in slice_], lay)
    assert all(len(u) == lay.ciphertexts for u in uploads)
    agg = aggregate(pk, lay, uploads)
    assert agg.contributors == len(slice_)
    private = await decrypt_local(pk, lay, agg, shares[0], shares[1], min_contributors=len(slice_))
    plain = cooccurrence(slice_, items)
    _same(private, plain)
    for product in items:
        assert private.recommend_for(product, 5) == plain.recommend_for(product, 5)
    bought = sorted({i for b in slice_ for i in b})
    for product in bought[:10]:
        assert private.recommend_for(product, 0) == plain.recommend_for(product, 0)
        assert private.to_dict(product) == plain.to_dict(product)
    # The same aggregate through the pure functions, both partials at hand.
    _same(decrypt_counts(lay, agg, _partials(agg, shares)), plain)


def test_customers_in_one_process_share_a_batch_encryptor(keys) -> None:
    pk, shares = keys
    baskets = [("bread", "butter"), ("jam",), ("bread", "jam", "milk"), ("milk", "butter")] * 3
    lay = CopurchaseLayout.for_key(pk, TINY, customers=len(baskets))
    with BatchEncryptor(pk, workers=2, chunk=4) as enc:
        uploads = encrypt_contributions(pk, [contribution(b, lay) for b in baskets], lay, enc)
        one = encrypt_contribution(pk, contribution(baskets[0], lay), lay, encryptor=enc)
    assert len(uploads) == len(baskets) and len(one) == lay.ciphertexts
    agg = aggregate(pk, lay, uploads)
    _same(decrypt_counts(lay, agg, _partials(agg, shares)), cooccurrence(baskets, TINY))


def test_uploads_are_fixed_size_and_fresh(keys) -> None:
    pk, _ = keys
    items = [f"p{k:02d}" for k in range(30)]
    lay = CopurchaseLayout.for_key(pk, items, customers=100)
    assert lay.ciphertexts > 1
    small = encrypt_contribution(pk, contribution(items[:1], lay), lay)
    big = encrypt_contribution(pk, contribution(items, lay), lay)
    empty = encrypt_contribution(pk, customer_contribution([], lay), lay)
    again = encrypt_contribution(pk, contribution(items[:1], lay), lay)
    # Every customer uploads the same number of ciphertexts of the same size...
    assert len(small) == len(big) == len(empty) == lay.ciphertexts
    assert {len(c.to_bytes()) for c in small + big + empty} == {pk.ciphertext_bytes}
    # ... and the same basket twice gives unrelated ciphertexts.
    assert all(a.c1 != b.c1 and a.c2 != b.c2 for a, b in zip(small, again, strict=True))


def test_encryption_from_the_zero_pool(keys) -> None:
    pk, shares = keys
    lay = CopurchaseLayout.for_key(pk, TINY, customers=2)
    pk.pool.fill(2 * lay.ciphertexts)
    drawn = pk.pool.drawn
    uploads = [
        encrypt_contribution(pk, contribution(b, lay), lay, from_pool=True)
        for b in (("bread", "jam"), ("jam", "milk", "bread"))
    ]
    assert pk.pool.drawn == drawn + 2 * lay.ciphertexts
    agg = aggregate(pk, lay, uploads)
    co = decrypt_counts(lay, agg, _partials(agg, shares))
    _same(co, cooccurrence([("bread", "jam"), ("jam", "milk", "bread")], TINY))


def test_the_sp_refuses_more_customers_than_the_slots_count(keys) -> None:
    pk, _ = keys
    lay = CopurchaseLayout.for_key(pk, TINY, customers=4)
    up = encrypt_contribution(pk, contribution(TINY, lay), lay)
    agg = Aggregator(pk, lay)
    for _ in range(4):
        agg.add(up)
    with pytest.raises(LayoutError, match="at most 4 customers"):
        agg.add(up)
    assert agg.result().contributors == 4
    with pytest.raises(ParameterError, match="nothing to aggregate"):
        Aggregator(pk, lay).result()


def test_malformed_contributions_are_refused(keys) -> None:
    pk, _ = keys
    lay = CopurchaseLayout.for_key(pk, [f"p{k:02d}" for k in range(30)], customers=10)
    k = lay.ciphertexts
    packed = contribution(("p01", "p02"), lay)
    up = encrypt_contribution(pk, packed, lay)
    agg = Aggregator(pk, lay)
    for bad in (up[:-1], [*up, up[0]], []):
        with pytest.raises(
            MalformedContribution,
            match=f"has {len(bad)} ciphertexts; this layout needs exactly {k}",
        ):
            agg.add(bad, "customer u0042")
    with pytest.raises(MalformedContribution, match="contribution 2 has"):
        aggregate(pk, lay, [up, up[1:]])
    other, _ = local_joint_keys(P)
    with pytest.raises(MalformedContribution, match="another key"):
        agg.add([other.encrypt(0) for _ in range(k)])
    with pytest.raises(MalformedContribution, match="bytes"):
        agg.add_bytes(pk.ciphertexts_to_bytes(up)[:-1])
    with pytest.raises(MalformedContribution):
        agg.add_bytes(b"\0" * (k * pk.ciphertext_bytes))  # zeros are not group elements
    assert agg.contributors == 0  # nothing malformed was counted
    agg.add_bytes(pk.ciphertexts_to_bytes(up))
    assert agg.contributors == 1
    assert isinstance(MalformedContribution("x"), EncodingError)
    with pytest.raises(MalformedContribution, match="plaintexts"):
        encrypt_contribution(pk, packed[:-1], lay)
    with pytest.raises(LayoutError):
        encrypt_contribution(pk, [*packed[:-1], 1 << lay.slots.total_bits], lay)
    with pytest.raises(ParameterError, match="modulus"):
        encrypt_contribution(pk, packed, CopurchaseLayout(RSA_2048, lay.items, 10))


# -- protocol aggregate-decrypt --------------------------------------------------------


async def test_aggregate_decrypt_gives_the_sp_the_plaintexts_and_the_psp_only_sizes(keys) -> None:
    pk, (sp, psp) = keys
    values = [0, 1, 12345, int(P.n) - 1]
    cts = [pk.encrypt(v) for v in values]
    out = await run_local(
        "aggregate-decrypt",
        {
            "sp": {"pk": pk, "share": sp, "ciphertexts": cts},
            "psp": {"pk": pk, "share": psp, "start": ad.start_message("copurchase", 10, len(cts))},
        },
    )
    assert out["sp"] == values
    assert out["psp"] == ad.AggregateRecord("copurchase", 10, len(cts))


async def test_aggregate_decrypt_refusals(keys) -> None:
    pk, (sp, psp) = keys
    cts = [pk.encrypt(7), pk.encrypt(8)]

    async def run(start, minimum=None, psp_share=psp):
        inputs = {"pk": pk, "share": psp_share, "start": start}
        if minimum is not None:
            inputs["min_contributors"] = minimum
        return await run_local(
            "aggregate-decrypt",
            {"sp": {"pk": pk, "share": sp, "ciphertexts": cts}, "psp": inputs},
            timeout=5.0,
        )

    with pytest.raises(ProtocolError, match="at least 10"):
        await run(ad.start_message("copurchase", 9, 2))  # the default policy
    with pytest.raises(ProtocolError, match="at least 3"):
        await run(ad.start_message("copurchase", 2, 2), minimum=3)
    with pytest.raises(ProtocolError, match="announced 3"):
        await run(ad.start_message("copurchase", 10, 3))
    with pytest.raises(EncodingError, match="kind"):
        await run(ad.start_message("Co Purchase!", 10, 2))
    # A PSP holding the wrong share: its partials do not combine.
    with pytest.raises(DecryptionError):
        await run(ad.start_message("copurchase", 10, 2), psp_share=KeyShare.generate(P))


def test_aggregate_decrypt_is_started_by_the_sp_only(keys) -> None:
    pk, (_, psp) = keys
    spec = get_protocol("aggregate-decrypt")
    assert spec is ad.AggregateDecrypt and spec.roles == ("sp", "psp")

    class Party:
        role = "psp"

        def require_key(self):
            return pk, psp

        async def run_crypto(self, fn, *args):
            return fn(*args)

    raw = ad.start_message("copurchase", 50, 106).SerializeToString()
    inputs = spec.responder_inputs(Party(), raw)
    assert inputs["start"].contributors == 50 and inputs["min_contributors"] == 10
    with pytest.raises(ProtocolError, match="at least 10"):
        spec.responder_inputs(Party(), ad.start_message("copurchase", 1, 106).SerializeToString())
    with pytest.raises(EncodingError):
        spec.responder_inputs(Party(), b"\xff\xff")
    # A PSP configured for a higher minimum (PartyConfig.aggregate_min_contributors) uses it.
    from mpc.parties.config import PartyConfig

    base = {"role": "psp", "listen": "x:1", "peer": "y:2", "data_dir": "d", "tls": {"ca": "a", "cert": "b", "key": "c"}}
    Party.config = PartyConfig.from_dict({**base, "aggregate_min_contributors": 60})
    with pytest.raises(ProtocolError, match="at least 60"):
        spec.responder_inputs(Party(), raw)
    with pytest.raises(ParameterError, match="positive integer"):
        PartyConfig.from_dict({**base, "aggregate_min_contributors": 0})
    del Party.config
    Party.role = "sp"
    with pytest.raises(ProtocolError, match="started by the SP"):
        spec.responder_inputs(Party(), raw)


async def test_aggregate_decrypt_between_two_live_servers(parties) -> None:
    # The SP and the PSP over gRPC (mTLS), as deployed; this process registered the protocol.
    pk, share = parties.sp.require_key()
    baskets = [("bread", "butter"), ("jam", "milk"), ("bread", "jam", "milk"), ("butter",)] * 3
    lay = CopurchaseLayout.for_key(pk, TINY, customers=len(baskets))
    agg = aggregate(pk, lay, [encrypt_contribution(pk, contribution(b, lay), lay) for b in baskets])
    local = {
        "pk": pk,
        "share": share,
        "ciphertexts": agg.ciphertexts,
        "run_crypto": parties.sp.run_crypto,
    }
    plain = await parties.sp.start_session(
        "aggregate-decrypt", ad.start_message(KIND, agg.contributors, lay.ciphertexts), local
    )
    _same(counts_from_plaintexts(lay, plain, agg.contributors), cooccurrence(baskets, TINY))
    with pytest.raises(ProtocolError, match="at least 10"):
        await parties.sp.start_session(
            "aggregate-decrypt", ad.start_message(KIND, 3, lay.ciphertexts), local
        )
