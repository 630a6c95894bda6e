"""The user side, as a Python API: fetch the key, encrypt locally, upload; fetch and decrypt.

A user talks to both servers with its own certificate. It checks that the SP
and the PSP serve the same joint key (so neither can substitute a key of its
own), encrypts on its own machine, and decrypts a result by combining the SP's
and the PSP's partial decryptions: neither server ever sees the plaintext.

Example::

    async with UserClient.from_config("u0001.toml") as user:
        await user.upload("values", [3, 1, 4])
        print(await user.fetch("sum"))       # [8]
"""

from __future__ import annotations

import asyncio
import hmac
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mpc.elgamal import PublicKey, combine_many, params_for
from mpc.elgamal.params import DEFAULT_SEED
from mpc.elgamal.proofs import UploadContext, encrypt_proven, proof_bytes
from mpc.errors import AuthorizationError, EncodingError, ParameterError
from mpc.parties import rpc
from mpc.parties.config import key_fingerprint
from mpc.protocols.wire import ciphertexts_from_batch, elements_from_batch
from mpc.v1 import user_pb2


@dataclass(frozen=True)
class UserConfig:
    """Where the servers are and which certificate this user holds.

    ``u0001.toml``::

        name = "u0001"
        sp = "127.0.0.1:50051"
        psp = "127.0.0.1:50052"
        key_bits = 2048
        [tls]
        ca = "certs/ca.pem"
        cert = "certs/u0001.pem"
        key = "certs/u0001.key"
    """

    name: str
    sp: str
    psp: str
    tls: rpc.TlsFiles
    key_bits: int = 2048
    seed: str = DEFAULT_SEED
    deadline_s: float = 120.0
    sp_server_name: str | None = None
    psp_server_name: str | None = None

    @classmethod
    def load(cls, path: str | Path) -> UserConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ParameterError(f"cannot read user config {path}: {exc}") from exc

        def p(v: str) -> Path:
            q = Path(v)
            return q if q.is_absolute() else path.parent / q

        try:
            tls = raw["tls"]
            return cls(
                name=str(raw["name"]),
                sp=str(raw["sp"]),
                psp=str(raw["psp"]),
                tls=rpc.TlsFiles(p(tls["ca"]), p(tls["cert"]), p(tls["key"])),
                key_bits=int(raw.get("key_bits", 2048)),
                seed=str(raw.get("seed", DEFAULT_SEED)),
                deadline_s=float(raw.get("deadline_s", 120.0)),
                sp_server_name=raw.get("sp_server_name"),
                psp_server_name=raw.get("psp_server_name"),
            )
        except KeyError as exc:
            raise ParameterError(f"user config {path} lacks {exc.args[0]!r}") from exc


