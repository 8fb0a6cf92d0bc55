"""HTTP handlers for sharing with agencies: the agency routes (every call signed with the agency key), the owners'
requests and consents, the manager's agency registry, and the transparency log residents read.

An agency route answers only about this agency's own requests and the bundles made for it; a request nobody
consented to, a declined or withdrawn clip, and another agency's bundle all look alike: nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any

import msgspec
import nacl.signing
from aiohttp import web

from node.errors import BadRequest, Forbidden, TooLarge
from node.http import AGENCY as AGENCY_ROLE
from node.http import MANAGER, PEER, RESIDENT, Route, body_of, read_body, session_of
from node.identity import derive_secret
from node.keys import (
    AGENCY_LIMITS,
    AGENCY_REPLAY,
    AUDIT,
    AUDIT_HEADS,
    CONFIG,
    DESK,
    ENGINE,
    KEY,
    NAMES,
    PEER_CHECK,
    PEERS,
    REGISTRY,
    STORE,
    SYNC_SERVER,
)
from node.names import Names, public_url
from node.safety.alerts import ALERT, MAX_TTL, alert_expiry, held_keys, manager_alert, not_authorised
from node.safety.cap import CapError, check_alert_dict, parse_alert
from node.safety.intake import publish_decided, triage
from node.safety.models import AlertBody
from node.safety.signatures import signatures
from node.sharing.agencies import Agency, AgencyRefused, cap_sender
from node.sharing.heads import MAX_ANSWER
from node.sharing.models import AgencyBody, ConsentBody, CredentialBody, RangeBody, RevokeBody
from sync import AuthError, check_authority, check_content_digest, verify_request

AGENCY_TAG = "nnode-agency"
AGENCY = web.RequestKey("agency", Agency)       # the calling agency, set by check_agency
AGENCY_BODY = web.RequestKey("agency_body", bytes)
CREDENTIAL_HEADER = "NNode-Agency-Credential"
MAX_AGENCY_BODY = 64 * 1024


def _decode_credential(value: str) -> dict[str, Any]:
    try:
        credential = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise BadRequest(f"{CREDENTIAL_HEADER}: not base64url of a JSON credential ({type(exc).__name__})") from None
    if not isinstance(credential, dict):
        raise BadRequest(f"{CREDENTIAL_HEADER}: the credential must be a JSON object")
    return credential


async def check_agency(request: web.Request) -> None:
    """Authenticate an agency call (RFC 9421, tag nnode-agency) against the registry; read its body.

    The signature covers the request line as served and the Host, which must be one of this node's names (421
    otherwise), so a call signed for another node or another route does not pass. The key must be a registered
    agency in force (or present a trust anchor's credential); only then is the signature remembered against
    replay, in that agency's own share of the cache, and the (bounded) body read and matched to its
    Content-Digest.
    """
    app = request.app
    has_body = request.can_read_body
    if has_body and (request.content_length or 0) > MAX_AGENCY_BODY:
        raise TooLarge(f"agency request bodies are limited to {MAX_AGENCY_BODY // 1024} KiB")
    try:
        verified = verify_request(request.method, f"{request.scheme}://{request.host}{request.rel_url.raw_path_qs}",
                                  request.headers, None, has_body=has_body,
                                  max_skew=app[CONFIG].sync.max_clock_skew, tag=AGENCY_TAG)
    except AuthError as exc:
        raise Forbidden(f"agency call refused: {exc}") from None
    names: Names = app[NAMES]
    check_authority(request.host, names)
    limits = app[AGENCY_LIMITS]
    limits.check_call(verified.keyid)   # before the registry (and any credential it would store) is looked at
    registry, desk = app[REGISTRY], app[DESK]
    agency = await registry.get(verified.keyid)
    header = request.headers.get(CREDENTIAL_HEADER)
    if (agency is None or agency.source == "anchor") and header:
        credential = _decode_credential(header)
        if credential.get("agency") != verified.keyid:
            raise AgencyRefused("the credential is for another agency key than the one that signed the call")
        before = agency
        async with app[DESK].db.write() as conn:
            agency, new = await registry.accept(credential, conn=conn)
            if new:
                await app[AUDIT].append("agency_registered", agency=agency.key, actor="trust anchor",
                                        detail={"name": agency.name, "anchor": agency.anchor or ""}, conn=conn)
        if new or (before is not None and registry.problem(before)):  # new, or a renewed credential
            await desk.reconsider(agency.key)
    request[AGENCY] = await registry.require(verified.keyid)
    try:
        app[AGENCY_REPLAY].check_and_add(verified.signature, time.time(), verified.keyid)
    except AuthError as exc:
        raise Forbidden(f"agency call refused: {exc}") from None
    # after the replay check, so a captured call replayed cannot spend the agency's allowance
    resource = request.match_info.route.resource
    limits.check_route(request.method, resource.canonical if resource else request.path, verified.keyid)
    body = b""
    if has_body:
        body = await request.content.read(MAX_AGENCY_BODY + 1)
        if len(body) > MAX_AGENCY_BODY:
            raise TooLarge(f"agency request bodies are limited to {MAX_AGENCY_BODY // 1024} KiB")
        try:
            check_content_digest(request.headers, body)
        except AuthError as exc:
            raise Forbidden(f"agency call refused: {exc}") from None
    request[AGENCY_BODY] = body


def _json(request: web.Request, what: str) -> Any:
    try:
        return json.loads(request[AGENCY_BODY] or b"null")
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body must be {what} as JSON: {type(exc).__name__}: {str(exc)[:200]}") from None


async def _peer_url(request: web.Request, node: str) -> str | None:
    if node == request.app[DESK].node_key:
        return public_url(request.app[CONFIG])
    peer = await request.app[PEERS].get(node)
    return peer.url if peer and peer.url else None


# -- agencies ---------------------------------------------------------------------------------------------------

async def agency_post_request(request: web.Request) -> web.Response:
    """POST /api/agency/requests: a signed footage request (201 new, 200 the same one again)."""
    document = _json(request, "the signed request")
    credential = request.headers.get(CREDENTIAL_HEADER)
    view, created = await request.app[DESK].submit(document, request[AGENCY],
                                                   _decode_credential(credential) if credential else None)
    return web.json_response({"ok": True, "request": view}, status=201 if created else 200)


async def agency_list_requests(request: web.Request) -> web.Response:
    """GET /api/agency/requests: this agency's requests, with the disclosures known here."""
    views = await request.app[DESK].agency_requests(request[AGENCY].key, lambda n: _peer_url(request, n))
    return web.json_response({"ok": True, "requests": views})


async def agency_get_request(request: web.Request) -> web.Response:
    """GET /api/agency/requests/{id}."""
    view = await request.app[DESK].agency_view(request[AGENCY].key, request.match_info["id"][:64],
                                               lambda n: _peer_url(request, n))
    return web.json_response({"ok": True, "request": view})


async def agency_list_bundles(request: web.Request) -> web.Response:
    """GET /api/agency/bundles: bundles on this node made for this agency."""
    return web.json_response({"ok": True, "bundles": await request.app[DESK].agency_bundles(request[AGENCY].key)})


async def agency_get_bundle(request: web.Request) -> web.StreamResponse:
    """GET /api/agency/bundles/{id}: the bundle file (audited)."""
    bundle_id = request.match_info["id"][:64]
    path = await request.app[DESK].open_bundle(request[AGENCY].key, bundle_id)
    return web.FileResponse(path, headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store",
                                           "Content-Disposition": f'attachment; filename="{bundle_id}.nnbundle"'})


