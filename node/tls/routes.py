"""The HTTPS routes: what the pages learn about the secure address, the CA's downloads residents install, and the
probe a plain-HTTP page fetches to find out whether this device trusts the node's certificate yet."""

from __future__ import annotations

import re

from aiohttp import web

from node.errors import NotFound
from node.http import PUBLIC, Route
from node.keys import CONFIG, TLS
from node.tls.state import TlsState


def _local(request: web.Request) -> TlsState:
    state = request.app.get(TLS)
    if state is None or state.mode != "local-ca":
        raise NotFound("this node has no local certificate authority (http.tls.mode is not \"local-ca\")")
    return state


def _file_name(request: web.Request, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", request.app[CONFIG].node.name).strip("-").lower() or "nnode"
    return f'attachment; filename="{stem[:40]}-ca.{suffix}"'


async def tls_info(request: web.Request) -> web.Response:
    """GET /api/tls: the node's HTTPS: mode, port (or https address), the fingerprint to check, the downloads."""
    state = request.app.get(TLS)
    info = state.info() if state is not None else {"mode": "off"}
    return web.json_response({"ok": True, **info}, headers={"Cache-Control": "no-store"})


async def ca_der(request: web.Request) -> web.Response:
    """GET /tls/ca.der: the local CA's certificate in DER (Android, desktops)."""
    state = _local(request)
    return web.Response(body=state.ca_der, headers={"Content-Type": "application/x-x509-ca-cert",
                                                    "Content-Disposition": _file_name(request, "crt")})


async def ca_profile(request: web.Request) -> web.Response:
    """GET /tls/ca.mobileconfig: the local CA as an iOS configuration profile (unsigned)."""
    state = _local(request)
    return web.Response(body=state.profile(), headers={"Content-Type": "application/x-apple-aspen-config",
                                                       "Content-Disposition": _file_name(request, "mobileconfig")})


async def probe(request: web.Request) -> web.Response:
    """GET /tls/probe: 204. A page on plain HTTP fetches it at the HTTPS address: it succeeds only once this
    device trusts the certificate."""
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def routes() -> list[Route]:
    """The HTTPS routes, public: the CA is no secret, and peers and phones fetch it before they trust anything."""
    public = frozenset({PUBLIC})
    return [
        Route("GET", "/api/tls", tls_info, public),
        Route("GET", "/tls/ca.der", ca_der, public),
        Route("GET", "/tls/ca.mobileconfig", ca_profile, public),
        Route("GET", "/tls/probe", probe, public),
    ]
