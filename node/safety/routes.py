"""HTTP handlers for safety: posting alerts, reports and their moderation, SOS, the timeline and the map."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import BodyPartReader, web

from node.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from node.federation.areas import node_location, peer_location
from node.http import (
    LOCAL,
    MANAGER,
    MAX_JSON_BODY,
    RESIDENT,
    RESPONDER,
    Route,
    int_param,
    json_body,
    read_body,
    session_of,
)
from node.identity import node_id
from node.keys import ANNOUNCER, BASEMAP, CAMERAS, CONFIG, ENGINE, FEEDS, HUB, KEY, PEERS, REPORTS, SOS_DESK, STORE
from node.people.accounts import Session
from node.safety.alerts import (
    ALERT,
    MAX_TTL,
    alert_expiry,
    atom_feed,
    current_alerts,
    languages,
    manager_alert,
    pick_info,
)
from node.safety.basemap import serve_tile
from node.safety.cap import CapError
from node.safety.geocodes import Geocodes
from node.safety.live import ALL, MANAGERS, RESPONDERS, resident_audience
from node.safety.models import AlertBody, ResolveBody, SosBody
from node.safety.reports import REPORT, REPORT_TTL, read_limited, report_message
from node.safety.sos import SOS
from node.safety.stream import stream
from sync import Event

MAX_FORM_FIELDS = 20


# -- alerts -----------------------------------------------------------------------------------------------------

async def post_alert(request: web.Request) -> web.Response:
    """POST /api/alerts: the manager posts an alert for the area around the building (a signed CAP event)."""
    app = request.app
    node = app[CONFIG].node
    fields = msgspec.structs.asdict(await read_body(request, AlertBody))
    try:
        cap = manager_alert(fields, node_key=node_id(app[KEY]), node_name=node.name,
                            location=(node.latitude, node.longitude) if node.latitude else None)
    except CapError as exc:
        raise BadRequest(str(exc)) from exc
    now = int(time.time())
    announcer, signed = app[ANNOUNCER], list[Event]()

    def announce(events: list[Event]) -> None:   # to the open pages while the event is written (early.py)
        signed.extend(events)
        announcer.early(events)
    try:
        event = await app[ENGINE].publish(ALERT, {"cap": cap}, ttl=min(alert_expiry(cap, now) - now, MAX_TTL),
                                          before_commit=announce)
    except BaseException:
        announcer.failed(signed)
        raise
    return web.json_response({"ok": True, "event": event.id, "cap": cap})


# -- reports ----------------------------------------------------------------------------------------------------

async def _report_form(request: web.Request) -> tuple[dict[str, Any], bytes | None]:
    if request.content_type == "application/json":
        return await json_body(request), None
    if request.content_type == "application/x-www-form-urlencoded":
        if (request.content_length or 0) > MAX_JSON_BODY:
            raise TooLarge(f"the form is over the limit of {MAX_JSON_BODY} bytes")
        posted = await request.post()
        if len(posted) > MAX_FORM_FIELDS:
            raise BadRequest(f"too many form fields (at most {MAX_FORM_FIELDS})")
        return {name: value for name, value in posted.items() if isinstance(value, str)}, None
    if request.content_type != "multipart/form-data":
        raise BadRequest("send the report as multipart/form-data, a URL-encoded form or JSON")
    limit = request.app[CONFIG].reports.max_photo_bytes
    fields: dict[str, Any] = {}
    photo = None
    reader = await request.multipart()
    for _ in range(MAX_FORM_FIELDS + 1):
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader) or not part.name:
            raise BadRequest("every part of the form needs a name (and no nested multipart)")
        if part.name == "photo":
            data = await read_limited(part, limit, "photo")
            photo = data or None
        elif part.name in fields:
            raise BadRequest(f"field '{part.name}' is given twice")
        else:
            fields[part.name] = (await read_limited(part, 8192, part.name)).decode("utf-8", "replace")
    else:
        raise BadRequest(f"too many form fields (at most {MAX_FORM_FIELDS})")
    return fields, photo


async def post_report(request: web.Request) -> web.Response:
    """POST /api/reports: a resident reports what they saw (JSON, or multipart with a photo)."""
    session = session_of(request)
    fields, photo = await _report_form(request)
    is_manager = session.role == "manager"
    report = await request.app[REPORTS].add(fields, photo, resident_id=None if is_manager else session.subject,
                                            manager=session.subject if is_manager else None)
    public = {k: v for k, v in report.items() if k not in ("mine", "queue", "event", "reporter", "held_reason")} \
        | {"mine": False}
    # A held report reaches only the manager's pages; the building sees it once the manager lets it in.
    await request.app[HUB].publish("report", {"report": public}, MANAGERS if report["held"] else ALL)
    return web.json_response({"ok": True, "report": report}, status=201)


async def list_reports(request: web.Request) -> web.Response:
    """GET /api/reports: reports the caller may see."""
    session = session_of(request)
    reports = await request.app[REPORTS].list(resident_id=session.subject if session.role == "resident" else None,
                                              manager=session.role == "manager")
    return web.json_response({"ok": True, "reports": reports})


async def report_photo(request: web.Request) -> web.FileResponse:
    """GET /api/reports/{id}/photo."""
    session = session_of(request)
    path = await request.app[REPORTS].photo_path(
        int_param(request, "id"), resident_id=session.subject if session.role == "resident" else None,
        manager=session.role == "manager")
    return web.FileResponse(path, headers={"Content-Type": "image/jpeg", "Cache-Control": "private, max-age=3600"})


async def moderate(request: web.Request) -> web.Response:
    """POST /api/reports/{id}/share|hide|restore: the manager's decision."""
    app = request.app
    action = request.match_info["action"]
    report_id = int_param(request, "id")
    if action not in ("share", "hide", "restore"):
        raise NotFound(f"no moderation action {action!r}: use share, hide or restore")
    async with app[REPORTS].moderation:   # one decision at a time: two quick "share" clicks publish once
        return await _moderate(app, report_id, action)


