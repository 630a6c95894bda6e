"""Upload proofs (mpc.elgamal.proofs): complete, bound to their statement, refused when malformed."""

from __future__ import annotations

import dataclasses

import gmpy2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.elgamal import Ciphertext, PublicKey, local_joint_keys, params_for
from mpc.elgamal.proofs import (
    CHALLENGE_BYTES,
    UploadContext,
    encrypt_proven,
    proof_bytes,
    prove,
    response_bits,
    split_proofs,
    verify,
    verify_upload,
)
from mpc.errors import EncodingError

P = params_for(1024)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def pk() -> PublicKey:
    return local_joint_keys(P)[0]


@pytest.fixture(scope="module")
def other_pk() -> PublicKey:
    return local_joint_keys(P)[0]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
kinds = st.sampled_from(["values", "rec", "copurchase", "x"])
versions = st.integers(min_value=0, max_value=2**31 - 1)
plaintexts = st.integers(min_value=0, max_value=int(P.n) - 1)


@SETTINGS
@given(owner=names, kind=kinds, version=versions, ms=st.lists(plaintexts, min_size=1, max_size=3))
def test_proofs_verify_for_their_statement(pk: PublicKey, owner: str, kind: str, version: int, ms: list[int]) -> None:
    ctx = UploadContext(pk, owner, kind, version)
    cts, proofs = encrypt_proven(pk, ms, ctx.digest())
    assert len(proofs) == len(ms) * proof_bytes(P)
    verify_upload(pk, cts, proofs, ctx)


@SETTINGS
@given(
    owner=names,
    kind=kinds,
    version=versions,
    m=plaintexts,
    change=st.sampled_from(["key", "owner", "kind", "version", "position", "c1", "c2", "swap"]),
    data=st.data(),
)
def test_a_proof_holds_for_no_other_statement(
    pk: PublicKey, other_pk: PublicKey, owner: str, kind: str, version: int, m: int, change: str, data: st.DataObject
) -> None:
    ctx = UploadContext(pk, owner, kind, version)
    (ct, other_ct), proofs = encrypt_proven(pk, [m, m], ctx.digest())
    proof = split_proofs(P, proofs, 2)[0]
    assert verify(pk, ct, proof, ctx.digest(), 0)
    key, index, target = pk, 0, ct
    if change == "key":
        key = other_pk
        ctx = UploadContext(other_pk, owner, kind, version)
        target = Ciphertext(other_pk, ct.c1, ct.c2)
    elif change == "owner":
        ctx = dataclasses.replace(ctx, owner=data.draw(names.filter(lambda n: n != owner)))
    elif change == "kind":
        ctx = dataclasses.replace(ctx, kind=data.draw(kinds.filter(lambda k: k != kind)))
    elif change == "version":
        ctx = dataclasses.replace(ctx, layout_version=data.draw(versions.filter(lambda v: v != version)))
    elif change == "position":
        index = data.draw(st.integers(min_value=1, max_value=10**6))
    elif change == "c1":
        target = Ciphertext(pk, gmpy2.f_mod(ct.c1 * P.g, P.n2), ct.c2)
    elif change == "c2":
        target = ct.add_plain(data.draw(st.integers(min_value=1, max_value=int(P.n) - 1)))
    else:  # the same plaintext encrypted again: another ciphertext, another statement
        target = other_ct
    assert not verify(key, target, proof, ctx.digest(), index)


@SETTINGS
@given(junk=st.binary(max_size=2 * proof_bytes(P)), m=plaintexts)
def test_malformed_proofs_are_refused(pk: PublicKey, junk: bytes, m: int) -> None:
    ctx = UploadContext(pk, "alice", "values", 0).digest()
    ct = pk.encrypt(m)
    assert not verify(pk, ct, junk, ctx, 0)


def test_mutated_and_oversized_proofs_are_refused(pk: PublicKey) -> None:
    ctx = UploadContext(pk, "alice", "values", 7)
    (ct,), proof = encrypt_proven(pk, [5], ctx.digest())
    d = ctx.digest()
    for i in range(0, len(proof), 17):  # a flipped bit anywhere
        bad = bytearray(proof)
        bad[i] ^= 1 << (i % 8)
        assert not verify(pk, ct, bytes(bad), d, 0)
    # a response beyond the honest range (the verifier checks the bound before anything else)
    big = proof[:CHALLENGE_BYTES] + ((1 << response_bits(P)) + 1).to_bytes(len(proof) - CHALLENGE_BYTES, "big")
    assert not verify(pk, ct, big, d, 0)
    assert not verify(pk, ct, proof[:-1], d, 0)
    assert not verify(pk, ct, proof + b"\0", d, 0)
    assert not verify(pk, ct, "not bytes", d, 0)  # type: ignore[arg-type]


def test_verify_upload_names_the_failing_position_and_counts(pk: PublicKey) -> None:
    ctx = UploadContext(pk, "alice", "values", 0)
    cts, proofs = encrypt_proven(pk, [1, 2, 3], ctx.digest())
    w = proof_bytes(P)
    swapped = proofs[w : 2 * w] + proofs[:w] + proofs[2 * w :]
    with pytest.raises(EncodingError, match="proof 0 of 3"):
        verify_upload(pk, cts, swapped, ctx)
    with pytest.raises(EncodingError, match="3 proofs"):
        verify_upload(pk, cts, proofs[:-1], ctx)
    with pytest.raises(EncodingError, match="3 proofs"):
        verify_upload(pk, cts, b"", ctx)


def test_a_prover_without_r_fails(pk: PublicKey) -> None:
    """Someone else's ciphertext (or 1 + N) with a proof made from a guessed r does not verify."""
    ctx = UploadContext(pk, "mallory", "values", 0).digest()
    victim = pk.encrypt(31337)
    for target in (victim, Ciphertext(pk, gmpy2.mpz(1 + P.n), gmpy2.mpz(1))):
        for _ in range(3):
            assert not verify(pk, target, prove(pk, target, pk.random_exponent(), ctx, 0), ctx, 0)


def test_pieces_of_one_upload_use_their_positions(pk: PublicKey) -> None:
    ctx = UploadContext(pk, "alice", "values", 0)
    a, pa = encrypt_proven(pk, [1, 2], ctx.digest())
    b, pb = encrypt_proven(pk, [3], ctx.digest(), start=2)
    verify_upload(pk, a + b, pa + pb, ctx)
    with pytest.raises(EncodingError):
        verify_upload(pk, b + a, pb + pa, ctx)
