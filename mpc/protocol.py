"""Sub-protocols as roles, a registry by name, and a local multi-party runner.

A protocol is a :class:`ProtocolSpec` subclass: a ``name``, its ``roles``
(e.g. ``("sp", "psp")``), the ``steps`` (messages: name, sender role,
receiver role) and, for each role, a factory of a :class:`Role` whose
``async run(ctx)`` plays that role for one session. ``run`` should be a thin
asyncio state machine (send, receive, ...) around pure step functions that
unit tests call directly without a network.

Registering a protocol with :func:`register_protocol` makes it available by
name to the parties (which start sessions by protocol name), so a researcher
adds a protocol in their own module without editing ``mpc.parties``.

:func:`run_local` runs every role of a protocol in one event loop over an
:class:`~mpc.transport.InMemoryNetwork`: the multi-party test fixture.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import EllipsisType
from typing import Any, ClassVar, Protocol, TypeVar

from mpc.errors import ProtocolError
from mpc.transport import InMemoryNetwork, PeerFailed, Transport, UnexpectedStep

RunCrypto = Callable[..., Awaitable[Any]]
"""How a role runs CPU-heavy work: ``await run_crypto(fn, *args)`` (a party's executor, off the
event loop), or :func:`run_inline` in tests and in-memory runs."""


async def run_inline(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in the calling task: the :data:`RunCrypto` of in-memory runs."""
    return fn(*args)


def require_responder(party: Any, what: str, responder: str = "psp") -> None:
    """In a protocol's ``responder_inputs``: ProtocolError unless ``party`` plays ``responder``
    (the SP starts ``what``; the server it asks is the PSP)."""
    role = getattr(party, "role", None)
    if role != responder:
        raise ProtocolError(f"{what} is started by the SP; the {role!r} cannot be asked to join it")

__all__ = [
    "DEFAULT_RECEIVE_TIMEOUT",
    "ProtocolSpec",
    "Role",
    "RoleFactory",
    "RunCrypto",
    "SessionContext",
    "Step",
    "expected_messages",
    "get_protocol",
    "new_session_id",
    "register_protocol",
    "registered_protocols",
    "require_responder",
    "run_inline",
    "run_local",
    "run_role",
    "unregister_protocol",
]

DEFAULT_RECEIVE_TIMEOUT = 120.0
"""Seconds a role waits for one message before ReceiveTimeout, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class Step:
    """One message of a protocol: its name, and the roles that send and receive it."""

    name: str
    sender: str
    receiver: str


class Role(Protocol):
    """One party's part of a protocol, for one session."""

    async def run(self, ctx: SessionContext) -> object:
        """Play the role to the end and return this party's result."""
        ...


RoleFactory = Callable[[], Role]
"""Builds a fresh :class:`Role` per session (a class with a no-argument constructor works)."""


