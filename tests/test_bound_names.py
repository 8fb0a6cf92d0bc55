"""What a request is addressed to is checked, not trusted (issue 15, items 4, 6 and 9).

Signed calls bind to this node's own names and to the route served; replay caches are per caller; a client that
drips its headers is cut; what outside networks may read is decided per route; links come from configuration.
"""

from __future__ import annotations

import asyncio
import gc
import json

import aiohttp
import pytest

from node.app import serve
from node.config import load
from node.errors import ConfigError
from node.keys import AGENCY_REPLAY, CLAIMS, SYNC_SERVER
from node.sharing.routes import register
from sync import RateLimited, ReplayCache, normal_authority, sign_request
from tests.people import PASSWORD, browser, call, claim
from tests.sharing.flow import Agency
from tests.test_rejections import event_line

HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}


async def _send(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                body: bytes | None = None) -> tuple[int, dict]:
    async with session.request(method, url, data=body, headers=headers) as resp:
        return resp.status, json.loads(await resp.read() or b"{}")


@pytest.fixture
async def pair(make_node):
    node = await make_node("a", http__names=["nnode.test"])
    other = await make_node("b")
    await node.approve(other)
    return node, other


# -- item 4: signed components bound to this node ---------------------------------------------------------------

async def test_a_request_signed_for_another_node_is_refused(pair):
    node, other = pair
    async with aiohttp.ClientSession() as session:
        # signed for b's address (another node on this host), sent to a with b's name as its Host
        foreign = other.url + "/sync/v1/heads"
        headers = sign_request(other.key, "GET", foreign) | {"Host": f"127.0.0.1:{other.port}"}
        status, body = await _send(session, "GET", node.url + "/sync/v1/heads", headers)
        assert status == 421 and body["reason"] == "misdirected", body
        assert f"127.0.0.1:{other.port}" in body["error"] and "http.names" in body["error"]
        # the names a has: its address, localhost, and the one configured in http.names
        for authority in (f"127.0.0.1:{node.port}", f"localhost:{node.port}", f"nnode.test:{node.port}"):
            url = f"http://{authority}/sync/v1/heads"
            status, body = await _send(session, "GET", node.url + "/sync/v1/heads",
                                       sign_request(other.key, "GET", url) | {"Host": authority})
            assert status == 200, (authority, body)


async def test_a_signature_over_pull_is_refused_on_push(pair):
    node, other = pair
    line = event_line(other.key)
    async with aiohttp.ClientSession() as session:
        pull = node.url + "/sync/v1/pull"
        signed_for_pull = sign_request(other.key, "POST", pull, line)
        # A Host that carries the signed path: rebuilding the URL from it would give /sync/v1/pull again.
        crafted = signed_for_pull | {"Host": f"127.0.0.1:{node.port}/sync/v1/pull#",
                                     "Content-Type": "application/x-ndjson"}
        status, body = await _send(session, "POST", node.url + "/sync/v1/push", crafted, line)
        assert status == 421 and body["reason"] == "misdirected", body
        # and with its own Host, the signature covers the path served, which is not the one signed
        status, body = await _send(session, "POST", node.url + "/sync/v1/push",
                                   signed_for_pull | {"Content-Type": "application/x-ndjson"}, line)
        assert status == 401 and "does not verify" in body["error"], body
    assert await node.ids() == set()   # nothing stored


async def test_one_peer_filling_the_replay_cache_does_not_lock_out_another(make_node):
    node = await make_node("a")
    greedy, honest = await make_node("b"), await make_node("c")
    await node.approve(greedy)
    await node.approve(honest)
    node.app[SYNC_SERVER].replay.capacity = 5
    url = node.url + "/sync/v1/heads"
    async with aiohttp.ClientSession() as session:
        for _ in range(5):
            assert (await _send(session, "GET", url, sign_request(greedy.key, "GET", url)))[0] == 200
        status, body = await _send(session, "GET", url, sign_request(greedy.key, "GET", url))
        assert status == 429 and "this key" in body["error"], body
        status, body = await _send(session, "GET", url, sign_request(honest.key, "GET", url))
        assert status == 200, body


