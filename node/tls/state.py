"""The HTTPS side of a running node: the SSL context its HTTPS site serves with, and what the pages are told
about it (the port, the CA's fingerprint). `refresh()` keeps the certificate current without a restart."""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from node.config import Config
from node.names import host_addresses, host_names
from node.tls.authority import LocalCA, TlsError, Wanted, fingerprint, mobileconfig
from node.tls.files import check
from sync import normal_authority

log = logging.getLogger("nnode.tls")


def _host(authority: str | None) -> str | None:
    if authority is None:
        return None
    return authority.rpartition(":")[0].strip("[]")


def wanted(config: Config, unit: str = "") -> Wanted:
    """The names the node's certificate should carry: this host's names and addresses, `http.names` and the host of
    `http.url`; never loopback or link-local ones (a phone never reaches the node by them)."""
    hosts = set(host_names(config, unit)) | host_addresses()
    hosts |= {h for name in config.http.names if (h := _host(normal_authority(name))) is not None}
    if config.http.url:
        hosts.add(urlsplit(config.http.url).hostname or "")
    dns, ips = set(), set()
    for host in hosts - {"", "localhost"}:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            dns.add(host.lower().rstrip("."))
            continue
        if not (address.is_loopback or address.is_link_local or address.is_unspecified):
            ips.add(address)
    return Wanted(frozenset(dns), frozenset(ips))


class TlsState:
    """The node's certificate for HTTPS, from its local CA or the manager's files, and the context serving it.

    Blocking (keys, files): made with `start` and refreshed in a thread."""

    def __init__(self, config: Config, unit: str = "") -> None:
        self.config = config
        self.unit = unit   # the unit's name (nnode-XXXX), which its mDNS advertisement gives
        tls = config.http.tls
        self.mode, self.port = tls.mode, tls.port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.local = LocalCA(config.node.data_dir / "tls", config.node.name, tls.ca_networks)
        self.ca_der = b""          # local-ca: the CA residents install
        self.fingerprint = ""      # local-ca: the CA's; files: the manager's certificate's
        self._files_seen: tuple[float, float] | None = None

    @classmethod
    def start(cls, config: Config, unit: str = "") -> TlsState:
        """Make or read the certificate and load it; TlsError, before anything serves, if it cannot be used."""
        state = cls(config, unit)
        state.refresh(first=True)
        return state

    def refresh(self, first: bool = False) -> bool:
        """Renew or re-read the certificate if it is due or its files changed; whether the context was reloaded.
        After start-up a failure is logged and the certificate in use kept."""
        try:
            return self._local(first) if self.mode == "local-ca" else self._files(first)
        except (TlsError, ssl.SSLError, OSError) as exc:
            if first:
                raise TlsError(str(exc)) from exc
            log.error("cannot renew or reload the HTTPS certificate; still serving the previous one",
                      extra={"error": str(exc)})
            return False

    def _local(self, first: bool) -> bool:
        ca, changed = self.local.ensure(wanted(self.config, self.unit))
        if first:
            self.ca_der = self.local.der(ca)
            self.fingerprint = fingerprint(self.ca_der)
        if changed or first:
            self.context.load_cert_chain(self.local.cert_path, self.local.key_path)
        return changed or first

    def _files(self, first: bool) -> bool:
        tls = self.config.http.tls
        cert_file, key_file = Path(tls.cert_file).expanduser(), Path(tls.key_file).expanduser()
        try:
            seen = (os.stat(cert_file).st_mtime, os.stat(key_file).st_mtime)
        except FileNotFoundError:
            seen = None   # check() names the missing file
        if not first and seen == self._files_seen:
            return False
        self.fingerprint = check(cert_file, key_file, urlsplit(self.config.http.url).hostname or "")
        self.context.load_cert_chain(cert_file, key_file)
        self._files_seen = seen
        if not first:
            log.info("reloaded the HTTPS certificate", extra={"fingerprint": self.fingerprint})
        return True

    def profile(self) -> bytes:
        """The CA as an iOS configuration profile."""
        return mobileconfig(self.ca_der, self.config.node.name)

    def info(self) -> dict[str, Any]:
        """What the pages show and use: the mode, the HTTPS port (or the manager's https address), the fingerprint
        and the CA's downloads."""
        url = self.config.http.url if self.mode == "files" else ""
        local = self.mode == "local-ca"
        return {"mode": self.mode, "port": self.port, "url": url.rstrip("/"), "fingerprint": self.fingerprint,
                "ca": "/tls/ca.der" if local else "", "profile": "/tls/ca.mobileconfig" if local else ""}

    def ca_certificate(self) -> x509.Certificate:
        """The local CA's certificate (for `nnode status` and tests)."""
        return x509.load_der_x509_certificate(self.ca_der)
