"""The HTTP route table (each route declares who may call it) and the one place errors become JSON."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit
from typing import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from sync import SYNC_ENDPOINTS, RateLimited, SyncError

from .app import ACCOUNTS, CAMERAS, CONFIG, DB, ENGINE, KEY, PEERS, STARTED, STORE, SYNC_SERVER, node_location
from .errors import Forbidden, NodeError, SignInRequired
from .identity import node_id
from .metrics import render_metrics

log = logging.getLogger("nnode.http")

PUBLIC = "public"        # anyone who can reach the node
PEER = "peer"            # approved peer nodes, by RFC 9421 signature (checked by the sync server)
LOOPBACK = "loopback"    # the device itself (its own screen), by source address
LOCAL = "local"          # anyone on the building's networks (http.local_networks), signed in or not
RESIDENT = "resident"    # a signed-in resident, on a local network
RESPONDER = "responder"  # a resident on the SOS on-call list
MANAGER = "manager"      # the signed-in manager, on a local network
AGENCY = "agency"        # a registered agency, from any network, by RFC 9421 signature with its key (api_sharing)
ROLES = frozenset({PUBLIC, PEER, LOOPBACK, LOCAL, RESIDENT, RESPONDER, MANAGER, AGENCY})
SESSION_COOKIE = "nnode_session"
SESSION = web.RequestKey("session", object)  # the caller's accounts.Session, set by the auth middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One HTTP route and the roles allowed to call it."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[str]

    def __post_init__(self) -> None:
        if not self.roles or not self.roles <= ROLES:
            raise ValueError(f"{self.method} {self.path}: roles must be a non-empty subset of {sorted(ROLES)}")
        if AGENCY in self.roles and self.roles != {AGENCY}:
            raise ValueError(f"{self.method} {self.path}: agency routes are for agencies alone")


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


def _in_networks(address: str | None, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(net) for net in networks)


async def caller_roles(request: web.Request) -> set[str]:
    """The roles the caller holds: by address, and by session cookie when on a local network."""
    app = request.app
    roles = {PUBLIC}
    remote = request.remote
    if _in_networks(remote, ("127.0.0.0/8", "::1/128")):
        roles.add(LOOPBACK)
    if _in_networks(remote, app[CONFIG].http.local_networks):
        roles.add(LOCAL)
        session = await app[ACCOUNTS].session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            request[SESSION] = session
            roles.add(session.role)
            if session.role == RESIDENT and session.on_call:
                roles.add(RESPONDER)
    return roles


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser's cross-site request: browsers send Origin on every cross-site POST
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == request.host


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Enforce the route table's roles before any handler runs; state changes must come from our own pages."""
    policy = request.app[ROUTE_POLICY].get(request.match_info.route)
    if policy is None and request.match_info.http_exception is None:
        raise Forbidden(f"{request.method} {request.path} has no declared roles")  # fail closed
    if policy is not None and AGENCY in policy.roles:
        from .api_sharing import check_agency
        await check_agency(request)
        return await handler(request)
    if policy is None or PUBLIC in policy.roles or PEER in policy.roles:
        if policy is not None and PUBLIC in policy.roles:
            await caller_roles(request)  # handlers of public routes may still look at the session
        return await handler(request)
    roles = await caller_roles(request)
    if not roles & policy.roles:
        if LOCAL not in roles and policy.roles & {LOCAL, RESIDENT, RESPONDER, MANAGER}:
            raise Forbidden("this page answers only on the building's network")
        if SESSION not in request and policy.roles & {RESIDENT, RESPONDER, MANAGER}:
            raise SignInRequired("sign in first: residents with their invite, the manager at /login")
        raise Forbidden(f"{request.method} {policy.path} is for: {', '.join(sorted(policy.roles))}")
    if request.method not in ("GET", "HEAD") and SESSION in request and not _same_origin(request):
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
    body = await render_metrics(app[ENGINE], app[STORE], app[PEERS], app[STARTED], extra)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


async def alerts_json(request: web.Request) -> web.Response:
    """GET /api/alerts: the CAP alerts in force here (covering this node's location)."""
    from .alerts import current_alerts
    alerts = await current_alerts(request.app[STORE], location=node_location(request.app[CONFIG]))
    return web.json_response({"ok": True, "alerts": alerts})


async def alerts_atom(request: web.Request) -> web.Response:
    """GET /alerts.atom: the same alerts as a CAP Atom feed."""
    from .alerts import atom_feed, current_alerts
    alerts = await current_alerts(request.app[STORE], location=node_location(request.app[CONFIG]))
    body = atom_feed(alerts, title=f"{request.app[CONFIG].node.name}: alerts",
                     feed_id=f"urn:nnode:{node_id(request.app[KEY])}:alerts")
    return web.Response(body=body, content_type="application/atom+xml")


async def openapi_json(request: web.Request) -> web.Response:
    """GET /api/openapi.json: the OpenAPI 3.1 description of every route (node/openapi.py)."""
    from .openapi import describe
    routes = list(request.app[ROUTE_POLICY].values())
    return web.json_response(describe(routes, f"{request.scheme}://{request.host}"))


