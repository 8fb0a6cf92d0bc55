"""The node's OpenAPI 3.1 description, built from the route table plus what each route takes and answers.

A route's JSON body is described by the Struct it declares (`Route.body`, decoded by node.http.read_body), so the
description and the checks are one; OPERATIONS adds what the table does not say (answers, query parameters, the
bodies read another way: multipart forms, the signed agency request, the sync protocol's)."""

from __future__ import annotations

import re
from typing import Any, Iterable

import msgspec

from node import __version__
from node.http import Route
from node.structs import Body

JSON = "application/json"
# Every refusal has the one JSON error shape (routes.error_response); "4XX" covers whichever a route can give.
ERROR = {"$ref": "#/components/schemas/Error"}
SCHEMA_REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"{(\w+)}")


def _ok(required: tuple[str, ...] = (), status: int = 200, **properties: Any) -> dict[str, Any]:
    """A JSON success answer: {"ok": true, ...} with the named members."""
    schema = {"type": "object", "required": ["ok", *required],
              "properties": {"ok": {"const": True}, **properties}}
    return {"status": status, "type": JSON, "schema": schema}


def _raw(content_type: str, status: int = 200, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A non-JSON success answer (a page, a file, a stream)."""
    return {"status": status, "type": content_type, "schema": schema or {"type": "string"}}


def _obj(*required: str, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


OBJ: dict[str, Any] = {"type": "object"}
ARR: dict[str, Any] = {"type": "array"}
STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}


def LIST_OF(item: dict[str, Any] = OBJ) -> dict[str, Any]:
    """A JSON array schema of `item`s."""
    return {"type": "array", "items": item}


HTML, JS_CSS = _raw("text/html"), _raw("*/*")
AGENCY_SIGNED = "Signed with the agency's key (RFC 9421, tag nnode-agency); the body is the signed document."
PEER_SIGNED = "Signed with an approved peer's node key (RFC 9421, tag nnode-sync)."


def _query(name: str, schema: dict[str, Any] | None = None, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or STR, "description": description}


# (method, path) -> what the route takes and answers. A route in the table without an entry here fails the tests.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {"ok": [_ok(node=STR, db=STR)],
                          "also": [{"status": 503, "type": JSON, "schema": _obj("ok", "db", ok={"const": False})}]},
    ("GET", "/metrics"): {"ok": [_raw("text/plain")]},
    ("GET", "/setup"): {"ok": [HTML]},
    ("GET", "/setup/qr.svg"): {"ok": [_raw("image/svg+xml")]},
    ("POST", "/setup/claim"): {"ok": [_ok(role={"const": "manager"})]},
    ("GET", "/"): {"ok": [HTML]},
    ("GET", "/join"): {"ok": [HTML]},
    ("GET", "/login"): {"ok": [HTML]},
    ("GET", "/manage"): {"ok": [HTML]},
    ("GET", "/static/{name}"): {"ok": [JS_CSS]},
    ("GET", "/sw.js"): {"ok": [_raw("text/javascript")]},
    ("GET", "/manifest.webmanifest"): {"ok": [_raw("application/manifest+json", schema=_obj("name", "icons"))]},
    ("GET", "/transparency"): {"ok": [HTML]},
    ("GET", "/agency"): {"ok": [HTML]},
    ("GET", "/agency/{name}"): {"ok": [JS_CSS]},
    ("GET", "/api/openapi.json"): {"ok": [{"status": 200, "type": JSON, "schema": _obj("openapi", "paths")}]},
    # HTTPS on the building's network (node/tls)
    ("GET", "/api/tls"): {"ok": [_ok(("mode",), mode={"enum": ["off", "local-ca", "files"]}, port=INT, url=STR,
                                     fingerprint=STR, ca=STR, profile=STR)]},
    ("GET", "/tls/ca.der"): {"ok": [_raw("application/x-x509-ca-cert")]},
    ("GET", "/tls/ca.mobileconfig"): {"ok": [_raw("application/x-apple-aspen-config")]},
    ("GET", "/tls/probe"): {"ok": [{"status": 204}]},
    # people
    ("GET", "/api/session"): {"ok": [_ok(("claimed",), claimed=BOOL)]},
    ("POST", "/api/join"): {"ok": [_ok()]},
    ("POST", "/api/login"): {"ok": [_ok()]},
    ("POST", "/api/logout"): {"ok": [_ok()]},
    ("POST", "/api/account/language"): {"ok": [_ok(("language",), language={"enum": ["en", "es", "zh", None]})]},
    ("GET", "/api/residents"): {"ok": [_ok(("residents",), residents=LIST_OF())]},
    ("POST", "/api/residents/{id}/revoke"): {"ok": [_ok()]},
    ("POST", "/api/residents/{id}/on-call"): {"ok": [_ok()]},
    ("GET", "/api/invites"): {"ok": [_ok(("invites",), invites=LIST_OF())]},
    ("POST", "/api/invites"): {"ok": [_ok(("invite",), invite=OBJ)]},
    ("POST", "/api/invites/{id}/revoke"): {"ok": [_ok()]},
    ("GET", "/api/sessions"): {"ok": [_ok(("sessions",), sessions=LIST_OF())]},
    ("POST", "/api/sessions/{id}/revoke"): {"ok": [_ok()]},
    ("GET", "/api/peers"): {"ok": [_ok(("peers",), peers=LIST_OF())]},
    ("POST", "/api/peers/{key}/approve"): {"ok": [_ok()]},
    # alerts, live delivery, reports, SOS, timeline and map
    ("GET", "/api/alerts"): {"ok": [_ok(("alerts",), alerts=LIST_OF())]},
    ("POST", "/api/alerts"): {"ok": [_ok(("event", "cap"), event=STR, cap=OBJ)]},
    ("GET", "/api/feeds"): {"ok": [_ok(("feeds",), feeds=LIST_OF())]},
    ("GET", "/alerts.atom"): {"ok": [_raw("application/atom+xml")]},
    ("GET", "/api/stream"): {"query": [_query("after", description="resume after this message id")],
                             "ok": [_raw("text/event-stream")], "stream": True},
    ("GET", "/api/reports"): {"ok": [_ok(("reports",), reports=LIST_OF())]},
    ("POST", "/api/reports"): {"body": _obj("what", category=STR, what=STR, where=STR, when=STR),
                               "multipart": True, "ok": [_ok(("report",), 201, report=OBJ)]},
    ("GET", "/api/reports/{id}/photo"): {"ok": [_raw("image/jpeg")]},
    ("POST", "/api/reports/{id}/{action}"): {"ok": [_ok(("report",), report=OBJ)]},
    ("GET", "/api/sos"): {"ok": [_ok(("calls",), calls=LIST_OF())]},
    ("POST", "/api/sos"): {"ok": [_ok(("sos",), 201, sos=OBJ)]},
    ("POST", "/api/sos/{id}/ack"): {"ok": [_ok(("sos",), sos=OBJ, first=BOOL)]},
    ("POST", "/api/sos/{id}/cancel"): {"ok": [_ok(("sos",), sos=OBJ)]},
    ("POST", "/api/sos/{id}/resolve"): {"ok": [_ok(("sos",), sos=OBJ)]},
    ("POST", "/api/sos/{id}/release"): {"ok": [_ok(("sos", "hold"), sos=OBJ, hold=OBJ)]},
    ("GET", "/api/timeline"): {"query": [_query("types", description="comma-separated kinds"),
                                         _query("limit", INT)], "ok": [_ok(("items",), items=LIST_OF())]},
    ("GET", "/api/map"): {"ok": [_ok(("node", "basemap"), node={"type": ["object", "null"]},
                                     basemap={"type": ["object", "null"]})]},
    ("GET", "/map/tiles/{z}/{x}/{y}"): {"ok": [_raw("image/png"), _raw("image/jpeg"), _raw("image/webp")]},
    # Web Push
    ("GET", "/api/push"): {"ok": [_ok(("enabled", "public_key", "devices"), enabled=BOOL, public_key=STR,
                                      devices=LIST_OF())]},
    ("POST", "/api/push/subscriptions"): {"ok": [_ok(("device",), 201, device=OBJ)]},
    ("DELETE", "/api/push/subscriptions"): {"ok": [_ok()]},
    ("GET", "/api/push/status"): {"ok": [_ok(("push",), push=OBJ)]},
    # cameras and clips
    ("GET", "/api/cameras"): {"ok": [_ok(("cameras",), cameras=LIST_OF())]},
    ("PUT", "/api/cameras/{camera}/access"): {"ok": [_ok(("access",), access=OBJ)]},
    ("GET", "/api/cameras/{camera}/snapshot"): {"ok": [_raw("image/jpeg")]},
    ("GET", "/api/cameras/{camera}/live"): {"ok": [_raw("multipart/x-mixed-replace")], "stream": True},
    ("GET", "/api/clips"): {"query": [_query("camera"), _query("limit", INT), _query("since"), _query("until")],
                            "ok": [_ok(("clips",), clips=LIST_OF())]},
    ("GET", "/api/clips/{uid}"): {"ok": [_ok(("clip",), clip=OBJ)]},
    ("GET", "/api/clips/{uid}/video"): {"ok": [_raw("video/mp4"), _raw("video/mp4", 206)]},
    ("GET", "/api/clips/{uid}/thumbnail"): {"ok": [_raw("image/jpeg")]},
    ("POST", "/api/clips/{uid}/hold"): {"ok": [_ok(("holds",), holds=ARR)]},
    ("DELETE", "/api/clips/{uid}/hold"): {"ok": [_ok(("holds",), holds=ARR, released=BOOL)]},
    ("DELETE", "/api/clips/{uid}"): {"ok": [_ok()]},
    ("POST", "/api/uploads"): {"upload": True, "ok": [_ok(("clip",), 201, clip=OBJ)]},
    # sharing with agencies
    ("GET", "/api/requests"): {"ok": [_ok(("requests",), requests=LIST_OF())]},
    ("POST", "/api/requests/{id}/clips/{uid}/consent"): {"ok": [_ok(("consent",), 201, consent=OBJ)]},
    ("DELETE", "/api/requests/{id}/clips/{uid}/consent"): {"ok": [_ok(("consent",), consent=OBJ)]},
    ("POST", "/api/requests/{id}/ranges/preview"): {"ok": [_ok(("range",), range=OBJ)]},
    ("POST", "/api/requests/{id}/ranges"): {"ok": [_ok(("consent",), 201, consent=OBJ)]},
    ("GET", "/api/agencies"): {"ok": [_ok(("agencies",), agencies=LIST_OF())]},
    ("POST", "/api/agencies"): {"ok": [_ok(("agency",), 201, agency=OBJ)]},
    ("POST", "/api/agencies/credentials"): {"ok": [_ok(("agency",), agency=OBJ), _ok(("agency",), 201, agency=OBJ)]},
    ("POST", "/api/agencies/{key}/revoke"): {"ok": [_ok(("agency",), agency=OBJ)]},
    ("GET", "/api/transparency"): {"ok": [_ok()]},
    ("GET", "/api/transparency/log"): {"query": [_query("after", INT), _query("limit", INT)],
                                       "ok": [_ok(("entries", "next"), entries=LIST_OF(), next=INT)]},
    ("POST", "/api/agency/requests"): {"body": OBJ, "signed": AGENCY_SIGNED,
                                       "ok": [_ok(("request",), request=OBJ), _ok(("request",), 201, request=OBJ)]},
    ("POST", "/api/agency/alerts"): {"signed": AGENCY_SIGNED, "ok": [_ok(("event", "cap"), 201, event=STR, cap=OBJ)]},
    # a CAP 1.2 alert as XML (application/cap+xml) or in its JSON form, sent as the agency itself
    ("POST", "/api/agency/cap"): {"body": OBJ, "signed": AGENCY_SIGNED,
                                  "ok": [_ok(("event", "cap"), 201, event=STR, cap=OBJ, signature=STR),
                                         _ok(("event", "cap", "held"), event={"type": ["string", "null"]},
                                             cap=OBJ, held=BOOL)]},
    ("GET", "/api/agency/requests"): {"signed": AGENCY_SIGNED, "ok": [_ok(("requests",), requests=LIST_OF())]},
    ("GET", "/api/agency/requests/{id}"): {"signed": AGENCY_SIGNED, "ok": [_ok(("request",), request=OBJ)]},
    ("GET", "/api/agency/bundles"): {"signed": AGENCY_SIGNED, "ok": [_ok(("bundles",), bundles=LIST_OF())]},
    ("GET", "/api/agency/bundles/{id}"): {"signed": AGENCY_SIGNED, "ok": [_raw("application/octet-stream")]},
    # the sync protocol (docs/sync.md)
    ("GET", "/.well-known/nnode"): {"query": [_query("nonce", description="16 to 64 of [A-Za-z0-9_-]")],
                                    "ok": [{"status": 200, "type": JSON, "schema": _obj("v", "node", "sig")}]},
    ("GET", "/sync/v1/heads"): {"signed": PEER_SIGNED,
                                "ok": [{"status": 200, "type": JSON, "schema": {"type": "object"}}]},
    ("POST", "/sync/v1/pull"): {"signed": PEER_SIGNED, "body": _obj("heads", heads=OBJ, gaps=ARR, tips=OBJ,
                                                                     limit=INT, interest=OBJ),
                                "ok": [_raw("application/x-ndjson")]},
    ("POST", "/sync/v1/push"): {"signed": PEER_SIGNED, "ndjson": True, "ok": [_ok(("results",), results=OBJ)]},
    ("GET", "/sync/v1/audit-heads"): {
        "signed": PEER_SIGNED, "query": [_query("author", STR, "a node key (64 lowercase hex digits)"),
                                         _query("limit", INT, "1 to 256 (default 256)")],
        "ok": [_ok(("author", "heads", "held", "more", "refused"), author=STR, heads=LIST_OF(), held=INT,
                   more=BOOL, refused=INT)]},
}

_ROLE_TEXT = {
    "public": "anyone who can reach the node", "peer": "approved peer nodes", "loopback": "the device itself",
    "local": "anyone on the building's networks", "resident": "a signed-in resident",
    "responder": "a resident on the on-call list", "manager": "the signed-in manager", "agency": "a registered agency",
    "metrics": "a metrics scraper on http.metrics_networks",
}


def _operation(route: Route, spec: dict[str, Any]) -> dict[str, Any]:
    doc = (route.handler.__doc__ or "").strip().splitlines()
    summary = doc[0] if doc else f"{route.method} {route.path}"
    roles = sorted(route.roles)
    op: dict[str, Any] = {
        "operationId": f"{route.method.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', route.path).strip('_') or 'root'}",
        "summary": summary[:200],
        "description": "Who may call it: " + "; ".join(_ROLE_TEXT[r] for r in roles) + "."
                       + (f" {spec['signed']}" if "signed" in spec else ""),
        "x-roles": roles,
    }
    params = [{"name": name, "in": "path", "required": True, "schema": STR} for name in _PARAM.findall(route.path)]
    params += spec.get("query", [])
    if params:
        op["parameters"] = params
    if route.roles & {"resident", "responder", "manager"}:
        op["security"] = [{"session": []}]
    elif route.roles & {"agency", "peer"}:
        op["security"] = [{"httpSignature": []}]
    content: dict[str, Any] = {}
    if route.body is not None:
        content[JSON] = {"schema": {"$ref": SCHEMA_REF.format(name=route.body.__name__)}}
    elif "body" in spec:
        content[JSON] = {"schema": spec["body"]}
    if spec.get("multipart"):
        content["multipart/form-data"] = {"schema": spec["body"]}
    if spec.get("upload"):
        content["multipart/form-data"] = {"schema": _obj("clip", clip={"type": "string", "format": "binary"},
                                                          recorded_at=STR, note=STR)}
    if spec.get("ndjson"):
        content["application/x-ndjson"] = {"schema": STR}
    if content:
        op["requestBody"] = {"required": route.body is None or not route.body.OPTIONAL, "content": content}
    responses: dict[str, Any] = {}
    for answer in [*spec["ok"], *spec.get("also", [])]:
        entry = responses.setdefault(str(answer["status"]), {"description": "success" if answer["status"] < 300
                                                             else "unavailable", "content": {}})
        if "type" in answer:   # else an answer without a body (204)
            entry["content"][answer["type"]] = {"schema": answer["schema"]}
        else:
            del entry["content"]
    responses["4XX"] = {"description": "refused: the error says what was wrong and where",
                        "content": {JSON: {"schema": ERROR}}}
    op["responses"] = responses
    if spec.get("stream"):
        op["x-stream"] = True  # an open-ended stream: fuzzers must not wait for its end
    return op


def describe(routes: Iterable[Route], server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for `routes` (node.routes.route_table()); KeyError names a route left out."""
    paths: dict[str, dict[str, Any]] = {}
    bodies: set[type[Body]] = set()
    for route in routes:
        key = (route.method, route.path)
        if key not in OPERATIONS:
            raise KeyError(f"{route.method} {route.path} has no OpenAPI description in node/openapi.py")
        if route.body is not None:
            if "body" in OPERATIONS[key]:
                raise ValueError(f"{route.method} {route.path}: its body is its Struct's, not OPERATIONS'")
            bodies.add(route.body)
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, OPERATIONS[key])
    _, schemas = msgspec.json.schema_components(sorted(bodies, key=lambda body: body.__name__),
                                                ref_template=SCHEMA_REF)
    if unnamed := {body.__name__ for body in bodies} - set(schemas):  # two Structs of one name: rename one
        raise ValueError(f"request bodies without a schema of their own name: {sorted(unnamed)}")
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Neighborhood Node", "version": __version__,
                 "description": "The node's HTTP API: residents' and the manager's app, agencies, and the sync "
                                "protocol between peer nodes. Every route names who may call it (x-roles)."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["ok", "error", "status"],
                                  "properties": {"ok": {"const": False}, "error": STR, "status": INT,
                                                 "reason": STR, "limit": STR}}} | schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "nnode_session"},
                "httpSignature": {"type": "http", "scheme": "signature",
                                  "description": "RFC 9421 HTTP Message Signatures with ed25519"},
            },
        },
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document
