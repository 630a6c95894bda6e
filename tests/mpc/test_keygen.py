"""Tests of mpc.elgamal.keygen: commit-then-reveal joint key generation with GPS proofs."""

from __future__ import annotations

import dataclasses
import secrets

import gmpy2
import pytest
from gmpy2 import mpz

from mpc.elgamal import (
    Commitment,
    KeygenHolder,
    KeyShare,
    Proof,
    PublicKey,
    Reveal,
    check_reveal,
    combine,
    local_joint_keys,
    params_for,
    prove_knowledge,
    verify_knowledge,
)
from mpc.elgamal.keygen import commitment_digest, proof_context
from mpc.errors import DecryptionError, EncodingError, KeyGenerationError

P = params_for(1024)
N = int(P.n)
N2 = int(P.n2)
SESSION = b"test-session-0001"
BAD_PROOF = r"holder 'psp': proof of knowledge of its key share is invalid"


@pytest.fixture(scope="module")
def shares() -> tuple[KeyShare, KeyShare]:
    """Two key shares, generated once (the holders below reuse them)."""
    return KeyShare.generate(P), KeyShare.generate(P)


def _holders(shares: tuple[KeyShare, KeyShare], session: bytes = SESSION) -> list[KeygenHolder]:
    return [
        KeygenHolder(P, "sp", session, share=shares[0]),
        KeygenHolder(P, "psp", session, share=shares[1]),
    ]


def _exchange_commitments(holders: list[KeygenHolder]) -> list[Commitment]:
    commits = [h.commit() for h in holders]
    for h in holders:
        h.receive_commitments([c for c in commits if c.party != h.party])
    return commits


@pytest.fixture(scope="module")
def run(shares: tuple[KeyShare, KeyShare]) -> dict:
    """One honest run up to the reveals: sp's view of psp's commitment and reveal."""
    sp, psp = _holders(shares)
    commits = _exchange_commitments([sp, psp])
    return {
        "sp": sp,
        "psp": psp,
        "psp_commit": commits[1],
        "psp_reveal": psp.reveal(),
        "sp_reveal": sp.reveal(),
    }


def _sp_finishes_with(run: dict, reveal: Reveal) -> tuple[PublicKey, KeyShare]:
    return run["sp"].finish([reveal])


# -- the honest protocol, step by step ----------------------------------------------------


def test_steps_one_by_one(shares: tuple[KeyShare, KeyShare]) -> None:
    sp, psp = _holders(shares)

    c_sp, c_psp = sp.commit(), psp.commit()
    assert isinstance(c_sp, Commitment)
    assert c_sp.party == "sp" and c_psp.party == "psp"
    assert len(c_sp.digest) == 32
    assert c_sp.digest != c_psp.digest
    assert sp.commit() == c_sp  # the commitment is fixed for a holder
    assert c_sp.digest == commitment_digest(P, SESSION, "sp", shares[0].root, sp.nonce)

    sp.receive_commitments([c_psp])
    psp.receive_commitments([c_sp])

    r_sp, r_psp = sp.reveal(), psp.reveal()
    assert r_sp.party == "sp" and r_sp.h == shares[0].root and r_sp.nonce == sp.nonce
    assert verify_knowledge(P, r_sp.h, r_sp.proof, proof_context(SESSION, "sp"))
    check_reveal(P, SESSION, c_sp, r_sp)
    check_reveal(P, SESSION, c_psp, r_psp)

    pk_sp, own_sp = sp.finish([r_psp])
    pk_psp, own_psp = psp.finish([r_sp])
    assert own_sp is shares[0] and own_psp is shares[1]
    assert pk_sp == pk_psp
    assert pk_sp.h == pk_psp.h == gmpy2.f_mod(shares[0].h * shares[1].h, P.n2)
    assert pk_sp.h == gmpy2.powmod(P.g, 2 * (shares[0].x + shares[1].x), P.n2)

    ct = pk_sp.encrypt(2718281828)
    assert combine(ct, [own_sp.partial_decrypt(ct), own_psp.partial_decrypt(ct)]) == 2718281828


def test_fresh_holders_get_fresh_shares_and_nonces() -> None:
    a = KeygenHolder(P, "sp", SESSION)
    b = KeygenHolder(P, "sp", SESSION)
    assert a.share.x != b.share.x
    assert a.nonce != b.nonce
    assert a.commit() != b.commit()