async def _moderate(app: web.Application, report_id: int, action: str) -> web.Response:
    reports = app[REPORTS]
    report = await reports.get(report_id, resident_id=None, manager=True)
    event_id = report["event"]
    if action == "share":
        if report["status"] == "shared":
            raise Conflict(f"report {report_id} is already shared")
        event = await app[ENGINE].publish(REPORT, reports.event_body(report), ttl=REPORT_TTL)
        event_id = event.id
        status = "shared"
    else:
        if event_id:  # withdraw it from the neighborhood too
            await app[ENGINE].delete(event_id)
            event_id = None
        status = "hidden" if action == "hide" else "building"
    await reports.set_status(report_id, status, event_id=event_id)
    if status == "hidden":   # a page reconnecting later must not have it replayed
        await app[HUB].forget("report", report_id)
    updated = await reports.get(report_id, resident_id=None, manager=True)
    await app[HUB].publish("report-moderated", {"id": report_id, "status": status}, ALL)
    return web.json_response({"ok": True, "report": updated})


# -- SOS --------------------------------------------------------------------------------------------------------

async def post_sos(request: web.Request) -> web.Response:
    """POST /api/sos {note?}: call the on-call responders now."""
    session = session_of(request)
    body = await read_body(request, SosBody)
    name = session.name if session.role == "resident" else "manager"
    call = await request.app[SOS_DESK].raise_sos(resident_id=session.subject if session.role == "resident" else None,
                                                 unit=session.unit, name=name, note=body.note)
    await request.app[HUB].publish("sos", {"sos": call}, RESPONDERS)
    sos = request.app[CONFIG].sos
    now = time.time()  # every camera's footage around the call becomes a held clip
    request.app[CAMERAS].hold_window(now - sos.hold_before, now + sos.hold_after, "sos", note=f"SOS {call['id']}")
    return web.json_response({"ok": True, "sos": call}, status=201)


async def list_sos(request: web.Request) -> web.Response:
    """GET /api/sos: recent calls (responders and the manager: all; residents: their own)."""
    session = session_of(request)
    responder = session.role == "manager" or session.on_call
    calls = await request.app[SOS_DESK].open_calls(resident_id=None if responder else session.subject)
    return web.json_response({"ok": True, "calls": calls})


