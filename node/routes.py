"""The HTTP route table (each route declares who may call it) and the one place errors become JSON."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from sync import SYNC_ENDPOINTS, RateLimited, SyncError

from .app import CONFIG, DB, ENGINE, KEY, PEERS, STARTED, STORE, SYNC_SERVER
from .errors import NodeError
from .identity import node_id
from .metrics import render_metrics

log = logging.getLogger("nnode.http")

PUBLIC = "public"   # anyone who can reach the node
PEER = "peer"       # approved peer nodes, by RFC 9421 signature (checked by the sync server)
LOOPBACK = "loopback"  # the device itself (its own screen), by source address

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One HTTP route and the roles allowed to call it."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[str]


def error_response(status: int, message: str, reason: str | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The one JSON error shape: {"ok": false, "error", "status"} (+ "reason")."""
    body = {"ok": False, "error": message, "status": status}
    if reason:
        body["reason"] = reason
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as JSON with its status."""
    try:
        return await handler(request)
    except RateLimited as exc:
        return error_response(exc.status, str(exc), exc.reason, {"Retry-After": str(max(1, round(exc.retry_after)))})
    except (SyncError, NodeError) as exc:
        if exc.status >= 500:
            log.exception("request failed", extra={"path": request.path})
        return error_response(exc.status, str(exc), exc.reason)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason if not exc.text or exc.text.startswith(str(exc.status))
                              else exc.text, None, {k: v for k, v in exc.headers.items()
                                                    if k.lower() in ("allow", "retry-after")})
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal error; see the node's log")


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 if the node serves and its database answers, 503 otherwise."""
    app = request.app
    try:
        await app[DB].reader.execute_fetchall("SELECT 1")
    except Exception as exc:
        return web.json_response({"ok": False, "db": f"error: {exc}"}, status=503)
    return web.json_response({"ok": True, "node": node_id(app[KEY]), "db": "ok"})


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format."""
    app = request.app
    body = await render_metrics(app[ENGINE], app[STORE], app[PEERS], app[STARTED])
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _node_location(app: web.Application) -> tuple[float, float] | None:
    node = app[CONFIG].node
    return (float(node.latitude), float(node.longitude)) if node.latitude else None


async def alerts_json(request: web.Request) -> web.Response:
    """GET /api/alerts: the CAP alerts in force here (covering this node's location)."""
    from .alerts import current_alerts
    alerts = await current_alerts(request.app[STORE], location=_node_location(request.app))
    return web.json_response({"ok": True, "alerts": alerts})


async def alerts_atom(request: web.Request) -> web.Response:
    """GET /alerts.atom: the same alerts as a CAP Atom feed."""
    from .alerts import atom_feed, current_alerts
    alerts = await current_alerts(request.app[STORE], location=_node_location(request.app))
    body = atom_feed(alerts, title=f"{request.app[CONFIG].node.name}: alerts",
                     feed_id=f"urn:nnode:{node_id(request.app[KEY])}:alerts")
    return web.Response(body=body, content_type="application/atom+xml")


def route_table() -> list[Route]:
    """Every HTTP route of the node with its roles."""
    from . import setup

    routes = [
        Route("GET", "/healthz", healthz, frozenset({PUBLIC})),
        Route("GET", "/metrics", metrics, frozenset({PUBLIC})),
        Route("GET", "/setup", setup.setup_page, frozenset({PUBLIC})),
        Route("GET", "/setup/qr.svg", setup.setup_qr, frozenset({LOOPBACK})),
        Route("POST", "/setup/claim", setup.claim, frozenset({PUBLIC})),
        Route("GET", "/api/session", setup.session, frozenset({PUBLIC})),
        Route("GET", "/api/alerts", alerts_json, frozenset({PUBLIC})),
        Route("GET", "/alerts.atom", alerts_atom, frozenset({PUBLIC})),
    ]
    for method, path, attribute, signed in SYNC_ENDPOINTS:
        routes.append(Route(method, path, _sync_handler(attribute), frozenset({PEER if signed else PUBLIC})))
    return routes


def _sync_handler(attribute: str) -> Handler:
    """A handler calling the sync server, which is created at start-up (after the routes are fixed)."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return await getattr(request.app[SYNC_SERVER], attribute)(request)
    handler.__name__ = handler.__qualname__ = f"sync_{attribute}"
    return handler


def add_routes(app: web.Application) -> None:
    """Register the route table on `app`."""
    for route in route_table():
        app.router.add_route(route.method, route.path, route.handler)
