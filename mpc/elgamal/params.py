"""Public parameters: moduli whose factors nobody holds, and a generator nobody chose.

N is an RSA Factoring Challenge number (RSA Laboratories, 1991): its factors were
destroyed when it was made and it has never been factored, so nobody can decrypt
by factoring. The values are copied here from the project's shared parameter file
so the package never reads outside itself at run time.

g is derived from a public seed string: hash the seed to an integer u below N^2
(SHAKE-256, 128 extra bits so the reduction is statistically uniform) and set
g = u^(2N) mod N^2. Raising to 2N kills the (1+N) component and the sign, so g
lies in the subgroup of 2N-th powers, whose order nobody knows. Anyone can
recompute g from the seed: no party chooses it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache

import gmpy2
from gmpy2 import mpz

from mpc.errors import ParameterError

RSA_1024 = int(
    "135066410865995223349603216278805969938881475605667027524485143851526510"
    "604859533833940287150571909441798207282164471551373680419703964191743046"
    "496589274256239341020864383202110372958725762358509643110564073501508187"
    "510676594629205563685529475213500852879416377328533906109750544334999811"
    "150056977236890927563"
)
RSA_2048 = int(
    "251959084756578934940271832400483985714292821262040320277771378360436620"
    "207075955562640185258807844069182906412495150821892985591491761845028084"
    "891200728449926873928072877767359714183472702618963750149718246911650776"
    "133798590957000973304597488084284017974291006424586918171951187461215151"
    "726546322822168699875491824224336372590851418654620435767984233871847744"
    "479207399342365848238242811981638150106748104516603773060562016196762561"
    "338441436038339044149526344321901146575444541784240209246165157233507787"
    "077498171257724679629263863563732899121548314381678998850404453640235273"
    "81951378636564391212010397122822120720357"
)

MODULI: dict[int, tuple[str, int]] = {
    1024: ("RSA-1024", RSA_1024),
    2048: ("RSA-2048", RSA_2048),
}

DEFAULT_SEED = "mpc-crm/v1/generator"
STAT_BITS = 128
"""Extra bits on random exponents and on hash-to-group, for statistical closeness."""


def derive_generator(n: int, seed: str) -> mpz:
    """Hash ``seed`` to an element of Z*_{N^2} and raise it to 2N."""
    n = mpz(n)
    n2 = n * n
    nbytes = (int(n2.bit_length()) + STAT_BITS + 7) // 8
    counter = 0
    while True:
        h = hashlib.shake_256(f"{seed}|{int(n)}|{counter}".encode()).digest(nbytes)
        u = mpz(int.from_bytes(h, "big")) % n2
        g = gmpy2.powmod(u, 2 * n, n2)
        if u > 1 and gmpy2.gcd(u, n) == 1 and g != 1:
            return g
        counter += 1


@dataclass(frozen=True)
class GroupParams:
    """The public parameters of one ElGamal group over Z*_{N^2}."""

    name: str
    n: mpz
    seed: str
    g: mpz = field(repr=False)
    n2: mpz = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n2", self.n * self.n)

    @property
    def bits(self) -> int:
        """Bit length of N."""
        return int(self.n.bit_length())

    @property
    def exponent_bits(self) -> int:
        """Bits of random exponents and key shares: |N| + 128."""
        return self.bits + STAT_BITS

    @property
    def plaintext_bits(self) -> int:
        """Bits a packed plaintext may use so that it stays below N."""
        return self.bits - 1

    @property
    def element_bytes(self) -> int:
        """Fixed width of one group element (mod N^2) on the wire."""
        return (int(self.n2.bit_length()) + 7) // 8


@cache
def params_for(bits: int = 2048, seed: str = DEFAULT_SEED) -> GroupParams:
    """The standard parameters for a key size: 1024 (tests) or 2048 (default)."""
    if bits not in MODULI:
        raise ParameterError(
            f"no public modulus of {bits} bits; choose one of {sorted(MODULI)}"
        )
    name, n = MODULI[bits]
    return GroupParams(name=name, n=mpz(n), seed=seed, g=derive_generator(n, seed))


def custom_params(n: int, seed: str = DEFAULT_SEED, name: str = "custom") -> GroupParams:
    """Parameters for a modulus of one's own (for example a dealer's, factors erased).

    Whoever knows the factors of ``n`` can decrypt everything: see docs/caveats.md.
    """
    n = mpz(n)
    if n < 3 or n % 2 == 0 or gmpy2.is_square(n) or n.bit_length() < 512:
        raise ParameterError("a custom modulus must be an odd non-square of at least 512 bits")
    return GroupParams(name=name, n=n, seed=seed, g=derive_generator(n, seed))