class UserClient:
    """One user's connections to the SP and the PSP."""

    def __init__(self, config: UserConfig) -> None:
        self.config = config
        self.params = params_for(config.key_bits, config.seed)
        self.traffic = rpc.TrafficCounter()
        self._sp_channel = rpc.secure_channel(config.sp, config.tls, config.sp_server_name)
        self._psp_channel = rpc.secure_channel(config.psp, config.tls, config.psp_server_name)
        self.sp = rpc.RawStub(
            self._sp_channel, user_pb2.DESCRIPTOR.services_by_name["UserGateway"], "sp", self.traffic, config.sp
        )
        self.psp = rpc.RawStub(
            self._psp_channel, user_pb2.DESCRIPTOR.services_by_name["Delivery"], "psp", self.traffic, config.psp
        )
        self._pk: PublicKey | None = None
        self._fast_pk: PublicKey | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> UserClient:
        return cls(UserConfig.load(path))

    async def __aenter__(self) -> UserClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._sp_channel.close()
        await self._psp_channel.close()

    @property
    def bytes_sent(self) -> int:
        return sum(self.traffic.sent.values())

    def sp_service(self, service: Any) -> rpc.RawStub:
        """A stub for another service the SP offers (a ServiceDescriptor), on this user's channel."""
        return rpc.RawStub(self._sp_channel, service, "sp", self.traffic, self.config.sp)

    async def public_key(self, wait_s: float = 0.0, precompute: bool = False) -> PublicKey:
        """The joint key, checked to be the same at the SP and the PSP.

        ``wait_s`` > 0 keeps retrying while the servers are starting (key
        generation not finished, or not listening yet). ``precompute`` gives the
        same key with fixed-base tables (built on first use: worth it for more
        than a few dozen encryptions).
        """
        if self._pk is not None:
            return self._with_tables() if precompute else self._pk
        sp_info, psp_info = await rpc.retry_while_unavailable(
            lambda: asyncio.gather(
                self.sp.call("GetPublicKey", user_pb2.KeyRequest(), timeout=self.config.deadline_s),
                self.psp.call("GetPublicKey", user_pb2.KeyRequest(), timeout=self.config.deadline_s),
            ),
            wait_s,
        )
        if not hmac.compare_digest(sp_info.fingerprint, psp_info.fingerprint) or sp_info.h != psp_info.h:
            raise AuthorizationError("the SP and the PSP serve different public keys: refusing to encrypt")
        if sp_info.group != self.params.name or sp_info.seed != self.params.seed:
            raise ParameterError(f"servers use {sp_info.group}, this user is configured for {self.params.name}")
        pk = PublicKey.from_bytes(self.params, sp_info.h, precompute=False)
        if key_fingerprint(pk) != sp_info.fingerprint:
            raise EncodingError("public key fingerprint does not match the key")
        self._pk = pk
        return self._with_tables() if precompute else pk

    def _with_tables(self) -> PublicKey:
        if self._fast_pk is None:
            assert self._pk is not None
            self._fast_pk = PublicKey(self._pk.params, self._pk.h, precompute=True)
        return self._fast_pk

    def upload_context(self, pk: PublicKey, kind: str, layout_version: int = 0) -> UploadContext:
        """What this user's proofs for an upload of ``kind`` are bound to (its certificate's name)."""
        return UploadContext(pk, self.config.name, kind, layout_version)

    async def upload(
        self, kind: str, values: Sequence[int], layout_version: int = 0, pk: PublicKey | None = None
    ) -> int:
        """Encrypt ``values`` (integers in [0, N)) locally, prove each ciphertext, and replace
        the stored record ``kind``."""
        if not values:
            raise ParameterError("nothing to upload")
        pk = pk or await self.public_key(precompute=len(values) > 32)
        context = self.upload_context(pk, kind, layout_version).digest()
        loop = asyncio.get_running_loop()
        cts, proofs = await loop.run_in_executor(None, lambda: encrypt_proven(pk, values, context))
        return await self.upload_proven(kind, pk.ciphertexts_to_bytes(cts), proofs, len(cts), layout_version)

    async def upload_proven(
        self, kind: str, blob: bytes, proofs: bytes, count: int, layout_version: int = 0
    ) -> int:
        """Upload ``count`` ciphertexts (back to back in ``blob``) with their proofs, streamed in chunks.

        The proofs must be this user's for this kind and layout version
        (:func:`mpc.elgamal.proofs.encrypt_proven` with :meth:`upload_context`).
        """
        data = blob + proofs
        pieces = rpc.chunks(data)
        requests = [
            user_pb2.UploadChunk(
                kind=kind,
                layout_version=layout_version,
                count=count,
                total_size=len(data),
                proof_width=proof_bytes(self.params),
                data=bytes(pieces[0]),
            ),
            *(user_pb2.UploadChunk(data=bytes(p)) for p in pieces[1:]),
        ]
        reply = await self.sp.stream("Upload", requests, timeout=self.config.deadline_s)
        return int(reply.version)

    async def fetch(self, kind: str) -> list[int]:
        """Decrypt the stored ``kind`` (a record or a result) for this user only."""
        pk = await self.public_key()
        # The SP needs up to its own deadline for the PSP; give it room to tell us why it failed.
        reply = await self.sp.call(
            "Fetch", user_pb2.FetchRequest(kind=kind), timeout=2 * self.config.deadline_s + 5.0
        )
        cts = ciphertexts_from_batch(pk, reply.ciphertexts)
        sp_partials = elements_from_batch(pk.params, reply.partials, "SP partial decryptions")
        got = await self.psp.call(
            "CollectPartials", user_pb2.CollectRequest(delivery_id=reply.delivery_id), timeout=self.config.deadline_s
        )
        psp_partials = elements_from_batch(pk.params, got.partials, "PSP partial decryptions")
        if not len(cts) == len(sp_partials) == len(psp_partials):
            raise EncodingError(
                f"{len(cts)} ciphertexts but {len(sp_partials)} SP and {len(psp_partials)} PSP partials"
            )
        return combine_many(cts, [sp_partials, psp_partials])


__all__ = ["UserClient", "UserConfig"]
