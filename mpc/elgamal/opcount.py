"""Operation counts of the ElGamal layer mod N^2, for benchmarks (raw maths).

:data:`OPS` counts, process-wide, every exponentiation by kind and the
multiplications between them, so that a benchmark can report "what ran" next
to "how long" and price the same operations at raw gmpy2 speed. Keys:

- ``powmod``, ``powmod_bits``: plain ``gmpy2.powmod`` (scalar multiplication of
  a ciphertext, a base without a table), count and summed exponent bits;
- ``fixed_base``, ``fixed_base_bits``: exponentiations through a fixed-base
  table (encryptions, the pool of encryptions of zero);
- ``partial_decrypt``, ``partial_decrypt_bits``: partial decryptions (exponent:
  the key share);
- ``multiexp_terms``, ``multiexp_bits``, ``multiexp_mulmods``: base^exponent
  terms inside multi-exponentiations, their exponent bits, and the modular
  multiplications (and squarings) the algorithm actually did;
- ``mulmod``, ``invert``: ciphertext additions, plaintext additions,
  re-randomisations, encryptions from the pool; negations.

Each ciphertext has two components: an operation on a ciphertext counts two.
Counting costs a dictionary update per call (well under 1 % of a 2048-bit
operation). Reset with ``OPS.clear()``.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["OPS"]

OPS: Counter[str] = Counter()
