"""CAP alerts as signed events: import, federation, area of the node, Update/Cancel, Atom export."""

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import nacl.signing

from node.safety.alerts import current_alerts
from node.safety.cap import parse_document
from node.safety.intake import import_alerts
from sync import canonical
from tests.conftest import signed, wait_until
from tests.test_rejections import event_line

SAMPLE = (Path(__file__).parent / "data/cap/thunderstorm.xml").read_bytes()
INSIDE = {"node__latitude": "38.47", "node__longitude": "-119.9"}      # within the warned polygon
OUTSIDE = {"node__latitude": "38.00", "node__longitude": "-121.00"}    # Sacramento


def fresh(document: bytes, *, msg_type="Alert", references="") -> bytes:
    """The sample with times moved to now, so it is in force."""
    now = datetime.now(timezone(timedelta(hours=-7))).replace(microsecond=0)
    sent, expires = now.isoformat(), (now + timedelta(hours=1)).isoformat()
    out = document.replace(b"2003-06-17T14:57:00-07:00", sent.encode()).replace(
        b"2003-06-17T16:00:00-07:00", expires.encode()).replace(b"<msgType>Alert</msgType>",
                                                               f"<msgType>{msg_type}</msgType>".encode())
    if references:
        out = out.replace(b"<scope>Public</scope>", b"<scope>Public</scope><references>" + references.encode()
                          + b"</references>")
    return out


async def test_imported_alert_federates_and_shows_where_it_applies(make_node):
    a = await make_node("a", **INSIDE)
    b = await make_node("b", **OUTSIDE)
    await a.approve(b)
    await b.approve(a)
    [event] = (await import_alerts(a.engine, fresh(SAMPLE))).events
    await wait_until(lambda: _holds(b, event.id))
    here = await current_alerts(a.store, location=(38.47, -119.9))
    assert [x["cap"]["identifier"] for x in here] == ["KSTO1055887203"]
    assert await current_alerts(b.store, location=(38.0, -121.0)) == []      # not b's area
    async with aiohttp.ClientSession() as session:
        async with session.get(a.url + "/api/alerts") as resp:
            assert [x["cap"]["identifier"] for x in (await resp.json())["alerts"]] == ["KSTO1055887203"]
        async with session.get(b.url + "/api/alerts") as resp:
            assert (await resp.json())["alerts"] == []
        async with session.get(a.url + "/alerts.atom") as resp:
            assert resp.content_type == "application/atom+xml"
            exported = parse_document(await resp.read())          # the export is itself valid CAP
    assert exported == [here[0]["cap"]]


async def _holds(node, event_id):
    return event_id in await node.ids()


async def test_cancel_withdraws_what_it_references(make_node):
    a = await make_node("a", **INSIDE)
    [event] = (await import_alerts(a.engine, fresh(SAMPLE))).events
    cap = event.body_value()["cap"]
    reference = f"{cap['sender']},{cap['identifier']},{cap['sent']}"
    cancel = fresh(SAMPLE.replace(b"KSTO1055887203", b"KSTO1055887299"), msg_type="Cancel", references=reference)
    await import_alerts(a.engine, cancel)
    assert await current_alerts(a.store, location=(38.47, -119.9)) == []


async def test_expired_alerts_are_skipped_on_import(make_node):
    a = await make_node("a")
    imported = await import_alerts(a.engine, SAMPLE)          # expired in 2003
    assert [(e["outcome"], e["reason"][:18]) for e in imported.entries] == [("skipped", "expired 2003-06-17")]
    assert await a.store.count() == 0


async def test_a_peer_cannot_slip_in_an_invalid_alert(make_node):
    node = await make_node("t")
    peer = nacl.signing.SigningKey.generate()
    await node.peers.seen(peer.verify_key.encode().hex(), name="p", url=None, source="manual", approve=True)
    cap = parse_document(fresh(SAMPLE))[0]
    cap["info"][0]["urgency"] = "Now"
    expires = int(time.time()) + 3600
    async with aiohttp.ClientSession() as session:
        code, body = await signed(session, peer, "POST", node.url + "/sync/v1/push",
                                  event_line(peer, kind="alert", body={"cap": cap}, expires=expires) + b"\n")
    assert code == 422 and body["reason"] == "invalid_body" and "urgency" in body["error"]
    assert await node.store.count() == 0
    assert canonical({"cap": cap})    # (the body itself is valid JSON; CAP is what refused it)
