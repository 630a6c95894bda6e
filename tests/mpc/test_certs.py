"""Certificates (mpc.parties.certs) and a real mutual-TLS handshake over loopback with grpc.aio."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from mpc.errors import AuthorizationError, ParameterError
from mpc.parties import certs, certs_cli
from mpc.parties.certs import (
    CertAuthority,
    PeerIdentity,
    create_ca,
    create_deployment,
    identity_from_pem,
    load_credentials_paths,
)


def _cert(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, sp, psp and two users."""
    out = tmp_path_factory.mktemp("deploy") / "certs"
    create_deployment(out, ["u0001", "alice.b-2_x"])
    return out


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another deployment with the same party names, under another CA."""
    out = tmp_path_factory.mktemp("foreign")
    create_deployment(out, ["u0001"])
    return out


# -- files -------------------------------------------------------------------------------
def test_deployment_writes_every_file_with_private_keys_0600(tmp_path: Path) -> None:
    out = tmp_path / "new" / "certs"
    old = os.umask(0)  # even with a permissive umask, keys must never be readable by others
    try:
        issued = create_deployment(out, ["u0001", "u0002"])
    finally:
        os.umask(old)
    assert list(issued) == ["sp", "psp", "u0001", "u0002"]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        ["ca.pem", "ca.key"] + [f"{n}.{ext}" for n in issued for ext in ("pem", "key")]
    )  # and no temporary files left behind
    assert _mode(out) == 0o700
    for p in out.glob("*.key"):
        assert _mode(p) == 0o600, p
    for p in out.glob("*.pem"):
        assert _mode(p) == 0o644, p
    for name, got in issued.items():
        assert got.cert_path == out / f"{name}.pem"
        assert got.key_path == out / f"{name}.key"
        assert got.ca_path == out / "ca.pem"
        assert got.cert_path.read_bytes() == got.cert_pem
        assert got.key_path.read_bytes() == got.key_pem
        assert got.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


def test_rewriting_a_key_keeps_mode_0600(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    victim = tmp_path / "u0001.key"
    victim.write_bytes(b"old")
    victim.chmod(0o644)
    ca.issue("user", "u0001")
    assert _mode(victim) == 0o600
    assert victim.read_bytes() != b"old"


def test_load_credentials_paths(deployment: Path) -> None:
    ca, cert, key = load_credentials_paths(deployment, "u0001")
    assert ca == (deployment / "ca.pem").read_bytes()
    assert cert == (deployment / "u0001.pem").read_bytes()
    assert key == (deployment / "u0001.key").read_bytes()
    with pytest.raises(ParameterError, match=r"u9999\.pem"):
        load_credentials_paths(deployment, "u9999")
    with pytest.raises(ParameterError):
        load_credentials_paths(deployment, "../ca")


# -- identities --------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "name"), [("sp", "sp"), ("psp", "psp"), ("user", "u0001"), ("user", "alice.b-2_x")])
def test_identity_round_trip(deployment: Path, role: str, name: str) -> None:
    pem = (deployment / f"{name}.pem").read_bytes()
    ident = identity_from_pem(pem)
    assert ident == PeerIdentity(role, name)
    assert (ident.role, ident.name) == (role, name)
    assert identity_from_pem(pem.decode()) == ident  # str accepted too
    assert identity_from_pem(pem) is ident  # cached: servers parse on every request
    cert = _cert(pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"urn:mpc-crm:{role}:{name}"]


def test_peer_identity_is_a_frozen_hashable_value() -> None:
    a = PeerIdentity("user", "u0001")
    assert a == PeerIdentity("user", "u0001") and len({a, PeerIdentity("user", "u0001")}) == 1
    assert a.uri == "urn:mpc-crm:user:u0001" and str(a) == "user:u0001"
    with pytest.raises(AttributeError):
        a.role = "sp"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["", "a b", "x" * 65, "ü", "a/b", "a:b", "..", ".", "ca", "CA", "sp", "PSP", None, 7],
)
def test_bad_user_names_are_refused(tmp_path: Path, name: Any) -> None:
    ca = create_ca(tmp_path)
    with pytest.raises(ParameterError):
        ca.issue("user", name)
    with pytest.raises(ParameterError):
        PeerIdentity("user", name)


def test_longest_name_is_accepted(tmp_path: Path) -> None:
    name = "A-z.0_" + "9" * 58
    got = create_ca(tmp_path).issue("user", name)
    assert identity_from_pem(got.cert_pem) == PeerIdentity("user", name)


@pytest.mark.parametrize(
    ("role", "name", "kwargs"),
    [
        ("admin", "u0001", {}),  # unknown role
        ("sp", "sp2", {}),  # the SP is named "sp"
        ("psp", "sp", {}),
        ("user", "u0001", {"hosts": ["localhost"]}),  # users do not serve
        ("sp", "sp", {"hosts": ["bad host"]}),
        ("sp", "sp", {"hosts": ["-bad.example"]}),
        ("sp", "sp", {"hosts": "localhost"}),  # one string, not a list
        ("sp", "sp", {"days": 0}),
        ("user", "u0001", {"days": 1.5}),
    ],
)
def test_bad_issue_arguments_are_refused(tmp_path: Path, role: str, name: str, kwargs: dict) -> None:
    ca = create_ca(tmp_path)
    with pytest.raises(ParameterError):
        ca.issue(role, name, **kwargs)
    assert not list(tmp_path.glob("[!c]*"))  # nothing but the CA was written


def test_deployment_checks_everything_before_writing(tmp_path: Path) -> None:
    for users, hosts in [(["u0001", "bad name"], []), (["u1", "U1"], []), (["u0001"], ["no spaces"])]:
        with pytest.raises(ParameterError):
            create_deployment(tmp_path / "d", users, sp_hosts=hosts)
        assert not (tmp_path / "d").exists()
    with pytest.raises(ParameterError):
        create_deployment(tmp_path / "d", "u0001")  # a string, not a list of ids


def _self_signed_leaf(sans: Sequence[x509.GeneralName] | None) -> bytes:
    """A certificate built directly with cryptography, with the given SANs (None: no SAN at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "u0001")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


