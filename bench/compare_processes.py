"""The comparison between two processes over gRPC with mTLS (``bench_compare --processes``).

The in-process modes of :mod:`bench.compare` time the protocol's
work; this one times a deployment: the PSP is a :class:`PartyServer` in a
child process, the SP a :class:`PartyServer` in this one, the two talk over
loopback gRPC with mutual TLS (certificates from :func:`write_deployment`),
and each batch is a ``compare`` session the SP starts (pipelined in
``chunks`` parts), one per method and output; every row says its ``method``.
Both servers' pools are filled before the clock starts, as idle time would:
encryptions of zero under the joint key at both and, only when method "dgk" is
measured, the SP's bit encryptions under its curve key and the PSP's term
randomizers for that key and dummies. A small untimed session per method
first builds the tables (and for "gc" the base OTs, once per pair of
servers). Results with output "encrypted" are checked on a sample with both
key shares (read from the data directories).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mpc.protocols.compare as cmp
from mpc.comparison.pools import PspPools, SpPools
from mpc.elgamal import combine
from mpc.errors import MpcError
from mpc.parties.config import PartyConfig, load_keys, load_or_create_curve_key
from mpc.parties.deploy import write_deployment
from mpc.parties.server import PartyServer

__all__ = ["run_processes"]

_WARM = 4
"""Comparisons in the untimed warm-up session of each method."""


def _psp_child(config: str, sp_key: str, terms: int, joint: int, ready: str) -> None:
    """The PSP: a party server with its pools filled, serving until terminated."""

    async def main() -> None:
        server = PartyServer(PartyConfig.load(Path(config)))
        pools = PspPools()
        server.compare_pools = pools  # what protocol "compare" answers with
        await server.start()
        await server.key_ready.wait()
        if terms:  # method "dgk" only
            pools.dummies.fill(terms)
            pools.randomizers(bytes.fromhex(sp_key)).fill(terms)
        server.pk.pool.fill(joint)
        Path(ready).write_text("ready")
        await asyncio.Event().wait()

    asyncio.run(main())


async def _sp_side(
    dep: Any,
    l_bits: int,
    batch: int,
    chunks: int,
    outputs: list[str],
    methods: list[str],
    ready: Path,
    log: Any,
) -> list[dict[str, Any]]:
    server = PartyServer(PartyConfig.load(dep.sp_config))
    await server.start()
    try:
        await asyncio.wait_for(server.key_ready.wait(), 120)
        pk, share = server.require_key()
        rng = random.Random(1)
        xs = [rng.getrandbits(l_bits) for _ in range(batch)]
        ys = [x if k % 10 == 0 else rng.getrandbits(l_bits) for k, x in enumerate(xs)]
        log(f"encrypting {2 * batch} inputs ...")
        cx, cy = [pk.encrypt(v) for v in xs], [pk.encrypt(v) for v in ys]
        pools = SpPools(server.curve_key)
        warm = [cmp.CompareParams(l_bits, _WARM, cmp.OUTPUT_PSP, method=m) for m in methods]
        plans = [
            cmp.CompareParams(l_bits, batch, output, chunks=chunks, method=m)
            for m in methods
            for output in outputs
        ]
        pools.bits.fill(
            sum(p.count * p.plan.levels for p in warm + plans if p.method == cmp.METHOD_DGK)
        )
        pk.pool.fill(sum(p.layout(pk).count_plaintexts(p.count) + 8 * p.chunks for p in warm + plans))
        for _ in range(3000):  # the PSP fills its pools once it has the joint key
            if ready.exists():
                break
            await asyncio.sleep(0.1)
        else:
            raise MpcError("the PSP did not get ready")
        for params in warm:  # untimed: tables, and for "gc" the base OTs of this pair of servers
            await server.start_session(
                "compare",
                params.to_proto(),
                {"pk": pk, "share": share, "params": params, "xs": cx[:_WARM], "ys": cy[:_WARM],
                 "pools": pools, "run_crypto": server.run_crypto},
                timeout=600,
            )
        runs = []
        for params in plans:
            output = params.output
            t0 = time.perf_counter()
            out = await server.start_session(
                "compare",
                params.to_proto(),
                {"pk": pk, "share": share, "params": params, "xs": cx, "ys": cy, "pools": pools,
                 "run_crypto": server.run_crypto},
                timeout=600,
            )
            wall = time.perf_counter() - t0
            checked = 0
            if output == cmp.OUTPUT_ENCRYPTED:
                keys = load_keys(Path(dep.root) / "psp", pk.params)
                assert keys is not None and out is not None
                psp_share = keys[1]
                for k in random.Random(7).sample(range(batch), min(64, batch)):
                    got = combine(out[k], [share.partial_decrypt(out[k]), psp_share.partial_decrypt(out[k])])
                    if got != int(xs[k] >= ys[k]):
                        raise MpcError(f"comparison {k} differs from plaintext")
                    checked += 1
            runs.append({
                "method": params.method, "output": output, "mode": "processes", "chunks": chunks,
                "server_workers": server.config.workers,
                "ms_per_comparison": round(1000 * wall / batch, 4), "checked": checked,
            })
            log(
                f"  {params.method:3s} {output:9s} two processes, {chunks} parts: "
                f"{1000 * wall / batch:.3f} ms/cmp"
            )
        return runs
    finally:
        await server.stop(grace=0.5)


def run_processes(
    bits: int,
    l_bits: int,
    batch: int,
    chunks: int,
    outputs: list[str],
    log: Any,
    workers: int = 2,
    methods: Sequence[str] = (cmp.METHOD_GC, cmp.METHOD_DGK),
) -> list[dict[str, Any]]:
    """One batch per method and output between an SP (here) and a PSP (child process) over
    gRPC (``bits``: the joint key's size; ``workers``: each server's crypto threads). Each
    row has the ``method`` and ``output`` it measured; DGK pools are filled only if
    ``methods`` has "dgk"."""
    methods = list(dict.fromkeys(methods))
    with tempfile.TemporaryDirectory(prefix="mpc-bench-compare-") as tmp:
        dep = write_deployment(Path(tmp) / "dep", users=["bench"], key_bits=bits, deadline_s=600.0, workers=workers)
        sp_key = load_or_create_curve_key(PartyConfig.load(dep.sp_config).data_dir)
        plan = cmp.CompareParams(l_bits, batch, method=cmp.METHOD_DGK).plan
        dgk = cmp.METHOD_DGK in methods
        terms = (len(outputs) * batch + _WARM) * plan.terms if dgk else 0
        ready = Path(tmp) / "psp.ready"
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(
            target=_psp_child,
            args=(str(dep.psp_config), sp_key.public_key.to_bytes().hex(),
                  terms, batch * len(outputs) * len(methods), str(ready)),
            daemon=True,
        )
        child.start()
        try:
            return asyncio.run(_sp_side(dep, l_bits, batch, chunks, outputs, methods, ready, log))
        finally:
            child.terminate()
            child.join(10)
