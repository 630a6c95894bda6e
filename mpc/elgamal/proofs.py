"""Upload proofs: each ciphertext's c1 is g^r for an r its uploader knows.

Without them the threshold decryption is an oracle: a user who uploads
c1 = 1 + N and has it delivered reads -x mod N of the joint key, and one who
uploads another user's ciphertext reads that user's plaintext. With them, a
delivered plaintext is one the uploader could compute alone (c2 / h^r), so a
delivery tells the uploader nothing new.

The proof is Girault-Poupard-Stern (Schnorr in a group of unknown order, the
response an integer) made non-interactive with Fiat-Shamir, on squares::

    prover:   k random of |r| + 128 + 128 bits,  T = (g^k)^2
              e = H(context, index, c1, c2, T)   (128 bits)
              s = k + e r                        (over the integers)
    proof:    (e, s)
    verifier: 0 <= s < 2^(|k| + 1);  e == H(context, index, c1, c2, (g^s c1^-e)^2)

``context`` binds the joint key, the uploader's identity, the kind and the
layout version (:class:`UploadContext`); ``index`` is the ciphertext's position
in the upload. A proof for one statement therefore verifies for no other key,
user, kind, version, position or ciphertext.

Why squares: Z*_{N^2} always has elements of order 2 (-1 among them), and an
extractor for GPS in a group of unknown order yields c1 = zeta g^r with zeta of
an order dividing a difference of challenges. Squaring before hashing makes
the statement "c1^2 = g^(2r)", so -1 and every other element of order 2 are
removed unconditionally; the partial decryptions are taken on squares too
(:meth:`mpc.elgamal.scheme.KeyShare.partial_decrypt` returns c1^(2 x_i)), so an
order-2 component of c1 tells a decryption nothing about a key share. Elements
of odd small order are ruled out by the low-order assumption (nobody who
cannot factor N finds one); docs/security.md gives the argument and its cost.

Raw maths only: nothing here imports networking.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import gmpy2
from gmpy2 import f_mod, mpz

from mpc.elgamal.params import STAT_BITS, GroupParams
from mpc.elgamal.scheme import (
    PROOF_CHALLENGE_BITS,
    Ciphertext,
    PublicKey,
    as_bytes,
    element_to_bytes,
)
from mpc.errors import EncodingError, ParameterError

CHALLENGE_BITS = PROOF_CHALLENGE_BITS
CHALLENGE_BYTES = CHALLENGE_BITS // 8
DOMAIN = b"mpc-crm/v1/upload-proof"


def nonce_bits(params: GroupParams) -> int:
    """Bits of the prover's k: |r| + |e| + 128, so s = k + e r statistically hides r."""
    return params.exponent_bits + CHALLENGE_BITS + STAT_BITS


def response_bits(params: GroupParams) -> int:
    """Largest bit length of an honest s (k + e r < 2^(|k| + 1))."""
    return nonce_bits(params) + 1


def proof_bytes(params: GroupParams) -> int:
    """Width of one proof on the wire: e (16 bytes) then s, fixed width, big-endian."""
    return CHALLENGE_BYTES + (response_bits(params) + 7) // 8


def transcript_hash(*parts: bytes) -> bytes:
    """SHA-256 of the parts, each length-prefixed (8 bytes), so no two lists hash alike; the
    Fiat-Shamir and commitment hash of the upload proofs and of key generation."""
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


