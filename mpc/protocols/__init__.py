"""The registered two-server protocols. Importing this package registers them.

Each module declares a :class:`mpc.protocol.ProtocolSpec`, its roles' ``run``
and the pure step functions they call. Protocol code talks to a transport,
never to gRPC; its messages are the Protobuf types of ``proto/mpc/v1/steps.proto``.
"""

from mpc.protocols import aggregate_decrypt, compare, deliver, keygen

__all__ = ["aggregate_decrypt", "compare", "deliver", "keygen"]