def test_commitment_hides_with_nonce(shares: tuple[KeyShare, KeyShare]) -> None:
    # the same share with another nonce gives another commitment
    a = KeygenHolder(P, "sp", SESSION, share=shares[0])
    b = KeygenHolder(P, "sp", SESSION, share=shares[0])
    assert a.commit().digest != b.commit().digest


def test_local_joint_keys() -> None:
    pk, ks = local_joint_keys(P)
    assert len(ks) == 2
    assert pk.h == gmpy2.f_mod(ks[0].h * ks[1].h, P.n2)
    ct = pk.encrypt(17)
    assert combine(ct, [k.partial_decrypt(ct) for k in ks]) == 17


def test_three_holders() -> None:
    pk, ks = local_joint_keys(P, ("a", "b", "c"), session=b"three")
    assert len(ks) == 3
    assert pk.h == gmpy2.powmod(P.g, 2 * sum(k.x for k in ks), P.n2)
    ct = pk.encrypt(5)
    assert combine(ct, [k.partial_decrypt(ct) for k in ks]) == 5
    try:  # two partials of three are not enough
        got = combine(ct, [k.partial_decrypt(ct) for k in ks[:2]])
    except DecryptionError:
        return
    assert got != 5


# -- out-of-order and malformed commitment exchanges --------------------------------------


def test_reveal_before_commitments_is_refused(shares: tuple[KeyShare, KeyShare]) -> None:
    sp, _ = _holders(shares)
    with pytest.raises(KeyGenerationError, match="before"):
        sp.reveal()


def test_finish_before_commitments_is_refused(run: dict, shares: tuple) -> None:
    sp, _ = _holders(shares)
    with pytest.raises(KeyGenerationError, match="before"):
        sp.finish([run["psp_reveal"]])


def test_bad_commitment_sets_are_refused(shares: tuple[KeyShare, KeyShare]) -> None:
    sp, psp = _holders(shares)
    c_psp = psp.commit()
    with pytest.raises(KeyGenerationError, match="at least one"):
        sp.receive_commitments([])
    with pytest.raises(KeyGenerationError, match="duplicate"):
        sp.receive_commitments([sp.commit()])  # its own commitment echoed back
    with pytest.raises(KeyGenerationError, match="duplicate"):
        sp.receive_commitments([c_psp, c_psp])
    with pytest.raises(KeyGenerationError, match="size"):
        sp.receive_commitments([Commitment("psp", c_psp.digest[:-1])])
    with pytest.raises(KeyGenerationError, match="size"):
        sp.receive_commitments([Commitment("psp", b"")])
    # none of the failures above left the holder in a state where it reveals
    with pytest.raises(KeyGenerationError):
        sp.reveal()


def test_commitments_after_reveal_are_refused(shares: tuple[KeyShare, KeyShare]) -> None:
    sp, psp = _holders(shares)
    _exchange_commitments([sp, psp])
    sp.reveal()
    late = KeygenHolder(P, "psp", SESSION)
    with pytest.raises(KeyGenerationError):
        sp.receive_commitments([late.commit()])


def test_finish_with_wrong_set_of_reveals(run: dict) -> None:
    sp = run["sp"]
    with pytest.raises(KeyGenerationError, match="do not match"):
        sp.finish([])
    with pytest.raises(KeyGenerationError, match="do not match"):
        sp.finish([run["psp_reveal"], run["sp_reveal"]])  # its own reveal is not a peer's
    stranger = dataclasses.replace(run["psp_reveal"], party="mallory")
    with pytest.raises(KeyGenerationError, match="do not match"):
        sp.finish([stranger])
    # the honest reveal still works afterwards
    pk, _ = sp.finish([run["psp_reveal"]])
    assert pk.h == gmpy2.f_mod((run["sp_reveal"].h * run["psp_reveal"].h) ** 2, P.n2)


# -- reveals that do not open their commitment --------------------------------------------


