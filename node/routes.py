"""The node's whole route table, composed from every feature's routes, and the two middlewares that guard it: the
one place errors become JSON, and the one place each route's roles are enforced."""

from __future__ import annotations

import logging
import math

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from node import pages
from node.camera import routes as camera_routes
from node.errors import Forbidden, NodeError, SignInRequired
from node.federation import routes as federation_routes
from node.federation.metrics import render_metrics
from node.http import (
    AGENCY,
    LOCAL,
    MANAGER,
    METRICS,
    PEER,
    PUBLIC,
    RESIDENT,
    RESPONDER,
    SESSION,
    Handler,
    Route,
    caller_roles,
    check_host,
    error_response,
    same_origin,
)
from node.identity import node_id
from node.keys import CAMERAS, CONFIG, DB, ENGINE, FEEDS, KEY, PEERS, PUSH, STARTED, STORE
from node.names import public_url
from node.openapi import describe
from node.people import routes as people_routes
from node.push import routes as push_routes
from node.safety import routes as safety_routes
from node.sharing import routes as sharing_routes
from node.sharing.routes import check_agency
from node.tls import routes as tls_routes
from sync import RateLimited, SyncError

log = logging.getLogger("nnode.http")

ROUTE_POLICY = web.AppKey("route_policy", dict[web.AbstractResource | web.AbstractRoute, Route])


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as JSON with its status."""
    try:
        return await handler(request)
    except RateLimited as exc:
        return error_response(exc.status, str(exc), exc.reason, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
                              exc.limit)
    except (SyncError, NodeError) as exc:
        if exc.status >= 500:
            log.exception("request failed", extra={"path": request.path})
        return error_response(exc.status, str(exc), exc.reason)
    except HttpProcessingError as exc:  # a malformed multipart part or header, found while a handler reads it
        return error_response(400, f"malformed request: {exc.message}"[:300])
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason if not exc.text or exc.text.startswith(str(exc.status))
                              else exc.text, None, {k: v for k, v in exc.headers.items()
                                                    if k.lower() in ("allow", "retry-after")})
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(500, "internal error; see the node's log")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Enforce the route table's roles before any handler runs; state changes must come from our own pages.

    The Host must be one of the node's names (421) everywhere but on public reads; signed calls (peers, agencies)
    have it checked as part of their signature, which covers it.
    """
    policy = request.app[ROUTE_POLICY].get(request.match_info.route)
    if policy is None and request.match_info.http_exception is None:
        raise Forbidden(f"{request.method} {request.path} has no declared roles")  # fail closed
    if policy is not None and AGENCY in policy.roles:
        await check_agency(request)
        return await handler(request)
    if policy is None or PEER in policy.roles:
        return await handler(request)
    if PUBLIC not in policy.roles or request.method not in ("GET", "HEAD"):
        check_host(request)
    if PUBLIC in policy.roles:
        await caller_roles(request)  # handlers of public routes may still look at the session
        return await handler(request)
    roles = await caller_roles(request)
    if not roles & policy.roles:
        if METRICS in policy.roles:
            raise Forbidden(f"{policy.path} answers only the networks in http.metrics_networks and the signed-in "
                            "manager")
        if LOCAL not in roles and policy.roles & {LOCAL, RESIDENT, RESPONDER, MANAGER}:
            raise Forbidden("this page answers only on the building's network")
        if SESSION not in request and policy.roles & {RESIDENT, RESPONDER, MANAGER}:
            raise SignInRequired("sign in first: residents with their invite, the manager at /login")
        raise Forbidden(f"{request.method} {policy.path} is for: {', '.join(sorted(policy.roles))}")
    if request.method not in ("GET", "HEAD") and SESSION in request and not same_origin(request):
        raise Forbidden("cross-site request refused: use the node's own pages")
    return await handler(request)


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
    extra = app[CAMERAS].metric_families() if CAMERAS in app else []
    extra += app[FEEDS].metric_families() if FEEDS in app else []
    extra += app[PUSH].metric_families() if PUSH in app else []
    body = await render_metrics(app[ENGINE], app[STORE], app[PEERS], app[STARTED], extra)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/openapi.json: the OpenAPI 3.1 description of every route (node/openapi.py)."""
    routes = list(request.app[ROUTE_POLICY].values())
    return web.json_response(describe(routes, public_url(request.app[CONFIG])))


def route_table() -> list[Route]:
    """Every HTTP route of the node with its roles: the one place access is declared, feature by feature."""
    public, local = frozenset({PUBLIC}), frozenset({LOCAL})
    core = [
        Route("GET", "/healthz", healthz, public),
        # camera clip counters show motion as it happens: a scraper's networks and the manager only
        Route("GET", "/metrics", metrics, frozenset({METRICS, MANAGER})),
        Route("GET", "/api/openapi.json", openapi_json, public),
        # the web app's pages carry no data (the API does): anyone on the building's network may load them
        Route("GET", "/", pages.page("app.html"), local),
        Route("GET", "/join", pages.page("join.html"), local),
        Route("GET", "/login", pages.page("login.html"), local),
        Route("GET", "/manage", pages.page("manage.html"), local),
        Route("GET", "/static/{name}", pages.static, local),
        # the service worker sits at the root so that its scope is the whole app; the manifest makes it installable
        Route("GET", "/sw.js", pages.service_worker, local),
        Route("GET", "/manifest.webmanifest", pages.manifest, public),
        Route("GET", "/transparency", pages.page("transparency.html"), local),
        # where the agency portal lives now (`nnode agency-client portal`, on the agency's own computer); no key here
        Route("GET", "/agency", pages.page("agency.html"), public),
        Route("GET", "/agency/{name}", pages.agency_static, public),
    ]
    return [*core, *people_routes.routes(), *safety_routes.routes(), *camera_routes.routes(),
            *sharing_routes.routes(), *federation_routes.routes(), *push_routes.routes(),
            *tls_routes.routes()]


def add_routes(app: web.Application) -> None:
    """Register the route table on `app`, remembering each route's roles for the auth middleware."""
    policy: dict[web.AbstractResource | web.AbstractRoute, Route] = {}
    for route in route_table():
        policy[app.router.add_route(route.method, route.path, route.handler)] = route
    app[ROUTE_POLICY] = policy