class ProtocolSpec:
    """Base class of protocols: subclass it, set the class attributes, register it.

    Example::

        @register_protocol
        class MyProtocol(ProtocolSpec):
            name = "my-protocol"
            roles = ("sp", "psp")
            steps = (Step("blinded", "sp", "psp"), Step("answer", "psp", "sp"))
            role_factories: ClassVar[Mapping[str, RoleFactory]] = {"sp": SpRole, "psp": PspRole}
    """

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    steps: ClassVar[tuple[Step, ...]]
    role_factories: ClassVar[Mapping[str, RoleFactory]]

    @classmethod
    def role(cls, role: str) -> Role:
        """A fresh :class:`Role` object playing ``role`` (ProtocolError if unknown)."""
        factory = cls.role_factories.get(role)
        if factory is None:
            raise ProtocolError(
                f"protocol {cls.name!r} has no role {role!r}; its roles are {list(cls.roles)}"
            )
        return factory()

    @classmethod
    def responder_inputs(cls, party: Any, raw: bytes) -> dict[str, Any]:
        """Inputs of the role a server plays when its peer starts a session.

        ``party`` is the local server (it offers ``params``, ``require_key()``,
        ``run_crypto``, ``outbox``, ``store``); ``raw`` is the protocol's
        serialised start message. Override it to make the protocol startable
        by a peer: that is all a new protocol needs, no edit of the parties.
        """
        raise ProtocolError(f"protocol {cls.name!r} cannot be started by a peer")

    @classmethod
    def has_step(cls, step: str, sender: str, receiver: str) -> bool:
        """Whether ``step`` is declared from role ``sender`` to role ``receiver``."""
        return Step(step, sender, receiver) in cls.steps

    @classmethod
    def validate(cls) -> None:
        """Check the declaration is coherent; raises ProtocolError naming the problem."""
        where = f"protocol class {cls.__qualname__}"
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}: 'name' must be a non-empty string")
        where = f"protocol {name!r}"
        roles = getattr(cls, "roles", None)
        if (
            not isinstance(roles, tuple)
            or not roles
            or not all(isinstance(r, str) and r for r in roles)
        ):
            raise ProtocolError(f"{where}: 'roles' must be a non-empty tuple of names")
        if len(set(roles)) != len(roles):
            raise ProtocolError(f"{where}: duplicate role in {list(roles)}")
        steps = getattr(cls, "steps", None)
        if not isinstance(steps, tuple) or not all(isinstance(s, Step) for s in steps):
            raise ProtocolError(f"{where}: 'steps' must be a tuple of Step")
        if len(set(steps)) != len(steps):
            raise ProtocolError(f"{where}: a step is declared twice")
        for step in steps:
            if not step.name:
                raise ProtocolError(f"{where}: a step has an empty name")
            if step.sender not in roles or step.receiver not in roles:
                raise ProtocolError(f"{where}: step {step} names a role not in {list(roles)}")
            if step.sender == step.receiver:
                raise ProtocolError(f"{where}: step {step} is sent by a role to itself")
        factories = getattr(cls, "role_factories", None)
        if not isinstance(factories, Mapping) or set(factories) != set(roles):
            raise ProtocolError(
                f"{where}: 'role_factories' must map exactly the roles {list(roles)}"
            )
        if not all(callable(f) for f in factories.values()):
            raise ProtocolError(f"{where}: every role factory must be callable")


# --- registry ---

_REGISTRY: dict[str, type[ProtocolSpec]] = {}

P = TypeVar("P", bound=type[ProtocolSpec])


def register_protocol(cls: P) -> P:
    """Class decorator: validate ``cls`` and make it available by ``cls.name``.

    Registering the same class again is a no-op; another class under a taken
    name raises ProtocolError (unregister the old one first).
    """
    if not (isinstance(cls, type) and issubclass(cls, ProtocolSpec)):
        raise ProtocolError(f"{cls!r} is not a ProtocolSpec subclass")
    cls.validate()
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ProtocolError(
            f"protocol name {cls.name!r} is already registered by "
            f"{existing.__module__}.{existing.__qualname__}"
        )
    _REGISTRY[cls.name] = cls
    return cls


def unregister_protocol(name: str) -> None:
    """Remove a protocol from the registry (tests, or to replace an implementation)."""
    _REGISTRY.pop(name, None)