URI = x509.UniformResourceIdentifier


@pytest.mark.parametrize(
    "sans",
    [
        None,  # no SAN: a CN alone is not an identity
        [x509.DNSName("u0001")],
        [URI("https://example.org/u0001")],
        [URI("urn:mpc-crm:admin:u0001")],  # unknown role
        [URI("urn:mpc-crm:user")],  # no name
        [URI("urn:mpc-crm:user:")],
        [URI("urn:mpc-crm:user:a/b")],
        [URI("urn:mpc-crm:sp:u0001")],  # the SP is named "sp"
        [URI("urn:mpc-crm:user:sp")],
        [URI("urn:mpc-crm:user:u0001"), URI("urn:mpc-crm:sp:sp")],  # more than one identity
        [URI("urn:mpc-crm:user:u0001"), URI("urn:mpc-crm:user:u0001")],
    ],
)
def test_certificate_without_one_valid_identity_is_refused(sans: list | None) -> None:
    with pytest.raises(AuthorizationError):
        identity_from_pem(_self_signed_leaf(sans))


def test_other_uris_next_to_the_identity_are_ignored() -> None:
    pem = _self_signed_leaf([URI("https://example.org/"), URI("urn:mpc-crm:user:u0001"), x509.DNSName("x.org")])
    assert identity_from_pem(pem) == PeerIdentity("user", "u0001")


@pytest.mark.parametrize("junk", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_unreadable_pem_is_refused(junk: bytes) -> None:
    with pytest.raises(AuthorizationError):
        identity_from_pem(junk)


# -- certificate contents --------------------------------------------------------------------
def test_ca_certificate(deployment: Path) -> None:
    ca = _cert((deployment / "ca.pem").read_bytes())
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=365) < life < dt.timedelta(days=365, hours=1)
    assert ca.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)


def _eku(cert: x509.Certificate) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_party_certificates_verify_under_rfc5280_policy(deployment: Path) -> None:
    ca = _cert((deployment / "ca.pem").read_bytes())
    store = Store([ca])
    user = _cert((deployment / "u0001.pem").read_bytes())
    user.verify_directly_issued_by(ca)
    assert _eku(user) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(user.public_key(), ec.EllipticCurvePublicKey)
    assert user.public_key().curve.name == "secp256r1"
    PolicyBuilder().store(store).build_client_verifier().verify(user, [])
    for name in ("sp", "psp"):
        server = _cert((deployment / f"{name}.pem").read_bytes())
        assert _eku(server) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        PolicyBuilder().store(store).build_client_verifier().verify(server, [])
        for host in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
            PolicyBuilder().store(store).build_server_verifier(host).verify(server, [])
    # A user certificate cannot pass for a server.
    with pytest.raises(x509.verification.VerificationError):
        PolicyBuilder().store(store).build_server_verifier(x509.DNSName("localhost")).verify(user, [])


