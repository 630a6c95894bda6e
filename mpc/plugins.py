"""Applications plug into the framework through Python entry points; the framework names none.

Three entry-point groups, each read once, in name order:

- ``mpc_crm.plugins``: party-server plugins. Each entry point loads a class whose
  instances have a ``name`` and ``attach(host) -> object | None``: given the
  :class:`~mpc.parties.server.PartyServer` (the host: config, key, store,
  crypto executor, extension tables, the peer), it registers what it needs
  (gRPC services, upload and fetch handlers, responders, protocols) and returns
  its extension, or None when the host's config does not ask for it. An
  extension may have ``started()`` (called once the server listens) and
  ``close()`` (called at shutdown).
- ``mpc_crm.commands``: ``mpc-crm`` subcommands. Each entry point loads a pair
  (module, help); the module, imported only when its subcommand runs, has
  ``add_arguments(parser)`` and ``run(args) -> int``.
- ``mpc_crm.simulations``: what ``mpc-crm simulate`` can run besides its own
  values-and-sum round trip. Each entry point loads an object with
  ``add_arguments(parser)`` and ``run(args) -> int | None`` (None: its options
  were not given).

A broken entry point is a ParameterError naming it, never a half-started server.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Protocol

from mpc.errors import ParameterError

PLUGINS = "mpc_crm.plugins"
COMMANDS = "mpc_crm.commands"
SIMULATIONS = "mpc_crm.simulations"


class Plugin(Protocol):
    """A party-server plugin (entry-point group ``mpc_crm.plugins``)."""

    name: str

    def attach(self, host: Any) -> object | None:
        """Register with ``host`` and return the extension (None: not configured here)."""


@cache
def load(group: str) -> tuple[tuple[str, Any], ...]:
    """(name, loaded object) of every entry point of ``group``, in name order."""
    out = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            out.append((ep.name, ep.load()))
        except Exception as exc:  # an installed plugin that cannot be imported
            raise ParameterError(f"entry point {ep.name!r} of {group} ({ep.value}) cannot be loaded: {exc}") from exc
    return tuple(out)


def attach_all(host: Any) -> dict[str, object]:
    """Attach every installed party-server plugin to ``host``: name -> extension."""
    extensions: dict[str, object] = {}
    for name, factory in load(PLUGINS):
        plugin: Plugin = factory() if isinstance(factory, type) else factory
        ext = plugin.attach(host)
        if ext is not None:
            extensions[name] = ext
    return extensions


def call_hook(extensions: dict[str, object], hook: str) -> None:
    """Call ``hook()`` on every extension that has it."""
    for ext in extensions.values():
        fn: Callable[[], Any] | None = getattr(ext, hook, None)
        if fn is not None:
            fn()


__all__ = ["COMMANDS", "PLUGINS", "SIMULATIONS", "Plugin", "attach_all", "call_hook", "load"]
