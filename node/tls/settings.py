"""[http.tls]: how the node serves HTTPS to residents (a Struct of its own, nested in [http])."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from node.structs import FieldError, Strict, setting

Mode = Literal["off", "local-ca", "files"]


class TlsSection(Strict, frozen=True):
    """[http.tls]"""

    mode: Annotated[Mode, setting(
        'HTTPS for residents: "off"; "local-ca", a certificate authority made by this node, limited to its own '
        "names and addresses, that residents install once from the invite page; or \"files\", the manager's own "
        "certificate and key (a domain of their own, ACME). Plain HTTP stays on http.port for peers, /healthz and "
        "the certificate download.", expected='"off", "local-ca" or "files"')] = "off"
    port: Annotated[int, setting("TCP port of the HTTPS server (the same routes as http.port).",
                                 ge=1, le=65535)] = 8471
    cert_file: Annotated[str, setting(
        'For mode = "files": the certificate chain in PEM, the node\'s certificate first (like certbot\'s '
        "fullchain.pem). Re-read when it changes, so a renewal needs no restart.")] = ""
    key_file: Annotated[str, setting('For mode = "files": the certificate\'s private key in PEM, unencrypted '
                                     "(mode 0600).")] = ""
    ca_networks: Annotated[tuple[str, ...], setting(
        'For mode = "local-ca": the IP ranges the node\'s CA may issue certificates for, fixed when the CA is made. '
        "Empty: this host's own addresses at that time, each alone. A wider range (the building's /24) keeps an "
        "address reachable over a new DHCP lease, at the price of a CA that could name other hosts on it.",
        expected='a list of networks in CIDR form, like ["192.168.1.0/24"]')] = ()

    def __post_init__(self) -> None:
        """Files for mode files (and only then); networks parse."""
        if self.mode == "files" and not (self.cert_file and self.key_file):
            raise FieldError("cert_file", 'mode = "files" needs cert_file and key_file')
        if self.mode != "files" and (self.cert_file or self.key_file):
            raise FieldError("cert_file", 'cert_file and key_file are for mode = "files"')
        for index, network in enumerate(self.ca_networks):
            try:
                ipaddress.ip_network(network)
            except (ValueError, TypeError):
                raise FieldError(f"ca_networks[{index}]") from None
