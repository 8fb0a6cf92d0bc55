"""HTTP handlers for people: joining with an invite, signing in and out, and the manager's residents, invites,
sessions and peers. Who may call each is declared in routes.py."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sync import RateLimited

from .accounts import Session
from .app import ACCOUNTS, CONFIG, ENGINE, HUB, PEERS, SIGN_IN_LIMITER
from .claim import SESSION_TTL, qr_svg
from .errors import BadRequest, Forbidden, NotFound, TooLarge

SESSION_COOKIE = "nnode_session"


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


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (at most MAX_JSON_BODY bytes), or an error saying what is wrong."""
    import json

    if request.content_type != "application/json":
        raise BadRequest(f"send JSON (Content-Type: application/json), not {request.content_type or 'nothing'}")
    raw = await read_capped(request, MAX_JSON_BODY, "the request body")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(value, dict):
        raise BadRequest("request body must be a JSON object")
    return value


def session_of(request: web.Request) -> Session:
    """The caller's session (the auth middleware has checked the route needs one)."""
    from .routes import SESSION
    return request[SESSION]


def int_param(request: web.Request, name: str) -> int:
    """A path parameter that must be a positive integer id."""
    raw = request.match_info[name]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound(f"{name} must be a number, got {raw[:40]!r}")
    return int(raw)


def _limit(request: web.Request) -> None:
    try:
        request.app[SIGN_IN_LIMITER].check(request.remote or "?")
    except RateLimited as exc:
        raise Forbidden(f"too many sign-in attempts from this address; retry in {exc.retry_after:.0f} s") from exc


def _signed_in(payload: dict[str, Any], token: str) -> web.Response:
    response = web.json_response({"ok": True, **payload})
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL, httponly=True, samesite="Strict", path="/")
    return response


def base_url(request: web.Request) -> str:
    """The node's address as the caller reached it (for links handed to others on the same network)."""
    return f"{request.scheme}://{request.host}"


async def join(request: web.Request) -> web.Response:
    """POST /api/join {code, name?}: redeem an invite; sets the session cookie."""
    _limit(request)
    body = await json_body(request)
    token, session = await request.app[ACCOUNTS].redeem(body.get("code"), body.get("name"))
    return _signed_in(session.public(), token)


async def login(request: web.Request) -> web.Response:
    """POST /api/login {password} or {token}: sign the manager in."""
    _limit(request)
    body = await json_body(request)
    accounts = request.app[ACCOUNTS]
    if "token" in body:
        token, session = await accounts.login_token(body["token"])
    else:
        token, session = await accounts.login_password(body.get("password"))
    return _signed_in(session.public(), token)


async def logout(request: web.Request) -> web.Response:
    """POST /api/logout: end this session."""
    await request.app[ACCOUNTS].revoke_session(session_of(request).id)
    await request.app[HUB].recheck()
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def session(request: web.Request) -> web.Response:
    """GET /api/session: who the caller is (role null when signed out) and what the pages need to know."""
    config = request.app[CONFIG]
    from .routes import SESSION
    current = request.get(SESSION)
    payload = current.public() if current else {"role": None, "unit": None, "name": None, "on_call": False,
                                                "resident_id": None}
    claimed = await request.app[ACCOUNTS].db.reader.execute_fetchall("SELECT 1 FROM managers LIMIT 1")
    return web.json_response({"ok": True, **payload, "claimed": bool(claimed),
                              "node": {"name": config.node.name, "emergency_number": config.sos.emergency_number}})


async def residents(request: web.Request) -> web.Response:
    """GET /api/residents."""
    return web.json_response({"ok": True, "residents": await request.app[ACCOUNTS].residents()})


async def revoke_resident(request: web.Request) -> web.Response:
    """POST /api/residents/{id}/revoke: the resident's sessions end now."""
    await request.app[ACCOUNTS].revoke_resident(int_param(request, "id"))
    await request.app[HUB].recheck()
    return web.json_response({"ok": True})


async def set_on_call(request: web.Request) -> web.Response:
    """POST /api/residents/{id}/on-call {on_call}."""
    body = await json_body(request)
    await request.app[ACCOUNTS].set_on_call(int_param(request, "id"), body.get("on_call"))
    await request.app[HUB].recheck()
    return web.json_response({"ok": True})


def invite_payload(invite: Any, base: str) -> dict[str, Any]:
    """An invite as shown once to the manager: code, link with the code in its fragment, and QR."""
    link = f"{base}/join#code={invite.code}"
    return {"id": invite.id, "unit": invite.unit, "name": invite.name, "code": invite.code, "link": link,
            "expires": invite.expires, "qr_svg": qr_svg(link).decode()}


async def invites(request: web.Request) -> web.Response:
    """GET /api/invites."""
    return web.json_response({"ok": True, "invites": await request.app[ACCOUNTS].invites()})


async def create_invite(request: web.Request) -> web.Response:
    """POST /api/invites {unit, name?}: a one-time invite (its code is shown this once)."""
    body = await json_body(request)
    invite = await request.app[ACCOUNTS].invite(body.get("unit"), body.get("name"))
    return web.json_response({"ok": True, "invite": invite_payload(invite, base_url(request))})


async def revoke_invite(request: web.Request) -> web.Response:
    """POST /api/invites/{id}/revoke."""
    await request.app[ACCOUNTS].revoke_invite(int_param(request, "id"))
    return web.json_response({"ok": True})


async def sessions(request: web.Request) -> web.Response:
    """GET /api/sessions: live sessions (the caller's own is marked)."""
    current = session_of(request).id
    listed = [s | {"current": s["id"] == current} for s in await request.app[ACCOUNTS].sessions()]
    return web.json_response({"ok": True, "sessions": listed})


async def revoke_session(request: web.Request) -> web.Response:
    """POST /api/sessions/{id}/revoke."""
    await request.app[ACCOUNTS].revoke_session(int_param(request, "id"))
    await request.app[HUB].recheck()
    return web.json_response({"ok": True})


def peer_location(text: str | None) -> tuple[float, float] | None:
    """A peer's stored coarse location ("lat_e6,lon_e6") in degrees, or None."""
    if not text:
        return None
    lat, lon = text.split(",")
    return int(lat) / 1e6, int(lon) / 1e6


async def peers(request: web.Request) -> web.Response:
    """GET /api/peers: known nodes, approved or waiting."""
    listed = [{"key": p.key, "name": p.name, "url": p.url, "state": p.state, "source": p.source,
               "last_sync": p.last_sync, "last_error": p.last_error, "location": peer_location(p.location)}
              for p in await request.app[PEERS].list()]
    return web.json_response({"ok": True, "peers": listed})


async def approve_peer(request: web.Request) -> web.Response:
    """POST /api/peers/{key}/approve: let a discovered node sync with this one."""
    key = request.match_info["key"]
    if not await request.app[PEERS].approve(key):
        raise NotFound(f"no known peer {key[:16]}")
    request.app[ENGINE].wake()
    return web.json_response({"ok": True})
