"""Batch encryption and partial decryption over several cores.

Fixed-base exponentiation is a Python loop of gmpy2 multiplications, which hold
the GIL, so batch *encryption* runs in worker processes, each with its own
tables (built once, in the worker's initializer). Partial *decryption* is one
plain powmod per ciphertext, which gmpy2's ``powmod_base_list`` runs with the
GIL released, so threads suffice there.

Workers are started with the ``spawn`` method: they never inherit gRPC state
(gRPC and fork do not mix), so a party process may create a batch pool at any
time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

import gmpy2
from gmpy2 import f_mod, mpz

from mpc.elgamal.fixedbase import FixedBaseTable
from mpc.elgamal.scheme import Ciphertext, KeyShare, PublicKey

_worker_state: dict[str, object] = {}


def _init_worker(n: int, g: int, h: int, exp_bits: int, window: int) -> None:
    n2 = mpz(n) * mpz(n)
    _worker_state["n"] = mpz(n)
    _worker_state["n2"] = n2
    _worker_state["exp_bits"] = exp_bits
    _worker_state["tg"] = FixedBaseTable(g, n2, exp_bits, window)
    _worker_state["th"] = FixedBaseTable(h, n2, exp_bits, window)


def _encrypt_chunk(ms: Sequence[int]) -> list[tuple[bytes, bytes]]:
    n = _worker_state["n"]
    n2 = _worker_state["n2"]
    bits = _worker_state["exp_bits"]
    tg: FixedBaseTable = _worker_state["tg"]  # type: ignore[assignment]
    th: FixedBaseTable = _worker_state["th"]  # type: ignore[assignment]
    out = []
    for m in ms:
        r = secrets.randbits(bits)  # type: ignore[arg-type]
        c1 = tg.pow(r)
        c2 = f_mod(th.pow(r) * (1 + (m % n) * n), n2)
        out.append((gmpy2.to_binary(c1), gmpy2.to_binary(c2)))
    return out


def _warm(_: int) -> int:
    return os.getpid()


class BatchEncryptor:
    """Encrypt many plaintexts (or zeros for the pool) using every core.

    Use as a context manager; the pool of worker processes (and their tables)
    lives until :meth:`close`.
    """

    def __init__(self, pk: PublicKey, workers: int | None = None, chunk: int = 16) -> None:
        self.pk = pk
        self.workers = workers or os.cpu_count() or 1
        self.chunk = chunk
        p = pk.params
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(int(p.n), int(p.g), int(pk.h), p.exponent_bits, pk.window),
        )

    def warm_up(self) -> None:
        """Start every worker and build its tables now rather than on the first batch."""
        list(self._pool.map(_warm, range(self.workers * 2)))

    def encrypt(self, ms: Sequence[int]) -> list[Ciphertext]:
        ms = [int(m) for m in ms]
        if not ms:
            return []
        size = max(1, min(self.chunk, -(-len(ms) // self.workers)))
        chunks = [ms[i : i + size] for i in range(0, len(ms), size)]
        out: list[Ciphertext] = []
        for part in self._pool.map(_encrypt_chunk, chunks):
            out.extend(
                Ciphertext(self.pk, gmpy2.from_binary(a), gmpy2.from_binary(b)) for a, b in part
            )
        return out

    def fill_pool(self, count: int) -> None:
        """Add ``count`` fresh encryptions of zero to the key's re-randomisation pool."""
        self.pk.pool.extend((c.c1, c.c2) for c in self.encrypt([0] * count))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchEncryptor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def partial_decrypt_batch(
    share: KeyShare, cts: Sequence[Ciphertext], workers: int | None = None, executor: Executor | None = None
) -> list[mpz]:
    """Partial decryptions of many ciphertexts, split over threads (GIL released in gmpy2)."""
    if not cts:
        return []
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(cts) < 2:
        return share.partial_decrypt_many(cts)
    size = -(-len(cts) // workers)
    parts = [list(cts[i : i + size]) for i in range(0, len(cts), size)]
    own = executor is None
    ex = executor or ThreadPoolExecutor(max_workers=workers)
    try:
        results = list(ex.map(share.partial_decrypt_many, parts))
    finally:
        if own:
            ex.shutdown()
    return [d for part in results for d in part]