def test_the_replay_cache_holds_a_bounded_number_of_callers():
    cache = ReplayCache(window=60, capacity=10, callers=2)
    cache.check_and_add(b"a1", 1000.0, "a")
    cache.check_and_add(b"b1", 1000.0, "b")
    with pytest.raises(RateLimited, match="too many callers"):
        cache.check_and_add(b"c1", 1001.0, "c")
    cache.check_and_add(b"a2", 1001.0, "a")       # the callers it holds go on
    cache.check_and_add(b"c1", 1000.0 + 121, "c")  # once the others' entries are past the window, room is made


async def test_agency_calls_are_bound_to_this_node_and_have_their_own_replay_share(pair):
    node, other = pair
    agency, rival = Agency(), Agency()
    try:
        await register(node.app, agency.id, "Metro PD", "Metro", "")
        await register(node.app, rival.id, "County Sheriff", "County", "")
        # signed for b's name, sent to a with that Host
        foreign = other.url + "/api/agency/requests"
        headers = agency.headers("GET", foreign, None) | {"Host": f"127.0.0.1:{other.port}"}
        status, body = await _send(agency.session, "GET", node.url + "/api/agency/requests", headers)
        assert status == 421 and body["reason"] == "misdirected", body
        status, body = await agency.call("GET", node.url + "/api/agency/requests")
        assert status == 200, body
        # one agency filling its share of the replay cache is refused; another goes on
        node.app[AGENCY_REPLAY].capacity = 3
        for _ in range(2):
            assert (await agency.call("GET", node.url + "/api/agency/requests"))[0] == 200
        status, body = await agency.call("GET", node.url + "/api/agency/requests")
        assert status == 429, body
        status, body = await rival.call("GET", node.url + "/api/agency/requests")
        assert status == 200, body
    finally:
        await agency.close()
        await rival.close()


# -- item 6: slow request headers --------------------------------------------------------------------------------

