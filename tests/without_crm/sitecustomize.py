"""Run the framework with the CRM absent: ``PYTHONPATH=tests/without_crm pytest tests/mpc``.

Loaded at interpreter start (by ``site``) in the test process and in every process it
starts, so the party servers and ``mpc-crm`` commands of the framework's own tests see
no CRM either: importing ``crm`` fails, and no entry point that names it is listed.
``make test`` runs tests/mpc this way, so the framework's tests pass with the plugins
absent (issue 13).
"""

import importlib.metadata as _metadata
import sys

sys.modules["crm"] = None  # type: ignore[assignment]  # "import crm..." raises ImportError

_entry_points = _metadata.entry_points


def _without_crm(**params):  # type: ignore[no-untyped-def]
    eps = _entry_points(**params)
    if params:
        return _metadata.EntryPoints(ep for ep in eps if not ep.value.startswith("crm."))
    return eps


_metadata.entry_points = _without_crm
