"""Issue 12's attacks on the service boundary, written as a hostile user or key holder would.

Each attack uses the raw wire (a user's own certificate, hand-made messages) and
only names that existed before the fix, so the same file runs against the old
code: there the decryption-oracle tests read the joint key's secret, and the
keygen test gets a share with a component of order 2 accepted. Here each is
refused, with a clear status and nothing stored.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

import gmpy2
import grpc
import pytest
from gmpy2 import mpz

from mpc.elgamal import KeyShare, PublicKey, combine
from mpc.elgamal.keygen import (
    KeygenHolder,
    Proof,
    Reveal,
    check_reveal,
    commitment_digest,
    proof_context,
    verify_knowledge,
)
from mpc.elgamal.keygen import challenge as keygen_challenge
from mpc.elgamal.params import params_for
from mpc.errors import EncodingError, KeyGenerationError, MpcError
from mpc.parties.user import UserClient
from mpc.v1 import user_pb2

if TYPE_CHECKING:
    from conftest import Parties

DEADLINE_S = 5.0


def status(exc: BaseException) -> grpc.StatusCode | None:
    return getattr(exc, "status", None)


def joint_x(parties: Parties) -> int:
    """What the attacks try to learn: the sum of the two servers' key shares."""
    assert parties.sp.share is not None and parties.psp.share is not None
    return int(parties.sp.share.x) + int(parties.psp.share.x)


def raw_upload(pk: PublicKey, kind: str, c1: int, c2: int, **fields: int) -> list[user_pb2.UploadChunk]:
    """One hand-made ciphertext (c1, c2) as a user would stream it, with whatever proof fields
    ``fields`` adds (the old wire had none)."""
    e = pk.params.element_bytes
    data = int(c1).to_bytes(e, "big") + int(c2).to_bytes(e, "big")
    extra = fields.pop("proof", b"")
    return [
        user_pb2.UploadChunk(
            kind=kind, count=1, total_size=len(data) + len(extra), data=data + extra, **fields
        )
    ]


async def try_oracle(parties: Parties, user: UserClient, c1: int, c2: int = 1) -> int | None:
    """Upload (c1, c2) as kind "values" without a proof, and have it delivered.

    Returns the plaintext the servers' joint decryption gives back (the oracle
    answer), or None when the SP refuses the upload; asserts that a refusal is
    INVALID_ARGUMENT and stores nothing."""
    pk = await user.public_key()
    store = parties.sp.store
    assert store is not None
    before = store.fingerprint()
    try:
        await user.sp.stream("Upload", raw_upload(pk, "values", c1, c2), timeout=DEADLINE_S)
    except MpcError as exc:
        assert status(exc) is grpc.StatusCode.INVALID_ARGUMENT
        assert store.fingerprint() == before
        return None
    return (await user.fetch("values"))[0]


async def test_oracle_reads_minus_x_mod_n(parties: Parties) -> None:
    """(1 + N, 1) decrypts to -x mod N: refused now."""
    alice = parties.user("alice")
    pk = await alice.public_key()
    n = int(pk.params.n)
    got = await try_oracle(parties, alice, 1 + n)
    assert got != (-joint_x(parties)) % n and got != (-2 * joint_x(parties)) % n
    assert got is None, "an unproven upload was stored and decrypted"


async def test_oracle_of_own_base_and_parity(parties: Parties) -> None:
    """c1 = u of the attacker's choosing (u^-x), and c1 = N^2 - 1 (x mod 2): refused now."""
    alice = parties.user("alice")
    pk = await alice.public_key()
    n2 = int(pk.params.n2)
    u = int(pk.params.g) * 3 % n2
    assert await try_oracle(parties, alice, u) is None
    assert await try_oracle(parties, alice, n2 - 1) is None


