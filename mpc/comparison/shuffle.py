"""Oblivious permute-and-share through a Benes network with one OT per switch (raw maths).

The *holder* (the PSP in top-N) has values x_0 .. x_(N-1); the *permuter* (the
SP) has a permutation pi. Afterwards the holder has fresh random integers a_k
and the permuter integers c_k with a_k + c_k = x_(pi(k)): an additive sharing
of the permuted values in which neither learns anything (the holder's shares
are its own coins; the permuter sees only one-time-padded differences).

* Network: a Benes network on N = 2^m wires, 2m - 1 layers of N/2 switches,
  routed for pi by the looping algorithm (:func:`route`); its wiring
  (:func:`structure`) depends on N only and is public.
* One switch on wires (p, q), swap bit s known to the permuter, shares
  (a_p, a_q) at the holder and (c_p, c_q) at the permuter: the holder draws
  fresh r_p, r_q and offers, by 1-out-of-2 OT, (a_p - r_p, a_q - r_q) for s = 0
  and (a_q - r_p, a_p - r_q) for s = 1; the permuter receives the pair for s
  and adds it to (c_p, c_q), swapped if s = 1; the holder keeps (r_p, r_q).
  Then a + c on wire p is the value that belongs there, and the holder's
  next messages depend on its own coins only, so the whole network is one
  OT extension and one message each way.
* OT: random OT from the correlated IKNP extension of :mod:`mpc.comparison.ot`
  with the roles of protocol "compare" swapped (the holder holds Delta), each
  pad H(q_j), H(q_j XOR Delta) hashed with a per-switch tweak (TMMO).
  Differences travel as two's-complement words of 16 bytes per 128 bits of
  share (two per message), padded by as many hash blocks.

Hiding: the holder's values must be below 2^(bits - kappa) for shares of
``bits`` bits to hide them statistically (2^-kappa); the first layer's
messages x - r are then as close to uniform.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import numpy as np

from mpc.comparison import gc, ole, ot
from mpc.errors import EncodingError, ParameterError

__all__ = [
    "apply",
    "holder_pads",
    "holder_pads_mod",
    "permuter_choices",
    "permuter_finish",
    "permuter_finish_mod",
    "random_order",
    "route",
    "size_for",
    "structure",
]

Layer = list[tuple[int, int]]
MAX_BITS = 1022
"""The widest shares (a word of 1,024 bits, signed)."""


def _word(bits: int) -> int:
    """Bytes of a signed word holding differences of ``bits``-bit shares: 16 per block."""
    return 16 * ((bits + 2 + 127) // 128)


def size_for(count: int) -> int:
    """The network's width for ``count`` values: the next power of two, at least 2."""
    if count < 1:
        raise ParameterError("a shuffle needs at least one value")
    return max(2, 1 << (count - 1).bit_length())


def random_order(count: int, width: int) -> list[int]:
    """A fresh permutation of ``width`` wires: 0 .. count-1 in a uniformly random order
    (Fisher-Yates with the OS CSPRNG), the padding wires where they are."""
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = secrets.randbelow(i + 1)
        order[i], order[j] = order[j], order[i]
    return [*order, *range(count, width)]


def _check_width(n: int) -> None:
    if n < 2 or n & (n - 1):
        raise ParameterError(f"a Benes network has a power-of-two width >= 2, not {n}")


def structure(n: int) -> list[Layer]:
    """The switches' wire pairs, layer by layer, for width ``n`` (public)."""
    _check_width(n)
    return _structure(list(range(n)))


