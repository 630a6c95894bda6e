"""Roles, the protocol registry and run_local, with a tiny "echo-sum" protocol.

echo-sum: the SP sends its number x to the PSP ("x"), the PSP adds its own
number y and sends the sum back ("sum"). Both return the sum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import ClassVar

import pytest

from mpc.errors import ProtocolError, TransportError
from mpc.protocol import (
    ProtocolSpec,
    RoleFactory,
    SessionContext,
    Step,
    expected_messages,
    get_protocol,
    register_protocol,
    registered_protocols,
    run_local,
    run_role,
    unregister_protocol,
)
from mpc.transport import (
    ConflictingMessage,
    InMemoryNetwork,
    PeerFailed,
    PeerUnreachable,
    ReceiveTimeout,
    SessionClosed,
    UnexpectedStep,
    UnknownSession,
)

# --- the example protocol: pure step functions, then the roles ---


def encode_number(value: int) -> bytes:
    """A signed 64-bit big-endian integer."""
    return value.to_bytes(8, "big", signed=True)


def decode_number(payload: bytes) -> int:
    if len(payload) != 8:
        raise ProtocolError(f"a number is 8 bytes, got {len(payload)}")
    return int.from_bytes(payload, "big", signed=True)


def add_to(payload: bytes, y: int) -> bytes:
    """The PSP's step: decode x, return x + y encoded."""
    return encode_number(decode_number(payload) + y)


class EchoSumSp:
    """Sends x (``repeat`` times; ``conflict`` sends x+1 as a second copy), returns the sum."""

    async def run(self, ctx: SessionContext) -> object:
        x = int(ctx.inputs["x"])
        for _ in range(int(ctx.inputs.get("repeat", 1))):
            await ctx.send("psp", "x", encode_number(x))
        if ctx.inputs.get("conflict"):
            await ctx.send("psp", "x", encode_number(x + 1))
        return decode_number(await ctx.receive("psp", "sum"))


class EchoSumPsp:
    """Waits for x, replies x + y. ``fail`` raises instead; ``pause`` sleeps before replying."""

    async def run(self, ctx: SessionContext) -> object:
        x_payload = await ctx.receive("sp", "x")
        if ctx.inputs.get("fail"):
            raise ValueError("psp gave up")
        await asyncio.sleep(float(ctx.inputs.get("pause", 0.0)))
        reply = add_to(x_payload, int(ctx.inputs["y"]))
        await ctx.send("sp", "sum", reply)
        return decode_number(reply)


@register_protocol
class EchoSum(ProtocolSpec):
    name = "echo-sum"
    roles = ("sp", "psp")
    steps = (Step("x", "sp", "psp"), Step("sum", "psp", "sp"))
    role_factories: ClassVar[Mapping[str, RoleFactory]] = {"sp": EchoSumSp, "psp": EchoSumPsp}


# --- pure steps ---


def test_step_functions_without_network() -> None:
    assert decode_number(add_to(encode_number(-5), 7)) == 2
    with pytest.raises(ProtocolError):
        decode_number(b"123")


# --- registry ---


def test_registry() -> None:
    assert get_protocol("echo-sum") is EchoSum
    assert registered_protocols()["echo-sum"] is EchoSum
    assert register_protocol(EchoSum) is EchoSum  # re-registering the same class: no-op
    with pytest.raises(ProtocolError, match=r"unknown protocol 'nope'.*echo-sum"):
        get_protocol("nope")


def test_name_clash_is_refused() -> None:
    class Other(ProtocolSpec):
        name = "echo-sum"
        roles = EchoSum.roles
        steps = EchoSum.steps
        role_factories = EchoSum.role_factories

    with pytest.raises(ProtocolError, match="already registered"):
        register_protocol(Other)
    assert get_protocol("echo-sum") is EchoSum


def test_unregister() -> None:
    @register_protocol
    class Temp(ProtocolSpec):
        name = "temp-proto"
        roles = ("sp", "psp")
        steps = ()
        role_factories = EchoSum.role_factories

    assert "temp-proto" in registered_protocols()
    unregister_protocol("temp-proto")
    assert "temp-proto" not in registered_protocols()


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        ({"name": ""}, "name"),
        ({"roles": ()}, "roles"),
        ({"roles": ("sp", "sp")}, "duplicate role"),
        ({"steps": (Step("x", "sp", "user"),)}, "not in"),
        ({"steps": (Step("x", "sp", "sp"),)}, "itself"),
        ({"steps": (Step("x", "sp", "psp"), Step("x", "sp", "psp"))}, "twice"),
        ({"steps": [Step("x", "sp", "psp")]}, "tuple of Step"),
        ({"role_factories": {"sp": EchoSumSp}}, "role_factories"),
    ],
)
def test_invalid_declarations(attrs: dict[str, object], problem: str) -> None:
    base = {
        "name": "bad",
        "roles": ("sp", "psp"),
        "steps": EchoSum.steps,
        "role_factories": EchoSum.role_factories,
    }
    cls = type("Bad", (ProtocolSpec,), base | attrs)
    with pytest.raises(ProtocolError, match=problem):
        register_protocol(cls)
    assert "bad" not in registered_protocols()


