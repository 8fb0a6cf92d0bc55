"""The names this node answers to (the Host of a request, the signed @authority of a peer's or agency's call), and
the address the links it hands out are built from: both from configuration, never from a caller's Host header."""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

import ifaddr

from node.config import Config
from sync import normal_authority

REFRESH = 60.0   # seconds between re-reads of this host's addresses (DHCP may change them), at most
_WILDCARDS = ("", "0.0.0.0", "::")


def _host_part(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def public_url(config: Config) -> str:
    """The node's address for links residents open on their phones: `http.url`, else the host it listens on (or
    this host's mDNS name when it listens on every address) at `http.port`."""
    if config.http.url:
        return config.http.url.rstrip("/")
    host = config.http.host
    if host in _WILDCARDS:
        host = f"{socket.gethostname()}.local"
    return f"http://{_host_part(host)}:{config.http.port}"


def host_names(config: Config, unit: str = "") -> set[str]:
    """This host's own names (its name and name.local; the unit's name nnode-XXXX and nnode-XXXX.local, which its
    mDNS advertisement gives) and http.host when it is not a wildcard, lower case."""
    hostname = socket.gethostname().lower()
    names = {hostname, hostname.removesuffix(".local") + ".local"}
    if unit:
        names |= {unit, f"{unit}.local"}
    if config.http.host not in _WILDCARDS:
        names.add(config.http.host.lower())
    return names


def host_addresses() -> set[str]:
    """This host's addresses (every interface), as strings without a zone."""
    found = set()
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            address = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                found.add(str(ipaddress.ip_address(address.split("%")[0])))
            except ValueError:
                continue
    return found


class Names:
    """The authorities (`host:port`, as `sync.normal_authority` spells them) this node answers to.

    Always: localhost, 127.0.0.1, [::1], this host's name and name.local, the unit's name (nnode-XXXX) and
    nnode-XXXX.local, `http.host` and this host's addresses
    at `http.port` (and at `http.tls.port` when HTTPS is on); then every `http.names` entry and the authority of
    `http.url`. The host's addresses are read again (at most every REFRESH seconds) when a name is not found, so a
    new DHCP lease is picked up.
    """

    def __init__(self, config: Config, unit: str = "") -> None:
        # HTTPS (http.tls) serves the same routes on a port of its own: every name answers there too.
        ports = (config.http.port,) + ((config.http.tls.port,) if config.http.tls.mode != "off" else ())
        hosts = {"localhost", "127.0.0.1", "::1", *host_names(config, unit)}
        fixed = {normal_authority(_host_part(host), port) for host in hosts for port in ports}
        fixed |= {normal_authority(name, port) for name in config.http.names for port in ports}
        if config.http.url:
            parts = urlsplit(config.http.url)
            fixed.add(normal_authority(parts.netloc, 443 if parts.scheme == "https" else 80))
        self.ports = ports
        self._fixed = frozenset(name for name in fixed if name is not None)
        self._read = 0.0
        self._names = self._fixed
        self._refresh()

    def _refresh(self) -> None:
        self._read = time.monotonic()
        found = {normal_authority(_host_part(address), port) for address in host_addresses() for port in self.ports}
        self._names = self._fixed | {name for name in found if name is not None}

    def __contains__(self, authority: object) -> bool:
        if authority in self._names:
            return True
        if time.monotonic() - self._read > REFRESH:
            self._refresh()
        return authority in self._names

    def all(self) -> frozenset[str]:
        """Every name known right now (for `nnode status` and the log)."""
        return self._names
