"""The authorization matrix: every route, tried as every kind of caller, against a declared expectation.

The expectation below is written by hand, apart from the route table, so a role changed there by mistake shows up
here; a route added to the table without a line here fails the test. The callers come from two loopback addresses:
127.0.0.2 is the building's network (the node's http.local_networks) and 127.0.0.3 is anywhere else.
"""

from __future__ import annotations

import json
import time

import aiohttp
import nacl.signing
import pytest
from yarl import URL

from node.keys import CLIPS, DESK
from node.routes import route_table
from sync import sign_request
from tests.people import claim, invite
from tests.sharing.flow import HERE, Agency, add_clip, make_video, request_fields

LAN, OUTSIDE = "127.0.0.2", "127.0.0.3"
CALLERS = ("outsider", "anonymous", "resident", "responder", "neighbour", "manager", "agency", "other_agency",
           "unregistered_agency", "peer", "unapproved_peer")

ALL = frozenset(CALLERS)
LOCAL = frozenset({"anonymous", "resident", "responder", "neighbour", "manager"})  # on the building's network
SIGNED_IN = frozenset({"resident", "responder", "manager"})
RESIDENTS = frozenset({"resident", "responder"})
MANAGER = frozenset({"manager"})
AGENCIES = frozenset({"agency", "other_agency"})
PEERS = frozenset({"peer"})

EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): ALL,
    ("GET", "/metrics"): ALL,                 # http.metrics_networks: loopback (every caller here)
    ("GET", "/setup"): ALL,
    ("GET", "/setup/qr.svg"): ALL,            # loopback: the device's own screen (every caller here is on loopback)
    ("POST", "/setup/claim"): ALL,            # public, and refused by its code once claimed
    ("GET", "/"): LOCAL,
    ("GET", "/join"): LOCAL,
    ("GET", "/login"): LOCAL,
    ("GET", "/manage"): LOCAL,
    ("GET", "/static/{name}"): LOCAL,
    ("GET", "/sw.js"): LOCAL,
    ("GET", "/manifest.webmanifest"): ALL,    # names and icons only, like the agency portal's page
    ("GET", "/transparency"): LOCAL,
    ("GET", "/agency"): ALL,
    ("GET", "/agency/{name}"): ALL,
    ("GET", "/api/openapi.json"): ALL,
    # HTTPS: what pages learn about it, the CA's downloads (no secret) and the probe
    ("GET", "/api/tls"): ALL,
    ("GET", "/tls/ca.der"): ALL,
    ("GET", "/tls/ca.mobileconfig"): ALL,
    ("GET", "/tls/probe"): ALL,
    ("GET", "/api/session"): ALL,
    ("POST", "/api/join"): LOCAL,
    ("POST", "/api/login"): LOCAL,
    ("POST", "/api/logout"): SIGNED_IN,
    ("POST", "/api/account/language"): SIGNED_IN,
    ("GET", "/api/residents"): MANAGER,
    ("POST", "/api/residents/{id}/revoke"): MANAGER,
    ("POST", "/api/residents/{id}/on-call"): MANAGER,
    ("GET", "/api/invites"): MANAGER,
    ("POST", "/api/invites"): MANAGER,
    ("POST", "/api/invites/{id}/revoke"): MANAGER,
    ("GET", "/api/sessions"): MANAGER,
    ("POST", "/api/sessions/{id}/revoke"): MANAGER,
    ("GET", "/api/peers"): MANAGER,
    ("POST", "/api/peers/{key}/approve"): MANAGER,
    ("GET", "/api/alerts"): LOCAL,
    ("POST", "/api/alerts"): MANAGER,
    ("GET", "/api/feeds"): MANAGER,
    ("GET", "/alerts.atom"): LOCAL,
    ("GET", "/api/stream"): SIGNED_IN,
    ("GET", "/api/reports"): SIGNED_IN,
    ("POST", "/api/reports"): SIGNED_IN,
    ("GET", "/api/reports/{id}/photo"): SIGNED_IN,
    ("POST", "/api/reports/{id}/{action}"): MANAGER,
    ("GET", "/api/sos"): SIGNED_IN,
    ("POST", "/api/sos"): SIGNED_IN,
    ("POST", "/api/sos/{id}/ack"): frozenset({"responder", "manager"}),
    ("POST", "/api/sos/{id}/cancel"): SIGNED_IN,         # the desk then lets only whoever raised the call
    ("POST", "/api/sos/{id}/resolve"): frozenset({"responder", "manager"}),
    ("POST", "/api/sos/{id}/release"): MANAGER,
    ("GET", "/api/timeline"): SIGNED_IN,
    ("GET", "/api/map"): SIGNED_IN,
    ("GET", "/map/tiles/{z}/{x}/{y}"): SIGNED_IN,
    ("GET", "/api/push"): SIGNED_IN,
    ("POST", "/api/push/subscriptions"): SIGNED_IN,
    ("DELETE", "/api/push/subscriptions"): SIGNED_IN,
    ("GET", "/api/push/status"): MANAGER,
    ("GET", "/api/cameras"): SIGNED_IN,
    ("PUT", "/api/cameras/{camera}/access"): MANAGER,
    ("GET", "/api/cameras/{camera}/snapshot"): SIGNED_IN,
    ("GET", "/api/cameras/{camera}/live"): SIGNED_IN,
    ("GET", "/api/clips"): SIGNED_IN,
    ("GET", "/api/clips/{uid}"): SIGNED_IN,
    ("GET", "/api/clips/{uid}/video"): SIGNED_IN,
    ("GET", "/api/clips/{uid}/thumbnail"): SIGNED_IN,
    ("POST", "/api/clips/{uid}/hold"): MANAGER,
    ("DELETE", "/api/clips/{uid}/hold"): MANAGER,
    ("DELETE", "/api/clips/{uid}"): SIGNED_IN,
    ("POST", "/api/uploads"): RESIDENTS,
    ("GET", "/api/requests"): SIGNED_IN,
    ("POST", "/api/requests/{id}/clips/{uid}/consent"): SIGNED_IN,
    ("DELETE", "/api/requests/{id}/clips/{uid}/consent"): SIGNED_IN,
    ("POST", "/api/requests/{id}/ranges/preview"): SIGNED_IN,
    ("POST", "/api/requests/{id}/ranges"): SIGNED_IN,
    ("GET", "/api/agencies"): MANAGER,
    ("POST", "/api/agencies"): MANAGER,
    ("POST", "/api/agencies/credentials"): MANAGER,
    ("POST", "/api/agencies/{key}/revoke"): MANAGER,
    ("GET", "/api/transparency"): SIGNED_IN,
    ("GET", "/api/transparency/log"): SIGNED_IN,
    ("POST", "/api/agency/requests"): AGENCIES,
    ("POST", "/api/agency/alerts"): AGENCIES,
    ("POST", "/api/agency/cap"): AGENCIES,
    ("GET", "/api/agency/requests"): AGENCIES,
    ("GET", "/api/agency/requests/{id}"): AGENCIES,
    ("GET", "/api/agency/bundles"): AGENCIES,
    ("GET", "/api/agency/bundles/{id}"): AGENCIES,
    ("GET", "/.well-known/nnode"): ALL,
    ("GET", "/sync/v1/heads"): PEERS,
    ("POST", "/sync/v1/pull"): PEERS,
    ("POST", "/sync/v1/push"): PEERS,
    ("GET", "/sync/v1/audit-heads"): PEERS,
}
MISSING = {"id": "999999", "uid": "0" * 32, "key": "ab" * 32, "camera": "nowhere", "name": "nothing.js",
           "action": "share", "z": "0", "x": "0", "y": "0"}
# Calls that end a caller's own session go last, so they do not change the answers to the others.
LAST = {("POST", "/api/logout")}


def test_every_route_has_a_declared_expectation():
    routes = {(route.method, route.path) for route in route_table()}
    assert routes - set(EXPECTED) == set(), "routes without a declared expectation in tests/test_authorization.py"
    assert set(EXPECTED) - routes == set(), "expectations for routes that do not exist"


