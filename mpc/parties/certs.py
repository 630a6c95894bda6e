"""Certificates for mutual TLS between the parties: a private CA and one certificate per party.

A party is identified by its certificate, never by its address. Its identity is
``(role, name)``, with role ``"sp"``, ``"psp"``, ``"user"`` or ``"frontend"``; the SP
is named ``"sp"``, the PSP ``"psp"``, a user by its id (``"u0001"``, or any string of
``[A-Za-z0-9._-]{1,64}``) and a front end (a service that uploads on behalf of many
customers, trusted only by an SP whose ``frontends`` config names it) likewise. The
identity is written twice in each certificate:

- the Subject common name is the name (for people reading ``openssl x509``);
- a URI SubjectAlternativeName ``urn:mpc-crm:<role>:<name>`` is the
  authoritative field: :func:`identity_from_pem` reads only that.

Keys are ECDSA P-256 (cheap handshakes). Server certificates (SP, PSP) also
carry DNS/IP names for the hosts they serve on and both the serverAuth and
clientAuth extended key usages, since the servers call each other; user and
front-end certificates carry clientAuth only.

Files, all PEM, in one directory: ``ca.pem``, ``ca.key`` and per party
``<name>.pem``, ``<name>.key``. Private keys are written **unencrypted** (a
party process must start unattended), so they are created with mode 0600 in a
directory created with mode 0700; protect them as you would a password file.
``ca.key`` can sign a certificate for any role: keep it off the party hosts
once the certificates are issued.

This module does not import grpc; the gRPC credentials are built in
:mod:`mpc.parties.rpc`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc.errors import AuthorizationError, ParameterError

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "DEFAULT_DAYS",
    "DEFAULT_SERVER_HOSTS",
    "ROLES",
    "SERVER_NAMES",
    "URI_PREFIX",
    "CertAuthority",
    "IssuedCert",
    "PeerIdentity",
    "cert_path",
    "create_ca",
    "create_deployment",
    "identity_from_pem",
    "key_path",
    "load_credentials_paths",
    "user_ids",
    "validate_name",
]

ROLES: tuple[str, ...] = ("sp", "psp", "user", "frontend")
"""The kinds of party: the two servers, users (customers, admins) and front ends."""
SERVER_NAMES: dict[str, str] = {"sp": "sp", "psp": "psp"}
"""The fixed name of each server role (there is one SP and one PSP)."""
URI_PREFIX = "urn:mpc-crm:"
"""Prefix of the URI SAN that carries a party's identity: ``urn:mpc-crm:<role>:<name>``."""
DEFAULT_DAYS = 365
DEFAULT_SERVER_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""Names a server certificate is valid for when the caller gives none (loopback use)."""
CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"

_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# "ca" would overwrite the CA's own files. Compared case-insensitively, so that two
# files never collide on a case-insensitive file system (macOS, Windows).
_RESERVED_NAMES = frozenset({"ca"})
_DNS_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_BACKDATE = _dt.timedelta(minutes=5)  # tolerate small clock differences between hosts
_MAX_DAYS = 100 * 366


# -- identities ---------------------------------------------------------------------------
def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid party name, else raise :class:`ParameterError`.

    Names become file names and parts of a URI, hence the small alphabet.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ParameterError(
            f"invalid party name {name!r}: use 1 to 64 characters among A-Z a-z 0-9 . _ -"
        )
    if name in (".", ".."):
        raise ParameterError(f"invalid party name {name!r}: not a usable file name")
    return name


@dataclass(frozen=True)
class PeerIdentity:
    """Who a peer is, as its certificate says: a role and a name (``("user", "u0001")``).

    Authorisation compares both: a ``"frontend"`` certificate named like a user or an
    admin is not that user or admin."""

    role: str
    name: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ParameterError(f"unknown role {self.role!r}: expected one of {', '.join(ROLES)}")
        validate_name(self.name)
        fixed = SERVER_NAMES.get(self.role)
        if fixed is not None and self.name != fixed:
            raise ParameterError(f"the {self.role} party must be named {fixed!r}, not {self.name!r}")
        if self.name.lower() in _RESERVED_NAMES:
            raise ParameterError(f"{self.name!r} is reserved for the CA's files")
        if fixed is None and self.name.lower() in SERVER_NAMES.values():
            raise ParameterError(f"{self.name!r} cannot be a {self.role} name (it names a server)")

    @property
    def uri(self) -> str:
        """The SAN URI that encodes this identity."""
        return f"{URI_PREFIX}{self.role}:{self.name}"

    @property
    def is_server(self) -> bool:
        return self.role in SERVER_NAMES

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def identity_from_pem(pem: bytes | str) -> PeerIdentity:
    """The identity in a PEM certificate, from its ``urn:mpc-crm:`` URI SAN.

    Raises :class:`AuthorizationError` unless the certificate has exactly one
    such URI naming a known role and a valid name. It does **not** check who
    signed the certificate: call it only on a certificate that the TLS layer
    has verified against the CA (the peer certificate of an mTLS connection).
    Results are cached, since servers call it on every request.
    """
    if isinstance(pem, str):
        pem = pem.encode("ascii", "replace")
    elif not isinstance(pem, bytes):
        pem = bytes(pem)
    return _identity_from_pem_cached(pem)


@functools.lru_cache(maxsize=4096)
def _identity_from_pem_cached(pem: bytes) -> PeerIdentity:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise AuthorizationError(f"peer certificate is not a readable PEM certificate: {exc}") from exc
    return _identity_from_cert(cert)


def _identity_from_cert(cert: x509.Certificate) -> PeerIdentity:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise AuthorizationError("peer certificate has no subjectAltName, hence no mpc-crm identity") from None
    except ValueError as exc:  # a malformed extension
        raise AuthorizationError(f"peer certificate has an unreadable subjectAltName: {exc}") from exc
    uris = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith(URI_PREFIX)]
    if len(uris) != 1:
        raise AuthorizationError(
            f"peer certificate must carry exactly one {URI_PREFIX}<role>:<name> URI, found {len(uris)}"
        )
    role, sep, name = uris[0][len(URI_PREFIX) :].partition(":")
    if not sep:
        raise AuthorizationError(f"malformed identity URI {uris[0]!r}")
    try:
        return PeerIdentity(role, name)
    except ParameterError as exc:
        raise AuthorizationError(f"peer certificate names no valid identity ({uris[0]!r}): {exc}") from exc


# -- files ----------------------------------------------------------------------------------
def cert_path(out_dir: str | os.PathLike[str], name: str) -> Path:
    """Path of the certificate of party ``name`` in ``out_dir``."""
    return Path(out_dir) / f"{validate_name(name)}.pem"


def key_path(out_dir: str | os.PathLike[str], name: str) -> Path:
    """Path of the private key of party ``name`` in ``out_dir``."""
    return Path(out_dir) / f"{validate_name(name)}.key"


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temporary file created with ``mode``.

    The file never exists, even for an instant, with wider permissions than
    ``mode`` (it is created so, not chmod-ed afterwards), and a reader never
    sees it half written.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> bytes:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),  # unencrypted on purpose: see the module docstring
    )
    _write_atomic(path, pem, 0o600)
    return pem


def _write_cert(path: Path, cert: x509.Certificate) -> bytes:
    pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_atomic(path, pem, 0o644)
    return pem


def _ensure_dir(out_dir: str | os.PathLike[str]) -> Path:
    path = Path(out_dir)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ParameterError(f"cannot create certificate directory {path}: {exc}") from exc
    if not path.is_dir():
        raise ParameterError(f"{path} is not a directory")
    return path


def load_credentials_paths(
    cert_dir: str | os.PathLike[str], name: str
) -> tuple[bytes, bytes, bytes]:
    """Read ``(ca_pem, cert_pem, key_pem)`` of party ``name`` from ``cert_dir``.

    These are the three byte strings gRPC's SSL credentials take.
    """
    d = Path(cert_dir)
    out = []
    for path in (d / CA_CERT_FILE, cert_path(d, name), key_path(d, name)):
        try:
            out.append(path.read_bytes())
        except OSError as exc:
            raise ParameterError(
                f"cannot read {path}: {exc.strerror or exc} (create it with `mpc-crm certs`)"
            ) from exc
    return out[0], out[1], out[2]


# -- certificates -----------------------------------------------------------------------
def _check_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= _MAX_DAYS:
        raise ParameterError(f"validity must be a whole number of days in 1..{_MAX_DAYS}, not {days!r}")
    return days


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _host_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    """DNS or IP SAN entries for ``hosts`` (an IP literal becomes an IP SAN), deduplicated."""
    if isinstance(hosts, str | bytes):
        raise ParameterError("hosts must be a list of host names or IP addresses, not one string")
    out: list[x509.GeneralName] = []
    for raw in hosts:
        if not isinstance(raw, str):
            raise ParameterError(f"host {raw!r} is not a string")
        host = raw.strip()
        if host.startswith("[") and host.endswith("]"):  # "[::1]" as written in a URL
            host = host[1:-1]
        entry: x509.GeneralName
        try:
            entry = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            name = host.rstrip(".").lower()
            labels = name.split(".")
            if labels and labels[0] == "*":  # one leading wildcard label is allowed
                labels = labels[1:]
            if not name or len(name) > 253 or not labels or not all(_DNS_LABEL_RE.fullmatch(x) for x in labels):
                raise ParameterError(f"{raw!r} is neither an IP address nor a valid DNS name") from None
            entry = x509.DNSName(name)
        if entry not in out:
            out.append(entry)
    return out


@dataclass(frozen=True)
class IssuedCert:
    """A certificate written to disk: whose it is, where its files are, and their contents."""

    identity: PeerIdentity
    ca_path: Path
    cert_path: Path
    key_path: Path
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class CertAuthority:
    """The deployment's private CA: its certificate and key, and the directory it writes to."""

    out_dir: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_path(self) -> Path:
        return self.out_dir / CA_CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.out_dir / CA_KEY_FILE

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> CertAuthority:
        """Load the CA from ``out_dir/ca.pem`` and ``out_dir/ca.key`` (to issue more certificates)."""
        d = Path(out_dir)
        try:
            cert_pem = (d / CA_CERT_FILE).read_bytes()
            key_pem = (d / CA_KEY_FILE).read_bytes()
        except OSError as exc:
            raise ParameterError(f"cannot load the CA from {d}: {exc.strerror or exc}") from exc
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"the CA files in {d} are not a PEM certificate and unencrypted key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ParameterError(f"{d / CA_KEY_FILE} is not an EC private key")
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
            raise ParameterError(f"{d / CA_KEY_FILE} does not match {d / CA_CERT_FILE}")
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise ParameterError(f"{d / CA_CERT_FILE} is not a CA certificate")
        return cls(d, cert, key)

    def issue(
        self, role: str, name: str, hosts: Sequence[str] = (), days: int = DEFAULT_DAYS
    ) -> IssuedCert:
        """Create a key and a certificate for party ``(role, name)`` and write them to ``out_dir``.

        ``hosts`` (servers only; default: loopback) are the DNS names and IP
        addresses the server is reached at. The validity never outlasts the CA's.
        """
        ident = PeerIdentity(role, name)
        _check_days(days)
        if ident.is_server:
            names = _host_names(hosts or DEFAULT_SERVER_HOSTS)
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        else:
            if hosts:
                raise ParameterError(
                    f"a {ident.role} certificate carries no host names (only the servers serve)"
                )
            names = []
            usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        out_dir = _ensure_dir(self.out_dir)
        key = _new_key()
        now = _now()
        not_after = min(now + _dt.timedelta(days=days), self.cert.not_valid_after_utc)
        try:
            ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
        except x509.ExtensionNotFound:  # a CA made by another tool
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpc-crm"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ident.role),
                x509.NameAttribute(NameOID.COMMON_NAME, ident.name),
            ]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(ident.uri), *names]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(aki, critical=False)
            .sign(self.key, hashes.SHA256())
        )
        kpath, cpath = key_path(out_dir, ident.name), cert_path(out_dir, ident.name)
        key_pem = _write_key(kpath, key)
        cert_pem = _write_cert(cpath, cert)
        return IssuedCert(ident, out_dir / CA_CERT_FILE, cpath, kpath, cert_pem, key_pem)


