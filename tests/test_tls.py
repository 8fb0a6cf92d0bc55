"""HTTPS on the building's network: the node-local CA (name-constrained, keys 0600, renewed before expiry) and the
manager's own certificate (checked at start-up with clear errors), served over real TLS on loopback."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import plistlib
import socket
import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from node.config import build, load
from node.errors import ConfigError
from node.keys import TLS
from node.tls.authority import TlsError, Wanted, issue, write_private
from node.tls.files import check
from tests.conftest import free_port
from tests.procs import NodeProcess

NAME = "nnode-test.local"
LOCAL_CA = {"http__names": [NAME], "http__tls": {"mode": "local-ca"}}
DAY = datetime.timedelta(days=1)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def trusting(ca_pem: bytes) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    return context


async def served_cert(node, ca_pem: bytes) -> x509.Certificate:
    """The certificate the node's HTTPS port presents for NAME, verified against the CA as a browser would."""
    reader, writer = await asyncio.open_connection("127.0.0.1", node.tls_port, ssl=trusting(ca_pem),
                                                   server_hostname=NAME)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        await writer.wait_closed()
    return x509.load_der_x509_certificate(der)


def verify(ca: x509.Certificate, leaf: x509.Certificate, name: x509.verification.Subject) -> None:
    verifier = PolicyBuilder().store(Store([ca])).time(now()).build_server_verifier(name)
    verifier.verify(leaf, [])


async def test_local_ca_serves_https_for_the_node_names_only(make_node):
    node = await make_node("a", **LOCAL_CA)
    folder = node.config.node.data_dir / "tls"
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600, key
    ca_pem = (folder / "ca.pem").read_bytes()
    ca = x509.load_pem_x509_certificate(ca_pem)
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert NAME in [n.value for n in constraints.value.permitted_subtrees if isinstance(n, x509.DNSName)]

    leaf = await served_cert(node, ca_pem)
    verify(ca, leaf, x509.DNSName(NAME))

    # A certificate the CA's key signs for any other name fails verification against the CA (its constraints),
    # so a resident who trusts this CA trusts nothing but this node.
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    for name, subject in (("bank.example", x509.DNSName("bank.example")),
                          ("evil.nnode-test.local.example", x509.DNSName("evil.nnode-test.local.example"))):
        _, forged = issue(ca_key, ca, Wanted(frozenset({name}), frozenset()))
        with pytest.raises(VerificationError):
            verify(ca, forged, subject)
    outside = ipaddress.ip_address("203.0.113.7")
    _, forged = issue(ca_key, ca, Wanted(frozenset(), frozenset({outside})))
    with pytest.raises(VerificationError):
        verify(ca, forged, x509.verification.IPAddress(outside))

    # The same routes over HTTPS: the Host at the HTTPS port is one of the node's names (no 421).
    async with aiohttp.ClientSession() as client:
        url = f"https://127.0.0.1:{node.tls_port}"
        kwargs = {"ssl": trusting(ca_pem), "server_hostname": NAME, "headers": {"Host": f"{NAME}:{node.tls_port}"}}
        async with client.get(url + "/join", **kwargs) as resp:
            assert resp.status == 200
        async with client.get(url + "/api/tls", **kwargs) as resp:
            info = await resp.json()
        async with client.get(node.url + "/tls/ca.der") as resp:
            assert resp.headers["Content-Type"] == "application/x-x509-ca-cert"
            der = await resp.read()
        async with client.get(node.url + "/tls/ca.mobileconfig") as resp:
            assert resp.headers["Content-Type"] == "application/x-apple-aspen-config"
            profile = plistlib.loads(await resp.read())
    assert der == ca.public_bytes(serialization.Encoding.DER)
    assert info["mode"] == "local-ca" and info["port"] == node.tls_port
    assert info["fingerprint"] == ca.fingerprint(hashes.SHA256()).hex(":").upper()
    assert profile["PayloadContent"][0]["PayloadType"] == "com.apple.security.root"
    assert profile["PayloadContent"][0]["PayloadContent"] == der


async def test_plain_http_pages_may_probe_the_https_address(make_node):
    node = await make_node("a", **LOCAL_CA)
    async with aiohttp.ClientSession() as client:
        async with client.get(node.url + "/", headers={"Host": f"{NAME}:{node.port}"}) as resp:
            assert resp.status == 200
            assert f"connect-src 'self' https://{NAME}:{node.tls_port};" in resp.headers["Content-Security-Policy"]
        async with client.get(node.url + "/healthz") as resp:   # peers and monitors keep plain HTTP
            assert resp.status == 200


async def test_the_server_certificate_is_renewed_before_it_expires(make_node):
    node = await make_node("a", **LOCAL_CA)
    ca_pem = (node.config.node.data_dir / "tls" / "ca.pem").read_bytes()
    first = await served_cert(node, ca_pem)
    state = node.app[TLS]
    assert not await asyncio.to_thread(state.refresh)              # not due: nothing changes
    assert (await served_cert(node, ca_pem)).serial_number == first.serial_number
    # A certificate with 10 days left (the node was off while it aged) is due: re-issued and served at once.
    folder = node.config.node.data_dir / "tls"
    ca = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = Wanted(frozenset(sans.get_values_for_type(x509.DNSName)),
                   frozenset(sans.get_values_for_type(x509.IPAddress)))
    key, aged = issue(ca_key, ca, names, now() - 80 * DAY)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    await asyncio.to_thread(write_private, folder / "server.key", key_pem)
    await asyncio.to_thread(write_private, folder / "server.pem", aged.public_bytes(serialization.Encoding.PEM))
    assert await asyncio.to_thread(state.refresh)
    renewed = await served_cert(node, ca_pem)                       # served at once, no restart
    assert renewed.serial_number != first.serial_number
    # a fresh 90 days, not the aged certificate's 10 (the first one may end in the same second: both are new)
    assert renewed.not_valid_after_utc >= first.not_valid_after_utc
    assert renewed.not_valid_after_utc - aged.not_valid_after_utc > datetime.timedelta(days=70)
    # The CA is the one residents installed: kept across restarts, and so is a certificate not yet due.
    await node.stop()
    await node.start()
    assert (node.config.node.data_dir / "tls" / "ca.pem").read_bytes() == ca_pem
    assert (await served_cert(node, ca_pem)).serial_number == renewed.serial_number