def test_server_hosts_become_dns_and_ip_sans(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    got = ca.issue("sp", "sp", hosts=["SP.Example.org", "10.0.0.5", "[2001:db8::1]", "10.0.0.5", "*.internal.example"])
    san = _cert(got.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["sp.example.org", "*.internal.example"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.5"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:mpc-crm:sp:sp"]
    default = _cert(ca.issue("psp", "psp").cert_pem)
    dsan = default.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert dsan.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in dsan.get_values_for_type(x509.IPAddress)


def test_validity_days_and_clamped_to_the_ca(tmp_path: Path) -> None:
    ca = create_ca(tmp_path, common_name="test CA", days=10)
    short = _cert(ca.issue("user", "u1", days=3).cert_pem)
    now = dt.datetime.now(dt.UTC)
    assert short.not_valid_before_utc < now  # slightly in the past, for clock skew
    assert dt.timedelta(days=2, hours=23) < short.not_valid_after_utc - now <= dt.timedelta(days=3)
    long = _cert(ca.issue("user", "u2", days=365).cert_pem)
    assert long.not_valid_after_utc == ca.cert.not_valid_after_utc  # never outlives its CA
    assert ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test CA"


def test_existing_ca_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    first = create_ca(tmp_path)
    with pytest.raises(ParameterError, match="refusing to overwrite"):
        create_ca(tmp_path)
    with pytest.raises(ParameterError, match="refusing to overwrite"):
        create_deployment(tmp_path, ["u0001"])
    assert (tmp_path / "ca.pem").read_bytes() == first.cert_pem
    second = create_ca(tmp_path, overwrite=True)
    assert second.cert_pem != first.cert_pem
    assert (tmp_path / "ca.pem").read_bytes() == second.cert_pem


def test_load_ca_and_issue_more(deployment: Path, tmp_path: Path, foreign: Path) -> None:
    ca = CertAuthority.load(deployment)
    assert ca.cert_pem == (deployment / "ca.pem").read_bytes()
    # Issue into another directory, so as not to disturb the shared fixture.
    other = CertAuthority(tmp_path, ca.cert, ca.key)
    got = other.issue("user", "late-joiner")
    _cert(got.cert_pem).verify_directly_issued_by(ca.cert)
    assert identity_from_pem(got.cert_pem) == PeerIdentity("user", "late-joiner")
    with pytest.raises(ParameterError):
        CertAuthority.load(tmp_path / "nowhere")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "ca.pem").write_bytes((deployment / "ca.pem").read_bytes())
    (mixed / "ca.key").write_bytes((foreign / "ca.key").read_bytes())
    with pytest.raises(ParameterError, match="does not match"):
        CertAuthority.load(mixed)
    (mixed / "ca.key").write_bytes((deployment / "u0001.key").read_bytes())
    (mixed / "ca.pem").write_bytes((deployment / "u0001.pem").read_bytes())
    with pytest.raises(ParameterError, match="not a CA"):
        CertAuthority.load(mixed)


def test_user_ids() -> None:
    assert certs.user_ids(3) == ["u0001", "u0002", "u0003"]
    assert certs.user_ids(0) == []
    assert certs.user_ids(12345)[-1] == "u12345"
    with pytest.raises(ParameterError):
        certs.user_ids(-1)


def test_certs_modules_do_not_load_grpc() -> None:
    # `mpc-crm certs` must work without loading gRPC; checked in a fresh interpreter.
    code = "import sys, mpc.parties.certs, mpc.parties.certs_cli; print('grpc' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(Path(certs.__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "False"


# -- CLI -----------------------------------------------------------------------------------
def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mpc-crm certs")
    certs_cli.add_arguments(parser)
    return certs_cli.run(parser.parse_args(argv))


def test_cli_creates_refuses_and_forces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c"
    assert _run_cli(["--out", str(out), "--users", "3", "--sp-host", "sp.example.org",
                     "--sp-host", "10.1.2.3", "--days", "30"]) == 0
    printed = capsys.readouterr().out
    for name in ("ca", "sp", "psp", "u0001", "u0002", "u0003"):
        assert str(out / f"{name}.pem") in printed and str(out / f"{name}.key") in printed
    assert "sp.example.org, 10.1.2.3" in printed
    sp = _cert((out / "sp.pem").read_bytes())
    assert sp.not_valid_after_utc - sp.not_valid_before_utc <= dt.timedelta(days=30, minutes=5)
    ca_before = (out / "ca.pem").read_bytes()

    assert _run_cli(["--out", str(out), "--users", "1"]) == 2
    err = capsys.readouterr().err
    assert "already holds a CA" in err and "--force" in err
    assert (out / "ca.pem").read_bytes() == ca_before

    assert _run_cli(["--out", str(out), "--user-ids", "alice, bob", "--force"]) == 0
    captured = capsys.readouterr()
    assert (out / "ca.pem").read_bytes() != ca_before
    assert identity_from_pem((out / "bob.pem").read_bytes()) == PeerIdentity("user", "bob")
    assert "u0001.pem" in captured.err  # stale files from the old CA are pointed out


def test_cli_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _run_cli(["--out", str(tmp_path), "--users", "2", "--user-ids", "a"])  # exclusive
    with pytest.raises(SystemExit):
        _run_cli(["--out", str(tmp_path), "--days", "0"])
    with pytest.raises(ParameterError):
        _run_cli(["--out", str(tmp_path / "x"), "--user-ids", "a,,b"])
    with pytest.raises(ParameterError):
        _run_cli(["--out", str(tmp_path / "x"), "--user-ids", "a b"])


def test_cli_through_the_mpc_crm_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("mpc.cli")
    monkeypatch.setattr(sys, "argv", ["mpc-crm"])
    assert cli.main(["certs", "--out", str(tmp_path), "--users", "1"]) == 0
    assert (tmp_path / "u0001.key").exists()
    assert cli.main(["certs", "--out", str(tmp_path)]) == 2
    assert cli.main(["certs", "--out", str(tmp_path / "y"), "--user-ids", "no/slash"]) == 1
    assert "invalid party name" in capsys.readouterr().err


# -- a real mutual-TLS handshake over loopback -----------------------------------------------
# Test-only helpers; the production ones live in mpc.parties.rpc.
def tls_server_credentials(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)


def tls_channel_credentials(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)


@contextlib.asynccontextmanager
async def whoami_server(ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> AsyncIterator[tuple[int, list]]:
    """A server on 127.0.0.1 whose one method answers "role:name" of the caller's certificate.

    Yields the port and a list that receives the auth_context() of every call it handles.
    """
    seen: list[dict[str, list[bytes]]] = []

    async def whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        auth = context.auth_context()
        seen.append(auth)
        try:
            ident = identity_from_pem(auth["x509_pem_cert"][0])
        except (KeyError, IndexError, AuthorizationError) as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        return str(ident).encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Certs", {"WhoAmI": grpc.unary_unary_rpc_method_handler(whoami)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", tls_server_credentials(ca_pem, cert_pem, key_pem))
    await server.start()
    try:
        yield port, seen
    finally:
        await server.stop(None)


async def call_whoami(target: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
                      options: Sequence[tuple[str, Any]] = ()) -> bytes:
    creds = tls_channel_credentials(ca_pem, cert_pem, key_pem)
    async with grpc.aio.secure_channel(target, creds, options=list(options)) as channel:
        return await channel.unary_unary("/test.Certs/WhoAmI")(b"", timeout=5)


async def test_mtls_accepts_a_user_of_the_same_ca(deployment: Path) -> None:
    async with whoami_server(*load_credentials_paths(deployment, "sp")) as (port, seen):
        ca, cert, key = load_credentials_paths(deployment, "u0001")
        assert await call_whoami(f"localhost:{port}", ca, cert, key) == b"user:u0001"
        auth = seen[-1]
        assert auth["x509_pem_cert"] == [cert]  # exactly the PEM we issued
        assert auth["x509_common_name"] == [b"u0001"]
        assert auth["peer_uri"] == [b"urn:mpc-crm:user:u0001"]
        assert auth["transport_security_type"] == [b"ssl"]
        # The servers call each other as clients, with their server certificates.
        assert await call_whoami(f"127.0.0.1:{port}", *load_credentials_paths(deployment, "psp")) == b"psp:psp"
        assert seen[-1]["peer_uri"] == [b"urn:mpc-crm:psp:psp"]


async def test_mtls_refuses_a_client_of_another_ca(deployment: Path, foreign: Path) -> None:
    async with whoami_server(*load_credentials_paths(deployment, "sp")) as (port, seen):
        ca = (deployment / "ca.pem").read_bytes()  # the client trusts the right CA ...
        _, cert, key = load_credentials_paths(foreign, "u0001")  # ... but its cert is foreign
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call_whoami(f"localhost:{port}", ca, cert, key)
        # The server rejects the client certificate after the client finished its side of the
        # TLS 1.3 handshake, so the client sees the connection closed: "... Socket closed".
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert seen == []  # the handler never ran


async def test_mtls_client_refuses_a_server_of_another_ca(deployment: Path, foreign: Path) -> None:
    async with whoami_server(*load_credentials_paths(deployment, "sp")) as (port, seen):
        ca, cert, key = load_credentials_paths(foreign, "u0001")  # trusts only the foreign CA
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call_whoami(f"localhost:{port}", ca, cert, key)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "handshake" in (info.value.details() or "").lower()
        assert seen == []


async def test_mtls_checks_the_server_host_name(deployment: Path, tmp_path: Path) -> None:
    ca = CertAuthority.load(deployment)
    remote_sp = CertAuthority(tmp_path, ca.cert, ca.key).issue("sp", "sp", hosts=["sp.example.org"])
    async with whoami_server(ca.cert_pem, remote_sp.cert_pem, remote_sp.key_pem) as (port, _):
        creds = load_credentials_paths(deployment, "u0001")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call_whoami(f"localhost:{port}", *creds)  # the certificate is not for localhost
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        override = [("grpc.ssl_target_name_override", "sp.example.org")]
        assert await call_whoami(f"localhost:{port}", *creds, options=override) == b"user:u0001"