def test_not_a_protocol_spec() -> None:
    with pytest.raises(ProtocolError):
        register_protocol(int)  # type: ignore[type-var]


def test_expected_messages() -> None:
    assert expected_messages(EchoSum, "psp") == {("x", "sp")}
    assert expected_messages("echo-sum", "sp") == {("sum", "psp")}
    with pytest.raises(ProtocolError):
        expected_messages(EchoSum, "user")


def test_unknown_role() -> None:
    with pytest.raises(ProtocolError, match="no role 'user'"):
        EchoSum.role("user")


# --- run_local ---


async def test_run_local_echo_sum() -> None:
    net = InMemoryNetwork()
    results = await run_local("echo-sum", {"sp": {"x": 2}, "psp": {"y": 40}}, network=net)
    assert results == {"sp": 42, "psp": 42}
    assert net.transport("sp").bytes_sent == 8
    assert net.transport("psp").bytes_sent == 8


async def test_sessions_are_closed_after_run() -> None:
    net = InMemoryNetwork()
    await run_local("echo-sum", {"sp": {"x": 1}, "psp": {"y": 1}}, network=net, session="s1")
    for party in ("sp", "psp"):
        box = net.transport(party).mailbox
        assert box.is_closed("s1")
        assert box.buffered_bytes() == 0
    with pytest.raises(SessionClosed):  # a late duplicate
        await net.transport("sp").send("psp", "s1", "x", encode_number(1))


async def test_run_local_with_custom_party_names() -> None:
    net = InMemoryNetwork()
    results = await run_local(
        "echo-sum",
        {"sp": {"x": 1}, "psp": {"y": 2}},
        network=net,
        peers={"sp": "server-a", "psp": "server-b"},
    )
    assert results == {"sp": 3, "psp": 3}
    assert net.transport("server-a").bytes_sent == 8


async def test_run_local_rejects_unknown_role_inputs() -> None:
    with pytest.raises(ProtocolError, match="user"):
        await run_local("echo-sum", {"user": {}})
    with pytest.raises(ProtocolError, match="unknown protocol"):
        await run_local("nope", {})
    with pytest.raises(ProtocolError, match="same party"):
        await run_local("echo-sum", {}, peers={"psp": "sp"})


@pytest.mark.parametrize("step", ["x", "sum"])
async def test_late_messages_with_delay(step: str) -> None:
    net = InMemoryNetwork(delay=lambda frm, to, session, s: 0.03 if s == step else 0.0)
    results = await run_local("echo-sum", {"sp": {"x": 3}, "psp": {"y": 4}}, network=net)
    assert results == {"sp": 7, "psp": 7}


async def test_early_message_waits_for_slow_receiver() -> None:
    # psp pauses before replying; the sp's reply wait starts early. And x reaches
    # psp before psp's task even starts receiving (sp's send does not yield).
    results = await run_local("echo-sum", {"sp": {"x": 1}, "psp": {"y": 1, "pause": 0.03}})
    assert results == {"sp": 2, "psp": 2}


async def test_duplicate_sends_are_idempotent() -> None:
    net = InMemoryNetwork()
    results = await run_local(
        "echo-sum", {"sp": {"x": 5, "repeat": 3}, "psp": {"y": 1}}, network=net
    )
    assert results == {"sp": 6, "psp": 6}
    assert net.transport("sp").messages_sent == 3


async def test_conflicting_duplicate_propagates() -> None:
    start = time.monotonic()
    with pytest.raises(ConflictingMessage) as info:
        await run_local("echo-sum", {"sp": {"x": 5, "conflict": True}, "psp": {"y": 1}})
    assert any("role 'sp'" in note for note in info.value.__notes__)
    assert time.monotonic() - start < 1.0


async def test_role_error_propagates_and_peer_fails_fast() -> None:
    net = InMemoryNetwork()
    start = time.monotonic()
    with pytest.raises(ValueError, match="psp gave up"):
        await run_local(
            "echo-sum",
            {"sp": {"x": 1}, "psp": {"y": 1, "fail": True}},
            network=net,
            session="s-err",
            timeout=5.0,
        )
    assert time.monotonic() - start < 1.0  # sp's receive failed at once, not at its timeout
    assert net.transport("sp").mailbox.is_closed("s-err")


