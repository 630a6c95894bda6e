"""Secure comparison (DESIGN 3.5): raw maths, no networking.

- :mod:`mpc.comparison.masking`: the first step, z = 2^l + x - y masked slot by
  slot and packed into joint-key ciphertexts;
- :mod:`mpc.comparison.dgk`: DGK on digits with Veugen's equality term, under
  a secp256k1 zero-test key (the SP's in protocol "compare");
- :mod:`mpc.comparison.pools`: randomness precomputed in idle time;
- :mod:`mpc.comparison.ec`: batch-oriented secp256k1 point arithmetic.

The two-server protocol "compare" built on them is :mod:`mpc.protocols.compare`;
the maths and the leakage statement are in docs/protocols/compare.md.
"""

from mpc.comparison.dgk import (
    CIPHERTEXT_BYTES,
    MAX_BITS,
    MAX_DIGIT_BITS,
    DigitPlan,
    blind_terms,
    encrypt_thermometers,
    evaluate,
    lambdas,
    zero_counts,
)
from mpc.comparison.masking import (
    batch_invert,
    compare_layout,
    differences,
    mask_and_pack,
    negate_plus_one,
)
from mpc.comparison.pools import (
    Pool,
    PspPools,
    SpPools,
    bit_encryption_pool,
    dummy_pool,
    randomizer_pool,
)

__all__ = [
    "CIPHERTEXT_BYTES",
    "MAX_BITS",
    "MAX_DIGIT_BITS",
    "DigitPlan",
    "Pool",
    "PspPools",
    "SpPools",
    "batch_invert",
    "bit_encryption_pool",
    "blind_terms",
    "compare_layout",
    "differences",
    "dummy_pool",
    "encrypt_thermometers",
    "evaluate",
    "lambdas",
    "mask_and_pack",
    "negate_plus_one",
    "randomizer_pool",
    "zero_counts",
]