async def ack_sos(request: web.Request) -> web.Response:
    """POST /api/sos/{id}/ack: a responder answers the call."""
    session = session_of(request)
    call, first = await request.app[SOS_DESK].acknowledge(int_param(request, "id"), _who(session))
    if first:
        await _tell(request.app, "sos-ack", call)
    return web.json_response({"ok": True, "sos": call, "first": first})


async def _tell(app: web.Application, kind: str, call: dict[str, Any]) -> None:
    """A change of a call reaches the responders' pages and the caller's own."""
    hub = app[HUB]
    await hub.publish(kind, {"sos": call}, RESPONDERS)
    if call["resident_id"] is not None:
        await hub.publish(kind, {"sos": call}, resident_audience(call["resident_id"]))


def _who(session: Session) -> str:
    return "the manager" if session.role == "manager" else (session.name or f"unit {session.unit}")


async def cancel_sos(request: web.Request) -> web.Response:
    """POST /api/sos/{id}/cancel: whoever raised the call takes it back (a false alarm)."""
    session = session_of(request)
    call = await request.app[SOS_DESK].cancel(
        int_param(request, "id"), resident_id=session.subject if session.role == "resident" else None,
        by=_who(session))
    await _tell(request.app, "sos-ended", call)
    return web.json_response({"ok": True, "sos": call})


async def resolve_sos(request: web.Request) -> web.Response:
    """POST /api/sos/{id}/resolve {note, release_hold?}: a responder or the manager closes the call with a note."""
    session = session_of(request)
    body = await read_body(request, ResolveBody)
    if body.release_hold and session.role != "manager":
        raise Forbidden("only the manager can release the footage an SOS holds")
    desk = request.app[SOS_DESK]
    sos_id = int_param(request, "id")
    call = await desk.end(sos_id, "resolved", _who(session), body.note.strip())
    if body.release_hold and call["hold"] and call["hold"]["released"] is None:
        call["hold"] = await desk.release_hold(sos_id)
    await _tell(request.app, "sos-ended", call)
    return web.json_response({"ok": True, "sos": call})


async def release_sos_hold(request: web.Request) -> web.Response:
    """POST /api/sos/{id}/release: the manager lets retention have the footage an SOS held."""
    desk = request.app[SOS_DESK]
    sos_id = int_param(request, "id")
    hold = await desk.release_hold(sos_id)
    return web.json_response({"ok": True, "sos": await desk.get(sos_id), "hold": hold})


# -- timeline and map -------------------------------------------------------------------------------------------

TIMELINE_TYPES = ("alert", "report", "sos")


async def timeline(request: web.Request) -> web.Response:
    """GET /api/timeline?types=alert,report,sos&limit=N: one list, newest first."""
    app = request.app
    session = session_of(request)
    types = set(request.query.get("types", ",".join(TIMELINE_TYPES)).split(","))
    if not types <= set(TIMELINE_TYPES) | {"clip"}:
        raise BadRequest(f"types must be a comma-separated subset of {', '.join(TIMELINE_TYPES)}")
    try:
        limit = min(max(int(request.query.get("limit", "100")), 1), 500)
    except ValueError:
        raise BadRequest("limit must be a number") from None
    items: list[dict[str, Any]] = []
    if "alert" in types:
        wanted = languages(request.headers.get("Accept-Language"))
        for alert in await _in_force(app):
            info = pick_info(alert["cap"]["info"], wanted) or {}
            items.append({"type": "alert", "time": alert["received"], "id": alert["event"],
                          "title": info.get("headline") or info.get("event") or alert["cap"]["identifier"],
                          "summary": f"{info.get('severity', '')} · {info.get('senderName', alert['cap']['sender'])}",
                          "data": alert})
    if "report" in types:
        resident = session.subject if session.role == "resident" else None
        for report in await app[REPORTS].list(resident_id=resident, manager=session.role == "manager"):
            items.append({"type": "report", "time": report["created"], "id": f"building-{report['id']}",
                          "title": report["category"].replace("-", " "), "summary": report["what"][:200],
                          "data": report})
        own = node_id(app[KEY])
        for event in await app[STORE].recent(limit, REPORT):
            if event.body is not None and event.author != own:
                report = report_message(event)
                items.append({"type": "report", "time": report["created"], "id": event.id,
                              "title": report["category"].replace("-", " ") + " (nearby)",
                              "summary": report["what"][:200], "data": report})
    if "sos" in types:
        responder = session.role == "manager" or session.on_call
        for call in await app[SOS_DESK].open_calls(resident_id=None if responder else session.subject, hours=24 * 7,
                                                   ended=True):
            items.append({"type": "sos", "time": call["created"], "id": f"sos-{call['id']}",
                          "title": f"SOS {call['unit']}".strip(), "summary": _sos_summary(call), "data": call})
        if responder:
            for event in await app[STORE].recent(limit, SOS):
                if event.body is not None and event.author != node_id(app[KEY]):
                    body = event.body_value()
                    items.append({"type": "sos", "time": body["raised"], "id": event.id,
                                  "title": f"Unanswered SOS at {body['building']}", "summary": "a nearby building",
                                  "data": body})
    items.sort(key=lambda item: item["time"], reverse=True)
    return web.json_response({"ok": True, "items": items[:limit]})


