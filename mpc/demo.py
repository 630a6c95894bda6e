"""``mpc-crm demo``: the crypto in one minute, with what each step costs.

Joint key generation between two in-process key holders (SP and PSP), a few
users encrypting ratings, packing, homomorphic sums, per-slot blinding, and a
threshold decryption that needs both holders. Every result is checked against
the plaintext computation.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import TypeVar

from mpc.elgamal import combine, local_joint_keys, params_for, sum_ciphertexts
from mpc.errors import DecryptionError, MpcError
from mpc.packing import SlotLayout, pack_ciphertexts, pack_masks, random_masks, unblind_packed

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bits", type=int, default=2048, choices=(1024, 2048), help="key size")
    parser.add_argument("--users", type=int, default=5, help="users contributing ratings")
    parser.add_argument("--items", type=int, default=12, help="items each user rates")
    parser.add_argument("--seed", type=int, default=1, help="seed of the demo's plaintext data")


def _timed(label: str, fn: Callable[[], T], rows: list[tuple[str, float]]) -> T:
    t = time.perf_counter()
    out = fn()
    rows.append((label, time.perf_counter() - t))
    print(f"  {label:<58} {1e3 * rows[-1][1]:9.1f} ms")
    return out


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    rows: list[tuple[str, float]] = []
    params = params_for(args.bits)
    print(f"Group: {params.name} (N of {params.bits} bits, ciphertexts of {2 * params.element_bytes} bytes)")
    print("g derived from the public seed", repr(params.seed))
    print()
    print("1. Joint key generation (commit, reveal, Girault-Poupard-Stern proofs)")
    pk, (sp, psp) = _timed("SP and PSP: commit, reveal, verify proofs", lambda: local_joint_keys(params), rows)
    _timed("fixed-base tables for g and h (once per key)", lambda: pk.encrypt(0), rows)

    ratings = [[rng.randint(1, 5) for _ in range(args.items)] for _ in range(args.users)]
    print()
    print(f"2. {args.users} users encrypt {args.items} ratings each (1..5)")
    cts = _timed(
        f"encrypt {args.users * args.items} ratings",
        lambda: [[pk.encrypt(r) for r in row] for row in ratings],
        rows,
    )

    print()
    print("3. Packing: every item's column sum into one slot of one ciphertext")
    layout = SlotLayout.for_modulus(params.n, value_bits=3, terms=args.users)
    print(
        f"  layout: {layout.slots} slots of {layout.slot_bits} bits "
        f"(3 value bits + {layout.term_bits} for {args.users} terms + kappa {layout.kappa} + guard {layout.guard})"
    )
    packed_users = _timed(
        "pack each user's ratings into one ciphertext (Horner)",
        lambda: [pack_ciphertexts(layout, row) for row in cts],
        rows,
    )
    total = _timed(
        "homomorphic sum over users (one multiplication each)",
        lambda: sum_ciphertexts(packed_users),
        rows,
    )

    print()
    print("4. Threshold decryption: each holder contributes c1^x_i")
    d_sp = _timed("SP partial decryption", lambda: sp.partial_decrypt(total), rows)
    d_psp = _timed("PSP partial decryption", lambda: psp.partial_decrypt(total), rows)
    plain = _timed("combine", lambda: combine(total, [d_sp, d_psp]), rows)
    sums = layout.unpack(plain, args.items)
    expect = [sum(col) for col in zip(*ratings, strict=True)]
    print(f"  per-item sums: {sums}")
    _check(sums == expect, "packed homomorphic sums equal the plaintext sums")
    try:
        alone = combine(total, [d_sp])
        ok = alone != plain
    except DecryptionError:
        ok = True
    _check(ok, "one key share alone does not decrypt")

    print()
    print("5. Blinding for the PSP: one independent mask per slot")
    masks = random_masks(layout, args.items)
    blinded = _timed(
        "add encrypted per-slot masks and re-randomise",
        lambda: pk.rerandomize(total.add_plain(pack_masks(layout, masks))),
        rows,
    )
    seen = combine(blinded, [sp.partial_decrypt(blinded), psp.partial_decrypt(blinded)])
    seen_slots = layout.unpack(seen, args.items)
    _check(all(a != b for a, b in zip(seen_slots, expect, strict=True)), "every slot the PSP sees is masked")
    _check(unblind_packed(layout, seen, masks) == expect, "the SP's masks remove the blinding exactly")

    print()
    print(f"Total {sum(t for _, t in rows):.2f} s. All checks passed.")
    return 0


def _check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAILED'}] {what}")
    if not ok:
        raise MpcError(f"demo check failed: {what}")
