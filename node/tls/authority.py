"""The node-local certificate authority: a CA name-constrained to this node's own names and addresses, which
residents install once, and the server certificate it issues and renews.

The CA's NameConstraints extension (critical) permits only the DNS names and IP ranges fixed when it was made; a
certificate it signed for any other name is refused by every verifier that honours constraints (browsers do), so a
resident who trusts it trusts this node and nothing else. Both private keys stay in the data folder, mode 0600.
Everything here is blocking (key generation, files): callers run it in a thread.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import plistlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from node.durable import write_private
from node.errors import NodeError

log = logging.getLogger("nnode.tls")

CA_DAYS = 3650            # residents install the CA once; it outlives the hardware's likely service life
LEAF_DAYS = 90            # the server certificate, short-lived like ACME's
RENEW_BEFORE_DAYS = 30    # re-issued when fewer days than this are left
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TlsError(NodeError):
    """The node's certificates cannot be made, read or used (the message says which file and why)."""


@dataclass(frozen=True)
class Wanted:
    """The names a server certificate should carry: DNS names and IP addresses."""

    dns: frozenset[str]
    ips: frozenset[IPAddress]


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint as phones show it: 32 upper-case hex pairs joined by colons."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(name: str, wanted: Wanted, networks: tuple[IPNetwork, ...], now: datetime.datetime | None = None
            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new CA for `name`, permitted to name `wanted.dns` (and their subdomains) and `networks` (else each of
    `wanted.ips` alone); with no address at all, every IP address is excluded, so none can be named."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name[:40]} local CA"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Neighborhood Node")])
    permitted_ips = list(networks) or [ipaddress.ip_network(ip) for ip in sorted(wanted.ips, key=str)]
    permitted: list[x509.GeneralName] = [x509.DNSName(dns) for dns in sorted(wanted.dns)]
    permitted += [x509.IPAddress(network) for network in permitted_ips]
    excluded: list[x509.GeneralName] | None = None
    if not permitted_ips:   # a constraint on DNS names alone would leave every address unconstrained
        excluded = [x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")), x509.IPAddress(ipaddress.ip_network("::/0"))]
    public = key.public_key()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _constraints(ca: x509.Certificate) -> tuple[list[str], list[IPNetwork]]:
    value = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    subtrees = value.permitted_subtrees or []
    networks = [n.value for n in subtrees if isinstance(n, x509.IPAddress)]
    return ([n.value for n in subtrees if isinstance(n, x509.DNSName)],
            [n for n in networks if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network))])


def permitted(ca: x509.Certificate, wanted: Wanted) -> Wanted:
    """The part of `wanted` the CA's name constraints allow."""
    domains, networks = _constraints(ca)
    dns = {d for d in wanted.dns if any(d == p or d.endswith("." + p) for p in domains)}
    ips = {ip for ip in wanted.ips if any(ip.version == n.version and ip in n for n in networks)}
    return Wanted(frozenset(dns), frozenset(ips))


def issue(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, names: Wanted,
          now: datetime.datetime | None = None, days: int = LEAF_DAYS
          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A server certificate for `names` (which the CA must permit), valid `days`."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in sorted(names.dns)]
    sans += [x509.IPAddress(ip) for ip in sorted(names.ips, key=str)]
    first = sorted(names.dns)[0] if names.dns else str(sorted(names.ips, key=str)[0])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first[:64])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _names_in(cert: x509.Certificate) -> Wanted:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = sans.get_values_for_type(x509.IPAddress)
    return Wanted(frozenset(sans.get_values_for_type(x509.DNSName)),
                  frozenset(ip for ip in ips if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))))


