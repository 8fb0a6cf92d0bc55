"""Official feeds as publishers ship them: Atom and RSS index feeds linking to CAP files (the NWS, Google Public
Alerts publishers), CAP as escaped text, the IPAWS-OPEN <alerts> wrapper; linked files bounded, conditional and
fetched only from the feed's host or its link_hosts; every poll's outcome visible."""

import hashlib
import logging
from html import escape

import aiohttp
import msgspec
import pytest
from aiohttp import web

from node.commands.safety import cmd_feeds
from node.config import FeedConfig
from node.keys import FEEDS
from node.safety.alerts import current_alerts
from node.safety.feeds import poll_feed
from tests.cap_samples import current, sample
from tests.conftest import serving, wait_until
from tests.people import browser, claim

KINGS = "urn:oid:2.49.0.1.840.0.0c5f2d3e7a1b9c8d6e4f3a2b1c0d9e8f7a6b5c4d.001.1"
ATOM_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
             b'xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2"><id>https://api.weather.gov/alerts/active.atom</id>'
             b"<title>Current watches, warnings, and advisories</title><updated>2026-01-25T08:12:00Z</updated>")


def cap(number: int) -> bytes:
    """A real-shaped NWS zone warning in force now, as its own CAP file, under identifier ...001.<number>."""
    return current(sample("nws_winter_storm_kings.xml")).replace(KINGS.encode(), ident(number).encode())


def ident(number: int) -> str:
    return KINGS[:-1] + str(number)


def body(document: bytes) -> bytes:
    """A CAP document without its XML declaration, to sit inside another."""
    return document.split(b"?>", 1)[1]


def nws_atom(links: list[str]) -> bytes:
    """An index feed as api.weather.gov ships it: per entry a link and CAP summary elements, no <alert>."""
    entries = b"".join(b"<entry><id>%s</id><link href=\"%s\"/><title>Winter Storm Warning</title>"
                       b"<updated>2026-01-25T08:12:00Z</updated><cap:event>Winter Storm Warning</cap:event>"
                       b"<cap:areaDesc>Kings (Brooklyn)</cap:areaDesc></entry>" % (href.encode(), href.encode())
                       for href in links)
    return ATOM_HEAD + entries + b"</feed>"


class Publisher:
    """An agency's web server: the feed at /feed, CAP files at /cap/N (ETag, If-None-Match), every request kept."""

    def __init__(self) -> None:
        self.feed = b""
        self.content_type = "application/atom+xml"
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/feed", self.serve_feed)
        app.router.add_get("/cap/{name}", self.serve_cap)
        app.router.add_get("/moved/{name}", self.moved)
        return app

    async def serve_feed(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers)))
        return web.Response(body=self.feed, content_type=self.content_type)

    async def serve_cap(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers)))
        document = self.files.get(request.match_info["name"])
        if document is None:
            raise web.HTTPNotFound()
        etag = '"%s"' % hashlib.sha256(document).hexdigest()[:16]
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=document, content_type="application/cap+xml", headers={"ETag": etag})

    async def moved(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    def fetched(self, prefix: str = "/cap/") -> list[str]:
        return [path for path, _ in self.requests if path.startswith(prefix)]


@pytest.fixture
async def publisher():
    agency = Publisher()
    async with serving(agency.app()) as url:
        yield agency, url


@pytest.fixture
async def elsewhere():
    """A second server: another host as far as the feed is concerned (another port)."""
    other = Publisher()
    async with serving(other.app()) as url:
        yield other, url


async def poll(node, url, state=None, **source):
    async with aiohttp.ClientSession() as session:
        return await poll_feed(node.engine, session, FeedConfig(url=url, **source), settings=node.config.alerts,
                               state=state if state is not None else {})


async def in_force(node) -> list[str]:
    return sorted(a["cap"]["identifier"] for a in await current_alerts(node.store, location=None))


async def test_an_nws_index_feed_yields_the_linked_alerts_and_refetches_them_conditionally(make_node, publisher):
    agency, base = publisher
    node = await make_node("a")
    agency.files = {"1": cap(1), "2": cap(2)}
    agency.feed = nws_atom([f"{base}/cap/1", "/cap/2"])          # absolute, and relative to the feed
    state: dict = {}
    first = await poll(node, base + "/feed", state)
    assert (first.shape, first.entries, first.found, first.linked, first.published) == ("atom", 2, 2, 2, 1 + 1)
    assert first.skipped == []
    assert await in_force(node) == [ident(1), ident(2)]
    assert all(h["Accept"].startswith("application/cap+xml") for p, h in agency.requests if p.startswith("/cap/"))

    second = await poll(node, base + "/feed", state)             # the feed has no validator: read again
    assert (second.found, second.published, second.known) == (0, 0, 2)
    sent = [headers.get("If-None-Match") for path, headers in agency.requests if path.startswith("/cap/")]
    assert sent[:2] == [None, None] and all(sent[2:]) and len(sent) == 4   # each file answered 304 the second time
    assert await node.store.count() == 2


async def test_rss_links_escaped_cap_and_the_ipaws_wrapper_yield_their_alerts(make_node, publisher):
    agency, base = publisher
    node = await make_node("a")
    agency.files = {"1": cap(1)}
    agency.content_type = "application/rss+xml"
    agency.feed = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>County alerts</title>'
                   b"<item><title>Winter Storm Warning</title><link>%s/cap/1</link><guid>%s/cap/1</guid></item>"
                   b"</channel></rss>" % (base.encode(), base.encode()))
    assert (await poll(node, base + "/feed")).published == 1

    agency.content_type = "application/atom+xml"                 # CAP as escaped text in <content>
    agency.feed = (ATOM_HEAD + b'<entry><id>urn:x:2</id><title>w</title><updated>2026-01-25T08:12:00Z</updated>'
                   b'<content type="text">' + escape(cap(2).decode()).encode() + b"</content></entry></feed>")
    assert (await poll(node, base + "/feed")).published == 1

    agency.content_type = "application/xml"                      # IPAWS-OPEN's feed of CAP alerts
    agency.feed = (b'<?xml version="1.0" encoding="UTF-8"?><ns1:alerts xmlns:ns1="http://gov.fema.ipaws.services/'
                   b'feed">' + body(cap(3)) + body(cap(4)) + b"</ns1:alerts>")
    ipaws = await poll(node, base + "/feed")
    assert (ipaws.shape, ipaws.published) == ("ipaws", 2)
    assert await in_force(node) == [ident(n) for n in (1, 2, 3, 4)]