async def test_disconnect_mid_protocol_fails_cleanly() -> None:
    # psp's reply is in flight when psp drops off the network.
    net = InMemoryNetwork(delay=lambda frm, to, session, step: 0.05 if step == "sum" else 0.0)

    async def cut() -> None:
        await asyncio.sleep(0.02)
        net.disconnect("psp")

    cutter = asyncio.create_task(cut())
    start = time.monotonic()
    with pytest.raises(TransportError, match="unreachable"):
        await run_local("echo-sum", {"sp": {"x": 1}, "psp": {"y": 1}}, network=net, timeout=5.0)
    await cutter
    assert time.monotonic() - start < 1.0


async def test_waiting_role_times_out_when_peer_goes_silent() -> None:
    # Only the sp runs: the psp receives x (its mailbox files it) but never answers.
    net = InMemoryNetwork()
    ctxs = {
        role: SessionContext(
            protocol=EchoSum,
            transport=net.transport(role),
            session="s",
            role=role,
            peers={"sp": "sp", "psp": "psp"},
            inputs={"x": 1},
            timeout=0.1,
        )
        for role in ("sp", "psp")
    }
    for ctx in ctxs.values():
        ctx.open()
    start = time.monotonic()
    with pytest.raises(ReceiveTimeout, match=r"'sum'.*'psp'.*'s'") as info:
        await run_role(ctxs["sp"])
    assert time.monotonic() - start < 1.0
    assert any("role 'sp'" in note for note in info.value.__notes__)
    assert net.transport("sp").mailbox.is_closed("s")  # run_role closed it
    net.disconnect("psp")
    with pytest.raises(PeerUnreachable):
        await net.transport("sp").send("psp", "s", "x", b"")


async def test_straggler_is_cancelled_after_grace() -> None:
    class Stuck:
        async def run(self, ctx: SessionContext) -> object:
            await asyncio.sleep(60)  # not in a receive: only cancellation stops it
            return None

    class Failing:
        async def run(self, ctx: SessionContext) -> object:
            raise RuntimeError("boom")

    @register_protocol
    class StuckProto(ProtocolSpec):
        name = "stuck-test"
        roles = ("sp", "psp")
        steps = ()
        role_factories: ClassVar[Mapping[str, RoleFactory]] = {"sp": Stuck, "psp": Failing}

    try:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="boom"):
            await run_local("stuck-test", {}, grace=0.05)
        assert time.monotonic() - start < 1.0
    finally:
        unregister_protocol("stuck-test")


# --- SessionContext checks ---


def _ctx(net: InMemoryNetwork, role: str, **kwargs: object) -> SessionContext:
    return SessionContext(
        protocol=EchoSum,
        transport=net.transport(role),
        session="c",
        role=role,
        peers={"sp": "sp", "psp": "psp"},
        **kwargs,  # type: ignore[arg-type]
    )


async def test_undeclared_step_is_refused_before_sending() -> None:
    net = InMemoryNetwork()
    sp, psp = _ctx(net, "sp"), _ctx(net, "psp")
    sp.open()
    psp.open()
    with pytest.raises(UnexpectedStep, match="'bogus'"):
        await sp.send("psp", "bogus", b"")
    with pytest.raises(UnexpectedStep, match="'sum'"):
        await sp.send("psp", "sum", b"")  # declared, but psp -> sp
    with pytest.raises(UnexpectedStep):
        await psp.receive("sp", "sum")
    assert net.transport("sp").bytes_sent == 0
    # a raw transport send of an undeclared step is refused by the receiver's mailbox
    with pytest.raises(UnexpectedStep):
        await net.transport("sp").send("psp", "c", "sum", b"")


async def test_context_validation_and_helpers() -> None:
    net = InMemoryNetwork()
    with pytest.raises(ProtocolError, match="no role"):
        _ctx(net, "user")
    with pytest.raises(ProtocolError, match="mapped to party"):
        SessionContext(
            protocol=EchoSum,
            transport=net.transport("x"),
            session="c",
            role="sp",
            peers={"sp": "sp"},
        )
    ctx = SessionContext(
        protocol=EchoSum, transport=net.transport("sp"), session="c", role="sp", peers={}
    )
    assert ctx.party == "sp"
    with pytest.raises(ProtocolError, match="no party given for role 'psp'"):
        ctx.expected()
    assert _ctx(net, "psp").expected() == {("x", "sp")}


async def test_unknown_session_and_timeout_override() -> None:
    net = InMemoryNetwork()
    sp = _ctx(net, "sp", timeout=10.0)
    net.transport("psp")
    with pytest.raises(UnknownSession):
        await sp.send("psp", "x", b"")  # psp never opened "c"
    sp.open()
    with pytest.raises(ReceiveTimeout):
        await sp.receive("psp", "sum", timeout=0.01)  # overrides the 10 s default
    assert sp.fail(PeerFailed("gone")) is True
    with pytest.raises(PeerFailed):
        await sp.receive("psp", "sum")