def route_table() -> list[Route]:
    """Every HTTP route of the node with its roles: the one place access is declared."""
    from . import api_cameras as cams, api_people as people, api_safety as safety, api_sharing as share, pages, setup
    from .live import stream

    public, local, loopback = frozenset({PUBLIC}), frozenset({LOCAL}), frozenset({LOOPBACK})
    signed_in = frozenset({RESIDENT, MANAGER})
    manager = frozenset({MANAGER})
    agency = frozenset({AGENCY})
    routes = [
        Route("GET", "/healthz", healthz, public),
        Route("GET", "/metrics", metrics, public),
        Route("GET", "/setup", setup.setup_page, public),
        Route("GET", "/setup/qr.svg", setup.setup_qr, loopback),
        Route("POST", "/setup/claim", setup.claim, public),
        # the web app's pages carry no data (the API does): anyone on the building's network may load them
        Route("GET", "/", pages.page("app.html"), local),
        Route("GET", "/join", pages.page("join.html"), local),
        Route("GET", "/login", pages.page("login.html"), local),
        Route("GET", "/manage", pages.page("manage.html"), local),
        Route("GET", "/static/{name}", pages.static, local),
        Route("GET", "/transparency", pages.page("transparency.html"), local),
        # the agencies' portal: a page and its script, which sign every call in the browser with the agency key
        Route("GET", "/agency", pages.page("agency.html"), public),
        Route("GET", "/agency/{name}", pages.agency_static, public),
        Route("GET", "/api/openapi.json", openapi_json, public),
        # people
        Route("GET", "/api/session", people.session, public),
        Route("POST", "/api/join", people.join, local),
        Route("POST", "/api/login", people.login, local),
        Route("POST", "/api/logout", people.logout, signed_in),
        Route("GET", "/api/residents", people.residents, manager),
        Route("POST", "/api/residents/{id}/revoke", people.revoke_resident, manager),
        Route("POST", "/api/residents/{id}/on-call", people.set_on_call, manager),
        Route("GET", "/api/invites", people.invites, manager),
        Route("POST", "/api/invites", people.create_invite, manager),
        Route("POST", "/api/invites/{id}/revoke", people.revoke_invite, manager),
        Route("GET", "/api/sessions", people.sessions, manager),
        Route("POST", "/api/sessions/{id}/revoke", people.revoke_session, manager),
        Route("GET", "/api/peers", people.peers, manager),
        Route("POST", "/api/peers/{key}/approve", people.approve_peer, manager),
        # alerts, live delivery, reports, SOS, timeline and map
        Route("GET", "/api/alerts", alerts_json, public),
        Route("POST", "/api/alerts", safety.post_alert, manager),
        Route("GET", "/alerts.atom", alerts_atom, public),
        Route("GET", "/api/stream", stream, signed_in),
        Route("GET", "/api/reports", safety.list_reports, signed_in),
        Route("POST", "/api/reports", safety.post_report, signed_in),
        Route("GET", "/api/reports/{id}/photo", safety.report_photo, signed_in),
        Route("POST", "/api/reports/{id}/{action}", safety.moderate, manager),
        Route("GET", "/api/sos", safety.list_sos, signed_in),
        Route("POST", "/api/sos", safety.post_sos, signed_in),
        Route("POST", "/api/sos/{id}/ack", safety.ack_sos, frozenset({RESPONDER, MANAGER})),
        Route("GET", "/api/timeline", safety.timeline, signed_in),
        Route("GET", "/api/map", safety.map_data, signed_in),
        # cameras and clips: each handler also checks the camera's own viewers (Cameras.visible)
        Route("GET", "/api/cameras", cams.list_cameras, signed_in),
        Route("PUT", "/api/cameras/{camera}/access", cams.set_access, manager),
        Route("GET", "/api/cameras/{camera}/snapshot", cams.snapshot, signed_in),
        Route("GET", "/api/cameras/{camera}/live", cams.live, signed_in),
        Route("GET", "/api/clips", cams.list_clips, signed_in),
        Route("GET", "/api/clips/{uid}", cams.clip_detail, signed_in),
        Route("GET", "/api/clips/{uid}/video", cams.clip_video, signed_in),
        Route("GET", "/api/clips/{uid}/thumbnail", cams.clip_thumbnail, signed_in),
        Route("POST", "/api/clips/{uid}/hold", cams.hold_clip, manager),
        Route("DELETE", "/api/clips/{uid}/hold", cams.release_clip, manager),
        Route("DELETE", "/api/clips/{uid}", cams.delete_clip, signed_in),
        Route("POST", "/api/uploads", cams.upload_clip, frozenset({RESIDENT})),
        # sharing with agencies: owners decide per clip; agencies see only what was consented to
        Route("GET", "/api/requests", share.list_requests, signed_in),
        Route("POST", "/api/requests/{id}/clips/{uid}/consent", share.give_consent, signed_in),
        Route("DELETE", "/api/requests/{id}/clips/{uid}/consent", share.withdraw_consent, signed_in),
        Route("GET", "/api/agencies", share.list_agencies, manager),
        Route("POST", "/api/agencies", share.add_agency, manager),
        Route("POST", "/api/agencies/credentials", share.accept_credential, manager),
        Route("POST", "/api/agencies/{key}/revoke", share.revoke_agency, manager),
        Route("GET", "/api/transparency", share.transparency, signed_in),
        Route("GET", "/api/transparency/log", share.transparency_log, signed_in),
        Route("POST", "/api/agency/requests", share.agency_post_request, agency),
        Route("POST", "/api/agency/alerts", share.agency_post_alert, agency),
        Route("GET", "/api/agency/requests", share.agency_list_requests, agency),
        Route("GET", "/api/agency/requests/{id}", share.agency_get_request, agency),
        Route("GET", "/api/agency/bundles", share.agency_list_bundles, agency),
        Route("GET", "/api/agency/bundles/{id}", share.agency_get_bundle, agency),
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


ROUTE_POLICY = web.AppKey("route_policy", dict)


def add_routes(app: web.Application) -> None:
    """Register the route table on `app`, remembering each route's roles for the auth middleware."""
    policy = {}
    for route in route_table():
        policy[app.router.add_route(route.method, route.path, route.handler)] = route
    app[ROUTE_POLICY] = policy