async def agency_post_alert(request: web.Request) -> web.Response:
    """POST /api/agency/alerts: an official alert for the area around this building, as a CAP event that names the
    agency as its sender and reaches residents and nearby nodes like the manager's own."""

    app, agency = request.app, request[AGENCY]
    fields = msgspec.structs.asdict(body_of(_json(request, "the alert"), AlertBody))
    node = app[CONFIG].node
    try:
        cap = manager_alert(fields, node_key=app[DESK].node_key, node_name=agency.name,
                            location=(node.latitude, node.longitude) if node.latitude else None,
                            sender=cap_sender(agency.key))
    except CapError as exc:
        raise BadRequest(str(exc)) from exc
    now = int(time.time())
    event = await app[ENGINE].publish(ALERT, {"cap": cap}, ttl=min(alert_expiry(cap, now) - now, MAX_TTL))
    return web.json_response({"ok": True, "event": event.id, "cap": cap}, status=201)


async def agency_post_cap(request: web.Request) -> web.Response:
    """POST /api/agency/cap: a CAP 1.2 alert the agency wrote, as XML or in its JSON form, sent as the agency itself
    (its <sender> is the agency's identity); an Update or Cancel may name only this agency's own alerts. 201 with
    the event, 200 for an alert already held (posting twice changes nothing)."""
    app, agency, data = request.app, request[AGENCY], request[AGENCY_BODY]
    sender = cap_sender(agency.key)
    try:
        cap = (parse_alert(data) if data.lstrip()[:1] == b"<"
               else check_alert_dict(_json(request, "a CAP 1.2 alert (XML, or its JSON form)")))
    except CapError as exc:
        raise BadRequest(str(exc)) from exc
    if cap["sender"] != sender:
        raise Forbidden(f"alert/sender: {cap['sender'][:200]!r} is not this agency; its alerts are sent as {sender}")
    if (reason := not_authorised(cap)) is not None:
        raise Forbidden(reason)
    outcomes = await asyncio.to_thread(signatures, data, None) if data.lstrip()[:1] == b"<" else {}
    [decision] = triage([cap], held=await held_keys(app[STORE]), outcomes=outcomes, senders=(sender,))
    if decision.outcome == "skipped":
        raise BadRequest(f"alert {cap['identifier'][:200]}: {decision.reason}")
    if decision.outcome == "known":
        return web.json_response({"ok": True, "event": None, "held": True, "cap": cap})
    [event] = await publish_decided(app[ENGINE], [decision])
    return web.json_response({"ok": True, "event": event.id, "cap": cap, "signature": decision.signature},
                             status=201)


