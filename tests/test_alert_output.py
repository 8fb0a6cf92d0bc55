"""Output real consumers accept: /alerts.atom by RFC 4287's rules (feed and entry id, title, updated in RFC 3339,
author), CAP 1.2 dates (a sender's offset kept, UTC written -00:00), and the timeline, map and feed titles in the
reader's language when the alert has an info in it."""

import re

import aiohttp
from lxml import etree

from node.safety.alerts import languages
from node.safety.cap import ATOM, NS
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.people import browser, call, claim
from tests.test_cap_roundtrip import schema_errors

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z")
IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+\Z")
ENGLISH = "Flash Flood Warning issued"
SPANISH = "Aviso de Inundaciones Repentinas emitido"


def one(parent, name: str):
    found = parent.findall(f"{{{ATOM}}}{name}")
    assert len(found) == 1, f"<{parent.tag}> must have exactly one atom:{name}, has {len(found)}"
    return found[0]


def check_rfc4287(document: bytes) -> list:
    """RFC 4287's rules for a feed whose entries carry inline XML content (sections 4.1.1, 4.1.2, 4.2, 3.3)."""
    feed = etree.fromstring(document)
    assert feed.tag == f"{{{ATOM}}}feed"
    assert IRI.match(one(feed, "id").text) and one(feed, "title").text
    assert RFC3339.match(one(feed, "updated").text)
    assert one(one(feed, "author"), "name").text                   # so no entry needs its own; ours have one anyway
    entries = feed.findall(f"{{{ATOM}}}entry")
    ids = [one(entry, "id").text for entry in entries]
    assert len(set(ids)) == len(ids) and all(IRI.match(i) for i in ids)
    for entry in entries:
        assert one(entry, "title").text and RFC3339.match(one(entry, "updated").text)
        assert one(one(entry, "author"), "name").text
        content = one(entry, "content")
        kind = content.get("type")
        assert kind.endswith("+xml") and len(content) == 1        # inline XML: one child element, no summary needed
    return entries


async def test_the_atom_feed_follows_rfc_4287_and_cap_dates_keep_their_offsets(make_node):
    node = await make_node("a", node__latitude="40.60", node__longitude="-73.96")
    flood = current(sample("nws_flash_flood_maximal.xml"))
    await import_alerts(node.engine, flood)
    async with browser() as manager:
        await claim(node, manager)
        status, posted = await call(manager, "POST", node.url + "/api/alerts",
                                    json={"event": "Water main break", "expires_hours": 2})
        assert status == 200, posted
        async with manager.get(node.url + "/alerts.atom") as resp:
            document = await resp.read()
    entries = check_rfc4287(document)
    assert len(entries) == 2
    assert not re.search(rb"T\d\d:\d\d:\d\d[+-]\d{4}<", document)    # never -0500: RFC 3339 has the colon
    caps = {a.findtext(f"{{{NS}}}identifier"): a for a in document_alerts(document)}
    manager_cap = caps[posted["cap"]["identifier"]]
    assert manager_cap.findtext(f"{{{NS}}}sent").endswith("-00:00")             # CAP 1.2's UTC
    flood_cap = caps["urn:oid:2.49.0.1.840.0.7d3c1b2a9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b.001.1"]
    assert flood_cap.findtext(f"{{{NS}}}sent").endswith("-04:00")               # the sender's own offset
    assert all(schema_errors(cap) == [] for cap in caps.values())
    updated = {e.findtext(f"{{{ATOM}}}title")[:26]: e.findtext(f"{{{ATOM}}}updated") for e in entries}
    assert updated[ENGLISH[:26]] == flood_cap.findtext(f"{{{NS}}}sent")
    assert updated["Water main break"].endswith("Z")


def document_alerts(document: bytes) -> list:
    return etree.fromstring(document).findall(f"{{{ATOM}}}entry/{{{ATOM}}}content/{{{NS}}}alert")


async def test_the_timeline_map_and_feed_speak_the_readers_language(make_node):
    node = await make_node("a", node__latitude="40.60", node__longitude="-73.96")
    await import_alerts(node.engine, current(sample("nws_flash_flood_maximal.xml")))
    async with browser() as manager:
        await claim(node, manager)
        for header, expected in ((None, ENGLISH), ("es-MX,es;q=0.9,en;q=0.5", SPANISH), ("fr, es;q=0.3", SPANISH),
                                 ("fr", ENGLISH), ("es;q=0, en", ENGLISH)):
            headers = {"Accept-Language": header} if header else {}
            status, timeline = await call(manager, "GET", node.url + "/api/timeline?types=alert", headers=headers)
            assert status == 200 and timeline["items"][0]["title"].startswith(expected), (header, timeline)
            status, map_data = await call(manager, "GET", node.url + "/api/map", headers=headers)
            assert map_data["areas"][0]["title"].startswith(expected), header
            async with aiohttp.ClientSession() as anyone:
                async with anyone.get(node.url + "/alerts.atom", headers=headers) as resp:
                    title = etree.fromstring(await resp.read()).findtext(f"{{{ATOM}}}entry/{{{ATOM}}}title")
            assert title.startswith(expected), header


def test_accept_language_is_read_by_quality():
    assert languages("es-MX,es;q=0.9,en;q=0.5") == ["es-mx", "es", "en"]
    assert languages("en;q=0.2, fr, *;q=0.1, de;q=0") == ["fr", "en"]
    assert languages(None) == [] and languages("es;q=x") == []
