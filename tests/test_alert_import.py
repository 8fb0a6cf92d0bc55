"""`nnode alerts import` takes a file by the poller's own per-alert rules: each alert published, already held or
skipped with the reason (the same outcome a feed poll of the same document gives), every entry reported, a second
import a no-op, and what one file publishes stored in one transaction (all or none)."""

import argparse
import re
from datetime import datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from node.commands.safety import cmd_alerts
from node.config import FeedConfig
from node.safety.alerts import ALERT
from node.safety.cap import CapError, parse_document
from node.safety.feeds import poll_feed
from node.safety.intake import import_alerts
from sync import SyncError
from tests.cap_samples import current, sample
from tests.conftest import serving
from tests.test_alert_authority import reply
from tests.test_feed_shapes import KINGS, body

IPAWS_HEAD = b'<?xml version="1.0" encoding="UTF-8"?><ns1:alerts xmlns:ns1="http://gov.fema.ipaws.services/feed">'


def numbered(number: int, document: bytes | None = None) -> bytes:
    document = document or current(sample("nws_winter_storm_kings.xml"))
    return document.replace(KINGS.encode(), KINGS[:-1].encode() + str(number).encode())


def mixed() -> bytes:
    """An IPAWS-OPEN feed as it comes: two good warnings (zone and polygon products, English and Spanish), one
    expired, one Restricted, one prankster's Cancel of an NWS warning, one broken entry."""
    good = numbered(1)
    flood = current(sample("nws_flash_flood_maximal.xml"))
    expired = numbered(3, sample("nws_winter_storm_kings.xml"))                  # as published in January
    restricted = numbered(4).replace(b"<scope>Public</scope>", b"<scope>Restricted</scope><restriction>staff"
                                     b"</restriction>")
    prank = reply(good, sender="prankster@example.org", number=5)
    broken = numbered(6).replace(b"<urgency>Expected</urgency>", b"<urgency>Soon</urgency>")
    return IPAWS_HEAD + b"".join(body(d) for d in (good, flood, expired, restricted, prank, broken)) + b"</ns1:alerts>"


