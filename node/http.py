"""What every feature's HTTP handlers share: the roles, the Route record, the one JSON error shape, the caller's
session and roles, and bounded request bodies."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from node.errors import BadRequest, NotFound, TooLarge
from node.keys import ACCOUNTS, CONFIG, NAMES
from node.names import Names
from node.people.accounts import Session
from node.structs import Body, convert
from sync import check_authority

PUBLIC = "public"        # anyone who can reach the node
PEER = "peer"            # approved peer nodes, by RFC 9421 signature (checked by the sync server)
LOOPBACK = "loopback"    # the device itself (its own screen), by source address
LOCAL = "local"          # anyone on the building's networks (http.local_networks), signed in or not
RESIDENT = "resident"    # a signed-in resident, on a local network
RESPONDER = "responder"  # a resident on the SOS on-call list
MANAGER = "manager"      # the signed-in manager, on a local network
AGENCY = "agency"        # a registered agency, from any network, by RFC 9421 signature with its key (node/sharing/routes.py)
METRICS = "metrics"      # a metrics scraper, by source address (http.metrics_networks)
ROLES = frozenset({PUBLIC, PEER, LOOPBACK, LOCAL, RESIDENT, RESPONDER, MANAGER, AGENCY, METRICS})
SESSION_COOKIE = "nnode_session"
SESSION = web.RequestKey("session", Session)  # the caller's session, set by the auth middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
B = TypeVar("B", bound=Body)


@dataclass(frozen=True)
class Route:
    """One HTTP route, the roles allowed to call it, and the JSON body it takes (node/openapi.py describes it)."""

    method: str
    path: str
    handler: Handler
    roles: frozenset[str]
    body: type[Body] | None = None   # the handler reads it with read_body(request, body)

    def __post_init__(self) -> None:
        if not self.roles or not self.roles <= ROLES:
            raise ValueError(f"{self.method} {self.path}: roles must be a non-empty subset of {sorted(ROLES)}")
        if AGENCY in self.roles and self.roles != {AGENCY}:
            raise ValueError(f"{self.method} {self.path}: agency routes are for agencies alone")


def error_response(status: int, message: str, reason: str | None = None,
                   headers: dict[str, str] | None = None, limit: str = "") -> web.Response:
    """The one JSON error shape: {"ok": false, "error", "status"} (+ "reason", + "limit": the setting a 429
    ran into)."""
    body: dict[str, Any] = {"ok": False, "error": message, "status": status}
    if reason:
        body["reason"] = reason
    if limit:
        body["limit"] = limit
    return web.json_response(body, status=status, headers=headers)


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
    if _in_networks(remote, app[CONFIG].http.metrics_networks):
        roles.add(METRICS)
    if _in_networks(remote, app[CONFIG].http.local_networks):
        roles.add(LOCAL)
        session = await app[ACCOUNTS].session(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            request[SESSION] = session
            roles.add(session.role)
            if session.role == RESIDENT and session.on_call:
                roles.add(RESPONDER)
    return roles


def check_host(request: web.Request) -> None:
    """Refuse (421) a request whose Host is not one of the node's names: a page reached through someone else's
    DNS name (DNS rebinding) gets nothing, and nothing the node builds ever names the caller's Host."""
    names: Names = request.app[NAMES]
    check_authority(request.host, names)


def same_origin(request: web.Request) -> bool:
    """True if a browser says the request comes from one of the node's own pages."""
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser's cross-site request: browsers send Origin on every cross-site POST
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    return urlsplit(origin).netloc == request.host


MAX_JSON_BODY = 64 * 1024   # the app's own forms; the sync endpoints have their own, larger limit


async def read_capped(request: web.Request, limit: int, what: str) -> bytes:
    """The whole body, refusing more than `limit` bytes before reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"{what} is {request.content_length} bytes; the limit is {limit}")
    chunks, size = [], 0
    while chunk := await request.content.read(65536):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{what} is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request, limit: int = MAX_JSON_BODY) -> dict[str, Any]:
    """The request's JSON object body (at most `limit` bytes), or an error saying what is wrong."""
    if request.content_type != "application/json":
        raise BadRequest(f"send JSON (Content-Type: application/json), not {request.content_type or 'nothing'}")
    raw = await read_capped(request, limit, "the request body")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


async def read_body(request: web.Request, type_: type[B]) -> B:
    """The JSON body (json_body's limits; {} if left out and `type_.OPTIONAL`) as `type_`; BadRequest names the key."""
    if type_.OPTIONAL and not request.can_read_body:
        return body_of({}, type_)
    return body_of(await json_body(request, type_.MAX_BYTES), type_)


def body_of(value: Any, type_: type[B]) -> B:
    """Decoded JSON (a body read another way, like an agency's signed one) as `type_`, with read_body's errors."""
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return convert(value, type_, where="request body", error=BadRequest)


def session_of(request: web.Request) -> Session:
    """The caller's session (the auth middleware has checked the route needs one)."""
    return request[SESSION]


def int_param(request: web.Request, name: str) -> int:
    """A path parameter that must be a positive integer id."""
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"{name} must be a number, got {raw[:40]!r}")
    return int(raw)


