"""The control API on a Unix socket in the data folder (mode 0600): how the CLI talks to the running node.

Being able to open the socket is the credential, as with the database and key beside it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from aiohttp import web

from node.errors import BadRequest, NotFound
from node.http import body_of
from node.identity import node_id
from node.keys import ACCOUNTS, CLAIMS, CONFIG, DB, ENGINE, FEEDS, HUB, KEY, NAMES, PEERS, REGISTRY, STARTED, STORE
from node.names import public_url
from node.people.models import InviteBody
from node.people.routes import ca_fingerprint, invite_payload
from node.routes import error_middleware
from node.safety.alerts import ALERT, manager_alert, remember_withdrawn
from node.safety.intake import import_alerts as publish_alerts
from node.sharing.agencies import check_key
from node.sharing.models import AgencyBody
from node.sharing.routes import register, revoke
from sync import Event, SyncError

NODE = web.AppKey("node", web.Application)   # the running node this control app speaks for


def event_json(event: Event) -> dict[str, Any]:
    """An event for display: its header, id and decoded body (None once dropped)."""
    return event.header() | {"id": event.id, "body": event.body_value()}


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


SHARING_KINDS = frozenset({"agency-request", "disclosure", "audit-head"})


async def status(request: web.Request) -> web.Response:
    """GET /control/status."""
    node = request.app[NODE]
    return web.json_response(await gather_status(node))


async def publish(request: web.Request) -> web.Response:
    """POST /control/publish."""
    node = request.app[NODE]
    body = await _body(request)
    kind, content, ttl = body.get("kind"), body.get("body"), body.get("ttl")
    if not isinstance(kind, str) or type(ttl) is not int or ttl < 1:
        raise BadRequest("publish needs 'kind' (string), 'body' and 'ttl' (positive integer seconds)")
    if kind in SHARING_KINDS:  # only the node's own flow may vouch for requests, disclosures and its log
        raise BadRequest(f"kind {kind!r} is published by the node itself, not by hand")
    try:
        event = await node[ENGINE].publish(kind, content, ttl=ttl)
    except SyncError as exc:
        raise BadRequest(str(exc)) from exc
    return web.json_response(event_json(event))


async def delete(request: web.Request) -> web.Response:
    """POST /control/delete."""
    node = request.app[NODE]
    body = await _body(request)
    await remember_withdrawn(node[STORE], str(body.get("id", "")), node_id(node[KEY]))
    try:
        event = await node[ENGINE].delete(str(body.get("id", "")))
    except SyncError as exc:
        raise NotFound(str(exc)) from exc
    return web.json_response(event_json(event))


async def events(request: web.Request) -> web.Response:
    """GET /control/events."""
    node = request.app[NODE]
    try:
        limit = min(int(request.query.get("limit", "50")), 1000)
    except ValueError:
        raise BadRequest("limit must be an integer") from None
    found = await node[STORE].recent(limit, request.query.get("kind") or None)
    return web.json_response([event_json(e) for e in found])


async def peers_changed(request: web.Request) -> web.Response:
    """POST /control/peers-changed."""
    node = request.app[NODE]
    node[ENGINE].wake()
    return web.json_response({"ok": True})


async def release(request: web.Request) -> web.Response:
    """POST /control/release."""
    node = request.app[NODE]
    body = await _body(request)
    if not await node[STORE].release(str(body.get("author", ""))):
        raise NotFound("that author is not quarantined")
    return web.json_response({"ok": True})


async def import_alerts(request: web.Request) -> web.Response:
    """POST /control/alerts/import: each entry's outcome (published, already held, skipped and why)."""
    node = request.app[NODE]
    try:
        imported = await publish_alerts(node[ENGINE], await request.read())
    except SyncError as exc:
        raise BadRequest(str(exc)) from exc
    return web.json_response({"shape": imported.shape, "entries": imported.entries,
                              "events": [event_json(e) for e in imported.events]})


async def feeds(request: web.Request) -> web.Response:
    """GET /control/feeds: each official feed's last poll."""
    return web.json_response(request.app[NODE][FEEDS].listing())


async def resume_publishing(request: web.Request) -> web.Response:
    """POST /control/resume-publishing."""
    node = request.app[NODE]
    await node[ENGINE].resume_publishing()
    return web.json_response({"ok": True})


async def invite(request: web.Request) -> web.Response:
    """POST /control/invite."""
    node = request.app[NODE]
    body = body_of(await _body(request), InviteBody)   # the same body as POST /api/invites
    made = await node[ACCOUNTS].invite(body.unit, body.name)
    return web.json_response(invite_payload(made, _lan_base(node), ca_fingerprint(node)))


async def admin_link(request: web.Request) -> web.Response:
    """POST /control/admin-link."""
    node = request.app[NODE]
    link = await node[ACCOUNTS].login_link()
    return web.json_response({"link": f"{_lan_base(node)}/login#token={link.code}", "expires": link.expires})


async def claim_code(request: web.Request) -> web.Response:
    """GET /control/claim-code: the live claim code while unclaimed (what the console and the claim file show)."""
    node = request.app[NODE]
    claims = node[CLAIMS]
    if await claims.claimed():
        return web.json_response({"claimed": True, "host": claims.host})
    await claims.ensure_code(_lan_base(node))
    return web.json_response({"claimed": False, "code": claims.current, "expires": claims.current_expires,
                              "host": claims.host, "setup": f"{_lan_base(node)}/setup"})