async def control_import(node, path, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()                                       # what the node printed at start (its claim code)
    status = await cmd_alerts(node.config, argparse.Namespace(action="import", file=str(path)))
    return status, capsys.readouterr().out.splitlines()


async def test_a_file_is_imported_entry_by_entry_like_a_poll_and_twice_is_a_no_op(make_node, tmp_path, capsys):
    document = mixed()
    (tmp_path / "ipaws.xml").write_bytes(document)
    node = await make_node("cli")
    status, lines = await control_import(node, tmp_path / "ipaws.xml", capsys)
    assert status == 1                                                          # something was skipped: said
    assert [line.split(" ")[0] for line in lines[:6]] == ["published", "published", "skipped", "skipped", "skipped",
                                                          "skipped"]
    assert "expired 2026-01-25" in lines[2] and "scope Restricted" in lines[3]
    assert "only the original sender may update or cancel" in lines[4]
    assert "urgency: 'Soon' is not one of" in lines[5]
    assert lines[-1] == "ipaws: 2 published, 0 already held, 4 skipped"
    count = await node.store.count()
    assert count == 2

    status, again = await control_import(node, tmp_path / "ipaws.xml", capsys)
    assert again[:2] == [f"already held {KINGS[:-1]}1: nothing changed",
                         "already held urn:oid:2.49.0.1.840.0.7d3c1b2a9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b.001.1: nothing "
                         "changed"]
    assert again[-1] == "ipaws: 0 published, 2 already held, 4 skipped"
    assert await node.store.count() == count                                    # nothing changed the second time

    # The poller, given the same document from a loopback server, decides each alert the same way.
    async def feed(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/xml")
    app = web.Application()
    app.router.add_get("/feed", feed)
    poller = await make_node("poller")
    async with serving(app) as url, aiohttp.ClientSession() as session:
        polled = await poll_feed(poller.engine, session, FeedConfig(url=url + "/feed"),
                                 settings=poller.config.alerts, state={})
    imported = await import_alerts(poller.engine, document)                     # after the poll: all held
    assert polled.published == 2 and [e["outcome"] for e in imported.entries][:2] == ["already held"] * 2
    skipped_by_poll = sorted(s["reason"][:40] for s in polled.skipped)
    skipped_by_import = sorted(e["reason"][:40] for e in imported.entries if e["outcome"] == "skipped")
    assert skipped_by_poll == skipped_by_import


async def test_an_unreadable_file_stores_nothing_and_says_why(make_node, tmp_path, capsys):
    node = await make_node("cli")
    (tmp_path / "bad.xml").write_bytes(IPAWS_HEAD + body(numbered(1)))            # not closed
    with pytest.raises(Exception, match="not well-formed XML"):
        await control_import(node, tmp_path / "bad.xml", capsys)
    with pytest.raises(CapError, match="expected a CAP 1.2 <alert>, an Atom or RSS feed"):
        await import_alerts(node.engine, b"<html><body>not a feed</body></html>")
    assert await node.store.count() == 0


async def test_an_index_feeds_links_are_reported_not_followed(make_node):
    node = await make_node("cli")
    feed = (b'<feed xmlns="http://www.w3.org/2005/Atom"><id>x</id><title>t</title><updated>2026-01-25T08:12:00Z'
            b'</updated><entry><id>urn:e:1</id><link href="https://api.weather.gov/alerts/1"/></entry></feed>')
    imported = await import_alerts(node.engine, feed)
    [entry] = imported.entries
    assert entry["outcome"] == "skipped" and "links to https://api.weather.gov/alerts/1" in entry["reason"]
    assert imported.events == []


async def test_what_one_document_publishes_is_stored_all_or_none(make_node):
    node = await make_node("cli")
    good = {"cap": parse_document(numbered(1))[0]}
    bad = {"cap": {**parse_document(numbered(2))[0], "scope": "Everyone"}}
    with pytest.raises((SyncError, ValueError)):
        await node.engine.publish_many([(ALERT, good, 3600), (ALERT, bad, 3600)])
    assert await node.store.count() == 0
    events = await node.engine.publish_many([(ALERT, good, 3600), (ALERT, {"cap": parse_document(numbered(2))[0]},
                                                                       3600)])
    assert [e.seq for e in events] == [1, 2] and await node.store.count() == 2


async def test_an_alert_without_expires_lasts_a_day_from_when_it_was_sent(make_node, tmp_path, capsys):
    """CAP makes <expires> optional: such an alert is in force for a day after its <sent>, not a day from whenever
    the node reads it (an old one would otherwise come back as current on every import or poll)."""
    def without_expires(number: int, ago: timedelta) -> bytes:
        document = numbered(number, current(sample("nws_winter_storm_kings.xml"), ago=ago))
        return re.sub(rb"<expires>[^<]*</expires>", b"", document)
    old, fresh = without_expires(7, timedelta(days=2)), without_expires(8, timedelta(hours=1))
    assert b"<expires>" not in old + fresh
    (tmp_path / "old.xml").write_bytes(old)
    (tmp_path / "fresh.xml").write_bytes(fresh)
    node = await make_node("cli")
    status, lines = await control_import(node, tmp_path / "old.xml", capsys)
    assert status == 1 and lines[0].startswith("skipped") and "expired" in lines[0], lines
    status, lines = await control_import(node, tmp_path / "fresh.xml", capsys)
    assert status == 0 and lines[0].startswith("published"), lines
    (event,) = await node.store.recent(10, ALERT)
    sent = parse_document(fresh)[0]["sent"]
    assert abs(event.expires - (datetime.fromisoformat(sent).timestamp() + 86_400)) <= 1   # a day after <sent>
