"""Scope: only Public alerts are shown to residents, exported or shared with peers; Restricted and Private ones are
refused with the reason, from a feed, a file or a peer, and their restriction text and addresses go nowhere."""

import time

import aiohttp
import nacl.signing

from node.safety.cap import parse_document
from node.safety.feeds import poll_feed
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.conftest import serving, signed
from tests.test_feed_shapes import ATOM_HEAD, KINGS, Publisher, body
from tests.test_rejections import event_line

RESTRICTION = b"<restriction>For emergency managers only: staging at Barclays Center</restriction>"
ADDRESSES = b"<addresses>oem-duty@nyc.example</addresses>"


def scoped(number: int, scope: bytes, extra: bytes = b"") -> bytes:
    document = current(sample("nws_winter_storm_kings.xml")).replace(KINGS.encode(),
                                                                    KINGS[:-1].encode() + str(number).encode())
    return document.replace(b"<scope>Public</scope>", b"<scope>" + scope + b"</scope>" + extra)


async def exported(node) -> tuple[list[str], bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + "/api/alerts") as resp:
            listed = [a["cap"]["identifier"] for a in (await resp.json())["alerts"]]
        async with session.get(node.url + "/alerts.atom") as resp:
            return listed, await resp.read()


async def test_a_feed_publishes_only_its_public_alerts(make_node):
    agency = Publisher()
    node = await make_node("t")
    documents = (scoped(1, b"Public"), scoped(2, b"Restricted", RESTRICTION), scoped(3, b"Private", ADDRESSES))
    agency.feed = (ATOM_HEAD + b"".join(b"<entry><id>urn:e:%d</id><title>t</title><updated>2026-01-25T08:12:00Z"
                                        b"</updated><content type=\"application/cap+xml\">%s</content></entry>"
                                        % (i, body(doc)) for i, doc in enumerate(documents)) + b"</feed>")
    async with serving(agency.app()) as base, aiohttp.ClientSession() as session:
        result = await poll_feed(node.engine, session, base + "/feed", settings=node.config.alerts, state={})
    assert result.published == 1 and await node.store.count() == 1
    assert [s["reason"].split(":")[0] for s in result.skipped] == ["scope Restricted", "scope Private"]
    listed, atom = await exported(node)
    assert listed == [KINGS[:-1] + "1"]
    assert b"Barclays" not in atom and b"oem-duty" not in atom


async def test_a_restricted_alert_is_skipped_on_import(make_node):
    node = await make_node("t")
    imported = await import_alerts(node.engine, scoped(2, b"Restricted", RESTRICTION))
    [entry] = imported.entries
    assert entry["outcome"] == "skipped" and entry["reason"].startswith("scope Restricted: only Public alerts")
    assert imported.events == [] and await node.store.count() == 0


async def test_a_peer_cannot_share_a_private_alert(make_node):
    node = await make_node("t")
    peer = nacl.signing.SigningKey.generate()
    await node.peers.seen(peer.verify_key.encode().hex(), name="p", url=None, source="manual", approve=True)
    [cap] = parse_document(scoped(3, b"Private", ADDRESSES))
    async with aiohttp.ClientSession() as session:
        code, answer = await signed(session, peer, "POST", node.url + "/sync/v1/push",
                                    event_line(peer, kind="alert", body={"cap": cap},
                                               expires=int(time.time()) + 3600) + b"\n")
    assert code == 422 and answer["reason"] == "invalid_body" and "scope Private" in answer["error"]
    assert await node.store.count() == 0
    assert (await exported(node))[0] == []