# -- owners -----------------------------------------------------------------------------------------------------

def _owner(request: web.Request, request_id: str = "") -> tuple[str, str, str]:
    """(clip owner, role, opaque id for the consent receipt) of the signed-in caller. A resident's id differs
    from request to request, so receipts given to agencies cannot link one resident's consents across cases."""
    session = session_of(request)
    if session.role == "manager":
        return "building", "manager", "manager"
    return f"resident:{session.subject}", "resident", resident_pseudonym(request.app[KEY], session.subject, request_id)


PSEUDONYM_PURPOSE = b"nnode-pseudonym"


def resident_pseudonym(key: nacl.signing.SigningKey, subject: int | str, request_id: str) -> str:
    """The opaque id a resident's consent receipts carry for one request: an HMAC under a secret derived for this
    purpose alone (never the signing seed itself), so it differs from request to request and links nothing."""
    secret = derive_secret(key, PSEUDONYM_PURPOSE)
    pseudonym = hmac.new(secret, f"resident:{subject}:{request_id}".encode(), hashlib.sha256).hexdigest()
    return f"resident-{pseudonym[:16]}"


async def list_requests(request: web.Request) -> web.Response:
    """GET /api/requests: requests touching the building, with the caller's own matching clips."""
    owner, _, _ = _owner(request)
    agencies = {a.key: a for a in await request.app[REGISTRY].list()}
    return web.json_response({"ok": True, "requests": await request.app[DESK].for_owner(owner, agencies)})


async def give_consent(request: web.Request) -> web.Response:
    """POST /api/requests/{id}/clips/{uid}/consent {"choice"}: share this one clip."""
    body = await read_body(request, ConsentBody)
    owner, role, subject = _owner(request, request.match_info["id"][:64])
    consent = await request.app[DESK].consent(request.match_info["id"][:64], request.match_info["uid"][:40],
                                              owner=owner, role=role, subject=subject, choice=body.choice)
    return web.json_response({"ok": True, "consent": consent}, status=201)


async def preview_range(request: web.Request) -> web.Response:
    """POST /api/requests/{id}/ranges/preview {"camera", "start", "end"}: what sharing the range would share."""
    body = await read_body(request, RangeBody)
    owner, _, _ = _owner(request)
    view = await request.app[DESK].preview_range(request.match_info["id"][:64], owner=owner, camera=body.camera,
                                                    start=body.start, end=body.end)
    return web.json_response({"ok": True, "range": view})


