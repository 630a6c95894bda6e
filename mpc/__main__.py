"""``python -m mpc``: the same as the ``mpc-crm`` command."""

from mpc.cli import main

raise SystemExit(main())
