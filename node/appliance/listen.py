"""Whether the node can listen where its config says, asked before anything starts, so a busy port is one line."""

from __future__ import annotations

import errno
import socket

from node.errors import NodeError


class PortUnavailable(NodeError):
    """The node cannot listen on its HTTP port (taken, or not allowed)."""


def _advice(port: int) -> str:
    return (f"choose another port with --port (`nnode run --port {port + 1}`, `nnode demo --port {port + 1}`) or "
            "http.port in the config")


def unavailable(host: str, port: int, exc: OSError) -> PortUnavailable:
    """The one-line error for a failed bind of host:port (the words 'address already in use' when it is taken)."""
    where = f"{host or '*'}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return PortUnavailable(f"cannot listen on {where}: address already in use (another program or node holds "
                               f"port {port}); {_advice(port)}")
    if exc.errno == errno.EACCES:
        return PortUnavailable(f"cannot listen on {where}: not allowed to use port {port} (ports below 1024 need "
                               f"privileges); {_advice(port)}")
    return PortUnavailable(f"cannot listen on {where}: {exc.strerror or exc}; {_advice(port)}")


def check_port(host: str, port: int) -> None:
    """Bind every address `host` resolves to at `port` and let go again; PortUnavailable if one cannot be bound.
    Blocking (name resolution, bind): run it in a thread."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortUnavailable(f"cannot listen on {host}:{port}: the name {host!r} does not resolve ({exc}); "
                              "check http.host in the config") from exc
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # The same options as the server's own socket, so a port in TIME_WAIT counts as free, as it will be.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
                probe.listen(1)
            except OSError as exc:
                raise unavailable(host, port, exc) from exc