class LocalCA:
    """The CA and server certificate files in `folder` (the data folder's tls/): made on first use, the server
    certificate re-issued before it expires or when the node gains a name the CA permits."""

    def __init__(self, folder: Path, name: str, networks: tuple[str, ...]) -> None:
        self.folder = folder
        self.name = name
        self.networks = tuple(ipaddress.ip_network(n) for n in networks)
        self.ca_key_path, self.ca_path = folder / "ca.key", folder / "ca.pem"
        self.key_path, self.cert_path = folder / "server.key", folder / "server.pem"

    def _read(self, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise TlsError(f"{path}: cannot read: {exc.strerror or exc}") from exc

    def ca(self, wanted: Wanted) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """The CA's key and certificate, made now if this node has none."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.ca_path.exists():
            key, cert = make_ca(self.name, wanted, self.networks)
            write_private(self.ca_key_path, _key_pem(key))
            write_private(self.ca_path, cert.public_bytes(serialization.Encoding.PEM))
            log.info("made the node's local CA", extra={"fingerprint": fingerprint(self.der(cert))})
            return key, cert
        try:
            cert = x509.load_pem_x509_certificate(self._read(self.ca_path))
            loaded = serialization.load_pem_private_key(self._read(self.ca_key_path), None)
        except ValueError as exc:
            raise TlsError(f"{self.folder}: the local CA's files are damaged ({exc}); move ca.key and ca.pem away "
                           "to make a new CA (residents then install it again)") from exc
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise TlsError(f"{self.ca_key_path}: not the node's CA key (expected an EC key)")
        return loaded, cert

    @staticmethod
    def der(cert: x509.Certificate) -> bytes:
        """A certificate in DER, as phones install it."""
        return cert.public_bytes(serialization.Encoding.DER)

    def ensure(self, wanted: Wanted, now: datetime.datetime | None = None) -> tuple[x509.Certificate, bool]:
        """(the CA certificate, whether the server certificate was (re)issued now)."""
        now = now or _now()
        ca_key, ca = self.ca(wanted)
        names = permitted(ca, wanted)
        if names != wanted:
            log.warning("names the local CA does not cover are left out of the node's certificate (a new CA would "
                        "cover them: docs/operations.md)",
                        extra={"names": sorted([*(wanted.dns - names.dns), *map(str, wanted.ips - names.ips)])})
        if not names.dns and not names.ips:
            raise TlsError(f"{self.ca_path}: the local CA covers none of this node's names now; move ca.key and "
                           "ca.pem away to make a new one")
        current = self._current()
        if current is not None:
            left = current.not_valid_after_utc - now
            have = _names_in(current)
            if left > datetime.timedelta(days=RENEW_BEFORE_DAYS) and names.dns <= have.dns and names.ips <= have.ips:
                return ca, False
        key, cert = issue(ca_key, ca, names, now)
        write_private(self.key_path, _key_pem(key))
        write_private(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        log.info("issued the node's server certificate", extra={"until": cert.not_valid_after_utc.isoformat()})
        return ca, True

    def _current(self) -> x509.Certificate | None:
        if not (self.cert_path.exists() and self.key_path.exists()):
            return None
        try:
            return x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (OSError, ValueError):
            return None   # damaged: issue a new one


def mobileconfig(ca_der: bytes, node_name: str) -> bytes:
    """An iOS configuration profile installing the CA as a trusted root (unsigned: iOS shows it as "Not Signed")."""
    digest = hashlib.sha256(ca_der).hexdigest()
    ident = f"org.neighborhood-node.ca.{digest[:16]}"
    payload = {
        "PayloadCertificateFileName": "nnode-ca.cer", "PayloadContent": ca_der,
        "PayloadDescription": f"Lets this device check the secure address of {node_name}.",
        "PayloadDisplayName": f"{node_name} local CA", "PayloadIdentifier": ident + ".cert",
        "PayloadType": "com.apple.security.root", "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_OID, digest + ".c")),
        "PayloadVersion": 1}
    profile = {
        "PayloadContent": [payload], "PayloadDisplayName": f"{node_name}: secure connection",
        "PayloadDescription": f"Installs the certificate authority of {node_name}, limited to its own names and "
                              "addresses. Check its SHA-256 fingerprint against the invite page.",
        "PayloadIdentifier": ident, "PayloadOrganization": "Neighborhood Node", "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration", "PayloadUUID": str(uuid.uuid5(uuid.NAMESPACE_OID, digest)),
        "PayloadVersion": 1}
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
