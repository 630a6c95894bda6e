"""Threshold ElGamal over Z*_{N^2} (DESIGN 3.1) and curve ElGamal for zero tests (3.2).

Raw maths: nothing in this package imports networking.
"""

from mpc.elgamal.keygen import (
    Commitment,
    KeygenHolder,
    Proof,
    Reveal,
    check_reveal,
    local_joint_keys,
    prove_knowledge,
    verify_knowledge,
)
from mpc.elgamal.params import GroupParams, custom_params, params_for
from mpc.elgamal.scheme import (
    Ciphertext,
    KeyShare,
    PublicKey,
    ZeroPool,
    combine,
    combine_many,
    sum_ciphertexts,
    to_signed,
)

__all__ = [
    "Ciphertext",
    "Commitment",
    "GroupParams",
    "KeyShare",
    "KeygenHolder",
    "Proof",
    "PublicKey",
    "Reveal",
    "ZeroPool",
    "check_reveal",
    "combine",
    "combine_many",
    "custom_params",
    "local_joint_keys",
    "params_for",
    "prove_knowledge",
    "sum_ciphertexts",
    "to_signed",
    "verify_knowledge",
]
