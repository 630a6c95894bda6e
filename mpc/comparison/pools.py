"""Randomness precomputed in idle time for the comparison (raw maths, no networking).

Every item is drawn once and never reused. A pool fills in the calling thread
(:meth:`Pool.fill`) or in a daemon thread (:meth:`Pool.start`); when it runs
dry, :meth:`Pool.draw` computes the shortfall on the spot, so a pool only
moves work to idle time, never changes results. Each pool records what it
cost: ``made`` items in ``seconds``, of which ``on_demand`` were computed
during a draw.

The pools of the comparison (the party holding the zero-test key encrypts
thermometers, the other blinds terms; in protocol "compare" the SP holds the
key, in churn scoring the PSP does):

* key holder, :func:`bit_encryption_pool`: encryptions of bits under its own
  curve key, as (C1, C2 for bit 0, C2 for bit 1) in uncompressed encodings.
  C1 = rG and C2 = rY (+ G), with r fresh per item; a bit is encrypted by
  picking the C2 that matches, so the online cost is a byte copy.
* blinder, :func:`randomizer_pool`: pairs (sG, sY) under the key holder's
  public key Y, the fresh randomness added to every blinded term.
* blinder, :func:`dummy_pool`: two independent uniform points, the encoding of
  a dummy term (a term that cannot be zero, see :mod:`mpc.comparison.dgk`).

The joint-key side uses :attr:`mpc.elgamal.PublicKey.pool` (encryptions of
zero for re-randomisation and for the PSP's encrypted output bits).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TypeVar

from mpc.comparison import ec
from mpc.comparison.ot import OtChoiceSeeds, OtDeltaKey
from mpc.elgamal.curve import CurvePrivateKey, PointAtInfinityError
from mpc.pool import Pool

T = TypeVar("T")

__all__ = [
    "BitEncryption",
    "Pool",
    "PspPools",
    "SeedCache",
    "SpPools",
    "bit_encryption_pool",
    "dummy_pool",
    "randomizer_pool",
]

BitEncryption = tuple[bytes, bytes, bytes]
"""(C1, C2 if the bit is 0, C2 if the bit is 1), each 65 bytes uncompressed."""


# -- the pools of the comparison ---------------------------------------------------------


def bit_encryption_pool(key: CurvePrivateKey | bytes, target: int = 0) -> Pool[BitEncryption]:
    """Encryptions of bits under a curve key: (rG, rY, rY + G) for fresh r.

    ``key`` is the holder's private key (the holder itself) or its compressed
    public key (anyone else, e.g. a customer encrypting its attributes). C2 = rY uses
    a comb of the public key (ephemeral r only), so the secret x never enters
    variable-time code.
    """
    y = key if isinstance(key, bytes) else key.public_key.to_bytes()

    def make(count: int) -> list[BitEncryption]:
        gcomb, ycomb = ec.base_comb(), ec.comb_for(y)
        out: list[BitEncryption] = []
        while len(out) < count:
            r = ec.random_scalar()
            c1 = gcomb.mul(r)
            c20 = ycomb.mul(r)
            try:
                c21 = ec.add([c20, ec.G])
            except PointAtInfinityError:  # r*x = -1 mod n: probability 1/n; redraw
                continue
            out.append((ec.serialize(c1), ec.serialize(c20), ec.serialize(c21)))
        return out

    return Pool(make, target, "bit-encryptions")


def randomizer_pool(public_key: bytes, target: int = 0) -> Pool[tuple[ec.Point, ec.Point]]:
    """The blinder's fresh randomness (sG, sY) under the key holder's public key (compressed)."""

    def make(count: int) -> list[tuple[ec.Point, ec.Point]]:
        gcomb, ycomb = ec.base_comb(), ec.comb_for(public_key)
        out = []
        for s in ec.random_scalars(count):
            out.append((gcomb.mul(s), ycomb.mul(s)))
        return out

    return Pool(make, target, "randomizers")


def dummy_pool(target: int = 0) -> Pool[bytes]:
    """Dummy terms: two independent uniform points (C1 || C2, 130 bytes).

    A blinded non-zero term is (uniform C1, C2 with C2 - x*C1 uniform and
    non-zero); two independent uniform points have that distribution (up to
    probability 1/n), so the PSP cannot tell dummies from real terms.
    """

    def make(count: int) -> list[bytes]:
        gcomb = ec.base_comb()
        scalars = ec.random_scalars(2 * count)
        return [
            ec.serialize(gcomb.mul(scalars[2 * i])) + ec.serialize(gcomb.mul(scalars[2 * i + 1]))
            for i in range(count)
        ]

    return Pool(make, target, "dummies")


@dataclass
class SeedCache:
    """Base OTs with other parties' OT keys (:class:`OtChoiceSeeds`, 256 ECDHs each), kept
    for the 16 keys seen last; thread-safe (batches of a session run in several threads)."""

    _seeds: dict[bytes, OtChoiceSeeds] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, public: bytes) -> OtChoiceSeeds:
        with self._lock:
            seeds = self._seeds.get(public)
            if seeds is None:
                if len(self._seeds) >= 16:
                    self._seeds.pop(next(iter(self._seeds)))
                seeds = self._seeds[public] = OtChoiceSeeds(public)
            return seeds


@dataclass
class SpPools:
    """What the SP precomputes: encryptions of bits under its own curve (zero-test) key.

    ``key`` defaults to a fresh key; a party passes its persistent one.
    """

    key: CurvePrivateKey = field(default_factory=CurvePrivateKey.generate)
    bits: Pool[BitEncryption] = field(init=False)
    ot: OtDeltaKey = field(default_factory=OtDeltaKey)
    """Method "gc": the SP's garbling Delta and base-OT key, fresh for each server start."""
    shuffle_seeds: SeedCache = field(default_factory=SeedCache)
    """Base OTs with the PSP's shuffle keys (the SP chooses, the PSP holds the Delta)."""

    def __post_init__(self) -> None:
        self.bits = bit_encryption_pool(self.key)

    def stats(self) -> dict[str, object]:
        return {"bit_encryptions": self.bits.stats()}


@dataclass
class PspPools:
    """What the PSP precomputes: term randomizers (per SP key) and dummy terms."""

    dummies: Pool[bytes] = field(default_factory=dummy_pool)
    _randomizers: dict[bytes, Pool[tuple[ec.Point, ec.Point]]] = field(default_factory=dict)
    _ot: SeedCache = field(default_factory=SeedCache)
    shuffle_key: OtDeltaKey = field(default_factory=OtDeltaKey)
    """The PSP's base-OT key as the holder of an oblivious shuffle (:mod:`mpc.comparison.shuffle`)."""

    def ot_seeds(self, sp_ot_key: bytes) -> OtChoiceSeeds:
        """Method "gc": the base OTs with the SP's key (256 ECDHs once per key, then kept)."""
        return self._ot.get(sp_ot_key)

    def randomizers(self, public_key: bytes) -> Pool[tuple[ec.Point, ec.Point]]:
        """The randomizer pool for the SP key ``public_key`` (created empty on first use)."""
        pool = self._randomizers.get(public_key)
        if pool is None:
            pool = randomizer_pool(public_key)
            self._randomizers[public_key] = pool
        return pool

    def stats(self) -> dict[str, object]:
        out: dict[str, object] = {"dummies": self.dummies.stats()}
        for i, pool in enumerate(self._randomizers.values()):
            out["randomizers" if i == 0 else f"randomizers_{i}"] = pool.stats()
        return out
