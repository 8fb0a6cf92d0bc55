"""The manager's own certificate (`http.tls.mode = "files"`): read and checked before the node serves with it, so
a missing file, a key that does not match, an expired certificate or one for other names is one clear line."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from node.tls.authority import TlsError, fingerprint


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"http.tls.{what}: {path}: no such file") from None
    except OSError as exc:
        raise TlsError(f"http.tls.{what}: {path}: cannot read: {exc.strerror or exc}") from exc


def covers(cert: x509.Certificate, host: str) -> bool:
    """Whether the certificate's subjectAltNames name `host` (a DNS name, one-label wildcards, or an address)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        host = host.lower().rstrip(".")
        for name in sans.get_values_for_type(x509.DNSName):
            name = name.lower().rstrip(".")
            if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:] and "." in name[2:]):
                return True
        return False
    return address in sans.get_values_for_type(x509.IPAddress)


def check(cert_file: Path, key_file: Path, host: str, now: datetime.datetime | None = None) -> str:
    """Check the manager's certificate chain and key for serving `host`; its fingerprint, or TlsError saying
    what is wrong. Blocking (files): run it in a thread."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        chain = x509.load_pem_x509_certificates(_read(cert_file, "cert_file"))
    except ValueError:
        raise TlsError(f"http.tls.cert_file: {cert_file}: not a certificate in PEM (-----BEGIN CERTIFICATE-----)"
                       ) from None
    try:
        key = serialization.load_pem_private_key(_read(key_file, "key_file"), None)
    except TypeError:
        raise TlsError(f"http.tls.key_file: {key_file}: the key is encrypted; give the node an unencrypted key "
                       "(mode 0600)") from None
    except ValueError:
        raise TlsError(f"http.tls.key_file: {key_file}: not a private key in PEM") from None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != \
            leaf.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise TlsError(f"http.tls.key_file: {key_file} does not match the certificate in {cert_file} (its first "
                       "certificate must be the node's own)")
    if leaf.not_valid_after_utc <= now:
        raise TlsError(f"http.tls.cert_file: {cert_file}: the certificate expired on "
                       f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it (certbot renew, ...)")
    if leaf.not_valid_before_utc > now:
        raise TlsError(f"http.tls.cert_file: {cert_file}: the certificate is valid only from "
                       f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (is this host's clock right?)")
    if not covers(leaf, host):
        raise TlsError(f"http.tls.cert_file: {cert_file}: the certificate is not for {host} (the host of "
                       "http.url); residents' phones would refuse it")
    return fingerprint(leaf.public_bytes(serialization.Encoding.DER))
