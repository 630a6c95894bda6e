"""Write a whole deployment to a directory: certificates and one config per party.

Used by ``simulate`` (everything on loopback) and by the multi-host tests
(servers on their own network namespaces). It imports no gRPC, so a parent
process can prepare a deployment and start the parties before any gRPC object
exists in it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from mpc.parties.certs import create_deployment


@dataclass
class Deployment:
    """Paths of everything written: the configs by party name, the data directories."""

    root: Path
    sp_config: Path
    psp_config: Path
    user_configs: dict[str, Path] = field(default_factory=dict)
    frontend_configs: dict[str, Path] = field(default_factory=dict)
    """Client configs (the user config format) of the front ends, by name."""
    sp_address: str = ""
    psp_address: str = ""

    @property
    def sp_data(self) -> Path:
        return self.root / "sp"

    @property
    def psp_data(self) -> Path:
        return self.root / "psp"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _toml_str(v: object) -> str:
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_deployment(
    root: Path,
    users: list[str],
    *,
    sp_address: str | None = None,
    psp_address: str | None = None,
    sp_listen: str | None = None,
    psp_listen: str | None = None,
    key_bits: int = 2048,
    workers: int = 2,
    deadline_s: float = 120.0,
    recommender: Path | None = None,
    churn_model: Path | None = None,
    churn_costs: Path | None = None,
    precompute: bool = False,
    copurchase: Path | None = None,
    admins: list[str] | None = None,
    frontends: list[str] | None = None,
) -> Deployment:
    """Certificates under ``root/certs`` and TOML configs for SP, PSP and every user.

    Addresses default to free loopback ports. ``*_listen`` default to the
    addresses (a server in a namespace may listen on 0.0.0.0 instead).
    ``recommender``: the recommender's public parameters (JSON), named in both
    server configs; ``churn_model``: the SP's churn tree (model.json), in the SP's
    config only (the PSP never sees the model), with ``churn_costs`` its cost file for
    planning; ``copurchase``: the co-purchase
    parameters (JSON) and ``admins``: the admin user names, in the SP's config;
    ``frontends``: front ends (certificates of role "frontend", client configs in
    ``users/`` like the users', :attr:`Deployment.frontend_configs`), named in the SP's
    ``frontends`` so that they may upload any customer's churn records.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sp_address = sp_address or f"127.0.0.1:{free_port()}"
    psp_address = psp_address or f"127.0.0.1:{free_port()}"
    sp_host = sp_address.rsplit(":", 1)[0].strip("[]")
    psp_host = psp_address.rsplit(":", 1)[0].strip("[]")
    certs = root / "certs"
    create_deployment(
        certs,
        users,
        sp_hosts=["localhost", "127.0.0.1", sp_host],
        psp_hosts=["localhost", "127.0.0.1", psp_host],
        frontends=frontends or (),
        overwrite=True,
    )
    dep = Deployment(
        root=root,
        sp_config=root / "sp.toml",
        psp_config=root / "psp.toml",
        sp_address=sp_address,
        psp_address=psp_address,
    )
    for role, listen, peer in (
        ("sp", sp_listen or sp_address, psp_address),
        ("psp", psp_listen or psp_address, sp_address),
    ):
        (root / f"{role}.toml").write_text(
            "\n".join(
                [
                    f"role = {_toml_str(role)}",
                    f"listen = {_toml_str(listen)}",
                    f"peer = {_toml_str(peer)}",
                    f"data_dir = {_toml_str(role)}",
                    f"key_bits = {key_bits}",
                    f"workers = {workers}",
                    f"deadline_s = {deadline_s}",
                    *([f"recommender = {_toml_str(Path(recommender).resolve())}"] if recommender else []),
                    *(
                        [f"churn_model = {_toml_str(Path(churn_model).resolve())}"]
                        if churn_model and role == "sp"
                        else []
                    ),
                    *(
                        [f"churn_costs = {_toml_str(Path(churn_costs).resolve())}"]
                        if churn_costs and role == "sp"
                        else []
                    ),
                    *(["precompute = true"] if precompute and role == "sp" else []),
                    *(
                        [f"copurchase = {_toml_str(Path(copurchase).resolve())}"]
                        if copurchase and role == "sp"
                        else []
                    ),
                    *(
                        ["admins = [" + ", ".join(_toml_str(a) for a in admins) + "]"]
                        if admins is not None and role == "sp"
                        else []
                    ),
                    *(
                        ["frontends = [" + ", ".join(_toml_str(f) for f in frontends) + "]"]
                        if frontends and role == "sp"
                        else []
                    ),
                    "",
                    "[tls]",
                    'ca = "certs/ca.pem"',
                    f"cert = {_toml_str('certs/' + role + '.pem')}",
                    f"key = {_toml_str('certs/' + role + '.key')}",
                    "",
                ]
            )
        )
    users_dir = root / "users"
    users_dir.mkdir(exist_ok=True)
    for name in [*users, *(frontends or ())]:
        path = users_dir / f"{name}.toml"
        path.write_text(
            "\n".join(
                [
                    f"name = {_toml_str(name)}",
                    f"sp = {_toml_str(sp_address)}",
                    f"psp = {_toml_str(psp_address)}",
                    f"key_bits = {key_bits}",
                    f"deadline_s = {deadline_s}",
                    "",
                    "[tls]",
                    'ca = "../certs/ca.pem"',
                    f"cert = {_toml_str('../certs/' + name + '.pem')}",
                    f"key = {_toml_str('../certs/' + name + '.key')}",
                    "",
                ]
            )
        )
        (dep.user_configs if name in users else dep.frontend_configs)[name] = path
    return dep