async def test_links_are_fetched_only_from_the_feeds_host_or_its_allowlist(make_node, publisher, elsewhere):
    agency, base = publisher
    other, other_base = elsewhere
    node = await make_node("a")
    other.files = {"1": cap(1)}
    agency.files = {"2": cap(2)}
    agency.feed = nws_atom([f"{other_base}/cap/1", f"{base}/moved/2?to={other_base}/cap/1", "file:///etc/passwd"])
    refused = await poll(node, base + "/feed")
    assert refused.published == 0 and other.fetched() == []
    reasons = [s["reason"] for s in refused.skipped]
    assert "is not on the feed's host nor one of its link_hosts: not fetched" in reasons[0]
    assert "redirected to" in reasons[1] and "not the feed's host" in reasons[1]
    assert "file:///etc/passwd is not on the feed's host" in reasons[2]

    allowed = await poll(node, base + "/feed", link_hosts=(other_base.removeprefix("http://"),))
    assert allowed.published == 1 and len(other.fetched()) == 2   # directly, and through the redirect
    assert await in_force(node) == [ident(1)]


async def test_linked_files_have_the_feeds_size_and_count_bounds(make_node, publisher):
    agency, base = publisher
    node = await make_node("a", alerts__max_linked=2, alerts__max_feed_bytes=20_000)
    agency.files = {"1": cap(1), "2": cap(2) + b" " * 30_000, "3": cap(3), "4": b"<alert>not closed"}
    agency.feed = nws_atom([f"/cap/{n}" for n in (1, 2, 3, 4)])
    result = await poll(node, base + "/feed")
    assert result.published == 1 and await in_force(node) == [ident(1)]
    assert [s["entry"] for s in result.skipped] == ["/cap/2", "/cap/3", "/cap/4"]
    assert "the limit is 20000 (alerts.max_feed_bytes)" in result.skipped[0]["reason"]
    assert "over the limit of 2 linked CAP files per poll (alerts.max_linked)" in result.skipped[1]["reason"]
    assert agency.fetched() == ["/cap/1", "/cap/2"]              # the third and fourth wait for a later poll


async def test_each_feeds_last_poll_is_shown_to_the_manager_the_cli_and_metrics(make_node, publisher, capsys,
                                                                                 caplog):
    agency, base = publisher
    agency.files = {"1": cap(1)}
    agency.feed = nws_atom(["/cap/1"])
    quiet = base + "/cap/none"                                      # a feed that fails: 404
    node = await make_node("a", alerts__feeds=[base + "/feed", quiet], alerts__poll_interval=30)
    status = node.app[FEEDS].status
    await wait_until(lambda: status[quiet]["failures"] >= 1 and status[base + "/feed"]["ok"])

    async with browser() as manager:
        await claim(node, manager)
        async with manager.get(node.url + "/api/feeds") as resp:
            feeds = (await resp.json())["feeds"]
    assert [f["url"] for f in feeds] == [base + "/feed", quiet]
    assert feeds[0]["last"]["found"] == 1 and feeds[0]["http_status"] == 200
    assert feeds[1]["ok"] is False and feeds[1]["http_status"] == 404
    async with aiohttp.ClientSession() as anyone:
        async with anyone.get(node.url + "/api/feeds") as resp:
            assert resp.status in (401, 403)
        async with anyone.get(node.url + "/metrics") as resp:
            metrics = await resp.text()
    assert f'nnode_feed_alerts_found{{feed="{base}/feed"}} 1.0' in metrics
    assert f'nnode_feed_ok{{feed="{quiet}"}} 0.0' in metrics

    # a poll whose entries yield nothing is said, in the status, the log and `nnode feeds`
    agency.feed = nws_atom(["/cap/missing"])
    with caplog.at_level(logging.WARNING, logger="nnode.alerts"):
        await node.app[FEEDS].poll_all()
    assert any(r.getMessage() == "alert feed poll found no alerts" for r in caplog.records)
    assert status[base + "/feed"]["last"]["found"] == 0
    await cmd_feeds(node.config, None)
    printed = capsys.readouterr().out
    assert "0 alerts found" in printed and "every entry was skipped" in printed
    assert "skipped /cap/missing: " in printed and "HTTP 404" in printed
    assert f"{quiet}\n" in printed and "FAILED (HTTP 404" in printed


def test_feed_tables_in_the_config_name_senders_and_link_hosts():
    from node.config import build
    config = build({"alerts.feeds": ["https://a.example/feed", {"url": "https://b.example/feed",
                                                                 "senders": ["w-nws.webmaster@noaa.gov"],
                                                                 "link_hosts": ["cap.example:8443"]}]})
    first, second = config.alerts.sources
    assert first == FeedConfig(url="https://a.example/feed")
    assert second.senders == ("w-nws.webmaster@noaa.gov",) and second.link_hosts == ("cap.example:8443",)
    assert msgspec.structs.asdict(second)["url"] == "https://b.example/feed"