def test_reveal_with_changed_h_is_rejected(run: dict) -> None:
    # a holder that committed to one share and reveals another, with a VALID proof for it
    other = KeyShare.generate(P)
    proof = prove_knowledge(P, other.x, other.root, proof_context(SESSION, "psp"))
    bad = dataclasses.replace(run["psp_reveal"], h=other.root, proof=proof)
    assert verify_knowledge(P, bad.h, bad.proof, proof_context(SESSION, "psp"))
    with pytest.raises(KeyGenerationError, match="does not open its commitment"):
        _sp_finishes_with(run, bad)
    # a one-off change of h
    bad2 = dataclasses.replace(run["psp_reveal"], h=gmpy2.f_mod(run["psp_reveal"].h * P.g, P.n2))
    with pytest.raises(KeyGenerationError, match="does not open its commitment"):
        _sp_finishes_with(run, bad2)


def test_reveal_with_changed_nonce_is_rejected(run: dict) -> None:
    r = run["psp_reveal"]
    flipped = bytes([r.nonce[0] ^ 1]) + r.nonce[1:]
    for nonce in (flipped, secrets.token_bytes(32), b"", r.nonce + b"\0"):
        with pytest.raises(KeyGenerationError, match="does not open its commitment"):
            _sp_finishes_with(run, dataclasses.replace(r, nonce=nonce))


def test_reveal_checked_against_another_session(run: dict) -> None:
    with pytest.raises(KeyGenerationError, match="does not open its commitment"):
        check_reveal(P, b"another session", run["psp_commit"], run["psp_reveal"])


# -- invalid proofs ----------------------------------------------------------------------------


def _with_proof(run: dict, proof: Proof) -> Reveal:
    return dataclasses.replace(run["psp_reveal"], proof=proof)


def test_tampered_s_is_rejected(run: dict) -> None:
    pr = run["psp_reveal"].proof
    for s in (pr.s + 1, pr.s - 1, pr.s ^ (1 << 700), mpz(0), -pr.s, pr.s << 200):
        with pytest.raises(KeyGenerationError, match=BAD_PROOF):
            _sp_finishes_with(run, _with_proof(run, Proof(t=pr.t, s=mpz(s))))


def test_tampered_t_is_rejected(run: dict) -> None:
    pr = run["psp_reveal"].proof
    for t in (gmpy2.f_mod(pr.t * P.g, P.n2), mpz(1), pr.t + 1, mpz(0), P.n, P.n2):
        with pytest.raises(KeyGenerationError, match=BAD_PROOF):
            _sp_finishes_with(run, _with_proof(run, Proof(t=mpz(t), s=pr.s)))


def test_proof_for_another_session_is_rejected(run: dict, shares: tuple) -> None:
    x, h = shares[1].x, shares[1].root
    proof = prove_knowledge(P, x, h, proof_context(b"another session", "psp"))
    with pytest.raises(KeyGenerationError, match=BAD_PROOF):
        _sp_finishes_with(run, _with_proof(run, proof))


def test_proof_for_another_party_is_rejected(run: dict, shares: tuple) -> None:
    x, h = shares[1].x, shares[1].root
    for party in ("sp", "mallory", "PSP", ""):
        proof = prove_knowledge(P, x, h, proof_context(SESSION, party))
        with pytest.raises(KeyGenerationError, match=BAD_PROOF):
            _sp_finishes_with(run, _with_proof(run, proof))


def test_replayed_proof_of_the_other_holder_is_rejected(run: dict) -> None:
    # psp copies sp's (valid) proof: wrong statement and wrong context
    with pytest.raises(KeyGenerationError, match=BAD_PROOF):
        _sp_finishes_with(run, _with_proof(run, run["sp_reveal"].proof))


def test_proof_for_a_different_h_is_rejected(run: dict) -> None:
    other = KeyShare.generate(P)
    proof = prove_knowledge(P, other.x, other.root, proof_context(SESSION, "psp"))
    assert verify_knowledge(P, other.root, proof, proof_context(SESSION, "psp"))
    with pytest.raises(KeyGenerationError, match=BAD_PROOF):
        _sp_finishes_with(run, _with_proof(run, proof))
    # a proof "for" h that uses another x
    bogus = prove_knowledge(P, other.x, run["psp_reveal"].h, proof_context(SESSION, "psp"))
    with pytest.raises(KeyGenerationError, match=BAD_PROOF):
        _sp_finishes_with(run, _with_proof(run, bogus))