async def give_range_consent(request: web.Request) -> web.Response:
    """POST /api/requests/{id}/ranges {"camera", "start", "end", "choice"}: share one camera's footage over the
    range as one bundle (withdrawn like a clip's, by the consent's uid)."""
    body = await read_body(request, RangeBody)
    request_id = request.match_info["id"][:64]
    owner, role, subject = _owner(request, request_id)
    consent = await request.app[DESK].consent_range(
        request_id, owner=owner, role=role, subject=subject, camera=body.camera, start=body.start, end=body.end,
        choice=body.choice)
    return web.json_response({"ok": True, "consent": consent}, status=201)


async def withdraw_consent(request: web.Request) -> web.Response:
    """DELETE /api/requests/{id}/clips/{uid}/consent: withdraw, until the agency has downloaded it."""
    owner, role, _ = _owner(request)
    consent = await request.app[DESK].withdraw(request.match_info["id"][:64], request.match_info["uid"][:40],
                                               owner=owner, role=role)
    return web.json_response({"ok": True, "consent": consent})


# -- the manager's registry -------------------------------------------------------------------------------------

async def list_agencies(request: web.Request) -> web.Response:
    """GET /api/agencies."""
    return web.json_response({"ok": True, "agencies": [a.as_json() for a in await request.app[REGISTRY].list()]})


async def add_agency(request: web.Request) -> web.Response:
    """POST /api/agencies {"key", "name", "jurisdiction", "contact"}."""
    body = await read_body(request, AgencyBody)
    agency = await register(request.app, body.key, body.name, body.jurisdiction, body.contact)
    return web.json_response({"ok": True, "agency": agency.as_json()}, status=201)


async def register(app: web.Application, key: Any, name: Any, jurisdiction: Any, contact: Any) -> Agency:
    """Register an agency (the console and the CLI), log it, and look again at its refused requests."""
    async with app[DESK].db.write() as conn:
        agency = await app[REGISTRY].add(key=key, name=name, jurisdiction=jurisdiction, contact=contact, conn=conn)
        await app[AUDIT].append("agency_registered", agency=agency.key, actor="manager",
                                detail={"name": agency.name}, conn=conn)
    await app[DESK].reconsider(agency.key)
    return agency


async def revoke(app: web.Application, key: str, reason: Any) -> Agency:
    """Revoke an agency for good: its requests are refused and its undownloaded bundles deleted."""
    desk = app[DESK]
    async with desk.db.write() as conn:
        agency = await app[REGISTRY].revoke(key, reason, conn=conn)
        await app[AUDIT].append("agency_revoked", agency=key, actor="manager",
                                detail={"reason": agency.revoke_reason}, conn=conn)
        ended = await desk.refuse_agency(key, f"the agency was revoked: {agency.revoke_reason}".rstrip(": "), conn)
    for bundle_uid, _ in ended:
        await asyncio.to_thread(desk.bundle_path(bundle_uid).unlink, missing_ok=True)
    for request_id in {request_id for _, request_id in ended}:
        await desk.disclose(request_id)
    return agency


async def revoke_agency(request: web.Request) -> web.Response:
    """POST /api/agencies/{key}/revoke {"reason"}."""
    body = await read_body(request, RevokeBody)
    agency = await revoke(request.app, request.match_info["key"][:64], body.reason)
    return web.json_response({"ok": True, "agency": agency.as_json()})


async def accept_credential(request: web.Request) -> web.Response:
    """POST /api/agencies/credentials {"credential"}: register an agency a trust anchor accredited."""
    body = await read_body(request, CredentialBody)
    app = request.app
    async with app[DESK].db.write() as conn:
        try:
            agency, new = await app[REGISTRY].accept(body.credential, conn=conn)
        except AgencyRefused as exc:  # the manager sent a credential that is not valid: bad input, not a refusal
            raise BadRequest(str(exc)) from None
        if new:
            await app[AUDIT].append("agency_registered", agency=agency.key, actor="manager",
                                    detail={"name": agency.name, "anchor": agency.anchor or ""}, conn=conn)
    await app[DESK].reconsider(agency.key)
    return web.json_response({"ok": True, "agency": agency.as_json()}, status=201 if new else 200)