def own_certificate(folder, host: str, *, days: int = 60, start: datetime.datetime | None = None):
    """A manager's certificate for `host` from a CA of their own (as ACME would give), in PEM files."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test ACME")])
    start = start or now() - DAY
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(start).not_valid_after(start + 3650 * DAY)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(start).not_valid_after(start + days * DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "privkey.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return folder / "fullchain.pem", folder / "privkey.pem", ca.public_bytes(pem)


async def test_the_managers_own_certificate_is_served(make_node, short_tmp):
    cert_file, key_file, ca_pem = own_certificate(short_tmp / "acme", NAME)
    node = await make_node("a", http__url=f"https://{NAME}:8471", http__tls={
        "mode": "files", "cert_file": str(cert_file), "key_file": str(key_file)})
    served = await served_cert(node, ca_pem)
    assert served.subject.rfc4514_string() == f"CN={NAME}"
    async with aiohttp.ClientSession() as client:
        async with client.get(node.url + "/tls/ca.der") as resp:
            assert resp.status == 404    # no local CA to install: the manager's is trusted already


def test_the_managers_certificate_is_checked_with_clear_errors(short_tmp):
    cert_file, key_file, _ = own_certificate(short_tmp / "good", NAME)
    assert len(check(cert_file, key_file, NAME).split(":")) == 32
    with pytest.raises(TlsError, match=r"cert_file: .*missing\.pem: no such file"):
        check(short_tmp / "missing.pem", key_file, NAME)
    other_cert, other_key, _ = own_certificate(short_tmp / "other", NAME)
    with pytest.raises(TlsError, match="does not match the certificate"):
        check(cert_file, other_key, NAME)
    with pytest.raises(TlsError, match=r"is not for node\.example\.org"):
        check(cert_file, key_file, "node.example.org")
    old_cert, old_key, _ = own_certificate(short_tmp / "old", NAME, days=30, start=now() - 40 * DAY)
    with pytest.raises(TlsError, match="the certificate expired on"):
        check(old_cert, old_key, NAME)
    (short_tmp / "junk.pem").write_text("not a certificate")
    with pytest.raises(TlsError, match="not a certificate in PEM"):
        check(short_tmp / "junk.pem", key_file, NAME)


async def test_a_node_with_a_bad_certificate_does_not_start(make_node, short_tmp):
    cert_file, _, _ = own_certificate(short_tmp / "acme", NAME)
    _, other_key, _ = own_certificate(short_tmp / "other", NAME)
    with pytest.raises(TlsError, match="does not match"):
        await make_node("a", http__url=f"https://{NAME}:8471", http__tls={
            "mode": "files", "cert_file": str(cert_file), "key_file": str(other_key)})


def test_tls_settings_are_checked():
    with pytest.raises(ConfigError, match=r"http\.url: .*needs http\.url"):
        build({"http.tls": {"mode": "files", "cert_file": "/c.pem", "key_file": "/k.pem"}})
    with pytest.raises(ConfigError, match=r"http\.tls\.port: expected a port other than http\.port"):
        build({"http.port": 9000, "http.tls": {"mode": "local-ca", "port": 9000}})
    with pytest.raises(ConfigError, match=r"needs cert_file and key_file"):
        build({"http.tls": {"mode": "files"}})
    with pytest.raises(ConfigError, match=r"http\.tls\.ca_networks: expected a list of networks in CIDR form"):
        build({"http.tls": {"mode": "local-ca", "ca_networks": ["not a network"]}})


def test_nnode_run_serves_https_beside_http_and_invites_carry_the_fingerprint(short_tmp):
    tls_port = free_port()
    node = NodeProcess(short_tmp, "tls", extra=f'[http.tls]\nmode = "local-ca"\nport = {tls_port}\n').start()
    try:
        ca_pem = (node.root / "data" / "tls" / "ca.pem").read_bytes()
        mdns_name = socket.gethostname().lower().removesuffix(".local") + ".local"   # a name the certificate has
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw, \
                trusting(ca_pem).wrap_socket(raw, server_hostname=mdns_name) as tls:
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {mdns_name}:{tls_port}\r\nConnection: close\r\n\r\n"
                        .encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and node.id.encode() in answer
        fingerprint = x509.load_pem_x509_certificate(ca_pem).fingerprint(hashes.SHA256()).hex(":").upper()
        assert fingerprint in node.cli("invite", "--unit", "1A")
    finally:
        node.stop()


def test_the_appliance_serves_https_from_its_local_ca():
    config = load(Path(__file__).parent.parent / "firmware" / "rootfs" / "etc" / "nnode" / "config.toml.default")
    assert config.http.tls.mode == "local-ca" and config.http.tls.port == 8471
