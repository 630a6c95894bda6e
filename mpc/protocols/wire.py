"""Batches of fixed-width big integers on the wire (``mpc.v1.Batch``), validated on arrival."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from mpc.elgamal import Ciphertext, PublicKey
from mpc.elgamal.params import GroupParams
from mpc.elgamal.scheme import element_from_bytes, element_to_bytes
from mpc.errors import EncodingError
from mpc.v1 import common_pb2

MAX_CIPHERTEXTS = 100_000
"""The most ciphertexts one upload holds, and so one delivery or aggregate decryption: the
bound every server applies to what a user or its peer sends."""


def parse_message(cls: type[Message], data: object, what: str) -> Any:
    """Decode a Protobuf step message; anything malformed is an EncodingError naming ``what``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError(f"{what}: expected bytes, got {type(data).__name__}")
    try:
        return cls.FromString(bytes(data))
    except Exception as exc:  # protobuf's DecodeError and friends
        raise EncodingError(f"malformed {what}: {exc}") from exc


def _check_batch(batch: common_pb2.Batch, width: int, what: str) -> None:
    if batch.width != width:
        raise EncodingError(f"{what}: element width {batch.width}, expected {width}")
    if len(batch.blob) != batch.count * width:
        raise EncodingError(
            f"{what}: blob of {len(batch.blob)} bytes does not hold {batch.count} x {width} bytes"
        )


def ciphertext_batch(pk: PublicKey, cts: Sequence[Ciphertext]) -> common_pb2.Batch:
    return common_pb2.Batch(
        count=len(cts), width=pk.ciphertext_bytes, blob=pk.ciphertexts_to_bytes(cts)
    )


def ciphertexts_from_batch(
    pk: PublicKey, batch: common_pb2.Batch, what: str = "ciphertexts"
) -> list[Ciphertext]:
    _check_batch(batch, pk.ciphertext_bytes, what)
    return pk.ciphertexts_from_bytes(batch.blob, batch.count)


def element_batch(params: GroupParams, values: Sequence[int]) -> common_pb2.Batch:
    return common_pb2.Batch(
        count=len(values),
        width=params.element_bytes,
        blob=b"".join(element_to_bytes(params, v) for v in values),
    )


def elements_from_batch(
    params: GroupParams, batch: common_pb2.Batch, what: str = "elements"
) -> list[int]:
    w = params.element_bytes
    _check_batch(batch, w, what)
    blob = batch.blob
    return [element_from_bytes(params, blob[i : i + w], what) for i in range(0, len(blob), w)]