def _sos_summary(call: dict[str, Any]) -> str:
    if call["state"] == "resolved":
        return f"resolved by {call['ended_by']}: {call['resolution']}"
    if call["state"] == "cancelled":
        return f"cancelled by {call['ended_by']} (a false alarm)"
    return f"acknowledged by {call['acked_by']}" if call["acked_by"] else "not acknowledged"


def _point(text: str) -> list[float]:
    lat, lon = text.split(",")
    return [float(lat), float(lon)]


async def map_data(request: web.Request) -> web.Response:
    """GET /api/map: this node, its peers' coarse locations and the areas of alerts in force, from local data."""
    app = request.app
    node = app[CONFIG].node
    here = node_location(app[CONFIG])
    peers = []
    for peer in await app[PEERS].list():
        if (where := peer_location(peer.location)) is not None:
            lat, lon = where
            peers.append({"name": peer.name, "key": peer.key, "lat": lat, "lon": lon, "state": peer.state})
    areas = []
    wanted = languages(request.headers.get("Accept-Language"))
    for alert in await _in_force(app):
        if (info := pick_info(alert["cap"]["info"], wanted)) is not None:
            for area in info["area"]:
                circles = []
                for circle in area["circle"]:
                    centre, radius = circle.split()
                    lat, lon = _point(centre)
                    circles.append({"lat": lat, "lon": lon, "radius_km": float(radius)})
                areas.append({"event": alert["event"], "title": info.get("headline") or info["event"],
                              "severity": info["severity"], "area": area["areaDesc"],
                              "polygons": [[_point(p) for p in polygon.split()] for polygon in area["polygon"]],
                              "circles": circles})
    basemap = await app[BASEMAP].info()
    return web.json_response({"ok": True, "node": {"name": node.name, "lat": here[0], "lon": here[1]} if here
                              else None, "peers": peers, "areas": areas,
                              "reports": await _map_reports(request, here, peers),
                              "basemap": basemap.describe() if basemap else None})


MAP_REPORT_DAYS = 7
MAP_REPORTS = 50


