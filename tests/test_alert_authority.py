"""Sender authority: an Update or Cancel counts only from the original sender, and a feed publishes only as the
senders configured for it."""

import time

import aiohttp
import nacl.signing

from node.config import FeedConfig
from node.safety.alerts import current_alerts, live_messages
from node.safety.cap import parse_document
from node.safety.feeds import poll_feed
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.conftest import serving, signed
from tests.test_feed_shapes import ATOM_HEAD, KINGS, Publisher, body
from tests.test_rejections import event_line

NWS = "w-nws.webmaster@noaa.gov"


def warning() -> bytes:
    return current(sample("nws_winter_storm_kings.xml"))


def reply(original: bytes, *, sender: str, msg_type: str = "Cancel", number: int = 2) -> bytes:
    """An Update or Cancel of `original` sent by `sender`."""
    [cap] = parse_document(original)
    reference = f"{cap['sender']},{cap['identifier']},{cap['sent']}"
    return (original.replace(KINGS.encode(), KINGS[:-1].encode() + str(number).encode())
            .replace(f"<sender>{NWS}</sender>".encode(), f"<sender>{sender}</sender>".encode())
            .replace(b"<msgType>Alert</msgType>", f"<msgType>{msg_type}</msgType>".encode())
            .replace(b"<scope>Public</scope>", b"<scope>Public</scope><references>" + reference.encode()
                     + b"</references>"))


async def in_force(node) -> list[str]:
    return [a["cap"]["identifier"] for a in await current_alerts(node.store, location=None)]


async def test_a_cancel_from_another_sender_does_not_withdraw_an_official_alert(make_node):
    node = await make_node("t")
    original = warning()
    await import_alerts(node.engine, original)
    peer = nacl.signing.SigningKey.generate()
    await node.peers.seen(peer.verify_key.encode().hex(), name="p", url=None, source="manual", approve=True)
    [prank] = parse_document(reply(original, sender="prankster@example.org"))
    async with aiohttp.ClientSession() as session:
        code, _ = await signed(session, peer, "POST", node.url + "/sync/v1/push",
                               event_line(peer, kind="alert", body={"cap": prank},
                                          expires=int(time.time()) + 3600) + b"\n")
    assert code == 200                                    # valid CAP: stored and relayed, but without authority
    assert await in_force(node) == [KINGS]
    [event] = [e for e in await node.store.recent(10, "alert") if e.author != node.id]
    assert [kind for kind, _, _ in await live_messages(node.store, [event], None)] == []   # no alert-withdrawn

    await import_alerts(node.engine, reply(original, sender=NWS))                            # the NWS's own
    assert await in_force(node) == []


async def test_an_update_or_cancel_of_another_senders_alert_is_not_imported(make_node):
    node = await make_node("t")
    original = warning()
    await import_alerts(node.engine, original)
    connector = aiohttp.UnixConnector(path=str(node.config.control_socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://node/control/alerts/import",
                                data=reply(original, sender="prankster@example.org", msg_type="Update")) as resp:
            status, answer = resp.status, await resp.json()
    assert status == 200 and answer["events"] == []
    [entry] = answer["entries"]
    assert entry["outcome"] == "skipped" and "only the original sender may update or cancel" in entry["reason"]
    assert await in_force(node) == [KINGS] and await node.store.count() == 1


async def test_a_feed_publishes_only_as_its_configured_senders(make_node):
    agency = Publisher()
    node = await make_node("t")
    original = warning()
    prank = reply(original, sender="prankster@example.org", number=3)
    spoof = original.replace(KINGS.encode(), KINGS[:-1].encode() + b"4").replace(NWS.encode(),
                                                                                 b"alerts@county.example")
    agency.feed = (ATOM_HEAD + b"".join(b"<entry><id>urn:e:%d</id><title>t</title><updated>2026-01-25T08:12:00Z"
                                        b"</updated><content type=\"application/cap+xml\">%s</content></entry>"
                                        % (i, body(doc)) for i, doc in enumerate((original, prank, spoof)))
                   + b"</feed>")
    async with serving(agency.app()) as base, aiohttp.ClientSession() as session:
        result = await poll_feed(node.engine, session, FeedConfig(url=base + "/feed", senders=(NWS,)),
                                 settings=node.config.alerts, state={})
    assert result.published == 1 and await in_force(node) == [KINGS]
    reasons = {s["alert"][-1]: s["reason"] for s in result.skipped}
    assert "'prankster@example.org' is not one this feed publishes as" in reasons["3"]
    assert "'alerts@county.example' is not one this feed publishes as" in reasons["4"]


async def test_without_configured_senders_a_foreign_cancel_in_a_feed_is_skipped_with_the_reason(make_node):
    agency = Publisher()
    node = await make_node("t")
    original = warning()
    agency.feed = (ATOM_HEAD + b"<entry><id>urn:e:1</id><title>t</title><updated>2026-01-25T08:12:00Z</updated>"
                   b"<content type=\"application/cap+xml\">" + body(reply(original, sender="prankster@example.org"))
                   + b"</content></entry></feed>")
    await import_alerts(node.engine, original)
    async with serving(agency.app()) as base, aiohttp.ClientSession() as session:
        result = await poll_feed(node.engine, session, base + "/feed", settings=node.config.alerts, state={})
    assert result.published == 0 and await in_force(node) == [KINGS]
    assert "only the original sender may update or cancel" in result.skipped[0]["reason"]