def _structure(wires: list[int]) -> list[Layer]:
    if len(wires) == 2:
        return [[(wires[0], wires[1])]]
    pairs = [(wires[2 * i], wires[2 * i + 1]) for i in range(len(wires) // 2)]
    up, low = _structure(wires[0::2]), _structure(wires[1::2])
    return [pairs, *(a + b for a, b in zip(up, low, strict=True)), pairs]


def route(perm: Sequence[int]) -> list[list[int]]:
    """Swap bits, in :func:`structure` order, that make the network output
    out[k] = in[perm[k]] (perm a permutation of range(n), n a power of two)."""
    n = len(perm)
    _check_width(n)
    if sorted(perm) != list(range(n)):
        raise ParameterError("not a permutation")
    dest = [0] * n
    for k, i in enumerate(perm):
        dest[i] = k  # input i goes to output k
    return _route(dest)


def _route(dest: list[int]) -> list[list[int]]:
    n = len(dest)
    if n == 2:
        return [[int(dest[0] == 1)]]
    half = n // 2
    side = [-1] * n  # 0: through the upper subnetwork, 1: the lower
    source = [0] * n
    for i, d in enumerate(dest):
        source[d] = i
    for start in range(0, n, 2):
        if side[start] != -1:
            continue
        i = start
        while side[i] == -1:  # the looping algorithm: partners alternate subnetworks
            side[i], side[i ^ 1] = 0, 1
            j = source[dest[i ^ 1] ^ 1]  # the input whose output shares a switch with i^1's
            if side[j] != -1:
                break
            i = j
    in_bits = [int(side[2 * i] == 1) for i in range(half)]  # swap: the odd input goes up
    up_dest, low_dest = [0] * half, [0] * half
    for i in range(n):
        (up_dest if side[i] == 0 else low_dest)[i >> 1] = dest[i] >> 1
    out_bits = [0] * half
    for i in range(n):
        if side[i] == 0:
            out_bits[dest[i] >> 1] = dest[i] & 1  # the upper output lands on the odd wire: swap
    up, low = _route(up_dest), _route(low_dest)
    return [in_bits, *(a + b for a, b in zip(up, low, strict=True)), out_bits]


def apply(values: Sequence[int], bits: list[list[int]]) -> list[int]:
    """The network in the clear (the tests' reference)."""
    v = list(values)
    for layer, layer_bits in zip(structure(len(v)), bits, strict=True):
        for (p, q), s in zip(layer, layer_bits, strict=True):
            if s:
                v[p], v[q] = v[q], v[p]
    return v


def _pads(labels: np.ndarray, nonce: bytes, word: int) -> list[tuple[int, int]]:
    """Two pads of ``word`` bytes (as ints) per switch from its OT label."""
    blocks = 2 * word // gc.LABEL_BYTES  # tweak of block h of switch j: nonce || blocks * j + h
    tw = gc.tweaks(nonce[: gc.GATE_NONCE_BYTES], labels.shape[0] * blocks).reshape(-1, blocks, gc.LABEL_BYTES)
    tw = tw.transpose(1, 0, 2)
    h = np.concatenate([gc.hash_labels(labels, tw[k]) for k in range(blocks)], axis=1)  # (count, 2 word)
    return [
        (int.from_bytes(row[:word].tobytes(), "little"), int.from_bytes(row[word:].tobytes(), "little"))
        for row in h
    ]


def holder_pads(
    key: ot.OtDeltaKey, point: bytes, columns: bytes, nonce: bytes, values: Sequence[int], bits: int
) -> tuple[list[int], bytes]:
    """Holder: its final shares a_k (uniform in [1, 2^bits]) and the message of encrypted pairs.

    ``values`` (width a power of two) must be non-negative integers; shares are
    drawn from [1, 2^bits], so values below 2^(bits - kappa) are hidden to
    2^-kappa, and a permuted bit b leaves the permuter c = b - a <= 0.
    """
    n = len(values)
    layers = structure(n)
    switches = sum(len(layer) for layer in layers)
    if not 1 <= bits <= MAX_BITS:
        raise ParameterError(f"share bits must be in [1, {MAX_BITS}], got {bits}")
    word = _word(bits)
    mod = 1 << (8 * word)
    q = ot.extend_delta(key, point, columns, switches, nonce)
    p0 = _pads(q, nonce, word)
    p1 = _pads(q ^ key.delta_array(), nonce, word)
    a = [int(v) for v in values]
    out = bytearray()
    j = 0
    for layer in layers:
        for p, r in layer:
            fresh_p, fresh_r = secrets.randbits(bits) + 1, secrets.randbits(bits) + 1
            straight = ((a[p] - fresh_p) % mod, (a[r] - fresh_r) % mod)
            crossed = ((a[r] - fresh_p) % mod, (a[p] - fresh_r) % mod)
            for (m0, m1), (k0, k1) in ((straight, p0[j]), (crossed, p1[j])):
                out += (m0 ^ k0).to_bytes(word, "little") + (m1 ^ k1).to_bytes(word, "little")
            a[p], a[r] = fresh_p, fresh_r
            j += 1
    return a, bytes(out)


def permuter_choices(seeds: ot.OtChoiceSeeds, swap_bits: list[list[int]], nonce: bytes) -> tuple[bytes, np.ndarray]:
    """Permuter: the OT extension choosing each switch's pair by its swap bit."""
    flat = [s for layer in swap_bits for s in layer]
    return ot.extend_choices(seeds, flat, nonce)


def permuter_finish(
    swap_bits: list[list[int]], labels: np.ndarray, nonce: bytes, message: bytes, shares: Sequence[int] | None = None
) -> list[int]:
    """Permuter: its final shares c_k, with a_k + c_k = x_(pi(k)) (``shares``: its
    shares of the inputs, zeros by default)."""
    n = 2 * len(swap_bits[0])
    layers = structure(n)
    switches = sum(len(layer) for layer in layers)
    word, extra = divmod(len(message), 4 * switches)
    if extra or word < 16 or word % 16 or word > _word(MAX_BITS):
        raise EncodingError(f"shuffle pads: {len(message)} bytes is not 64 bytes a block for {switches} switches")
    if labels.shape[0] != switches:
        raise ParameterError("OT labels do not match the network")
    mod, top = 1 << (8 * word), 8 * word - 1
    pads = _pads(labels, nonce, word)
    c = [0] * n if shares is None else [int(v) for v in shares]
    j = 0
    for layer, layer_bits in zip(layers, swap_bits, strict=True):
        for (p, r), s in zip(layer, layer_bits, strict=True):
            o = (4 * j + 2 * s) * word
            k0, k1 = pads[j]
            m0 = int.from_bytes(message[o : o + word], "little") ^ k0
            m1 = int.from_bytes(message[o + word : o + 2 * word], "little") ^ k1
            m0, m1 = (m0 - mod if m0 >> top else m0), (m1 - mod if m1 >> top else m1)
            if s:
                c[p], c[r] = c[r] + m0, c[p] + m1
            else:
                c[p], c[r] = c[p] + m0, c[r] + m1
            j += 1
    return c


# -- many networks at once, modulo 2^W --------------------------------------------------------
# The same network for each of B customers, values modulo 2^W as 32-bit limbs
# (:mod:`mpc.comparison.ole`): the holder's coins are uniform modulo 2^W, so
# the padded differences are uniform with no statistical slack, and every
# switch of every customer is one OT of a single extension (customer-major,
# then layer, then switch, as :func:`permuter_choices` flattens the bits).


def _layer_arrays(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.array([p for p, _ in layer]), np.array([q for _, q in layer])) for layer in structure(n)]


def holder_pads_mod(
    key: ot.OtDeltaKey, point: bytes, columns: bytes, nonce: bytes, values: np.ndarray
) -> tuple[np.ndarray, bytes]:
    """Holder: its final shares (B, N, limbs), uniform modulo 2^W, and the padded pairs.

    ``values`` (B, N, limbs) are normalized limbs of numbers modulo 2^W.
    """
    customers, n, limbs = values.shape
    layers = _layer_arrays(n)
    half = n // 2
    count = customers * len(layers) * half
    q = ot.extend_delta(key, point, columns, count, nonce)
    shape = (customers, len(layers), half, 2, limbs)
    p0 = ole.pads(q, nonce, 2, limbs).reshape(shape)
    p1 = ole.pads(q ^ key.delta_array(), nonce, 2, limbs).reshape(shape)
    a = values.copy()
    out = np.empty((customers, len(layers), half, 2, 2, limbs), dtype=np.uint64)
    for i, (ps, qs) in enumerate(layers):
        fresh = np.frombuffer(secrets.token_bytes(customers * half * 2 * limbs * 4), dtype="<u4")
        fresh = fresh.reshape(customers, half, 2, limbs).astype(np.uint64)
        nf = ole.neg(fresh.copy())
        ap, aq = a[:, ps], a[:, qs]
        straight = np.stack([ole.normalize(ap + nf[:, :, 0]), ole.normalize(aq + nf[:, :, 1])], axis=2)
        crossed = np.stack([ole.normalize(aq + nf[:, :, 0]), ole.normalize(ap + nf[:, :, 1])], axis=2)
        out[:, i, :, 0] = straight ^ p0[:, i]
        out[:, i, :, 1] = crossed ^ p1[:, i]
        a[:, ps], a[:, qs] = fresh[:, :, 0], fresh[:, :, 1]
    return a, out.astype("<u4").tobytes()


def permuter_finish_mod(swaps: np.ndarray, labels: np.ndarray, nonce: bytes, message: bytes, limbs: int) -> np.ndarray:
    """Permuter: its shares (B, N, limbs) modulo 2^W, for swap bits (B, layers, N/2)."""
    customers, n_layers, half = swaps.shape
    n = 2 * half
    layers = _layer_arrays(n)
    if len(layers) != n_layers:
        raise ParameterError("swap bits do not match the network")
    expected = customers * n_layers * half * 4 * limbs * 4
    if len(message) != expected:
        raise EncodingError(f"shuffle pads: {len(message)} bytes, expected {expected}")
    if labels.shape[0] != customers * n_layers * half:
        raise ParameterError("OT labels do not match the network")
    msg = np.frombuffer(message, dtype="<u4").reshape(customers, n_layers, half, 2, 2, limbs).astype(np.uint64)
    pad = ole.pads(labels, nonce, 2, limbs).reshape(customers, n_layers, half, 2, limbs)
    c = np.zeros((customers, n, limbs), dtype=np.uint64)
    for i, (ps, qs) in enumerate(layers):
        s = swaps[:, i].astype(bool)
        m = np.where(s[:, :, None, None], msg[:, i, :, 1], msg[:, i, :, 0]) ^ pad[:, i]
        cp, cq = c[:, ps], c[:, qs]
        first = np.where(s[:, :, None], cq, cp)
        second = np.where(s[:, :, None], cp, cq)
        c[:, ps] = ole.normalize(first + m[:, :, 0])
        c[:, qs] = ole.normalize(second + m[:, :, 1])
    return c