async def test_replayed_ciphertext_of_another_user_is_refused(
    parties: Parties, caplog: pytest.LogCaptureFixture
) -> None:
    """Bob's stored record, uploaded by alice (from a leaked backup, say), is not decrypted for her."""
    bob, alice = parties.user("bob"), parties.user("alice")
    secret = 271828
    await bob.upload("values", [secret])
    store = parties.sp.store
    assert store is not None
    rec = store.get_record("bob", "values")
    assert rec is not None
    pk = await alice.public_key()
    c = pk.ciphertext_from_bytes(rec.blob)
    assert await try_oracle(parties, alice, int(c.c1), int(c.c2)) is None
    # With bob's proof replayed too: the proof is bound to bob, so it does not hold for alice.
    from mpc.elgamal.proofs import UploadContext, encrypt_proven, proof_bytes

    cts, proofs = encrypt_proven(pk, [secret], UploadContext(pk, "bob", "values", 0).digest())
    reqs = raw_upload(pk, "values", int(cts[0].c1), int(cts[0].c2), proof=proofs, proof_width=proof_bytes(pk.params))
    before = store.fingerprint()
    with pytest.raises(EncodingError) as info:
        await alice.sp.stream("Upload", reqs, timeout=DEADLINE_S)
    assert status(info.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "does not verify" in str(info.value)
    assert store.fingerprint() == before
    assert any(
        "/mpc.v1.UserGateway/Upload" in r.getMessage() and "does not verify" in r.getMessage() for r in caplog.records
    ), "the refusal is logged"


async def test_order_two_component_in_a_proven_upload_leaks_nothing(parties: Parties) -> None:
    """c1 = -g^r: the uploader knows r, so the proof (on squares) holds; the delivery still
    decrypts to the uploaded value and tells the uploader nothing about the key shares."""
    from mpc.elgamal.proofs import UploadContext, proof_bytes, prove

    alice = parties.user("alice")
    pk = await alice.public_key()
    n2 = pk.params.n2
    m = 4242
    r = pk.random_exponent()
    honest = pk.encrypt(m, r)
    twisted = type(honest)(pk, gmpy2.f_mod(-honest.c1, n2), honest.c2)
    proof = prove(pk, twisted, r, UploadContext(pk, "alice", "values", 0).digest(), 0)
    reqs = raw_upload(pk, "values", int(twisted.c1), int(twisted.c2), proof=proof, proof_width=proof_bytes(pk.params))
    await alice.sp.stream("Upload", reqs, timeout=DEADLINE_S)
    assert await alice.fetch("values") == [m]


def _hostile_reveal(holder: KeygenHolder) -> Reveal:
    """The holder reveals a = -g^x and retries its proof until the challenge is even, as
    the issue describes; the commitment (to -g^x) was sent before."""
    p = holder.params
    a = gmpy2.f_mod(-holder.share.root if hasattr(holder.share, "root") else -holder.share.h, p.n2)
    ctx = proof_context(holder.session, holder.party)
    for _ in range(200):
        k = mpz(secrets.randbits(p.exponent_bits + 256))
        t = gmpy2.powmod(p.g, k, p.n2)
        s = k + keygen_challenge(p, a, t, ctx) * holder.share.x
        if verify_knowledge(p, a, Proof(t, s), ctx):
            return Reveal(holder.party, a, holder.nonce, Proof(t, s))
    raise AssertionError("no accepted proof in 200 tries")


@pytest.mark.parametrize("bits", [1024, 2048])
def test_keygen_share_with_component_of_order_two(bits: int) -> None:
    """A share a = -g^x is refused where it is visible (Jacobi symbol -1, RSA-1024) and has
    no effect where it is not (RSA-2048): the joint key is g^(2x) either way."""
    p = params_for(bits)
    session = b"hostile-keygen"
    honest = KeygenHolder(p, "sp", session, KeyShare(p, mpz(secrets.randbits(p.exponent_bits)) | 1))
    hostile = KeygenHolder(p, "psp", session, KeyShare(p, mpz(secrets.randbits(p.exponent_bits)) | 1))
    reveal = _hostile_reveal(hostile)
    commitment = type(honest.commit())("psp", commitment_digest(p, session, "psp", reveal.h, hostile.nonce))
    honest.receive_commitments([commitment])
    want = gmpy2.powmod(p.g, 2 * (honest.share.x + hostile.share.x), p.n2)
    if gmpy2.jacobi(-1, p.n) == -1:
        with pytest.raises(KeyGenerationError, match="order 2"):
            check_reveal(p, session, commitment, reveal)
        return
    pk, _ = honest.finish([reveal])
    assert pk.h == want
    # and decryption with the hostile holder's share works as with an honest one
    ct = pk.encrypt(99)
    assert combine(ct, [honest.share.partial_decrypt(ct), hostile.share.partial_decrypt(ct)]) == 99
