"""A stock of precomputed random items, each drawn once, refilled in idle time.

Raw building block (no networking): the joint key's encryptions of zero
(:class:`mpc.elgamal.scheme.ZeroPool`) and the comparison's randomness
(:mod:`mpc.comparison.pools`) are pools. A pool only moves work to idle time:
when it runs dry, a draw computes the shortfall on the spot, never reusing an
item, so results do not depend on it. Each pool records what it cost.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Pool(Generic[T]):
    """Items made by ``make(count)``, drawn once each; refilled in idle time."""

    chunk = 64
    """Items made per call of ``make`` by the refill thread."""

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

    def extend(self, items: Iterable[T]) -> None:
        """Add items made elsewhere (for example by a batch of worker processes)."""
        with self._lock:
            self._items.extend(items)

    def draw_one(self) -> T:
        """One item, removed for good (made now if the stock is empty)."""
        return self.draw(1)[0]

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

    def start(self, chunk: int | None = None, idle: Callable[[], bool] | None = None) -> None:
        """Refill in a daemon thread: once below half the target, back up to the target.

        ``idle`` (optional) says whether the process has nothing better to do;
        the refill waits while it returns False, so that it uses idle time and
        does not compete with foreground work.
        """
        if self._thread is not None:
            return
        self._stop.clear()
        chunk = chunk or self.chunk

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