async def residents(request: web.Request) -> web.Response:
    """GET /control/residents."""
    node = request.app[NODE]
    return web.json_response(await node[ACCOUNTS].residents())


async def revoke_resident(request: web.Request) -> web.Response:
    """POST /control/residents/revoke."""
    node = request.app[NODE]
    body = await _body(request)
    if type(body.get("id")) is not int:
        raise BadRequest("'id' must be a resident id (an integer)")
    await node[ACCOUNTS].revoke_resident(body["id"])
    await node[HUB].recheck()
    return web.json_response({"ok": True})


async def demo_setup(request: web.Request) -> web.Response:
    """POST /control/demo-setup."""
    node = request.app[NODE]
    # The demo claims itself (the control socket is the device owner's credential) and makes one of each
    # thing a newcomer wants to try: a manager link, a resident invite and an alert in force.
    config = node[CONFIG]
    password = None
    if not await node[CLAIMS].claimed():
        password = secrets.token_urlsafe(12)
        code = node[CLAIMS].current
        if code is None:
            code = await node[CLAIMS].issue()
        await node[CLAIMS].claim(code, password)
    link = await node[ACCOUNTS].login_link()
    made = await node[ACCOUNTS].invite("Demo 1A", "Demo resident")
    cap = manager_alert({"event": "Water shut-off", "headline": "Demo: water off on floors 3 to 6 until 3 pm",
                         "severity": "Minor", "urgency": "Expected", "certainty": "Observed",
                         "category": "Infra", "expires_hours": 6,
                         "instruction": "Fill a kettle before 9 am."},
                        node_key=node_id(node[KEY]), node_name=config.node.name,
                        location=(config.node.latitude, config.node.longitude) if config.node.latitude else None)
    await node[ENGINE].publish(ALERT, {"cap": cap}, ttl=6 * 3600)
    base = _lan_base(node)
    return web.json_response({"password": password, "admin_link": f"{base}/login#token={link.code}",
                              "invite_link": f"{base}/join#code={made.code}", "app": base + "/"})


async def agencies(request: web.Request) -> web.Response:
    """GET /control/agencies."""
    node = request.app[NODE]
    return web.json_response([a.as_json() for a in await node[REGISTRY].list()])


async def add_agency(request: web.Request) -> web.Response:
    """POST /control/agencies."""
    node = request.app[NODE]
    body = body_of(await _body(request), AgencyBody)   # the same body as POST /api/agencies
    agency = await register(node, body.key, body.name, body.jurisdiction, body.contact)
    return web.json_response(agency.as_json())


async def revoke_agency(request: web.Request) -> web.Response:
    """POST /control/agencies/revoke."""
    node = request.app[NODE]
    body = await _body(request)
    agency = await revoke(node, check_key("key", body.get("key")), body.get("reason", ""))
    return web.json_response(agency.as_json())


def control_app(node: web.Application) -> web.Application:
    """The control application bound to the running node `node`."""
    app = web.Application(middlewares=[error_middleware])
    app[NODE] = node
    app.router.add_get("/control/agencies", agencies)
    app.router.add_post("/control/agencies", add_agency)
    app.router.add_post("/control/agencies/revoke", revoke_agency)
    app.router.add_post("/control/demo-setup", demo_setup)
    app.router.add_post("/control/invite", invite)
    app.router.add_post("/control/admin-link", admin_link)
    app.router.add_get("/control/residents", residents)
    app.router.add_get("/control/claim-code", claim_code)
    app.router.add_post("/control/residents/revoke", revoke_resident)
    app.router.add_post("/control/resume-publishing", resume_publishing)
    app.router.add_post("/control/alerts/import", import_alerts)
    app.router.add_get("/control/feeds", feeds)
    app.router.add_get("/control/status", status)
    app.router.add_post("/control/publish", publish)
    app.router.add_post("/control/delete", delete)
    app.router.add_get("/control/events", events)
    app.router.add_post("/control/peers-changed", peers_changed)
    app.router.add_post("/control/release", release)
    return app




def _lan_base(node: web.Application) -> str:
    """The node's address as phones on the building's network reach it (http.url, or this host's mDNS name)."""
    return public_url(node[CONFIG])


async def gather_status(node: web.Application) -> dict[str, Any]:
    """What `nnode status` shows about a running node."""
    config = node[CONFIG]
    peers = await node[PEERS].list()
    engine = node[ENGINE]
    return {
        "node": node_id(node[KEY]), "name": config.node.name, "running": True,
        "uptime_s": int(time.time() - node[STARTED]), "listen": f"{config.http.host}:{config.http.port}",
        "url": public_url(config), "names": sorted(node[NAMES].all()),
        "db": str(config.db_path), "db_ok": await node[DB].integrity_ok(),
        "events": await node[STORE].count(), "by_kind": await node[STORE].counts_by_kind(),
        "rejected": dict(engine.stats.rejected), "refused": dict(engine.stats.refused),
        "peers": [{"key": p.key, "name": p.name, "url": p.url, "state": p.state, "source": p.source,
                   "last_sync": p.last_sync, "lag": p.lag, "last_error": p.last_error} for p in peers],
        "quarantined": await node[STORE].quarantined(),
    }


__all__ = ["control_app", "gather_status", "event_json"]
