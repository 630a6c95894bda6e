"""Protocol "keygen": joint ElGamal key generation between the SP and the PSP.

Steps (each holder sends both): ``commit`` then ``reveal``; see
``mpc.elgamal.keygen`` for the maths and docs/keygen.md for what it assures.
Leakage: each server learns the other's public share h_i, nothing else.

Role inputs: ``params`` (GroupParams). Result: (PublicKey, KeyShare).
"""

from __future__ import annotations

from typing import ClassVar

from mpc.elgamal import Commitment, KeygenHolder, Proof, Reveal
from mpc.elgamal.params import GroupParams
from mpc.elgamal.scheme import element_from_bytes, element_to_bytes
from mpc.errors import EncodingError, KeyGenerationError
from mpc.protocol import ProtocolSpec, RoleFactory, SessionContext, Step, register_protocol
from mpc.protocols.wire import parse_message
from mpc.v1 import steps_pb2


def encode_commit(c: Commitment) -> bytes:
    return steps_pb2.KeygenCommit(digest=c.digest).SerializeToString()


def decode_commit(party: str, data: bytes) -> Commitment:
    msg = parse_message(steps_pb2.KeygenCommit, data, f"commitment of {party!r}")
    if len(msg.digest) != 32:
        raise EncodingError(f"commitment of {party!r} must be 32 bytes, got {len(msg.digest)}")
    return Commitment(party, msg.digest)


def encode_reveal(params: GroupParams, r: Reveal) -> bytes:
    return steps_pb2.KeygenReveal(
        h=element_to_bytes(params, r.h), nonce=r.nonce, proof=r.proof.to_bytes(params)
    ).SerializeToString()


def decode_reveal(params: GroupParams, party: str, data: bytes) -> Reveal:
    msg = parse_message(steps_pb2.KeygenReveal, data, f"reveal of {party!r}")
    try:
        h = element_from_bytes(params, msg.h, f"public share of {party!r}")
        proof = Proof.from_bytes(params, msg.proof)
    except EncodingError as exc:
        raise KeyGenerationError(str(exc)) from exc
    return Reveal(party, h, msg.nonce, proof)


class KeygenRole:
    """Either holder's side: the two roles are symmetric."""

    async def run(self, ctx: SessionContext) -> object:
        params: GroupParams = ctx.inputs["params"]
        peer = next(r for r in ctx.protocol.roles if r != ctx.role)
        holder = KeygenHolder(params, ctx.role, ctx.session.encode())
        await ctx.send(peer, "commit", encode_commit(holder.commit()))
        holder.receive_commitments([decode_commit(peer, await ctx.receive(peer, "commit"))])
        await ctx.send(peer, "reveal", encode_reveal(params, holder.reveal()))
        reveal = decode_reveal(params, peer, await ctx.receive(peer, "reveal"))
        return holder.finish([reveal])


@register_protocol
class Keygen(ProtocolSpec):
    name = "keygen"
    roles = ("sp", "psp")
    steps = (
        Step("commit", "sp", "psp"),
        Step("commit", "psp", "sp"),
        Step("reveal", "sp", "psp"),
        Step("reveal", "psp", "sp"),
    )
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": KeygenRole, "psp": KeygenRole}
