"""Party configuration (TOML) and on-disk key material.

Example ``sp.toml``::

    role = "sp"                   # "sp" or "psp"
    listen = "127.0.0.1:50051"    # where this server listens
    peer = "127.0.0.1:50052"      # the other server
    data_dir = "data/sp"          # key share, public key, SQLite store, stats
    key_bits = 2048               # 1024 (tests) or 2048
    workers = 2                   # threads for crypto work
    deadline_s = 120              # deadline of every outgoing call
    recommender = "rec.json"      # optional: the private recommender's public parameters
    churn_model = "model.json"    # optional (SP): the churn tree it scores privately
    churn_costs = "costs.toml"    # optional (SP, with churn_model): the cost file it plans with
    admins = ["admin"]            # user names allowed to administer (scoring, catalogue); default none
    frontends = ["fe0"]           # (SP) front-end certificate names that may upload any customer's
                                  # churn records and plan shares; default none
    copurchase = "copurchase.json"  # optional (SP): co-purchase catalogue and layout bounds
    aggregate_min_contributors = 10  # (PSP) the fewest uploads it helps decrypt a sum of
    precompute = false            # (SP) compute every user's recommendations in idle time
    kappa = 40                    # the fewest statistical blinding bits it accepts from its peer (>= 40)
    compare_methods = ["gc", "dgk"]  # (PSP) the comparison methods it accepts when the SP starts "compare"

    [tls]
    ca = "certs/ca.pem"
    cert = "certs/sp.pem"
    key = "certs/sp.key"

Relative paths are taken from the config file's directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from mpc.elgamal import KeyShare, PublicKey, params_for
from mpc.elgamal.curve import CurvePrivateKey
from mpc.elgamal.params import DEFAULT_SEED, GroupParams
from mpc.errors import ParameterError
from mpc.parties.rpc import TlsFiles
from mpc.protocols.compare import METHOD_DGK, METHOD_GC, MIN_KAPPA

SERVER_ROLES = ("sp", "psp")


@dataclass(frozen=True)
class PartyConfig:
    """Everything one server process needs."""

    role: str
    listen: str
    peer: str
    data_dir: Path
    tls: TlsFiles
    key_bits: int = 2048
    seed: str = DEFAULT_SEED
    workers: int = 2
    deadline_s: float = 120.0
    peer_server_name: str | None = None
    recommender: Path | None = None
    """Public parameters of the private recommender (JSON), if this deployment runs it."""
    churn_model: Path | None = None
    """The SP's churn tree (model.json), if this deployment scores churn privately."""
    churn_costs: Path | None = None
    """The SP's cost file (TOML) for private action planning, with ``churn_model``."""
    admins: tuple[str, ...] = ()
    """User names (certificate names of role "user") allowed to call administrative methods;
    none unless configured (a certificate's name alone makes nobody an admin)."""
    frontends: tuple[str, ...] = ()
    """SP: names of the certificates of role "frontend" allowed to write any customer's churn
    records and plan shares (a customer's own "user" certificate may only replace its own
    existing record); none unless configured."""
    copurchase: Path | None = None
    """Public parameters of the private co-purchase counts (JSON), if the SP collects them."""
    aggregate_min_contributors: int = 10
    """PSP: it refuses to help decrypt an aggregate of fewer contributions than this."""
    precompute: bool = False
    """SP with a recommender: keep every user's recommendations current in idle time."""
    kappa: int = MIN_KAPPA
    """The fewest statistical blinding bits this server accepts in what its peer proposes
    (comparisons, the recommender's layout); a minimum, never below ``MIN_KAPPA`` (40)."""
    compare_methods: tuple[str, ...] = (METHOD_GC, METHOD_DGK)
    """The comparison methods this server accepts when its peer starts protocol "compare"."""

    def __post_init__(self) -> None:
        k = self.kappa
        if isinstance(k, bool) or not isinstance(k, int) or k < MIN_KAPPA:
            raise ParameterError(f"kappa must be an integer >= {MIN_KAPPA} (statistical security bits), got {k!r}")
        methods = self.compare_methods
        if not methods or not set(methods) <= {METHOD_GC, METHOD_DGK}:
            raise ParameterError(
                f"compare_methods must be a non-empty list of {METHOD_GC!r} and {METHOD_DGK!r}, got {list(methods)!r}"
            )

    @property
    def peer_role(self) -> str:
        return "psp" if self.role == "sp" else "sp"

    @classmethod
    def load(cls, path: str | Path) -> PartyConfig:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ParameterError(f"cannot read config {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ParameterError(f"config {path} is not valid TOML: {exc}") from exc
        return cls.from_dict(raw, base=path.parent)

    @classmethod
    def from_dict(cls, raw: dict, base: Path = Path(".")) -> PartyConfig:
        def p(v: str) -> Path:
            q = Path(v)
            return q if q.is_absolute() else base / q

        missing = [k for k in ("role", "listen", "peer", "data_dir", "tls") if k not in raw]
        if missing:
            raise ParameterError(f"config lacks {', '.join(missing)}")
        if raw["role"] not in SERVER_ROLES:
            raise ParameterError(f"role must be 'sp' or 'psp', got {raw['role']!r}")
        tls = raw["tls"]
        for k in ("ca", "cert", "key"):
            if k not in tls:
                raise ParameterError(f"config [tls] lacks {k}")
        known = {
            "role", "listen", "peer", "data_dir", "tls", "key_bits", "seed", "workers",
            "deadline_s", "peer_server_name", "recommender", "churn_model", "churn_costs", "admins",
            "frontends", "copurchase", "aggregate_min_contributors", "precompute", "kappa", "compare_methods",
        }
        unknown = set(raw) - known
        if unknown:
            raise ParameterError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(
            role=raw["role"],
            listen=str(raw["listen"]),
            peer=str(raw["peer"]),
            data_dir=p(raw["data_dir"]),
            tls=TlsFiles(p(tls["ca"]), p(tls["cert"]), p(tls["key"])),
            key_bits=int(raw.get("key_bits", 2048)),
            seed=str(raw.get("seed", DEFAULT_SEED)),
            workers=int(raw.get("workers", 2)),
            deadline_s=float(raw.get("deadline_s", 120.0)),
            peer_server_name=raw.get("peer_server_name"),
            recommender=p(str(raw["recommender"])) if raw.get("recommender") else None,
            churn_model=p(str(raw["churn_model"])) if raw.get("churn_model") else None,
            churn_costs=p(str(raw["churn_costs"])) if raw.get("churn_costs") else None,
            admins=_names(raw.get("admins", []), "admins"),
            frontends=_names(raw.get("frontends", []), "frontends"),
            copurchase=p(str(raw["copurchase"])) if raw.get("copurchase") else None,
            precompute=_flag(raw.get("precompute", False), "precompute"),
            kappa=raw.get("kappa", MIN_KAPPA),
            compare_methods=_names(raw.get("compare_methods", [METHOD_GC, METHOD_DGK]), "compare_methods"),
            aggregate_min_contributors=_positive(raw.get("aggregate_min_contributors", 10), "aggregate_min_contributors"),
        )

    @property
    def params(self) -> GroupParams:
        return params_for(self.key_bits, self.seed)


# -- key material on disk ------------------------------------------------------------------
SHARE_FILE = "key_share.bin"
CURVE_KEY_FILE = "curve_key.bin"
PUBLIC_FILE = "public_key.json"


def key_fingerprint(pk: PublicKey) -> bytes:
    p = pk.params
    return hashlib.sha256(
        b"mpc-crm/v1/pk|" + int(p.n).to_bytes(p.element_bytes, "big") + p.seed.encode() + b"|" + pk.to_bytes()
    ).digest()


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ParameterError(f"{what} must be true or false, got {value!r}")
    return value


def _positive(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(f"{what} must be a positive integer, got {value!r}")
    return value


def _names(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ParameterError(f"{what} must be a list of names, got {value!r}")
    return tuple(value)


def _write_secret(path: Path, data: bytes) -> None:
    """Write a secret file with mode 0600 (created so, never chmod-ed later), atomically."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_parameters(path: str | Path, what: str) -> dict:
    """A JSON object of public parameters named in a server's config (``what`` names it in errors)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ParameterError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParameterError(f"{what} {path}: expected a JSON object")
    return raw


def _read_secret(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise ParameterError(f"{path} is readable by others: chmod 600 it")
    return path.read_bytes()


def load_or_create_curve_key(data_dir: Path) -> CurvePrivateKey:
    """A server's own curve key for zero tests: created once, written with mode 0600, reloaded."""
    path = Path(data_dir) / CURVE_KEY_FILE
    if path.exists():
        return CurvePrivateKey.from_bytes(_read_secret(path))
    key = CurvePrivateKey.generate()
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    _write_secret(path, key.to_bytes())
    return key


KEY_FORMAT = 2
"""Version of the stored key files: 2 is the joint key on squares (h = g^(2x))."""


def save_keys(data_dir: Path, pk: PublicKey, share: KeyShare) -> None:
    """Write the key share with mode 0600 and the public key."""
    data_dir.mkdir(parents=True, exist_ok=True)
    _write_secret(data_dir / SHARE_FILE, share.to_bytes())
    info = {
        "format": KEY_FORMAT,
        "group": pk.params.name,
        "seed": pk.params.seed,
        "key_bits": pk.params.bits,
        "h": pk.to_bytes().hex(),
        "fingerprint": key_fingerprint(pk).hex(),
    }
    tmp = data_dir / (PUBLIC_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, data_dir / PUBLIC_FILE)


def load_keys(data_dir: Path, params: GroupParams) -> tuple[PublicKey, KeyShare] | None:
    """The stored key pair, or None at first start; refuses files that do not fit ``params``."""
    share_path = data_dir / SHARE_FILE
    pub_path = data_dir / PUBLIC_FILE
    if not share_path.exists() and not pub_path.exists():
        return None
    try:
        info = json.loads(pub_path.read_text())
        share = KeyShare.from_bytes(params, _read_secret(share_path))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"key files in {data_dir} are unreadable: {exc}") from exc
    if info.get("group") != params.name or info.get("seed") != params.seed:
        raise ParameterError(
            f"stored key is for {info.get('group')} but the config asks for {params.name}"
        )
    if info.get("format") != KEY_FORMAT:
        raise ParameterError(
            f"the key in {data_dir} was made by an earlier version (before keys on squares, "
            "format 2): its partial decryptions would not combine. Move the data directory "
            "away (with both servers stopped) and let the servers generate a new key"
        )
    pk = PublicKey.from_bytes(params, bytes.fromhex(info["h"]))
    return pk, share
