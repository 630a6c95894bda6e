"""Randomness precomputed in idle time for the comparison (raw maths, no networking).

Every item is drawn once and never reused. A pool fills in the calling thread
(:meth:`Pool.fill`) or in a daemon thread (:meth:`Pool.start`); when it runs
dry, :meth:`Pool.draw` computes the shortfall on the spot, so a pool only
moves work to idle time, never changes results. Each pool records what it
cost: ``made`` items in ``seconds``, of which ``on_demand`` were computed
during a draw.

The pools of the comparison:

* PSP, :func:`bit_encryption_pool`: encryptions of bits under its own curve
  key, as (C1, C2 for bit 0, C2 for bit 1) in uncompressed encodings. C1 = rG
  and C2 = rY (+ G), with r fresh per item; a bit is encrypted by picking the
  C2 that matches, so the online cost is a byte copy.
* SP, :func:`randomizer_pool`: pairs (sG, sY) under the PSP's public key Y,
  the fresh SP randomness added to every blinded term.
* SP, :func:`dummy_pool`: two independent uniform points, the encoding of a
  dummy term (a term that cannot be zero, see :mod:`mpc.comparison.dgk`).

The joint-key side uses :attr:`mpc.elgamal.PublicKey.pool` (encryptions of
zero for re-randomisation and for the PSP's encrypted output bits).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from mpc.comparison import ec
from mpc.elgamal.curve import CurvePrivateKey, PointAtInfinityError

T = TypeVar("T")

__all__ = [
    "BitEncryption",
    "Pool",
    "PspPools",
    "SpPools",
    "bit_encryption_pool",
    "dummy_pool",
    "randomizer_pool",
]

BitEncryption = tuple[bytes, bytes, bytes]
"""(C1, C2 if the bit is 0, C2 if the bit is 1), each 65 bytes uncompressed."""


class Pool(Generic[T]):
    """Items made by ``make(count)``, drawn once each; refilled in idle time."""

    def __init__(self, make: Callable[[int], list[T]], target: int = 0, name: str = "pool") -> None:
        self._make = make
        self.target = target
        self.name = name
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.made = 0
        self.seconds = 0.0
        self.drawn = 0
        self.on_demand = 0

    def __len__(self) -> int:
        return len(self._items)

    def _produce(self, count: int) -> list[T]:
        t0 = time.perf_counter()
        items = self._make(count)
        dt = time.perf_counter() - t0
        with self._lock:
            self.made += len(items)
            self.seconds += dt
        return items

    def fill(self, count: int | None = None, chunk: int = 256) -> None:
        """Make ``count`` items now (default: up to the target), in this thread."""
        todo = self.target - len(self._items) if count is None else count
        while todo > 0:
            items = self._produce(min(chunk, todo))
            with self._lock:
                self._items.extend(items)
            todo -= len(items)

    def draw(self, count: int) -> list[T]:
        """``count`` items, removed for good; any shortfall is computed now."""
        with self._lock:
            take = min(count, len(self._items))
            out = [self._items.popleft() for _ in range(take)]
            self.drawn += count
        if take < count:
            extra = self._produce(count - take)
            with self._lock:
                self.on_demand += len(extra)
            out.extend(extra)
        if self._thread is not None and len(self._items) < self.target // 2:
            self._wake.set()
        return out

    @property
    def seconds_per_item(self) -> float | None:
        """Average cost of one item so far (None before any was made)."""
        return self.seconds / self.made if self.made else None

    def stats(self) -> dict[str, float | int | None]:
        return {
            "stock": len(self._items),
            "made": self.made,
            "seconds": round(self.seconds, 6),
            "us_per_item": None if not self.made else round(1e6 * self.seconds / self.made, 2),
            "drawn": self.drawn,
            "on_demand": self.on_demand,
        }

    def start(self, chunk: int = 64, idle: Callable[[], bool] | None = None) -> None:
        """Refill in a daemon thread: once below half the target, back up to the target.

        ``idle`` (optional) says whether the process has nothing better to do;
        the refill waits while it returns False, so that it uses idle time and
        does not compete with foreground work.
        """
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            refilling = True
            while not self._stop.is_set():
                n = len(self._items)
                if n < self.target // 2:
                    refilling = True
                if refilling and n < self.target and (idle is None or idle()):
                    items = self._produce(min(chunk, self.target - n))
                    with self._lock:
                        self._items.extend(items)
                    continue
                if n >= self.target:
                    refilling = False
                self._wake.wait(0.05 if refilling else 0.5)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name=f"{self.name}-refill", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the refill thread (the stock stays usable)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


# -- the pools of the comparison ---------------------------------------------------------


def bit_encryption_pool(key: CurvePrivateKey, target: int = 0) -> Pool[BitEncryption]:
    """The PSP's encryptions of bits under its own key: (rG, rY, rY + G) for fresh r.

    C2 = rY uses a comb of the public key (ephemeral r only), so the secret x
    never enters variable-time code.
    """
    y = key.public_key.to_bytes()

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
    """The SP's fresh randomness (sG, sY) under the PSP's public key (compressed bytes)."""

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
class PspPools:
    """What the PSP precomputes: encryptions of bits under its curve key."""

    key: CurvePrivateKey
    bits: Pool[BitEncryption] = field(init=False)

    def __post_init__(self) -> None:
        self.bits = bit_encryption_pool(self.key)

    def stats(self) -> dict[str, object]:
        return {"bit_encryptions": self.bits.stats()}


@dataclass
class SpPools:
    """What the SP precomputes: term randomizers (per PSP key) and dummy terms."""

    dummies: Pool[bytes] = field(default_factory=dummy_pool)
    _randomizers: dict[bytes, Pool[tuple[ec.Point, ec.Point]]] = field(default_factory=dict)

    def randomizers(self, public_key: bytes) -> Pool[tuple[ec.Point, ec.Point]]:
        """The randomizer pool for the PSP key ``public_key`` (created empty on first use)."""
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
