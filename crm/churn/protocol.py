"""Protocol ``churn-score``: the SP's tree against customers' encrypted attributes (one chunk).

Steps (one message each, for the whole chunk of customers):

1. ``nodes`` (SP -> PSP): every customer's flipped, padded tree (terms per
   node, heap order) and masked leaf table (:func:`crm.churn.private.sp_nodes`).
2. ``sealed`` (PSP -> SP): the PSP walks each tree and seals (position, entry)
   per customer to the admin's X25519 key; the SP keeps the box for the admin.

Session inputs (SP -> PSP, :class:`~mpc.v1.churn_pb2.ChurnScoreInputs`): depth,
terms per node, number of customers, the admin's public key and the chunk
name (the sealed box's associated data). The maths and the leakage statement
are in :mod:`crm.churn.private` and docs/protocols/churn-score.md.

SP inputs: ``spec`` (:class:`~crm.churn.private.TreeSpec`), ``layout``,
``records`` (the customers' uploads) and ``seed`` (mask seed), or
``prepared`` = (nodes, tables) computed beforehand (the service computes them
in worker processes); optional ``run_crypto``. PSP inputs: ``curve_key``,
``depth``, ``terms``, ``count``, ``admin_key``, ``chunk``. Results: SP, the
sealed box; PSP, None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from crm.churn import private
from mpc.errors import EncodingError, ParameterError
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
from mpc.protocols.wire import parse_message
from mpc.transport import DEFAULT_MAX_PAYLOAD
from mpc.v1 import churn_pb2

__all__ = ["ChurnScore", "aad", "psp_inputs", "psp_seal", "sp_prepare", "start_inputs"]

MAX_CHUNK = 4096
"""Customers in one session at most (a chunk of 4096 at depth 6 is some 230 MB of nodes)."""
MAX_TERMS = 64
"""Terms per node at most (a 64-bit feature in 4-bit digits needs 17)."""
MAX_NODES_BYTES = DEFAULT_MAX_PAYLOAD
"""The ``nodes`` message the sizes of a session start imply may not exceed what the transport takes."""


def nodes_bytes(depth: int, terms: int, count: int) -> int:
    """Size of the ``nodes`` message: every customer's 2^depth - 1 nodes of ``terms`` terms and
    its table of 2^depth entries."""
    return count * ((2**depth - 1) * terms * private.W + 2**depth * private.ENTRY_BYTES)


def aad(chunk: str, count: int) -> bytes:
    """Associated data of a chunk's sealed box: a box cannot be passed off as another chunk's."""
    return f"mpc-crm/churn-score|{chunk}|{count}".encode()


def sp_prepare(
    spec: private.TreeSpec,
    layout: private.UploadLayout,
    records: Sequence[bytes],
    seed: bytes,
    rnd: private.SpRandomness,
) -> tuple[bytes, bytes]:
    """Every customer's nodes and masked table for one chunk (customer k uses mask index k)."""
    nodes, tables = [], []
    for k, record in enumerate(records):
        n, table = private.sp_nodes(spec, layout, record, rnd)
        nodes.append(n)
        tables.append(private.mask_table(table, seed, k))
    return b"".join(nodes), b"".join(tables)


def start_inputs(
    spec: private.TreeSpec, layout: private.UploadLayout, count: int, admin_key: bytes, chunk: str
) -> churn_pb2.ChurnScoreInputs:
    return churn_pb2.ChurnScoreInputs(
        depth=spec.depth, terms=layout.max_terms, count=count, admin_key=admin_key, chunk=chunk
    )


def psp_inputs(raw: bytes) -> dict[str, Any]:
    """The PSP's inputs from the session start (its curve key is added by the server).

    The PSP has no copy of the tree (only the SP has ``churn_model``), so it bounds what the
    SP proposes: depth, terms per node, customers, and the nodes message they imply."""
    msg = parse_message(churn_pb2.ChurnScoreInputs, raw, "churn-score inputs")
    if not 1 <= msg.depth <= private.MAX_DEPTH:
        raise ParameterError(f"churn-score: the SP proposes tree depth = {msg.depth}, outside [1, {private.MAX_DEPTH}]")
    if not 1 <= msg.terms <= MAX_TERMS:
        raise ParameterError(f"churn-score: the SP proposes terms = {msg.terms} per node, outside [1, {MAX_TERMS}]")
    if not 1 <= msg.count <= MAX_CHUNK:
        raise ParameterError(f"churn-score: the SP proposes count = {msg.count} customers; a chunk holds 1..{MAX_CHUNK}")
    size = nodes_bytes(msg.depth, msg.terms, msg.count)
    if size > MAX_NODES_BYTES:
        raise ParameterError(
            f"churn-score: depth = {msg.depth}, terms = {msg.terms} and count = {msg.count} make a nodes "
            f"message of {size >> 20} MiB, more than {MAX_NODES_BYTES >> 20} MiB: a smaller chunk"
        )
    if len(msg.admin_key) != 32:
        raise EncodingError(f"admin key of {len(msg.admin_key)} bytes; an X25519 key has 32")
    if not 0 < len(msg.chunk) <= 128:
        raise EncodingError("chunk name must be 1..128 characters")
    return {
        "depth": msg.depth,
        "terms": msg.terms,
        "count": msg.count,
        "admin_key": bytes(msg.admin_key),
        "chunk": msg.chunk,
    }


def psp_seal(inputs: dict[str, Any], payload: bytes) -> bytes:
    """The PSP's whole step: walk every tree, seal the results to the admin."""
    msg = parse_message(churn_pb2.ChurnNodes, payload, "churn-score nodes")
    results = private.psp_walk_many(
        inputs["depth"],
        inputs["terms"],
        inputs["count"],
        msg.nodes,
        msg.tables,
        inputs["curve_key"],
    )
    box = private.seal(inputs["admin_key"], results, aad(inputs["chunk"], inputs["count"]))
    return churn_pb2.ChurnSealed(sealed=box).SerializeToString()


class SpChurnScore:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        rc: RunCrypto = i.get("run_crypto") or run_inline
        prepared = i.get("prepared")
        if prepared is None:
            prepared = await rc(
                sp_prepare, i["spec"], i["layout"], i["records"], i["seed"], i["rnd"]
            )
        nodes, tables = prepared
        await ctx.send(
            "psp", "nodes", churn_pb2.ChurnNodes(nodes=nodes, tables=tables).SerializeToString()
        )
        reply = parse_message(
            churn_pb2.ChurnSealed, await ctx.receive("psp", "sealed"), "churn-score sealed"
        )
        return bytes(reply.sealed)


class PspChurnScore:
    async def run(self, ctx: SessionContext) -> object:
        i = ctx.inputs
        rc: RunCrypto = i.get("run_crypto") or run_inline
        payload = await ctx.receive("sp", "nodes")
        await ctx.send("sp", "sealed", await rc(psp_seal, i, payload))
        return None


@register_protocol
class ChurnScore(ProtocolSpec):
    name = "churn-score"
    roles = ("sp", "psp")
    steps = (Step("nodes", "sp", "psp"), Step("sealed", "psp", "sp"))
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpChurnScore, "psp": PspChurnScore}

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        require_responder(party, "churn scoring")
        inputs = psp_inputs(raw)
        inputs["curve_key"] = party.curve_key
        inputs["run_crypto"] = party.run_crypto
        return inputs
