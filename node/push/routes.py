"""HTTP handlers for Web Push: the node's VAPID key and the caller's devices, subscribing and unsubscribing a device,
and the console's view of delivery."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from node.config import PushSection
from node.errors import BadRequest, Conflict, NotFound
from node.http import MANAGER, RESIDENT, Route, read_body, session_of
from node.keys import CONFIG, PUSH
from node.people.accounts import best_language
from node.push.models import SubscribeBody, UnsubscribeBody


def check_endpoint(endpoint: str, settings: PushSection) -> None:
    """Refuse an endpoint that is not an https URL of an allowed push service (or, when allowed for tests, an
    http URL on loopback): the node must not be made to POST to anything else on the network."""
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.username is not None or parts.password is not None or not host:
        raise BadRequest("endpoint: must be a push service URL with no user name or password")
    if parts.scheme == "http" and settings.loopback_endpoints:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return
    if parts.scheme != "https":
        raise BadRequest("endpoint: push services are reached over https; got " + repr(parts.scheme + "://"))
    if not any(host == service or host.endswith("." + service) for service in settings.services):
        raise BadRequest(f"endpoint: {host!r} is not one of the push services this node sends to (push.services: "
                         f"{', '.join(settings.services)})")


def _decoded(value: str, size: int, what: str) -> None:
    try:
        raw = base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise BadRequest(f"keys.{what}: not base64url") from None
    if len(raw) != size or (what == "p256dh" and raw[0] != 4):
        raise BadRequest(f"keys.{what}: expected {'an uncompressed P-256 point' if what == 'p256dh' else 'a secret'} "
                         f"of {size} bytes, got {len(raw)} bytes")


async def push_info(request: web.Request) -> web.Response:
    """GET /api/push: the node's VAPID public key (the browser's applicationServerKey) and the caller's devices."""
    pusher = request.app[PUSH]
    devices = await pusher.subscriptions.mine(session_of(request))
    return web.json_response({"ok": True, "enabled": pusher.settings.enabled, "public_key": pusher.public_key,
                              "devices": [device.public() for device in devices]})


async def subscribe(request: web.Request) -> web.Response:
    """POST /api/push/subscriptions: subscribe the caller's device (again: update its choices)."""
    app, session = request.app, session_of(request)
    settings = app[CONFIG].push
    body = await read_body(request, SubscribeBody)
    if not settings.enabled:
        raise Conflict("push notifications are turned off on this node (push.enabled)")
    check_endpoint(body.endpoint, settings)
    _decoded(body.keys.p256dh, 65, "p256dh")
    _decoded(body.keys.auth, 16, "auth")
    subscriptions = app[PUSH].subscriptions
    if await subscriptions.count_for(session.role, session.subject, besides=body.endpoint) >= settings.max_devices:
        raise Conflict(f"you already have {settings.max_devices} devices subscribed (push.max_devices); unsubscribe "
                       "one first")
    device_id = await subscriptions.save(session, body.endpoint, body.keys.p256dh, body.keys.auth,
                                         min_severity=body.min_severity, alerts=body.alerts, reports=body.reports,
                                         language=best_language(request.headers.get("Accept-Language")))
    mine = {device.id: device for device in await subscriptions.mine(session)}
    return web.json_response({"ok": True, "device": mine[device_id].public()}, status=201)


async def unsubscribe(request: web.Request) -> web.Response:
    """DELETE /api/push/subscriptions: stop pushing to one of the caller's devices."""
    body = await read_body(request, UnsubscribeBody)
    if not await request.app[PUSH].subscriptions.delete(session_of(request), body.endpoint):
        raise NotFound("none of your devices is subscribed at that endpoint")
    return web.json_response({"ok": True})


async def push_status(request: web.Request) -> web.Response:
    """GET /api/push/status: deliveries and failures since start, for the console."""
    return web.json_response({"ok": True, "push": await request.app[PUSH].describe()})


def routes() -> list[Route]:
    """The push routes."""
    signed_in = frozenset({RESIDENT, MANAGER})
    return [
        Route("GET", "/api/push", push_info, signed_in),
        Route("POST", "/api/push/subscriptions", subscribe, signed_in, SubscribeBody),
        Route("DELETE", "/api/push/subscriptions", unsubscribe, signed_in, UnsubscribeBody),
        Route("GET", "/api/push/status", push_status, frozenset({MANAGER})),
    ]