async def _map_reports(request: web.Request, here: tuple[float, float] | None,
                       peers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last week's reports the caller may see, placed at their building: this node's at its own location, nearby
    ones at their node's coarse location (a report carries no position of its own: where is free text)."""
    app, session = request.app, session_of(request)
    since = time.time() - MAP_REPORT_DAYS * 86400
    out: list[dict[str, Any]] = []
    if here is not None:
        resident = session.subject if session.role == "resident" else None
        for report in await app[REPORTS].list(resident_id=resident, manager=session.role == "manager",
                                              limit=MAP_REPORTS):
            if report["created"] >= since and not report["held"] and report["status"] != "hidden":
                out.append({"lat": here[0], "lon": here[1], "building": app[CONFIG].node.name, "nearby": False,
                            "category": report["category"], "summary": report["what"][:120],
                            "created": report["created"]})
    where = {peer["key"]: peer for peer in peers}
    own = node_id(app[KEY])
    for event in await app[STORE].recent(MAP_REPORTS, REPORT):
        peer = where.get(event.author)
        if event.body is None or event.author == own or peer is None:
            continue
        report = report_message(event)
        if report["created"] >= since:
            out.append({"lat": peer["lat"], "lon": peer["lon"], "building": peer["name"], "nearby": True,
                        "category": report["category"], "summary": report["what"][:120],
                        "created": report["created"]})
    out.sort(key=lambda item: item["created"], reverse=True)
    return out[:MAP_REPORTS]


async def map_tile(request: web.Request) -> web.Response:
    """GET /map/tiles/{z}/{x}/{y}: one tile of the street map the manager loaded (`nnode map load`)."""
    return await serve_tile(request.app[BASEMAP], request)


async def _in_force(app: web.Application) -> list[dict[str, Any]]:
    """The alerts in force for this node: its location and its own codes (alerts.geocodes)."""
    config = app[CONFIG]
    return await current_alerts(app[STORE], location=node_location(config),
                                codes=Geocodes.parse(config.alerts.geocodes))


async def alerts_json(request: web.Request) -> web.Response:
    """GET /api/alerts: the CAP alerts in force here (covering this node's location)."""
    alerts = await _in_force(request.app)
    return web.json_response({"ok": True, "alerts": alerts})


async def alerts_atom(request: web.Request) -> web.Response:
    """GET /alerts.atom: the same alerts as a CAP Atom feed."""
    alerts = await _in_force(request.app)
    body = atom_feed(alerts, title=f"{request.app[CONFIG].node.name}: alerts",
                     feed_id=f"urn:nnode:{node_id(request.app[KEY])}:alerts", author=request.app[CONFIG].node.name,
                     wanted=languages(request.headers.get("Accept-Language")))
    return web.Response(body=body, content_type="application/atom+xml")


async def feeds_status(request: web.Request) -> web.Response:
    """GET /api/feeds: each official feed's last poll (time, HTTP status, shape, alerts found, skipped and why)."""
    return web.json_response({"ok": True, "feeds": request.app[FEEDS].listing()})


def routes() -> list[Route]:
    """The safety routes: alerts, live delivery, reports, SOS, timeline and map."""
    local, manager = frozenset({LOCAL}), frozenset({MANAGER})
    signed_in = frozenset({RESIDENT, MANAGER})
    return [
        # the alerts in force describe where the building is: the building's networks only
        Route("GET", "/api/alerts", alerts_json, local),
        Route("POST", "/api/alerts", post_alert, manager, AlertBody),
        Route("GET", "/alerts.atom", alerts_atom, local),
        Route("GET", "/api/feeds", feeds_status, manager),
        Route("GET", "/api/stream", stream, signed_in),
        Route("GET", "/api/reports", list_reports, signed_in),
        Route("POST", "/api/reports", post_report, signed_in),
        Route("GET", "/api/reports/{id}/photo", report_photo, signed_in),
        Route("POST", "/api/reports/{id}/{action}", moderate, manager),
        Route("GET", "/api/sos", list_sos, signed_in),
        Route("POST", "/api/sos", post_sos, signed_in, SosBody),
        Route("POST", "/api/sos/{id}/ack", ack_sos, frozenset({RESPONDER, MANAGER})),
        Route("POST", "/api/sos/{id}/cancel", cancel_sos, signed_in),
        Route("POST", "/api/sos/{id}/resolve", resolve_sos, frozenset({RESPONDER, MANAGER}), ResolveBody),
        Route("POST", "/api/sos/{id}/release", release_sos_hold, manager),
        Route("GET", "/api/timeline", timeline, signed_in),
        Route("GET", "/api/map", map_data, signed_in),
        Route("GET", "/map/tiles/{z}/{x}/{y}", map_tile, signed_in),
    ]
