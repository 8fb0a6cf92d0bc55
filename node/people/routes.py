"""HTTP handlers for people: joining with an invite, signing in and out, and the manager's residents, invites and
sessions, with the roles that may call each."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.errors import Forbidden
from node.http import (
    LOCAL,
    LOOPBACK,
    MANAGER,
    PUBLIC,
    RESIDENT,
    SESSION,
    SESSION_COOKIE,
    Route,
    int_param,
    read_body,
    session_of,
)
from node.keys import ACCOUNTS, CONFIG, HUB, SIGN_IN_LIMITER, TLS
from node.names import public_url
from node.people import setup
from node.people.claim import SESSION_TTL, qr_svg
from node.people.models import ClaimBody, InviteBody, JoinBody, LanguageBody, LoginBody, OnCallBody
from sync import RateLimited


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
    """The node's address for links handed to others (http.url), from configuration: never the caller's Host."""
    return public_url(request.app[CONFIG])


async def join(request: web.Request) -> web.Response:
    """POST /api/join {code, name?}: redeem an invite; sets the session cookie."""
    _limit(request)
    body = await read_body(request, JoinBody)
    token, session = await request.app[ACCOUNTS].redeem(body.code, body.name)
    return _signed_in(session.public(), token)


async def login(request: web.Request) -> web.Response:
    """POST /api/login {password} or {token}: sign the manager in."""
    _limit(request)
    body = await read_body(request, LoginBody)
    accounts = request.app[ACCOUNTS]
    if isinstance(body.token, str):
        token, session = await accounts.login_token(body.token)
    else:
        token, session = await accounts.login_password(body.password or None)
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
    current = request.get(SESSION)
    payload = current.public() if current else {"role": None, "unit": None, "name": None, "on_call": False,
                                                "resident_id": None, "language": None}
    claimed = await request.app[ACCOUNTS].db.reader.execute_fetchall("SELECT 1 FROM managers LIMIT 1")
    return web.json_response({"ok": True, **payload, "claimed": bool(claimed),
                              "node": {"name": config.node.name, "emergency_number": config.sos.emergency_number},
                              # what the pages check before sending a file (the node checks again)
                              "limits": {"upload_bytes": config.cameras.upload_max_mb << 20,
                                         "upload_seconds": config.cameras.upload_max_seconds,
                                         "photo_bytes": config.reports.max_photo_bytes}})


async def set_language(request: web.Request) -> web.Response:
    """POST /api/account/language {language}: the caller's language, kept with their account for every device."""
    body = await read_body(request, LanguageBody)
    await request.app[ACCOUNTS].set_language(session_of(request), body.language)
    return web.json_response({"ok": True, "language": body.language})


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
    body = await read_body(request, OnCallBody)
    await request.app[ACCOUNTS].set_on_call(int_param(request, "id"), body.on_call)
    await request.app[HUB].recheck()
    return web.json_response({"ok": True})


def ca_fingerprint(app: web.Application) -> str:
    """The SHA-256 fingerprint of the node's local CA, printed on invites so residents can check what they
    install; "" without one (http.tls.mode is not "local-ca")."""
    state = app.get(TLS)
    return state.fingerprint if state is not None and state.mode == "local-ca" else ""


def invite_payload(invite: Any, base: str, fingerprint: str = "") -> dict[str, Any]:
    """An invite as shown once to the manager: code, link with the code in its fragment, QR, and the fingerprint
    of the certificate the resident installs for HTTPS (when the node has a local CA)."""
    link = f"{base}/join#code={invite.code}"
    return {"id": invite.id, "unit": invite.unit, "name": invite.name, "code": invite.code, "link": link,
            "expires": invite.expires, "qr_svg": qr_svg(link).decode(), "ca_fingerprint": fingerprint}


async def invites(request: web.Request) -> web.Response:
    """GET /api/invites."""
    return web.json_response({"ok": True, "invites": await request.app[ACCOUNTS].invites()})


async def create_invite(request: web.Request) -> web.Response:
    """POST /api/invites {unit, name?}: a one-time invite (its code is shown this once)."""
    body = await read_body(request, InviteBody)
    invite = await request.app[ACCOUNTS].invite(body.unit, body.name)
    return web.json_response({"ok": True, "invite": invite_payload(invite, base_url(request),
                                                                   ca_fingerprint(request.app))})


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


def routes() -> list[Route]:
    """The people routes: the first-boot claim, joining, signing in, and the manager's people console."""
    public, local, manager = frozenset({PUBLIC}), frozenset({LOCAL}), frozenset({MANAGER})
    return [
        Route("GET", "/setup", setup.setup_page, public),
        Route("GET", "/setup/qr.svg", setup.setup_qr, frozenset({LOOPBACK})),
        Route("POST", "/setup/claim", setup.claim, public, ClaimBody),
        Route("GET", "/api/session", session, public),
        Route("POST", "/api/join", join, local, JoinBody),
        Route("POST", "/api/login", login, local, LoginBody),
        Route("POST", "/api/logout", logout, frozenset({RESIDENT, MANAGER})),
        Route("POST", "/api/account/language", set_language, frozenset({RESIDENT, MANAGER}), LanguageBody),
        Route("GET", "/api/residents", residents, manager),
        Route("POST", "/api/residents/{id}/revoke", revoke_resident, manager),
        Route("POST", "/api/residents/{id}/on-call", set_on_call, manager, OnCallBody),
        Route("GET", "/api/invites", invites, manager),
        Route("POST", "/api/invites", create_invite, manager, InviteBody),
        Route("POST", "/api/invites/{id}/revoke", revoke_invite, manager),
        Route("GET", "/api/sessions", sessions, manager),
        Route("POST", "/api/sessions/{id}/revoke", revoke_session, manager),
    ]
