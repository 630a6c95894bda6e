"""Joint key generation: commit-then-reveal with a proof of knowledge of each share.

Each holder i samples x_i (|N| + 128 bits) and h_i = g^x_i. The protocol has two
steps, and the holders run them in lockstep:

1. **commit**: send H(session, party, h_i, nonce). Nobody reveals before it
   holds every other holder's commitment, so nobody can choose h_i as a
   function of the others' (no bias of the joint key, no "rogue key" h_i =
   g^a / h_j that would give one holder the whole key).
2. **reveal**: send a_i = g^x_i, the nonce, and a non-interactive
   Girault-Poupard-Stern proof of knowledge of x_i (Fiat-Shamir over the
   session and party), checked on squares.

The joint key is h = prod a_i^2 = g^(2x); holder i keeps x_i. Everything is on
squares so that a share with a component of order 2 (a_i = -g^x passes a GPS
check whenever the challenge is even) has no effect: its square is g^(2x). A
share whose Jacobi symbol is -1 carries such a component visibly and is
refused outright (for N = 3 mod 4 that catches -g^x itself). GPS suits a group of unknown
order: the response s = k + e x is an integer, never reduced modulo an order,
and k has |x| + |e| + 128 bits so s statistically hides x. See
docs/keygen.md for what this assures and what it does not.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import mpz

from mpc.elgamal.params import GroupParams
from mpc.elgamal.proofs import CHALLENGE_BITS, nonce_bits, response_bits, transcript_hash
from mpc.elgamal.scheme import (
    DEFAULT_WINDOW,
    KeyShare,
    PublicKey,
    _check_element,
    as_bytes,
    element_from_bytes,
    element_to_bytes,
)
from mpc.errors import EncodingError, KeyGenerationError

NONCE_BYTES = 32
COMMIT_DOMAIN = b"mpc-crm/v1/keygen/commit"
PROOF_DOMAIN = b"mpc-crm/v1/keygen/gps"


def _response_bytes(params: GroupParams) -> int:
    return (response_bits(params) + 7) // 8


@dataclass(frozen=True)
class Commitment:
    """A holder's binding, hiding commitment to its public share h_i."""

    party: str
    digest: bytes


@dataclass(frozen=True)
class Proof:
    """GPS proof of knowledge of x with h = g^x: commitment t = g^k, response s = k + e x."""

    t: mpz
    s: mpz

    def to_bytes(self, params: GroupParams) -> bytes:
        return element_to_bytes(params, self.t) + int(self.s).to_bytes(_response_bytes(params), "big")

    @classmethod
    def from_bytes(cls, params: GroupParams, data: bytes) -> Proof:
        data = as_bytes(data, "proof")
        e = params.element_bytes
        if len(data) != e + _response_bytes(params):
            raise EncodingError(
                f"proof must be {e + _response_bytes(params)} bytes, got {len(data)}"
            )
        return cls(element_from_bytes(params, data[:e], "proof t"), mpz(int.from_bytes(data[e:], "big")))


@dataclass(frozen=True)
class Reveal:
    """Opening of a commitment: a_i = g^x_i (field ``h``), the nonce, and the proof of knowledge.

    The holder's factor of the joint key is a_i^2."""

    party: str
    h: mpz
    nonce: bytes
    proof: Proof


def commitment_digest(params: GroupParams, session: bytes, party: str, h: int, nonce: bytes) -> bytes:
    """H(domain, N, g, session, party, h_i, nonce)."""
    return transcript_hash(
        COMMIT_DOMAIN,
        int(params.n).to_bytes(params.element_bytes, "big"),
        element_to_bytes(params, params.g),
        session,
        party.encode(),
        element_to_bytes(params, h),
        nonce,
    )


def _square(params: GroupParams, v: int) -> mpz:
    return gmpy2.f_mod(mpz(v) * v, params.n2)


