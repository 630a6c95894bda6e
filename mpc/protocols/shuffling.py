"""Oblivious permute-and-share as protocol steps: the two messages of
:mod:`mpc.comparison.shuffle` between the roles "sp" and "psp".

Either role may permute (it chooses by its swap bits, with the base OTs of the
other's Delta key) while the other holds the values. Two forms: one network
of Python integers (shares of ``bits`` bits plus kappa, the recommender's
top-N), and a batch of networks modulo 2^W as 32-bit limbs (churn planning).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mpc.comparison import ot, shuffle
from mpc.protocol import RunCrypto, SessionContext, Step
from mpc.protocols import compare
from mpc.protocols.wire import parse_message
from mpc.v1 import compare_pb2

__all__ = ["hold", "hold_mod", "permute", "permute_mod", "shuffle_steps"]


def _peer(ctx: SessionContext) -> str:
    return "psp" if ctx.role == "sp" else "sp"


async def _send_choices(
    ctx: SessionContext, step: str, seeds: ot.OtChoiceSeeds, swaps: np.ndarray, rc: RunCrypto
) -> tuple[np.ndarray, bytes, bytes]:
    """The permuter's OT extension by its swap bits, sent; its labels, the nonce and the pads."""
    labels, nonce, msg = await rc(compare.choices_message, seeds, swaps)
    await ctx.send(_peer(ctx), step, msg)
    return labels, nonce, await ctx.receive(_peer(ctx), step + ".pads")


async def _read_choices(ctx: SessionContext, step: str) -> compare_pb2.CompareChoices:
    return parse_message(compare_pb2.CompareChoices, await ctx.receive(_peer(ctx), step), f"{step} choices")


def shuffle_steps(step: str, permuter: str = "sp") -> tuple[Step, Step]:
    """The two messages of one oblivious shuffle: the permuter's OT choices, the holder's pads."""
    holder = "psp" if permuter == "sp" else "sp"
    return Step(step, permuter, holder), Step(step + ".pads", holder, permuter)


async def permute(
    ctx: SessionContext, step: str, seeds: ot.OtChoiceSeeds, perm: Sequence[int], rc: RunCrypto
) -> list[int]:
    """The permuter: its shares c_k of x_(perm(k)) (:mod:`mpc.comparison.shuffle`); the other
    role holds the x."""
    swaps = await rc(shuffle.route, perm)
    labels, nonce, pads = await _send_choices(ctx, step, seeds, np.array([b for layer in swaps for b in layer]), rc)
    return await rc(shuffle.permuter_finish, swaps, labels, nonce, pads)  # type: ignore[no-any-return]


async def hold(
    ctx: SessionContext, step: str, key: ot.OtDeltaKey, values: Sequence[int], bits: int, rc: RunCrypto
) -> list[int]:
    """The holder of ``values``: its shares a_k, uniform in [1, 2^bits], of the other role's
    permutation of them."""
    msg = await _read_choices(ctx, step)
    shares, pads = await rc(
        shuffle.holder_pads, key, bytes(msg.point), bytes(msg.columns), bytes(msg.nonce), values, bits
    )
    await ctx.send(_peer(ctx), step + ".pads", pads)
    return shares  # type: ignore[no-any-return]


async def permute_mod(
    ctx: SessionContext, step: str, seeds: ot.OtChoiceSeeds, perms: list[list[int]], limbs: int, rc: RunCrypto
) -> np.ndarray:
    """The permuter of a batch of modular shuffles: its shares (customers, width, limbs)."""
    swaps = np.array([await rc(shuffle.route, p) for p in perms], dtype=np.uint8)
    labels, nonce, pads = await _send_choices(ctx, step, seeds, swaps, rc)
    return await rc(shuffle.permuter_finish_mod, swaps, labels, nonce, pads, limbs)  # type: ignore[no-any-return]


async def hold_mod(ctx: SessionContext, step: str, key: ot.OtDeltaKey, values: np.ndarray, rc: RunCrypto) -> np.ndarray:
    """The holder of a batch of modular shuffles: its fresh coins (customers, width, limbs)."""
    msg = await _read_choices(ctx, step)
    coins, pads = await rc(
        shuffle.holder_pads_mod, key, bytes(msg.point), bytes(msg.columns), bytes(msg.nonce), values
    )
    await ctx.send(_peer(ctx), step + ".pads", pads)
    return coins  # type: ignore[no-any-return]