async def _drip(port: int, *, every: float = 0.5, most: int = 80) -> bool:
    """Send a request's headers one byte at a time; True if the server closed the connection before they ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: " + "x" * most + "\r\n\r\n").encode()
    try:
        for byte in head[:-4]:   # never the end of the headers
            try:
                writer.write(bytes([byte]))
                await writer.drain()
                if await asyncio.wait_for(reader.read(1024), every) == b"":
                    return True
            except (ConnectionError, BrokenPipeError):
                return True
            except TimeoutError:
                continue
        return False
    finally:
        writer.close()


async def test_a_client_dripping_its_headers_is_cut_by_the_real_server(make_node):
    node = await make_node("a", start=False, http__header_timeout=2)
    ready, stop = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(serve(node.config, ready=ready, stop=stop))   # what `nnode run` runs
    try:
        await asyncio.wait_for(ready.wait(), 30)
        assert await _drip(node.port), "a client sending one header byte every 0.5 s was never disconnected"
        async with aiohttp.ClientSession() as session:   # and the node still answers everyone else
            async with session.get(node.url + "/healthz") as resp:
                assert resp.status == 200
    finally:
        stop.set()
        await asyncio.wait_for(running, 60)
        gc.unfreeze()


# -- item 9: what outside networks read, Host, links, bounded claim ---------------------------------------------

LAN, OUTSIDE = "127.0.0.2", "127.0.0.3"


def _from(address: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                                 cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_metrics_and_the_buildings_position_are_not_given_outside(make_node):
    node = await make_node("a", http__local_networks=[f"{LAN}/32"], http__metrics_networks=[f"{LAN}/32"], **HERE)
    async with _from(LAN) as manager, _from(OUTSIDE) as outsider:
        await claim(node, manager)
        status, posted = await call(manager, "POST", node.url + "/api/alerts",
                                    json={"event": "Gas leak", "headline": "Gas leak on Main St", "radius_km": 1,
                                          "severity": "Severe", "urgency": "Immediate", "certainty": "Observed",
                                          "category": "Safety", "expires_hours": 2})
        assert status == 200, posted
        for path in ("/metrics", "/api/alerts", "/alerts.atom"):
            async with outsider.get(node.url + path) as resp:
                assert resp.status == 403, (path, resp.status)
                assert (await resp.json())["ok"] is False
        async with outsider.get(node.url + "/metrics") as resp:
            assert "http.metrics_networks" in (await resp.json())["error"]
        async with manager.get(node.url + "/metrics") as resp:
            assert resp.status == 200 and "nnode_events_stored" in await resp.text()
        status, alerts = await call(manager, "GET", node.url + "/api/alerts")
        assert status == 200 and len(alerts["alerts"]) == 1
    # Not even the building's own pages, nor the peers the event goes to, learn the exact position.
    (event,) = [e for e in [await node.store.get(i) for i in await node.ids()] if e.kind == "alert"]
    assert b"40.7128" not in event.body and b"74.006" not in event.body
    assert event.body_value()["cap"]["info"][0]["area"][0]["circle"] == ["40.71,-74.01 1.8"]


async def test_a_foreign_host_is_refused_on_resident_and_manager_routes(make_node):
    node = await make_node("a")
    evil = f"rebound.example:{node.port}"
    async with browser() as manager:
        await claim(node, manager)
        for method, path, body in (("GET", "/api/residents", None), ("POST", "/api/invites", {"unit": "4B"}),
                                   ("POST", "/api/join", {"code": "x"}), ("GET", "/", None)):
            async with manager.request(method, node.url + path, json=body, headers={"Host": evil}) as resp:
                answer = await resp.json()
                assert resp.status == 421 and answer["reason"] == "misdirected", (path, answer)
                assert evil in answer["error"]
        async with manager.get(node.url + "/api/invites") as resp:
            assert resp.status == 200 and (await resp.json())["invites"] == []   # nothing was made
        async with manager.get(node.url + "/healthz", headers={"Host": evil}) as resp:
            assert resp.status == 200   # public reads answer by any name


async def test_invite_links_come_from_configuration_not_the_host(make_node):
    node = await make_node("a", http__url="https://nnode.example:8443")
    async with browser() as manager:
        await claim(node, manager)
        async with manager.post(node.url + "/api/invites", json={"unit": "4B"},
                                headers={"Host": f"localhost:{node.port}"}) as resp:
            made = (await resp.json())["invite"]
        assert made["link"] == f"https://nnode.example:8443/join#code={made['code']}"
        # the configured URL's own name is one of the node's names
        async with manager.get(node.url + "/api/invites", headers={"Host": "nnode.example:8443"}) as resp:
            assert resp.status == 200


async def test_the_claim_body_is_bounded(make_node):
    node = await make_node("a")
    code = node.app[CLAIMS].current
    async with aiohttp.ClientSession() as session:
        big = json.dumps({"code": code, "password": PASSWORD + "x" * 16_000}).encode()
        async with session.post(node.url + "/setup/claim", data=big,
                                headers={"Content-Type": "application/json"}) as resp:
            body = await resp.json()
            assert resp.status == 413 and "4096" in body["error"], body

        async def chunks():   # no Content-Length: refused once the limit is passed, not after reading it all
            yield b'{"code": "' + code.encode() + b'", "password": "'
            for _ in range(64):
                yield b"y" * 1024
            yield b'"}'
        async with session.post(node.url + "/setup/claim", data=chunks(),
                                headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413, await resp.text()
    assert not await node.app[CLAIMS].claimed()


@pytest.mark.parametrize("host, normal", [
    ("127.0.0.1:8470", "127.0.0.1:8470"), ("LocalHost:8470", "localhost:8470"), ("nnode.local.:8470", "nnode.local:8470"),
    ("nnode.lan", "nnode.lan:80"), ("[::1]:8470", "[::1]:8470"), ("[0:0::1]:8470", "[::1]:8470"),
    ("127.0.0.1:8470/sync/v1/pull#", None), ("user@nnode.lan:8470", None), ("nnode lan:8470", None),
    ("nnode.lan:0", None), ("nnode.lan:70000", None), ("nnode.lan:+80", None), ("::1", None), ("[::1]x", None),
    ("", None), ("a" * 400, None),
])
def test_a_host_has_one_spelling_or_none(host, normal):
    assert normal_authority(host) == normal


def test_a_name_that_is_not_a_host_stops_the_config(tmp_path):
    path = tmp_path / "config.toml"
    for text, key in (('[http]\nnames = ["nnode.lan", "nnode.lan/admin"]\n', r"http\.names"),
                      ('[http]\nurl = "https://nnode.lan/path"\n', r"http\.url")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=key + ": expected"):
            load(path)