def _client(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


class Caller:
    """One kind of caller: where it calls from, its session cookie, and the key it signs with, if any."""

    def __init__(self, name: str, address: str, cookie: str | None = None,
                 key: nacl.signing.SigningKey | None = None, tag: str = "nnode-sync") -> None:
        self.name, self.address, self.cookie, self.key, self.tag = name, address, cookie, key, tag
        self.session = _client(address)

    async def call(self, method: str, url: str, body: bytes | None, content_type: str, limit: int = 1 << 20
                   ) -> tuple[int, bytes]:
        headers = {"Cookie": f"nnode_session={self.cookie}"} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = content_type
        if self.key is not None:
            headers |= sign_request(self.key, method, url, body, tag=self.tag)
        async with self.session.request(method, url, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
            if resp.content_type in ("text/event-stream", "multipart/x-mixed-replace"):
                return resp.status, await resp.content.read(4096)  # open-ended: the first bytes say enough
            return resp.status, await resp.content.read(limit)


def _body(method: str, path: str) -> tuple[bytes | None, str]:
    """A minimal body for a state-changing call: enough to pass the door, refused (or harmless) after it."""
    if method in ("GET", "DELETE"):
        return None, ""
    if path == "/sync/v1/push":
        return b"\n", "application/x-ndjson"
    if path == "/sync/v1/pull":
        return json.dumps({"heads": {}}).encode(), "application/json"
    return b"{}", "application/json"


def _refused(status: int, payload: bytes) -> bool:
    """The door refused: 401 or 403 in the one JSON error shape."""
    if status not in (401, 403):
        return False
    body = json.loads(payload)
    assert body["ok"] is False and body["status"] == status and body["error"], body
    return True


@pytest.fixture
async def neighbourhood(make_node, tmp_path):
    """Building A (the one tried), building B (an approved peer with a resident of its own), two agencies and two
    clips in a request's window, one shared with the asking agency and one not."""
    node = await make_node("a", node__latitude=HERE[0], node__longitude=HERE[1], http__local_networks=[f"{LAN}/32"],
                           cameras__devices=[{"id": "yard", "url": "sim:", "detect_motion": False}])
    other = await make_node("b")
    await node.approve(other)
    await other.approve(node)
    start = time.time() - 50 * 60
    video = make_video(tmp_path)
    shared, kept = await add_clip(node, video, start=start + 600), await add_clip(node, video, start=start + 900)
    agency, rival = Agency(), Agency()
    sessions = {}
    async with _client(LAN) as manager, _client(LAN) as resident, _client(LAN) as responder, \
            _client(LAN) as neighbour:
        await claim(node, manager)
        for body in ({"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro"},
                     {"key": rival.id, "name": "County Sheriff", "jurisdiction": "County"}):
            async with manager.post(node.url + "/api/agencies", json=body) as resp:
                assert resp.status == 201, await resp.text()
        for session in (resident, responder):
            code = (await invite(node, manager, unit="4B"))["code"]
            async with session.post(node.url + "/api/join", json={"code": code}) as resp:
                assert resp.status == 200, await resp.text()
        async with manager.get(node.url + "/api/residents") as resp:
            responder_id = (await resp.json())["residents"][-1]["id"]
        async with manager.post(f"{node.url}/api/residents/{responder_id}/on-call", json={"on_call": True}) as resp:
            assert resp.status == 200, await resp.text()
        async with _client(LAN) as b_manager:  # B's manager invites a resident of B, who then tries A
            await claim(other, b_manager)
            code = (await invite(other, b_manager, unit="7C"))["code"]
        async with neighbour.post(other.url + "/api/join", json={"code": code}) as resp:
            assert resp.status == 200, await resp.text()

        status, answer = await agency.ask(node.url, request_fields(start=start))
        assert status == 201, answer
        request_id = answer["request"]["id"]
        async with manager.post(f"{node.url}/api/requests/{request_id}/clips/{shared.uid}/consent",
                                json={"choice": "redacted"}) as resp:
            assert resp.status == 201, await resp.text()
        await node.app[DESK].idle()
        status, listed = await agency.call("GET", node.url + "/api/agency/bundles")
        assert status == 200 and len(listed["bundles"]) == 1, listed
        for name, session in (("manager", manager), ("resident", resident), ("responder", responder),
                              ("neighbour", neighbour)):
            cookies = session.cookie_jar.filter_cookies(URL(other.url if name == "neighbour" else node.url))
            sessions[name] = cookies["nnode_session"].value
    callers = {
        "outsider": Caller("outsider", OUTSIDE),
        "anonymous": Caller("anonymous", LAN),
        **{name: Caller(name, LAN, cookie) for name, cookie in sessions.items()},
        "agency": Caller("agency", OUTSIDE, key=agency.key, tag="nnode-agency"),
        "other_agency": Caller("other_agency", OUTSIDE, key=rival.key, tag="nnode-agency"),
        "unregistered_agency": Caller("unregistered_agency", OUTSIDE, key=nacl.signing.SigningKey.generate(),
                                      tag="nnode-agency"),
        "peer": Caller("peer", OUTSIDE, key=other.key),
        "unapproved_peer": Caller("unapproved_peer", OUTSIDE, key=nacl.signing.SigningKey.generate()),
    }
    try:
        yield {"node": node, "callers": callers, "request": request_id, "shared": shared, "kept": kept,
               "bundle": listed["bundles"][0]["id"]}
    finally:
        for caller in callers.values():
            await caller.session.close()
        await agency.close()
        await rival.close()


def _path(path: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return path


@pytest.mark.timeout(600)
async def test_every_route_answers_only_the_callers_it_declares(neighbourhood):
    node, callers = neighbourhood["node"], neighbourhood["callers"]
    routes = sorted(route_table(), key=lambda r: (r.method, r.path) in LAST)
    mismatches = []
    for route in routes:
        # Reads look at real records; changes aim at records that do not exist, so no caller changes the state
        # the others are judged on (an allowed caller gets 404 or 400 from the handler, past the door).
        values = MISSING if route.method != "GET" else MISSING | {
            "uid": neighbourhood["kept"].uid, "id": neighbourhood["request"], "camera": "yard"}
        if route.path == "/api/agency/bundles/{id}":
            values = values | {"id": neighbourhood["bundle"]}
        if route.path == "/static/{name}":
            values = values | {"name": "app.js"}
        url = node.url + _path(route.path, values)
        body, content_type = _body(route.method, route.path)
        for name in CALLERS:
            status, payload = await callers[name].call(route.method, url, body, content_type)
            allowed = name in EXPECTED[(route.method, route.path)]
            if _refused(status, payload) == allowed:
                mismatches.append(f"{route.method} {route.path} as {name}: {status} {payload[:160]!r}"
                                  f" (expected {'allowed' if allowed else 'refused'})")
            assert status < 500, f"{route.method} {route.path} as {name}: {status} {payload[:300]!r}"
    assert not mismatches, "\n".join(mismatches)


def _samples(data: bytes, count: int = 24, size: int = 48) -> list[bytes]:
    """Slices of a file from all over it (past the container's boilerplate), to look for in answers."""
    step = max(1, (len(data) - 1024) // count)
    return [data[1024 + i * step:1024 + i * step + size] for i in range(count) if 1024 + i * step + size <= len(data)]


@pytest.mark.timeout(600)
async def test_agencies_get_no_clip_bytes_by_any_route(neighbourhood):
    node, callers = neighbourhood["node"], neighbourhood["callers"]
    index = node.app[CLIPS]
    samples = []
    for clip in (neighbourhood["shared"], neighbourhood["kept"]):
        samples += _samples(index.path(clip.file).read_bytes())
    assert len(samples) > 24
    answers = []
    for route in route_table():
        if (route.method, route.path) in LAST:
            continue
        for uid in (neighbourhood["shared"].uid, neighbourhood["kept"].uid):
            for request_id in (neighbourhood["request"], neighbourhood["bundle"]):
                url = node.url + _path(route.path, {"uid": uid, "id": request_id, "camera": "yard", "key": "ab" * 32,
                                                    "name": "app.js", "action": "share"})
                body, content_type = _body(route.method, route.path)
                for name in ("agency", "other_agency", "unregistered_agency"):
                    status, payload = await callers[name].call(route.method, url, body, content_type,
                                                               limit=64 << 20)
                    answers.append((f"{route.method} {route.path} as {name}", status, payload))
    for label, status, payload in answers:
        assert not any(sample in payload for sample in samples), f"{label} answered clip bytes ({status})"
    got = {label for label, status, payload in answers if status == 200 and label.startswith("GET /api/agency/bundles/")}
    # The asking agency downloads the one bundle made for it (encrypted: no clip bytes in the clear); no one else.
    assert got == {"GET /api/agency/bundles/{id} as agency"}
