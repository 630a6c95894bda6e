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


def _lp(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


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
        return hashlib.sha256(
            _lp(
                DOMAIN,
                int(p.n).to_bytes(p.element_bytes // 2, "big"),
                element_to_bytes(p, p.g),
                self.pk.to_bytes(),
                self.owner.encode(),
                self.kind.encode(),
                int(self.layout_version).to_bytes(8, "big"),
            )
        ).digest()


def challenge(element_bytes: int, context: bytes, index: int, c1: int, c2: int, t_sq: int) -> bytes:
    """The Fiat-Shamir challenge e (CHALLENGE_BYTES) for one ciphertext of an upload."""
    d = hashlib.sha256(
        _lp(
            DOMAIN,
            context,
            int(index).to_bytes(8, "big"),
            int(c1).to_bytes(element_bytes, "big"),
            int(c2).to_bytes(element_bytes, "big"),
            int(t_sq).to_bytes(element_bytes, "big"),
        )
    ).digest()
    return d[:CHALLENGE_BYTES]


def respond(params: GroupParams, context: bytes, index: int, ct: Ciphertext, r: int, k: int, t: int) -> bytes:
    """The proof (e, s) for ``ct`` = Enc(m; r), given the prover's k and t = g^k."""
    n2 = params.n2
    e = challenge(params.element_bytes, context, index, ct.c1, ct.c2, f_mod(mpz(t) * t, n2))
    s = mpz(k) + mpz(int.from_bytes(e, "big")) * mpz(r)
    return e + int(s).to_bytes(proof_bytes(params) - CHALLENGE_BYTES, "big")


def prove(pk: PublicKey, ct: Ciphertext, r: int, context: bytes, index: int) -> bytes:
    """Prove knowledge of r with ct.c1 = g^r (on squares), bound to ``context`` and ``index``."""
    k = mpz(secrets.randbits(nonce_bits(pk.params)))
    return respond(pk.params, context, index, ct, r, k, pk.g_pow(k))


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
    expect = challenge(p.element_bytes, context, index, ct.c1, ct.c2, f_mod(u * u, n2))
    return hmac.compare_digest(expect, e_bytes)


# -- bits: a ciphertext of 0 or 1 -------------------------------------------------------------
BIT_PROOF_DOMAIN = b"mpc-crm/v1/bit-proof"


def bit_proof_bytes(params: GroupParams) -> int:
    """Width of one bit proof: (e_0, e_1, s_0, s_1), each e 16 bytes, each s fixed width."""
    return 2 * proof_bytes(params)


def _bit_challenge(params: GroupParams, context: bytes, index: int, ct: Ciphertext, ts: Sequence[int]) -> int:
    eb = params.element_bytes
    n2 = params.n2
    d = hashlib.sha256(
        _lp(
            BIT_PROOF_DOMAIN,
            context,
            int(index).to_bytes(8, "big"),
            int(ct.c1).to_bytes(eb, "big"),
            int(ct.c2).to_bytes(eb, "big"),
            *(int(f_mod(mpz(t) * t, n2)).to_bytes(eb, "big") for t in ts),
        )
    ).digest()
    return int.from_bytes(d[:CHALLENGE_BYTES], "big")


def _shifted_c2(params: GroupParams, ct: Ciphertext, beta: int) -> mpz:
    """c2 / (1 + N)^beta: an encryption of zero's second half exactly when the plaintext is beta."""
    n, n2 = params.n, params.n2
    return f_mod(ct.c2 * (1 + (-beta % n) * n), n2)


def _simulated(pk: PublicKey, c1: mpz, d2: mpz, e: int, s: int) -> tuple[mpz, mpz]:
    n2 = pk.params.n2
    return (
        f_mod(pk.g_pow(s) * gmpy2.powmod(c1, -e, n2), n2),
        f_mod(pk.h_pow(s) * gmpy2.powmod(d2, -e, n2), n2),
    )


def prove_bit(pk: PublicKey, ct: Ciphertext, bit: int, r: int, context: bytes, index: int) -> bytes:
    """Prove that ``ct`` = Enc(bit; r) encrypts 0 or 1 (a CDS OR of two equalities of discrete
    logs, on squares), bound to ``context`` and ``index``; it also proves knowledge of r."""
    if bit not in (0, 1):
        raise ParameterError("a bit proof is for a plaintext of 0 or 1")
    p = pk.params
    other = 1 - bit
    e_other = secrets.randbits(CHALLENGE_BITS)
    s_other = mpz(secrets.randbits(nonce_bits(p)))
    fake = _simulated(pk, ct.c1, _shifted_c2(p, ct, other), e_other, s_other)
    k = mpz(secrets.randbits(nonce_bits(p)))
    real = (pk.g_pow(k), pk.h_pow(k))
    ts = (*real, *fake) if bit == 0 else (*fake, *real)
    e = _bit_challenge(p, context, index, ct, ts)
    e_bit = (e - e_other) % (1 << CHALLENGE_BITS)
    s_bit = k + mpz(e_bit) * mpz(r)
    es, ss = [0, 0], [mpz(0), mpz(0)]
    es[bit], ss[bit], es[other], ss[other] = e_bit, s_bit, e_other, s_other
    w = proof_bytes(p) - CHALLENGE_BYTES
    return b"".join(int(x).to_bytes(CHALLENGE_BYTES, "big") for x in es) + b"".join(
        int(x).to_bytes(w, "big") for x in ss
    )


def verify_bit(pk: PublicKey, ct: Ciphertext, proof: bytes, context: bytes, index: int) -> bool:
    """Whether ``proof`` shows that ``ct`` encrypts 0 or 1 (and knowledge of its r); False on any
    malformation."""
    p = pk.params
    try:
        proof = as_bytes(proof, "bit proof")
    except EncodingError:
        return False
    if len(proof) != bit_proof_bytes(p):
        return False
    w = proof_bytes(p) - CHALLENGE_BYTES
    e0 = int.from_bytes(proof[:CHALLENGE_BYTES], "big")
    e1 = int.from_bytes(proof[CHALLENGE_BYTES : 2 * CHALLENGE_BYTES], "big")
    s0 = mpz(int.from_bytes(proof[2 * CHALLENGE_BYTES : 2 * CHALLENGE_BYTES + w], "big"))
    s1 = mpz(int.from_bytes(proof[2 * CHALLENGE_BYTES + w :], "big"))
    if s0.bit_length() > response_bits(p) or s1.bit_length() > response_bits(p):
        return False
    t0 = _simulated(pk, ct.c1, _shifted_c2(p, ct, 0), e0, s0)
    t1 = _simulated(pk, ct.c1, _shifted_c2(p, ct, 1), e1, s1)
    return _bit_challenge(p, context, index, ct, (*t0, *t1)) == (e0 + e1) % (1 << CHALLENGE_BITS)


def encrypt_bits_proven(
    pk: PublicKey, bits: Sequence[int], context: bytes, start: int = 0
) -> tuple[list[Ciphertext], bytes]:
    """Encrypt 0/1 values with a bit proof each (positions ``start``, ``start + 1``, ...)."""
    cts: list[Ciphertext] = []
    proofs: list[bytes] = []
    for i, b in enumerate(bits):
        r = pk.random_exponent()
        ct = pk.encrypt(b, r)
        cts.append(ct)
        proofs.append(prove_bit(pk, ct, b, r, context, start + i))
    return cts, b"".join(proofs)


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


def proofs_size(params: GroupParams, count: int, bits: int = 0) -> int:
    """Bytes of an upload's proofs: a bit proof for each of the first ``bits`` ciphertexts, a
    proof of knowledge for each of the others."""
    return bits * bit_proof_bytes(params) + (count - bits) * proof_bytes(params)


def verify_upload(
    pk: PublicKey, cts: Sequence[Ciphertext], proofs: bytes, ctx: UploadContext, bits: int = 0
) -> None:
    """Check every proof of an upload; EncodingError naming the first position that fails.

    The first ``bits`` ciphertexts must carry bit proofs (each encrypts 0 or 1),
    the others proofs of knowledge. Nothing of an upload may be stored,
    replicated or used before this returns.
    """
    if ctx.pk != pk:
        raise ParameterError("the upload context names another key")
    if not 0 <= bits <= len(cts):
        raise ParameterError(f"{bits} bit ciphertexts in an upload of {len(cts)}")
    p = pk.params
    proofs = as_bytes(proofs, "upload proofs")
    if len(proofs) != proofs_size(p, len(cts), bits):
        raise EncodingError(
            f"{len(cts)} ciphertexts ({bits} of them bits) need {proofs_size(p, len(cts), bits)} "
            f"bytes of proofs, got {len(proofs)}"
        )
    context = ctx.digest()
    bw, pw = bit_proof_bytes(p), proof_bytes(p)
    for i, ct in enumerate(cts):
        if i < bits:
            ok = verify_bit(pk, ct, proofs[i * bw : (i + 1) * bw], context, i)
        else:
            at = bits * bw + (i - bits) * pw
            ok = verify(pk, ct, proofs[at : at + pw], context, i)
        if not ok:
            what = "a bit proof (a plaintext of 0 or 1)" if i < bits else "a proof of knowledge of its randomness"
            raise EncodingError(
                f"upload proof {i} of {len(cts)} does not verify for {ctx.owner!r}, kind {ctx.kind!r}, "
                f"layout version {ctx.layout_version}: this ciphertext needs {what}, made by its "
                "uploader for this upload"
            )


__all__ = [
    "CHALLENGE_BITS",
    "UploadContext",
    "bit_proof_bytes",
    "challenge",
    "encrypt_bits_proven",
    "encrypt_proven",
    "nonce_bits",
    "proof_bytes",
    "proofs_size",
    "prove",
    "prove_bit",
    "respond",
    "response_bits",
    "split_proofs",
    "verify",
    "verify_bit",
    "verify_upload",
]