def create_ca(
    out_dir: str | os.PathLike[str],
    common_name: str = "mpc-crm CA",
    days: int = DEFAULT_DAYS,
    *,
    overwrite: bool = False,
) -> CertAuthority:
    """Create a self-signed CA (P-256, may sign end-entity certificates only) in ``out_dir``.

    Refuses, with :class:`ParameterError`, to replace an existing ``ca.pem`` or
    ``ca.key`` unless ``overwrite``: a new CA invalidates every certificate
    issued by the old one.
    """
    _check_days(days)
    if not isinstance(common_name, str) or not common_name.strip() or len(common_name) > 64:
        raise ParameterError("the CA common name must be 1 to 64 characters")
    d = _ensure_dir(out_dir)
    existing = [p.name for p in (d / CA_CERT_FILE, d / CA_KEY_FILE) if p.exists()]
    if existing and not overwrite:
        raise ParameterError(f"{d} already holds a CA ({', '.join(existing)}); refusing to overwrite it")
    key = _new_key()
    now = _now()
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpc-crm"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a ca.pem without its key would look like a usable CA.
    _write_key(d / CA_KEY_FILE, key)
    _write_cert(d / CA_CERT_FILE, cert)
    return CertAuthority(d, cert, key)


def user_ids(count: int) -> list[str]:
    """The default user ids ``u0001`` ... (zero-padded to at least 4 digits)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ParameterError(f"the number of users must be a non-negative integer, not {count!r}")
    width = max(4, len(str(count)))
    return [f"u{i:0{width}d}" for i in range(1, count + 1)]


def create_deployment(
    out_dir: str | os.PathLike[str],
    users: Sequence[str],
    sp_hosts: Sequence[str] = (),
    psp_hosts: Sequence[str] = (),
    *,
    frontends: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    overwrite: bool = False,
) -> dict[str, IssuedCert]:
    """Create a CA and certificates for the SP, the PSP, every user in ``users`` and every
    front end in ``frontends`` (role ``"frontend"``; an SP trusts one only if its config's
    ``frontends`` names it).

    Every argument is checked before anything is written; a name is used once across users
    and front ends (their files share the directory). Returns the issued certificates by
    party name (``"sp"``, ``"psp"``, the user ids, then the front ends); the CA's files are
    ``out_dir/ca.pem`` and ``out_dir/ca.key``.
    """
    if isinstance(users, str):
        raise ParameterError("users must be a list of user ids, not one string")
    if isinstance(frontends, str):
        raise ParameterError("frontends must be a list of names, not one string")
    _check_days(days)
    seen: dict[str, str] = {}
    for role, names in (("user", users), ("frontend", frontends)):
        for name in names:
            PeerIdentity(role, name)
            folded = name.lower()
            if folded in seen:
                raise ParameterError(
                    f"{role} name {name!r} given twice (names are compared case-insensitively, "
                    "across users and front ends)"
                )
            seen[folded] = name
    _host_names(sp_hosts or DEFAULT_SERVER_HOSTS)
    _host_names(psp_hosts or DEFAULT_SERVER_HOSTS)

    ca = create_ca(out_dir, days=days, overwrite=overwrite)
    issued = {
        "sp": ca.issue("sp", "sp", sp_hosts, days=days),
        "psp": ca.issue("psp", "psp", psp_hosts, days=days),
    }
    for uid in users:
        issued[uid] = ca.issue("user", uid, days=days)
    for name in frontends:
        issued[name] = ca.issue("frontend", name, days=days)
    return issued