def get_protocol(name: str) -> type[ProtocolSpec]:
    """The protocol registered as ``name``; ProtocolError listing the known ones if none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ProtocolError(f"unknown protocol {name!r}; registered: {known}") from None


def registered_protocols() -> dict[str, type[ProtocolSpec]]:
    """A copy of the registry, name -> protocol class, sorted by name."""
    return dict(sorted(_REGISTRY.items()))


def _resolve(protocol: type[ProtocolSpec] | str) -> type[ProtocolSpec]:
    return get_protocol(protocol) if isinstance(protocol, str) else protocol


def expected_messages(protocol: type[ProtocolSpec] | str, role: str) -> set[tuple[str, str]]:
    """The (step, sender role) pairs that ``role`` receives in ``protocol``."""
    spec = _resolve(protocol)
    if role not in spec.roles:
        raise ProtocolError(f"protocol {spec.name!r} has no role {role!r}")
    return {(s.name, s.sender) for s in spec.steps if s.receiver == role}


def new_session_id() -> str:
    """A fresh random session id (128 bits, hex)."""
    return secrets.token_hex(16)


# --- one party's view of a session ---


@dataclass(kw_only=True)
class SessionContext:
    """Everything a role needs for one session, and checked send/receive helpers.

    ``peers`` maps role -> party name (e.g. ``{"sp": "sp", "psp": "psp",
    "user": "u0001"}``); ``inputs`` are this role's inputs; ``timeout`` is
    the default for each receive (None: wait forever).
    """

    protocol: type[ProtocolSpec]
    transport: Transport
    session: str
    role: str
    peers: Mapping[str, str]
    inputs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = DEFAULT_RECEIVE_TIMEOUT

    def __post_init__(self) -> None:
        if self.role not in self.protocol.roles:
            raise ProtocolError(f"protocol {self.protocol.name!r} has no role {self.role!r}")
        own = self.peers.get(self.role)
        if own is not None and own != self.transport.party:
            raise ProtocolError(
                f"role {self.role!r} is mapped to party {own!r} "
                f"but the transport belongs to {self.transport.party!r}"
            )

    @property
    def party(self) -> str:
        """This party's name."""
        return self.transport.party

    def party_of(self, role: str) -> str:
        """The party name playing ``role`` in this session."""
        if role == self.role:
            return self.transport.party
        try:
            return self.peers[role]
        except KeyError:
            raise ProtocolError(
                f"session {self.session!r}: no party given for role {role!r}"
            ) from None

    def expected(self) -> set[tuple[str, str]]:
        """The (step, sender party) pairs this party may receive: what open_session takes."""
        return {
            (step, self.party_of(sender))
            for step, sender in expected_messages(self.protocol, self.role)
        }

    def open(self) -> None:
        """Open the session on the transport, expecting exactly this role's messages.

        Do it before any peer may send (the initiator before StartSession, the
        responder before acknowledging it).
        """
        self.transport.open_session(self.session, self.expected())

    def close(self) -> None:
        """Close the session on the transport (releases its messages)."""
        self.transport.close_session(self.session)

    def fail(self, exc: BaseException) -> bool:
        """Make this party's pending and future receives in the session raise ``exc``."""
        return self.transport.fail_session(self.session, exc)

    async def send(self, role: str, step: str, payload: bytes) -> None:
        """Send ``step`` to the party playing ``role``; UnexpectedStep if undeclared."""
        if not self.protocol.has_step(step, self.role, role):
            raise UnexpectedStep(
                f"protocol {self.protocol.name!r} declares no step {step!r} "
                f"from {self.role!r} to {role!r}"
            )
        await self.transport.send(self.party_of(role), self.session, step, payload)

    async def receive(
        self, role: str, step: str, timeout: float | EllipsisType | None = ...
    ) -> bytes:
        """Wait for ``step`` from the party playing ``role``.

        ``timeout`` defaults (``...``) to the context's; None waits forever.
        Raises UnexpectedStep if undeclared, ReceiveTimeout on timeout.
        """
        if not self.protocol.has_step(step, role, self.role):
            raise UnexpectedStep(
                f"protocol {self.protocol.name!r} declares no step {step!r} "
                f"from {role!r} to {self.role!r}"
            )
        limit = self.timeout if timeout is ... else timeout
        return await self.transport.receive(self.party_of(role), self.session, step, limit)