def test_verify_knowledge_directly(shares: tuple[KeyShare, KeyShare]) -> None:
    x, h = shares[0].x, shares[0].root
    ctx = proof_context(SESSION, "sp")
    pr = prove_knowledge(P, x, h, ctx)
    assert verify_knowledge(P, h, pr, ctx)
    assert not verify_knowledge(P, h, pr, ctx + b"x")
    assert not verify_knowledge(P, shares[1].root, pr, ctx)
    assert not verify_knowledge(P, 0, pr, ctx)
    assert not verify_knowledge(P, N, pr, ctx)
    assert not verify_knowledge(P, h, Proof(t=pr.t, s=pr.s + 1), ctx)
    assert not verify_knowledge(P, h, Proof(t=mpz(0), s=pr.s), ctx)
    # two proofs of the same statement differ (fresh k), both verify
    pr2 = prove_knowledge(P, x, h, ctx)
    assert pr2.t != pr.t and verify_knowledge(P, h, pr2, ctx)


def test_proof_context_is_unambiguous(shares: tuple[KeyShare, KeyShare]) -> None:
    x, h = shares[0].x, shares[0].root
    pr = prove_knowledge(P, x, h, proof_context(b"s|a", "b"))
    assert not verify_knowledge(P, h, pr, proof_context(b"s", "a|b"))


# -- degenerate shares -------------------------------------------------------------------------


def _cheating_reveal(run: dict, h: int) -> tuple[Commitment, Reveal]:
    """psp commits to ``h`` honestly (so the commitment opens) with some proof."""
    nonce = secrets.token_bytes(32)
    commit = Commitment("psp", commitment_digest(P, SESSION, "psp", h, nonce))
    return commit, Reveal("psp", mpz(h), nonce, run["psp_reveal"].proof)


def test_degenerate_share_h_one_is_rejected(run: dict) -> None:
    # h_i = 1 = g^0: committed properly and with a valid proof for x = 0
    commit, reveal = _cheating_reveal(run, 1)
    reveal = dataclasses.replace(
        reveal, proof=prove_knowledge(P, 0, 1, proof_context(SESSION, "psp"))
    )
    with pytest.raises(KeyGenerationError, match="degenerate"):
        check_reveal(P, SESSION, commit, reveal)


@pytest.mark.parametrize("h", [0, N, N2, N2 + 1, 2 * N])
def test_share_outside_group_is_rejected(run: dict, h: int) -> None:
    # a share outside Z*_{N^2} cannot even be encoded into a commitment (element_to_bytes
    # overflows for h >= 2^(8 * element_bytes)), so reuse a real commitment
    reveal = dataclasses.replace(run["psp_reveal"], h=mpz(h))
    with pytest.raises(KeyGenerationError):
        check_reveal(P, SESSION, run["psp_commit"], reveal)


# -- proof encoding ----------------------------------------------------------------------------


def test_proof_round_trip(run: dict) -> None:
    pr = run["psp_reveal"].proof
    data = pr.to_bytes(P)
    assert isinstance(data, bytes)
    back = Proof.from_bytes(P, data)
    assert back == pr
    assert back.t == pr.t and back.s == pr.s
    assert verify_knowledge(P, run["psp_reveal"].h, back, proof_context(SESSION, "psp"))
    # fixed width whatever the values
    small = Proof(t=mpz(2), s=mpz(3))
    assert len(small.to_bytes(P)) == len(data)
    assert Proof.from_bytes(P, small.to_bytes(P)) == small


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d, eb: d[:-1], id="short"),
        pytest.param(lambda d, eb: d + b"\0", id="long"),
        pytest.param(lambda d, eb: b"", id="empty"),
        pytest.param(lambda d, eb: d[:eb], id="t-only"),
        pytest.param(lambda d, eb: b"\0" * eb + d[eb:], id="t-zero"),
        pytest.param(lambda d, eb: N.to_bytes(eb, "big") + d[eb:], id="t-is-n"),
        pytest.param(lambda d, eb: N2.to_bytes(eb, "big") + d[eb:], id="t-is-n2"),
        pytest.param(lambda d, eb: b"\xff" * eb + d[eb:], id="t-too-big"),
        pytest.param(lambda d, eb: None, id="none"),
        pytest.param(lambda d, eb: "x" * len(d), id="str"),
        pytest.param(lambda d, eb: 5, id="int"),
    ],
)
def test_malformed_proof_bytes(run: dict, mutate) -> None:  # type: ignore[no-untyped-def]
    data = run["psp_reveal"].proof.to_bytes(P)
    with pytest.raises(EncodingError):
        Proof.from_bytes(P, mutate(data, P.element_bytes))
