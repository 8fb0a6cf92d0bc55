"""CAP feeds polled over HTTP: only new alerts are published, unchanged feeds cost a 304, bad input is refused."""

import asyncio
import contextlib

import aiohttp
import msgspec
import pytest
from aiohttp import web

from node.keys import FEEDS
from node.safety.alerts import current_alerts
from node.safety.cap import CapError
from node.safety.feeds import FeedError, poll_feed
from tests.conftest import serving, wait_until
from tests.test_alerts import SAMPLE, fresh

MAX = 256 * 1024
FIRST, SECOND = "KSTO1055887203", "KSTO1055887204"


def alert(identifier: str, **kw) -> bytes:
    """The thunderstorm sample, in force now, under another identifier (and msgType/references if given)."""
    return fresh(SAMPLE.replace(b"KSTO1055887203", identifier.encode()), **kw)


def atom(*alerts: bytes) -> bytes:
    """An Atom feed whose entries carry the given CAP alerts, as NWS-style CAP feeds do."""
    entries = b"".join(b"<entry><id>urn:test:%d</id><title>alert</title><updated>2024-01-01T00:00:00Z</updated>"
                       b"<content type=\"application/cap+xml\">%s</content></entry>"
                       % (i, a.split(b"?>", 1)[1]) for i, a in enumerate(alerts))
    return (b'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            b"<title>test alerts</title><id>urn:test:feed</id><updated>2024-01-01T00:00:00Z</updated>"
            + entries + b"</feed>")


def reference(document: bytes) -> str:
    """The CAP key "sender,identifier,sent" of an alert document, for another alert's <references>."""
    from node.safety.cap import parse_document
    [cap] = parse_document(document)
    return f"{cap['sender']},{cap['identifier']},{cap['sent']}"


class Feed:
    """A CAP feed server's behaviour: what it serves, with which ETag, and the requests it saw."""

    def __init__(self) -> None:
        self.body = b""
        self.etag: str | None = None
        self.requests: list[dict[str, str]] = []
        self.served = 0          # full (200) answers
        self.release = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/alerts.atom", self.feed)
        app.router.add_get("/huge", self.huge)
        app.router.add_get("/slow", self.slow)
        return app

    async def feed(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        if self.etag is not None and request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers={"ETag": self.etag})
        self.served += 1
        headers = {"ETag": self.etag} if self.etag is not None else {}
        return web.Response(body=self.body, content_type="application/atom+xml", headers=headers)

    async def huge(self, request: web.Request) -> web.StreamResponse:
        """A feed that never says its length (chunked) and goes on far past any sane size."""
        response = web.StreamResponse(headers={"Content-Type": "application/atom+xml"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom">')
            for _ in range(64):
                await response.write(b"<title>x</title>" * 4096)
        return response

    async def slow(self, request: web.Request) -> web.Response:
        await self.release.wait()
        return web.Response(body=self.body)


@pytest.fixture
async def feed():
    """A real HTTP server on loopback serving a Feed; yields (feed, base URL)."""
    behaviour = Feed()
    async with serving(behaviour.app()) as url:
        try:
            yield behaviour, url
        finally:
            behaviour.release.set()


async def poll(node, session, url, state=None, **kw):
    settings = msgspec.structs.replace(node.config.alerts, max_feed_bytes=kw.pop("max_bytes", MAX),
                                       fetch_timeout=kw.pop("timeout", 10))
    return await poll_feed(node.engine, session, url, settings=settings, state=state if state is not None else {})


async def in_force(node) -> list[str]:
    return [a["cap"]["identifier"] for a in await current_alerts(node.store, location=(38.47, -119.9))]


async def test_a_feed_is_published_once_and_an_unchanged_feed_costs_a_304(make_node, feed):
    server, base = feed
    node = await make_node("a")
    server.body, server.etag = atom(alert(FIRST), alert(SECOND)), '"v1"'
    state: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        first = await poll(node, session, base + "/alerts.atom", state)
        assert (first.published, first.skipped, first.not_modified) == (2, [], False)
        assert sorted(await in_force(node)) == [FIRST, SECOND]

        second = await poll(node, session, base + "/alerts.atom", state)       # (c) the ETag is sent back
        assert second.not_modified and second.published == 0
        assert server.requests[-1]["If-None-Match"] == '"v1"' and server.served == 1

        server.etag = None                                                      # (b) same feed, no validator
        third = await poll(node, session, base + "/alerts.atom", state)
        assert (third.published, third.known, third.not_modified) == (0, 2, False)
    assert await node.store.count() == 2


async def test_an_update_replaces_and_a_cancel_withdraws_across_polls(make_node, feed):
    server, base = feed
    node = await make_node("a")
    original = alert(FIRST)
    update = alert(SECOND, msg_type="Update", references=reference(original))
    cancel = alert("KSTO1055887205", msg_type="Cancel", references=reference(update))
    async with aiohttp.ClientSession() as session:
        server.body = atom(original)
        await poll(node, session, base + "/alerts.atom")
        assert await in_force(node) == [FIRST]

        server.body = atom(original, update)                                    # (d)
        assert (await poll(node, session, base + "/alerts.atom")).published == 1
        assert await in_force(node) == [SECOND]

        server.body = atom(original, update, cancel)                            # (e)
        assert (await poll(node, session, base + "/alerts.atom")).published == 1
        assert await in_force(node) == []


async def test_an_oversized_feed_is_refused_and_nothing_changes(make_node, feed):
    server, base = feed
    node = await make_node("a")
    server.body = atom(alert(FIRST))
    async with aiohttp.ClientSession() as session:
        await poll(node, session, base + "/alerts.atom")
        with pytest.raises(FeedError, match=r"larger than the limit of 262144 bytes \(alerts.max_feed_bytes\)"):
            await poll(node, session, base + "/huge")                           # (f) chunked, no length given
        server.body = atom(alert(SECOND)) + b" " * MAX                           # announced by Content-Length
        with pytest.raises(FeedError, match="the limit is 262144"):
            await poll(node, session, base + "/alerts.atom")
    assert await in_force(node) == [FIRST] and await node.store.count() == 1


async def test_a_feed_that_does_not_answer_in_time_is_an_error(make_node, feed):
    _, base = feed
    node = await make_node("a")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(FeedError, match="alerts.fetch_timeout"):
            await poll(node, session, base + "/slow", timeout=0.5)
    assert await node.store.count() == 0


async def test_hostile_xml_is_refused(make_node, feed):
    server, base = feed
    node = await make_node("a")
    server.body = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                   + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                              for i in range(1, 10))
                   + b']><feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title></feed>')   # (g)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(CapError, match="DTDs and entities are not accepted"):
            await poll(node, session, base + "/alerts.atom")
        server.body = b"<feed>not closed"
        with pytest.raises(CapError, match="not well-formed"):
            await poll(node, session, base + "/alerts.atom")
    assert await node.store.count() == 0