def challenge(params: GroupParams, h: int, t: int, context: bytes) -> mpz:
    """Fiat-Shamir challenge e of CHALLENGE_BITS bits, bound to the key, the statement and context.

    It hashes the squares of h and t: the statement is about squares (module docstring)."""
    d = transcript_hash(
        PROOF_DOMAIN,
        int(params.n).to_bytes(params.element_bytes, "big"),
        element_to_bytes(params, params.g),
        element_to_bytes(params, _square(params, h)),
        element_to_bytes(params, _square(params, t)),
        context,
    )
    return mpz(int.from_bytes(d[: CHALLENGE_BITS // 8], "big"))


def prove_knowledge(params: GroupParams, x: int, h: int, context: bytes) -> Proof:
    """Prove knowledge of x with h^2 = g^(2x), bound to ``context`` (session and party)."""
    k = mpz(secrets.randbits(nonce_bits(params)))
    t = gmpy2.powmod(params.g, k, params.n2)
    e = challenge(params, h, t, context)
    return Proof(t=t, s=k + e * mpz(x))


def verify_knowledge(params: GroupParams, h: int, proof: Proof, context: bytes) -> bool:
    """Check (g^s)^2 == (t h^e)^2 and that s is in range; False on any failure."""
    try:
        _check_element(params, mpz(proof.t), "proof t")
        _check_element(params, mpz(h), "public share")
    except EncodingError:
        return False
    if proof.s < 0 or proof.s.bit_length() > response_bits(params):
        return False
    e = challenge(params, h, proof.t, context)
    lhs = gmpy2.powmod(params.g, 2 * proof.s, params.n2)
    rhs = _square(params, gmpy2.f_mod(proof.t * gmpy2.powmod(h, e, params.n2), params.n2))
    return lhs == rhs


def proof_context(session: bytes, party: str) -> bytes:
    """Session and party, length-prefixed so that no two pairs give the same bytes."""
    p = party.encode()
    return len(session).to_bytes(8, "big") + session + len(p).to_bytes(8, "big") + p


class KeygenHolder:
    """One key holder's side of joint key generation, as pure steps.

    ``commit()`` -> send; ``receive_commitments(others)``; ``reveal()`` -> send;
    ``finish(others' reveals)`` -> (joint PublicKey, own KeyShare). Each step
    refuses to run out of order.
    """

    def __init__(
        self, params: GroupParams, party: str, session: bytes, share: KeyShare | None = None
    ) -> None:
        self.params = params
        self.party = party
        self.session = session
        self.share = share or KeyShare.generate(params)
        self.nonce = secrets.token_bytes(NONCE_BYTES)
        self._peers: dict[str, Commitment] | None = None

    def commit(self) -> Commitment:
        return Commitment(
            self.party,
            commitment_digest(self.params, self.session, self.party, self.share.root, self.nonce),
        )

    def receive_commitments(self, commitments: Sequence[Commitment]) -> None:
        if self._peers is not None:
            raise KeyGenerationError("commitments were already received: they cannot be replaced")
        peers = {}
        for c in commitments:
            if c.party == self.party or c.party in peers:
                raise KeyGenerationError(f"duplicate commitment for holder {c.party!r}")
            if len(c.digest) != 32:
                raise KeyGenerationError(f"commitment of holder {c.party!r} has the wrong size")
            peers[c.party] = c
        if not peers:
            raise KeyGenerationError("joint key generation needs at least one other holder")
        self._peers = peers

    def reveal(self) -> Reveal:
        if self._peers is None:
            raise KeyGenerationError("reveal before every other holder's commitment arrived")
        proof = prove_knowledge(
            self.params, self.share.x, self.share.root, proof_context(self.session, self.party)
        )
        return Reveal(self.party, self.share.root, self.nonce, proof)

    def finish(
        self, reveals: Sequence[Reveal], *, window: int = DEFAULT_WINDOW
    ) -> tuple[PublicKey, KeyShare]:
        if self._peers is None:
            raise KeyGenerationError("finish before the commitments were exchanged")
        got = {r.party: r for r in reveals}
        if set(got) != set(self._peers):
            raise KeyGenerationError(
                f"reveals from {sorted(got)} do not match commitments from {sorted(self._peers)}"
            )
        p = self.params
        h = self.share.h
        for party, r in sorted(got.items()):
            check_reveal(p, self.session, self._peers[party], r)
            h = gmpy2.f_mod(h * _square(p, r.h), p.n2)
        return PublicKey(p, h, window=window), self.share


def check_reveal(params: GroupParams, session: bytes, commitment: Commitment, reveal: Reveal) -> None:
    """Raise KeyGenerationError unless ``reveal`` opens ``commitment`` and its proof holds."""
    who = reveal.party
    try:
        _check_element(params, mpz(reveal.h), f"public share of {who!r}")
    except EncodingError as exc:
        raise KeyGenerationError(str(exc)) from exc
    if _square(params, reveal.h) == 1:
        raise KeyGenerationError(f"holder {who!r} revealed a degenerate share (its square is 1)")
    if gmpy2.jacobi(mpz(reveal.h) % params.n, params.n) != 1:
        raise KeyGenerationError(
            f"holder {who!r} revealed a share with a component of order 2 (Jacobi symbol -1): "
            "no g^x has one"
        )
    expect = commitment_digest(params, session, who, reveal.h, reveal.nonce)
    if not hmac.compare_digest(expect, commitment.digest):
        raise KeyGenerationError(f"holder {who!r}: reveal does not open its commitment")
    if not verify_knowledge(params, reveal.h, reveal.proof, proof_context(session, who)):
        raise KeyGenerationError(f"holder {who!r}: proof of knowledge of its key share is invalid")


def local_joint_keys(
    params: GroupParams,
    parties: Sequence[str] = ("sp", "psp"),
    *,
    session: bytes | None = None,
    window: int = DEFAULT_WINDOW,
) -> tuple[PublicKey, list[KeyShare]]:
    """Run the whole protocol between in-process holders (tests, demos, benchmarks)."""
    session = session or secrets.token_bytes(16)
    holders = [KeygenHolder(params, p, session) for p in parties]
    commits = [h.commit() for h in holders]
    for h in holders:
        h.receive_commitments([c for c in commits if c.party != h.party])
    reveals = [h.reveal() for h in holders]
    keys = [h.finish([r for r in reveals if r.party != h.party], window=window) for h in holders]
    pk = keys[0][0]
    if any(k[0] != pk for k in keys):
        raise KeyGenerationError("holders computed different joint keys")
    return pk, [k[1] for k in keys]
