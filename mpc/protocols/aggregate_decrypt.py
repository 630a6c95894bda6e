"""Protocol "aggregate-decrypt": the SP and the PSP jointly decrypt an aggregate, to the SP.

For results that are public by design (the co-purchase counts C(X, Y) of
``crm.recommender.private_copurchase``): the SP holds ciphertexts that are the
homomorphic sum of many users' uploads, and both servers decrypt them, the
plaintext going to the SP only.

1. The SP starts the session with :data:`AggregateDecryptInputs` (``kind``: a
   label such as ``"copurchase"``; ``contributors``: how many uploads were
   summed; ``count``: how many ciphertexts). The PSP refuses an aggregate of
   fewer than ``min_contributors`` uploads (its policy, default
   :data:`DEFAULT_MIN_CONTRIBUTORS`).
2. Step ``ciphertexts`` (SP -> PSP): the aggregate ciphertexts. The PSP checks
   their number against the start message and computes its partial
   decryptions c1^(x_PSP); the SP computes its own meanwhile.
3. Step ``partials`` (PSP -> SP): the PSP's partials. The SP combines both
   and gets the plaintexts; a partial that does not belong to its ciphertext
   is a DecryptionError.

Leakage: the SP learns the aggregate plaintexts (the declared output); the
PSP sees the aggregate ciphertexts, the label and the sizes, never a
plaintext (it never receives the SP's partials). The PSP cannot check that
the ciphertexts really are a sum of ``contributors`` uploads: the servers are
semi-honest (DESIGN 2). See docs/protocols/copurchase.md.

SP inputs: ``pk``, ``share``, ``ciphertexts``, optional ``run_crypto``.
PSP inputs: ``pk``, ``share``, ``start`` (an :data:`AggregateDecryptInputs`),
optional ``min_contributors``, ``run_crypto``. SP result: the plaintexts
(ints in [0, N)), in order. PSP result: an :class:`AggregateRecord` (what it
helped decrypt, for its log).

The messages are in ``proto/mpc/v1/aggregate_decrypt.proto``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mpc.elgamal import Ciphertext, KeyShare, PublicKey, combine_many
from mpc.errors import EncodingError, ParameterError, ProtocolError
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
    element_batch,
    elements_from_batch,
    parse_message,
)
from mpc.v1.aggregate_decrypt_pb2 import (
    AggregateDecryptCiphertexts,
    AggregateDecryptInputs,
    AggregateDecryptPartials,
)

__all__ = [
    "DEFAULT_MIN_CONTRIBUTORS",
    "MAX_CIPHERTEXTS",
    "AggregateDecrypt",
    "AggregateDecryptCiphertexts",
    "AggregateDecryptInputs",
    "AggregateDecryptPartials",
    "AggregateRecord",
    "check_start",
    "psp_partials",
    "sp_combine",
    "start_message",
]

log = logging.getLogger("mpc.protocols.aggregate_decrypt")

DEFAULT_MIN_CONTRIBUTORS = 10
"""The PSP helps decrypt only a sum of at least this many uploads (an aggregate of
one upload is that user's data in the clear)."""

KIND_RE = re.compile(r"^[a-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class AggregateRecord:
    """What the PSP helped decrypt (its result, for its log): label and sizes only."""

    kind: str
    contributors: int
    count: int


def start_message(kind: str, contributors: int, count: int) -> Any:
    """The session's start message (send it in StartSession, or pass it as the PSP's ``start``)."""
    return AggregateDecryptInputs(kind=kind, contributors=contributors, count=count)


def check_start(start: Any, min_contributors: int = DEFAULT_MIN_CONTRIBUTORS) -> AggregateRecord:
    """Step function (PSP): validate the start message against the PSP's policy
    (``min_contributors``, its config's ``aggregate_min_contributors``) and bounds."""
    if not KIND_RE.match(start.kind):
        raise EncodingError("aggregate kind must be 1..32 characters of a-z, 0-9, _ and -")
    if not 1 <= start.count <= MAX_CIPHERTEXTS:
        raise ParameterError(
            f"aggregate {start.kind!r}: the SP proposes count = {start.count} ciphertexts; "
            f"this PSP decrypts 1..{MAX_CIPHERTEXTS} in one aggregate"
        )
    if start.contributors < min_contributors:
        raise ProtocolError(
            f"aggregate {start.kind!r} sums contributors = {start.contributors} upload(s); this PSP decrypts "
            f"only sums of at least {min_contributors} (a smaller sum exposes the few users in it; "
            "config key 'aggregate_min_contributors')"
        )
    return AggregateRecord(start.kind, start.contributors, start.count)


def psp_partials(
    pk: PublicKey, share: KeyShare, record: AggregateRecord, raw: bytes
) -> tuple[bytes, int]:
    """Step function (PSP): decode the ``ciphertexts`` message; its ``partials`` message and size."""
    msg = parse_message(AggregateDecryptCiphertexts, raw, "aggregate ciphertexts")
    cts = ciphertexts_from_batch(pk, msg.ciphertexts, "aggregate ciphertexts")
    if len(cts) != record.count:
        raise ProtocolError(
            f"the SP announced {record.count} aggregate ciphertexts and sent {len(cts)}"
        )
    partials = share.partial_decrypt_many(cts)
    out = AggregateDecryptPartials(partials=element_batch(pk.params, partials))
    return out.SerializeToString(), len(partials)


def sp_combine(
    pk: PublicKey, cts: Sequence[Ciphertext], own: Sequence[int], raw: bytes
) -> list[int]:
    """Step function (SP): decode the PSP's ``partials`` message and decrypt with both partials."""
    msg = parse_message(AggregateDecryptPartials, raw, "aggregate partials")
    theirs = elements_from_batch(pk.params, msg.partials, "aggregate partials")
    if len(theirs) != len(cts):
        raise ProtocolError(f"the PSP sent {len(theirs)} partials for {len(cts)} ciphertexts")
    return combine_many(cts, [own, theirs])


class SpAggregateDecrypt:
    async def run(self, ctx: SessionContext) -> object:
        pk: PublicKey = ctx.inputs["pk"]
        share: KeyShare = ctx.inputs["share"]
        cts: list[Ciphertext] = list(ctx.inputs["ciphertexts"])
        run_crypto: RunCrypto = ctx.inputs.get("run_crypto", run_inline)
        if not cts:
            raise ProtocolError("nothing to decrypt: no aggregate ciphertexts")
        msg = await run_crypto(
            lambda: AggregateDecryptCiphertexts(
                ciphertexts=ciphertext_batch(pk, cts)
            ).SerializeToString()
        )
        own = asyncio.ensure_future(run_crypto(share.partial_decrypt_many, cts))
        try:
            await ctx.send("psp", "ciphertexts", msg)
            raw = await ctx.receive("psp", "partials")
            mine = await own
        except BaseException:
            own.cancel()
            raise
        return await run_crypto(sp_combine, pk, cts, mine, raw)


class PspAggregateDecrypt:
    async def run(self, ctx: SessionContext) -> object:
        pk: PublicKey = ctx.inputs["pk"]
        share: KeyShare = ctx.inputs["share"]
        minimum = int(ctx.inputs.get("min_contributors", DEFAULT_MIN_CONTRIBUTORS))
        run_crypto: RunCrypto = ctx.inputs.get("run_crypto", run_inline)
        record = check_start(ctx.inputs["start"], minimum)
        raw = await ctx.receive("sp", "ciphertexts")
        reply, count = await run_crypto(psp_partials, pk, share, record, raw)
        await ctx.send("sp", "partials", reply)
        log.info(
            "psp: helped decrypt aggregate %r: %d ciphertexts, %d contributors",
            record.kind,
            count,
            record.contributors,
        )
        return record


@register_protocol
class AggregateDecrypt(ProtocolSpec):
    name = "aggregate-decrypt"
    roles = ("sp", "psp")
    steps = (Step("ciphertexts", "sp", "psp"), Step("partials", "psp", "sp"))
    role_factories: ClassVar[dict[str, RoleFactory]] = {
        "sp": SpAggregateDecrypt,
        "psp": PspAggregateDecrypt,
    }

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        require_responder(party, "an aggregate decryption")
        pk, share = party.require_key()
        start = parse_message(AggregateDecryptInputs, raw, "aggregate-decrypt inputs")
        minimum = getattr(
            getattr(party, "config", None), "aggregate_min_contributors", DEFAULT_MIN_CONTRIBUTORS
        )
        check_start(start, minimum)  # refuse at once, before acknowledging the session
        return {
            "pk": pk,
            "share": share,
            "start": start,
            "min_contributors": minimum,
            "run_crypto": party.run_crypto,
        }