async def test_one_bad_alert_does_not_block_the_good_ones(make_node, feed):
    server, base = feed
    node = await make_node("a")
    invalid = alert("KSTO1055887209").replace(b"<urgency>Immediate</urgency>", b"<urgency>Now</urgency>")
    server.body = atom(invalid, alert(SECOND), SAMPLE)                         # (h) plus one expired in 2003
    async with aiohttp.ClientSession() as session:
        result = await poll(node, session, base + "/alerts.atom")
    assert result.published == 1 and await in_force(node) == [SECOND]
    assert [s["alert"] for s in result.skipped] == ["KSTO1055887209", FIRST]
    assert "urn:test:0/alert[1]/info[1]/urgency: 'Now' is not one of" in result.skipped[0]["reason"]  # the entry named
    assert result.skipped[1]["reason"].startswith("expired 2003-06-17 23:00:00 UTC")


async def test_a_node_polls_its_configured_feeds(make_node, feed):
    server, base = feed
    url = base + "/alerts.atom"
    server.body = atom(alert(FIRST))
    node = await make_node("a", alerts__feeds=[url, base + "/missing"], alerts__poll_interval=30)

    async def listed() -> list[str]:
        async with aiohttp.ClientSession() as session, session.get(node.url + "/api/alerts") as resp:
            return [a["cap"]["identifier"] for a in (await resp.json())["alerts"]]
    await wait_until(listed)
    assert await listed() == [FIRST]
    status = node.app[FEEDS].status
    await wait_until(lambda: status[base + "/missing"]["failures"] == 1)
    assert status[url]["ok"] and status[url]["published"] == 1
    assert status[base + "/missing"]["error"].endswith("HTTP 404 Not Found")


async def test_an_alert_the_manager_deleted_stays_deleted_when_the_feed_still_lists_it(make_node, feed):
    from tests.people import control_call

    server, base = feed
    node = await make_node("a")
    server.body = atom(alert(FIRST))
    async with aiohttp.ClientSession() as session:
        assert (await poll(node, session, base + "/alerts.atom")).published == 1
        event_id = next(iter(await node.store.recent(10, "alert"))).id
        status, _ = await control_call(node, "POST", "/control/delete", {"id": event_id})   # `nnode delete`
        assert status == 200
        assert await in_force(node) == []
        again = await poll(node, session, base + "/alerts.atom")
        assert (again.published, again.known) == (0, 1)
    assert await in_force(node) == []
