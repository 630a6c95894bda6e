"""Shared fixtures: a live SP and PSP (``PartyServer``) in the test's event loop.

``parties`` writes a deployment (CA, certificates, configs) under ``tmp_path``
with 1024-bit keys and 5 s deadlines, starts the PSP and the SP on loopback in
the running event loop, waits until both hold the joint key, and stops them
(and every client or channel it handed out) at teardown. Helpers:

- ``parties.user(name)``: a :class:`~mpc.parties.user.UserClient` for a user;
- ``parties.raw_channel(as_name, to)``: a ``grpc.aio`` channel with the
  certificate of ``as_name`` (a user, ``"sp"`` or ``"psp"``) to ``"sp"`` or
  ``"psp"``, for hand-made, possibly malformed, raw-bytes calls:
  ``channel.unary_unary("/mpc.v1.UserGateway/Fetch")`` with no serialisers
  sends and returns bytes;
- ``parties.restart(...)``: stop servers and start new ``PartyServer`` objects
  on the same configs and data directories.

``idle_parties`` is the same thing with no server started, and
``party_deployment`` only the files.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from mpc.parties import rpc
from mpc.parties.config import PartyConfig
from mpc.parties.deploy import Deployment, write_deployment
from mpc.parties.server import PartyServer
from mpc.parties.user import UserClient, UserConfig

KEY_BITS = 1024
DEADLINE_S = 5.0
USERS = ("alice", "bob")
START_TIMEOUT_S = 30.0


class Parties:
    """A deployment and its running servers, plus helpers to talk to them."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.servers: dict[str, PartyServer] = {}
        self.changes: dict[str, dict[str, Any]] = {}
        """Per role, fields of PartyConfig to override when a server is (re)started."""
        self._clients: list[UserClient] = []
        self._channels: list[grpc.aio.Channel] = []

    async def __aenter__(self) -> Parties:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the clients and stop whatever servers still run."""
        await self.close_clients()
        await self.stop()

    # -- servers -------------------------------------------------------------------
    @property
    def sp(self) -> PartyServer:
        return self.servers["sp"]

    @property
    def psp(self) -> PartyServer:
        return self.servers["psp"]

    def config(self, role: str) -> PartyConfig:
        cfg = PartyConfig.load(self.dep.sp_config if role == "sp" else self.dep.psp_config)
        changes = self.changes.get(role)
        return dataclasses.replace(cfg, **changes) if changes else cfg

    def address(self, role: str) -> str:
        return self.dep.sp_address if role == "sp" else self.dep.psp_address

    async def start(self, *roles: str, wait_key: bool = True) -> None:
        """Start new PartyServer objects for ``roles`` (default both, PSP first)."""
        for role in roles or ("psp", "sp"):
            if role in self.servers:
                raise RuntimeError(f"{role} is already running")
            server = PartyServer(self.config(role))
            self.servers[role] = server
            await server.start()
        if wait_key:
            await self.wait_key(*(roles or ("psp", "sp")))

    async def wait_key(self, *roles: str) -> None:
        waits = [self.servers[r].key_ready.wait() for r in roles or tuple(self.servers)]
        await asyncio.wait_for(asyncio.gather(*waits), START_TIMEOUT_S)

    async def stop(self, *roles: str) -> None:
        for role in roles or tuple(self.servers):
            server = self.servers.pop(role, None)
            if server is not None:
                await server.stop(grace=0.5)

    async def restart(self, *roles: str) -> None:
        roles = roles or ("psp", "sp")
        await self.stop(*roles)
        await self.start(*roles)

    # -- clients -------------------------------------------------------------------
    def user_config(self, name: str, **changes: Any) -> UserConfig:
        cfg = UserConfig.load(self.dep.user_configs[name])
        return dataclasses.replace(cfg, **changes) if changes else cfg

    def user(self, name: str, **changes: Any) -> UserClient:
        """A client for user ``name`` (closed at teardown); ``changes`` edit its config."""
        client = UserClient(self.user_config(name, **changes))
        self._clients.append(client)
        return client

    def tls(self, as_name: str, certs: Path | None = None) -> rpc.TlsFiles:
        """TLS files of party ``as_name`` (our CA unless ``certs`` names another directory)."""
        d = certs or self.dep.root / "certs"
        return rpc.TlsFiles(
            self.dep.root / "certs" / "ca.pem", d / f"{as_name}.pem", d / f"{as_name}.key"
        )

    def raw_channel(
        self, as_name: str, to: str = "sp", *, certs: Path | None = None
    ) -> grpc.aio.Channel:
        """A channel to server ``to`` presenting ``as_name``'s certificate.

        Default gRPC options: the client itself will send a message of any
        size, so the server's own limit is what is tested.
        """
        ca, cert, key = self.tls(as_name, certs).read()
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )
        channel = grpc.aio.secure_channel(self.address(to), creds)
        self._channels.append(channel)
        return channel

    async def close_clients(self) -> None:
        for client in self._clients:
            await client.close()
        for channel in self._channels:
            await channel.close()
        self._clients.clear()
        self._channels.clear()


@pytest.fixture
def party_deployment(tmp_path: Path) -> Deployment:
    """Certificates and configs for an SP, a PSP and the users in USERS; nothing started."""
    return write_deployment(
        tmp_path / "dep", users=list(USERS), key_bits=KEY_BITS, deadline_s=DEADLINE_S
    )


@pytest_asyncio.fixture
async def idle_parties(party_deployment: Deployment) -> AsyncIterator[Parties]:
    """A ``Parties`` with no server started yet (the test starts what it needs)."""
    async with Parties(party_deployment) as p:
        yield p


@pytest_asyncio.fixture
async def parties(idle_parties: Parties) -> Parties:
    """PSP and SP running in this event loop, both holding the joint key."""
    await idle_parties.start()
    return idle_parties
