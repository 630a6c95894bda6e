"""The project's exception types, in one place.

Every error that crosses a public API is one of these, so that callers (and the
gRPC layer, which maps them to status codes) can tell bad input from a bug.
"""

from __future__ import annotations


class MpcError(Exception):
    """Base class of every error raised on purpose by this project."""


class ParameterError(MpcError):
    """Public parameters or a configuration are unusable (wrong size, unknown name)."""


class EncodingError(MpcError):
    """Bytes on the wire are malformed: wrong length, outside the group, bad point."""


class KeyGenerationError(MpcError):
    """Joint key generation failed: a commitment does not open or a proof is invalid."""


class DecryptionError(MpcError):
    """Partial decryptions do not combine to a valid plaintext."""


class LayoutError(MpcError):
    """A packing layout could overflow, or a value does not fit its slot."""


class ProtocolError(MpcError):
    """A protocol message is unexpected: unknown session, wrong step, bad size."""


class TransportError(MpcError):
    """A peer could not be reached or the connection failed mid-protocol."""


class AuthorizationError(MpcError):
    """A peer is not allowed to do what it asked (wrong role, another user's data)."""


# -- protocol and transport failures (raised by mpc.transport and mpc.protocol) --


class NotFound(ProtocolError):
    """A requested record, result or delivery does not exist (for this caller)."""


class UnknownSession(ProtocolError):
    """A message or receive names a session this party never opened (or forgot)."""


class SessionClosed(ProtocolError):
    """The session is finished (closed) or failed; its messages are no longer accepted."""


class SessionExists(ProtocolError):
    """``open_session`` was called for a session id that is already open."""


class UnexpectedStep(ProtocolError):
    """A (step, sender) pair the session does not declare, or a step the protocol lacks."""


class ConflictingMessage(ProtocolError):
    """A second message for the same (session, step, sender) with different bytes."""


class MessageTooLarge(ProtocolError):
    """A message is bigger than the receiver's ``max_payload``."""


class ReceiveTimeout(TransportError):
    """No message arrived for (session, step, sender) within the timeout."""


class PeerUnreachable(TransportError):
    """The peer cannot be reached (disconnected, unknown address, connection lost)."""


class PeerFailed(TransportError):
    """Another party of the session failed, so this session can never finish."""