# -- transparency -----------------------------------------------------------------------------------------------

async def transparency(request: web.Request) -> web.Response:
    """GET /api/transparency: the signed head, counts per agency and month, every request's public fields, and
    the last check of the log against the copies of its heads that peers hold."""
    last = request.app[PEER_CHECK].last
    check = None if last is None else {k: last[k] for k in ("checked_at", "ok", "problem", "entries", "peers",
                                                           "answered", "holding", "agree", "disagree", "heads")}
    return web.json_response({"ok": True} | await request.app[DESK].transparency() | {"peer_check": check})


async def transparency_log(request: web.Request) -> web.Response:
    """GET /api/transparency/log?after=N&limit=M: the audit entries themselves."""
    try:
        after = min(max(0, int(request.query.get("after", "0"))), 2**62)
        limit = min(1000, max(1, int(request.query.get("limit", "200"))))
    except ValueError:
        raise BadRequest("after and limit must be whole numbers") from None
    entries = await request.app[AUDIT].entries(after=after, limit=limit)
    return web.json_response({"ok": True, "entries": entries, "next": entries[-1]["seq"] if entries else after})


# -- peers' copies of audit heads -------------------------------------------------------------------------------

async def peer_audit_heads(request: web.Request) -> web.Response:
    """GET /sync/v1/audit-heads?author=<key>[&limit=N]: the signed audit heads of `author` this node holds, highest
    entry first (signed by an approved peer, like the other sync endpoints)."""
    await request.app[SYNC_SERVER].authenticate(request)
    author, raw = request.query.get("author", ""), request.query.get("limit", str(MAX_ANSWER))
    if len(author) != 64 or not all(c in "0123456789abcdef" for c in author):
        raise BadRequest("author: expected a node key (64 lowercase hex digits)")
    limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 4 else 0
    if not 1 <= limit <= MAX_ANSWER:
        raise BadRequest(f"limit: expected a whole number from 1 to {MAX_ANSWER}")
    book = request.app[AUDIT_HEADS]
    heads, held = await book.held(author, limit=limit)
    return web.json_response({"ok": True, "author": author, "heads": heads, "held": held,
                              "more": held > len(heads), "refused": await book.refused(author)})


def routes() -> list[Route]:
    """The sharing routes: owners decide per clip; agencies see only what was consented to."""
    signed_in, manager, agency = frozenset({RESIDENT, MANAGER}), frozenset({MANAGER}), frozenset({AGENCY_ROLE})
    return [
        Route("GET", "/api/requests", list_requests, signed_in),
        Route("POST", "/api/requests/{id}/clips/{uid}/consent", give_consent, signed_in, ConsentBody),
        Route("DELETE", "/api/requests/{id}/clips/{uid}/consent", withdraw_consent, signed_in),
        Route("POST", "/api/requests/{id}/ranges/preview", preview_range, signed_in, RangeBody),
        Route("POST", "/api/requests/{id}/ranges", give_range_consent, signed_in, RangeBody),
        Route("GET", "/api/agencies", list_agencies, manager),
        Route("POST", "/api/agencies", add_agency, manager, AgencyBody),
        Route("POST", "/api/agencies/credentials", accept_credential, manager, CredentialBody),
        Route("POST", "/api/agencies/{key}/revoke", revoke_agency, manager, RevokeBody),
        Route("GET", "/api/transparency", transparency, signed_in),
        Route("GET", "/api/transparency/log", transparency_log, signed_in),
        Route("POST", "/api/agency/requests", agency_post_request, agency),
        Route("POST", "/api/agency/alerts", agency_post_alert, agency, AlertBody),
        Route("POST", "/api/agency/cap", agency_post_cap, agency),
        Route("GET", "/api/agency/requests", agency_list_requests, agency),
        Route("GET", "/api/agency/requests/{id}", agency_get_request, agency),
        Route("GET", "/api/agency/bundles", agency_list_bundles, agency),
        Route("GET", "/api/agency/bundles/{id}", agency_get_bundle, agency),
        Route("GET", "/sync/v1/audit-heads", peer_audit_heads, frozenset({PEER})),
    ]