@dataclass(frozen=True)
class UploadContext:
    """What every proof of one upload is bound to.

    ``owner`` is the identity of the certificate (or web session) that uploads,
    never a name taken from the request.
    """

    pk: PublicKey
    owner: str
    kind: str
    layout_version: int

    def digest(self) -> bytes:
        p = self.pk.params
        return transcript_hash(
            DOMAIN,
            int(p.n).to_bytes(p.element_bytes // 2, "big"),
            element_to_bytes(p, p.g),
            self.pk.to_bytes(),
            self.owner.encode(),
            self.kind.encode(),
            int(self.layout_version).to_bytes(8, "big"),
        )


def _challenge(params: GroupParams, context: bytes, index: int, ct: Ciphertext, t: int) -> bytes:
    """The Fiat-Shamir challenge e (CHALLENGE_BYTES) for one ciphertext of an upload, on t^2."""
    eb = params.element_bytes
    t_sq = f_mod(mpz(t) * t, params.n2)
    return transcript_hash(
        DOMAIN, context, int(index).to_bytes(8, "big"),
        int(ct.c1).to_bytes(eb, "big"), int(ct.c2).to_bytes(eb, "big"), int(t_sq).to_bytes(eb, "big"),
    )[:CHALLENGE_BYTES]


def prove(pk: PublicKey, ct: Ciphertext, r: int, context: bytes, index: int) -> bytes:
    """Prove knowledge of r with ct.c1 = g^r (on squares), bound to ``context`` and ``index``."""
    p = pk.params
    k = mpz(secrets.randbits(nonce_bits(p)))
    e = _challenge(p, context, index, ct, pk.g_pow(k))
    s = k + mpz(int.from_bytes(e, "big")) * mpz(r)
    return e + int(s).to_bytes(proof_bytes(p) - CHALLENGE_BYTES, "big")


def verify(pk: PublicKey, ct: Ciphertext, proof: bytes, context: bytes, index: int) -> bool:
    """Whether ``proof`` shows knowledge of ct's r for this context and position; False on any malformation."""
    p = pk.params
    try:
        proof = as_bytes(proof, "upload proof")
    except EncodingError:
        return False
    if len(proof) != proof_bytes(p):
        return False
    e_bytes, s = proof[:CHALLENGE_BYTES], mpz(int.from_bytes(proof[CHALLENGE_BYTES:], "big"))
    if s.bit_length() > response_bits(p):
        return False
    e = mpz(int.from_bytes(e_bytes, "big"))
    n2 = p.n2
    u = f_mod(pk.g_pow(s) * gmpy2.powmod(ct.c1, -e, n2), n2)
    return hmac.compare_digest(_challenge(p, context, index, ct, u), e_bytes)


def encrypt_proven(
    pk: PublicKey, ms: Sequence[int], context: bytes, start: int = 0
) -> tuple[list[Ciphertext], bytes]:
    """Encrypt ``ms`` with fresh randomness and prove each ciphertext: (ciphertexts, proofs blob).

    ``start`` is the position of ``ms[0]`` in the upload (for uploads made in pieces).
    """
    cts: list[Ciphertext] = []
    proofs: list[bytes] = []
    for i, m in enumerate(ms):
        r = pk.random_exponent()
        ct = pk.encrypt(m, r)
        cts.append(ct)
        proofs.append(prove(pk, ct, r, context, start + i))
    return cts, b"".join(proofs)


def split_proofs(params: GroupParams, blob: bytes, count: int) -> list[bytes]:
    """Cut a proofs blob into ``count`` proofs; EncodingError unless it has exactly that many."""
    w = proof_bytes(params)
    blob = as_bytes(blob, "upload proofs")
    if len(blob) != count * w:
        raise EncodingError(f"{count} ciphertexts need {count} proofs of {w} bytes ({count * w}), got {len(blob)} bytes")
    return [blob[i * w : (i + 1) * w] for i in range(count)]


def open_upload(pk: PublicKey, data: bytes, count: int, ctx: UploadContext) -> tuple[list[Ciphertext], bytes, bytes]:
    """An upload's wire data (``count`` ciphertexts, then their proofs) decoded and every proof
    verified: (ciphertexts, their bytes, the proofs). EncodingError on any malformation; the one
    check both servers run before they keep or forward anything of an upload."""
    split = count * pk.ciphertext_bytes
    data = as_bytes(data, "upload")
    if len(data) != split + count * proof_bytes(pk.params):
        raise EncodingError(
            f"{count} ciphertexts of {pk.ciphertext_bytes} bytes with proofs of {proof_bytes(pk.params)} "
            f"bytes make {split + count * proof_bytes(pk.params)} bytes, not {len(data)}"
        )
    blob, proofs = data[:split], data[split:]
    cts = pk.ciphertexts_from_bytes(blob, count)
    verify_upload(pk, cts, proofs, ctx)
    return cts, blob, proofs


def verify_upload(pk: PublicKey, cts: Sequence[Ciphertext], proofs: bytes, ctx: UploadContext) -> None:
    """Check every proof of an upload; EncodingError naming the first position that fails.

    Nothing of an upload may be stored, replicated or used before this returns.
    """
    if ctx.pk != pk:
        raise ParameterError("the upload context names another key")
    context = ctx.digest()
    for i, (ct, proof) in enumerate(zip(cts, split_proofs(pk.params, proofs, len(cts)), strict=True)):
        if not verify(pk, ct, proof, context, i):
            raise EncodingError(
                f"upload proof {i} of {len(cts)} does not verify for {ctx.owner!r}, kind {ctx.kind!r}, "
                f"layout version {ctx.layout_version}: every ciphertext must come with a proof of "
                "knowledge of its randomness, made by its uploader for this upload"
            )


__all__ = [
    "CHALLENGE_BITS",
    "UploadContext",
    "encrypt_proven",
    "nonce_bits",
    "open_upload",
    "proof_bytes",
    "prove",
    "response_bits",
    "split_proofs",
    "transcript_hash",
    "verify",
    "verify_upload",
]