async def run_role(ctx: SessionContext, *, close: bool = True) -> object:
    """Play ``ctx.role`` of ``ctx.protocol`` on an already opened session; return its result.

    The session is closed afterwards (success or failure) unless ``close`` is
    False. Errors get a note naming the role, protocol and session.
    """
    try:
        return await ctx.protocol.role(ctx.role).run(ctx)
    except Exception as exc:
        exc.add_note(
            f"in role {ctx.role!r} of protocol {ctx.protocol.name!r}, "
            f"session {ctx.session!r}, party {ctx.party!r}"
        )
        raise
    finally:
        if close:
            ctx.close()


async def run_local(
    protocol_name: str,
    inputs_by_role: Mapping[str, Mapping[str, Any]],
    network: InMemoryNetwork | None = None,
    session: str | None = None,
    *,
    peers: Mapping[str, str] | None = None,
    timeout: float | None = 10.0,
    grace: float = 1.0,
) -> dict[str, object]:
    """Run every role of a registered protocol in this event loop; return results by role.

    Sessions are opened on every party's transport before any role starts and
    closed at the end. ``peers`` overrides role -> party names (default: the
    role names); ``timeout`` is each receive's default. If a role raises, the
    other roles' sessions are failed with PeerFailed (their receives raise at
    once), roles still running after ``grace`` seconds are cancelled, and the
    first error is raised.
    """
    spec = get_protocol(protocol_name)
    unknown = set(inputs_by_role) - set(spec.roles)
    if unknown:
        raise ProtocolError(
            f"protocol {spec.name!r} has no role(s) {sorted(unknown)}; roles: {list(spec.roles)}"
        )
    parties = {role: role for role in spec.roles} | dict(peers or {})
    if len({parties[r] for r in spec.roles}) != len(spec.roles):
        raise ProtocolError(f"two roles are mapped to the same party: {parties}")
    net = network if network is not None else InMemoryNetwork()
    sid = session if session is not None else new_session_id()
    contexts = {
        role: SessionContext(
            protocol=spec,
            transport=net.transport(parties[role]),
            session=sid,
            role=role,
            peers=parties,
            inputs=dict(inputs_by_role.get(role, {})),
            timeout=timeout,
        )
        for role in spec.roles
    }
    opened: list[SessionContext] = []
    tasks: dict[asyncio.Task[object], str] = {}
    try:
        for ctx in contexts.values():
            ctx.open()
            opened.append(ctx)
        for role, ctx in contexts.items():
            task = asyncio.create_task(run_role(ctx, close=False), name=f"{spec.name}:{role}:{sid}")
            tasks[task] = role
        first = await _wait_roles(tasks, contexts, grace)
        if first is not None:
            raise first
        return {role: task.result() for task, role in tasks.items()}
    finally:
        leftovers = [t for t in tasks if not t.done()]
        for task in leftovers:
            task.cancel()
        # retrieve every task's outcome (no "exception was never retrieved" logs)
        await asyncio.gather(*tasks, return_exceptions=True)
        for ctx in opened:
            ctx.close()


async def _wait_roles(
    tasks: dict[asyncio.Task[object], str],
    contexts: Mapping[str, SessionContext],
    grace: float,
) -> BaseException | None:
    """Wait for all roles; on the first error fail the others, then cancel stragglers."""
    pending: set[asyncio.Task[object]] = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in tasks if t in done and (t.cancelled() or t.exception() is not None)]
        if not failed:
            continue
        task = failed[0]  # in role order, if several failed at once
        role = tasks[task]
        error: BaseException = (
            asyncio.CancelledError(f"role {role!r} was cancelled")
            if task.cancelled()
            else task.exception()  # type: ignore[assignment]
        )
        for other in pending:
            peer_error = PeerFailed(
                f"role {role!r} failed in session {contexts[role].session!r}: {error!r}"
            )
            peer_error.__cause__ = error
            contexts[tasks[other]].fail(peer_error)
        if pending:
            _, stragglers = await asyncio.wait(pending, timeout=grace)
            for straggler in stragglers:
                straggler.cancel()
        return error
    return None
