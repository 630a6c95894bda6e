"""Protocol "deliver": decrypt for a user, so that only that user reads the result.

The SP re-randomises the user's ciphertexts (so the PSP never sees a stored
ciphertext twice), sends them to the PSP (step ``ciphertexts``), and both
compute partial decryptions c1^(x_i). The SP hands its partials and the
ciphertexts to the user; the PSP keeps its partials in an outbox addressed to
that user alone (step ``ready`` tells the SP they are there) until the user
collects them. The user combines both partials locally.

Leakage: the SP sees nothing new (its own partials are useless without the
PSP's). The PSP sees fresh re-randomised ciphertexts and the user's id (the
user collects from it by certificate). Neither server sees the plaintext.

SP inputs: ``pk``, ``share``, ``ciphertexts`` (already re-randomised),
``run_crypto`` (async callable that runs a function in an executor).
PSP inputs: ``pk``, ``share``, ``outbox`` (Outbox), ``start`` (DeliverInputs),
``run_crypto``. SP result: its partials; PSP result: the number of partials.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mpc.elgamal import Ciphertext, KeyShare, PublicKey
from mpc.errors import AuthorizationError, EncodingError, NotFound, ParameterError, ProtocolError
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
from mpc.protocols.wire import (
    MAX_CIPHERTEXTS,
    ciphertext_batch,
    ciphertexts_from_batch,
    parse_message,
)
from mpc.v1 import steps_pb2

USER_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
"""A user id is a certificate name (:mod:`mpc.parties.certs`): the user collects by it."""
DELIVERY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_start(start: steps_pb2.DeliverInputs) -> steps_pb2.DeliverInputs:
    """PSP: refuse a delivery for no user, or with ids outside their bounds."""
    if not start.user_id or not start.delivery_id:
        raise EncodingError("deliver inputs must name the user and the delivery")
    if not USER_RE.fullmatch(start.user_id):
        raise ParameterError(
            f"deliver inputs: user_id {start.user_id[:80]!r} is not a user name (1..64 of A-Z, a-z, 0-9, '.', '_', '-')"
        )
    if not DELIVERY_RE.fullmatch(start.delivery_id):
        raise ParameterError(
            f"deliver inputs: delivery_id {start.delivery_id[:80]!r} must be 1..64 of A-Z, a-z, 0-9, '_', '-'"
        )
    return start


@dataclass
class _Parcel:
    user_id: str
    partials: list[int]
    expires: float


class Outbox:
    """The PSP's partial decryptions awaiting their user, by delivery id, with a time limit."""

    def __init__(self, ttl_s: float = 600.0) -> None:
        self.ttl_s = ttl_s
        self._parcels: dict[str, _Parcel] = {}

    def put(self, delivery_id: str, user_id: str, partials: Sequence[int]) -> None:
        self._expire()
        if delivery_id in self._parcels:
            raise ProtocolError(f"delivery {delivery_id[:8]} exists already")
        self._parcels[delivery_id] = _Parcel(user_id, list(partials), time.monotonic() + self.ttl_s)

    def collect(self, delivery_id: str, user_id: str) -> list[int]:
        """The partials of a delivery for ``user_id``; another user is refused."""
        self._expire()
        parcel = self._parcels.get(delivery_id)
        if parcel is None:
            raise NotFound(f"no delivery {delivery_id[:8]}... (unknown, or expired)")
        if parcel.user_id != user_id:
            raise AuthorizationError(f"delivery {delivery_id[:8]}... is not addressed to {user_id!r}")
        return parcel.partials

    def __len__(self) -> int:
        return len(self._parcels)

    def _expire(self) -> None:
        now = time.monotonic()
        for k in [k for k, p in self._parcels.items() if p.expires < now]:
            del self._parcels[k]


def partials_of(share: KeyShare, cts: Sequence[Ciphertext]) -> list[int]:
    """Step function: this holder's partial decryption of each ciphertext."""
    return share.partial_decrypt_many(cts)


class SpDeliver:
    async def run(self, ctx: SessionContext) -> object:
        pk: PublicKey = ctx.inputs["pk"]
        share: KeyShare = ctx.inputs["share"]
        cts: list[Ciphertext] = ctx.inputs["ciphertexts"]
        run_crypto: RunCrypto = ctx.inputs.get("run_crypto", run_inline)
        msg = steps_pb2.DeliverCiphertexts(ciphertexts=ciphertext_batch(pk, cts))
        own = asyncio.ensure_future(run_crypto(partials_of, share, cts))
        try:
            await ctx.send("psp", "ciphertexts", msg.SerializeToString())
            ready = parse_message(steps_pb2.DeliverReady, await ctx.receive("psp", "ready"), "delivery acknowledgement")
        except BaseException:
            own.cancel()
            raise
        if ready.count != len(cts):
            raise ProtocolError(f"PSP prepared {ready.count} partials for {len(cts)} ciphertexts")
        return await own


class PspDeliver:
    async def run(self, ctx: SessionContext) -> object:
        pk: PublicKey = ctx.inputs["pk"]
        share: KeyShare = ctx.inputs["share"]
        outbox: Outbox = ctx.inputs["outbox"]
        start: steps_pb2.DeliverInputs = ctx.inputs["start"]
        run_crypto: RunCrypto = ctx.inputs.get("run_crypto", run_inline)
        msg = parse_message(steps_pb2.DeliverCiphertexts, await ctx.receive("sp", "ciphertexts"), "delivery ciphertexts")
        if not 1 <= msg.ciphertexts.count <= MAX_CIPHERTEXTS:
            raise ParameterError(
                f"the SP asks to deliver {msg.ciphertexts.count} ciphertexts; this PSP delivers 1..{MAX_CIPHERTEXTS}"
            )
        cts = await run_crypto(ciphertexts_from_batch, pk, msg.ciphertexts)
        partials = await run_crypto(partials_of, share, cts)
        outbox.put(start.delivery_id, start.user_id, partials)
        await ctx.send("sp", "ready", steps_pb2.DeliverReady(count=len(partials)).SerializeToString())
        return len(partials)


@register_protocol
class Deliver(ProtocolSpec):
    name = "deliver"
    roles = ("sp", "psp")
    steps = (Step("ciphertexts", "sp", "psp"), Step("ready", "psp", "sp"))
    role_factories: ClassVar[dict[str, RoleFactory]] = {"sp": SpDeliver, "psp": PspDeliver}

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        require_responder(party, "a delivery")
        pk, share = party.require_key()
        start = check_start(parse_message(steps_pb2.DeliverInputs, raw, "deliver inputs"))
        return {"pk": pk, "share": share, "outbox": party.outbox, "start": start, "run_crypto": party.run_crypto}
