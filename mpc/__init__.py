"""mpc-crm: secure two-server computation (SP + PSP) and a private CRM on top.

Sub-packages: ``elgamal`` and ``packing`` (raw maths, no networking),
``comparison`` (secure comparison and top-N), ``parties`` (the only part that
knows gRPC), ``transport`` (the interface protocols talk to).
"""

__version__ = "0.1.0"
