"""Hostile or unlucky input on the residents' side: revoked sessions on open streams, replays of hidden reports,
photo bombs, oversized or malformed bodies, double clicks, duplicate alerts."""

import asyncio
import io
import struct
import zlib

import aiohttp

from node.safety.alerts import ALERT, manager_alert
from node.safety.reports import REPORT
from tests.people import browser, call, claim, invite, join, open_stream


async def _building(make_node, *units):
    node = await make_node("n")
    manager = browser()
    await claim(node, manager)
    residents = []
    for unit in units:
        session = browser()
        await join(node, session, (await invite(node, manager, unit=unit, name=f"in {unit}"))["code"])
        residents.append(session)
    return node, manager, residents


async def _close(*sessions):
    for session in sessions:
        await session.close()


async def test_revoking_a_resident_ends_their_open_stream_and_on_call_applies_at_once(make_node):
    node, manager, (sam, ada) = await _building(make_node, "2B", "3C")
    try:
        _, body = await call(manager, "GET", node.url + "/api/residents")
        sam_id = next(r["id"] for r in body["residents"] if r["unit"] == "2B")
        stream = await open_stream(sam, node.url)
        # Put on call while the page is open: the next SOS reaches it without a reconnect.
        await call(manager, "POST", node.url + f"/api/residents/{sam_id}/on-call", json={"on_call": True})
        await call(ada, "POST", node.url + "/api/sos", json={"note": "first"})
        _, kind, data = await stream.next()
        assert kind == "sos" and data["sos"]["note"] == "first"
        # Revoked while the page is open: the stream ends, and the next SOS never reaches it.
        await call(manager, "POST", node.url + f"/api/residents/{sam_id}/revoke")
        try:
            message = await stream.next(timeout=5)
        except ConnectionError:
            message = None
        assert message is None
        stream.response.close()
    finally:
        await _close(manager, sam, ada)


async def test_a_hidden_report_is_not_replayed_to_a_page_that_reconnects(make_node):
    node, manager, (ada, bob) = await _building(make_node, "4B", "5F")
    try:
        _, posted = await call(ada, "POST", node.url + "/api/reports",
                               json={"what": "My ex-partner keeps following me home", "category": "other"})
        await call(manager, "POST", node.url + f"/api/reports/{posted['report']['id']}/hide")
        stream = await open_stream(bob, node.url, last_id=0)
        _, kind, data = await stream.next()
        assert kind == "report-moderated" and data["status"] == "hidden"     # the report itself is gone
        stream.response.close()
    finally:
        await _close(manager, ada, bob)


def _png_header_only(width: int, height: int) -> bytes:
    """A small PNG that claims to be huge: a decompression bomb in the making."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\x00" * (width // 8 + 1) * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


async def test_a_photo_claiming_a_huge_size_is_refused_before_decoding(make_node):
    node, manager, (ada,) = await _building(make_node, "4B")
    try:
        data = aiohttp.FormData()
        data.add_field("what", "A package was taken from the lobby")
        data.add_field("photo", io.BytesIO(_png_header_only(30_000, 30_000)), filename="x.png")
        status, body = await call(ada, "POST", node.url + "/api/reports", data=data)
        assert status == 400 and "30000x30000" in body["error"]
        _, listed = await call(ada, "GET", node.url + "/api/reports")
        assert listed["reports"] == []
    finally:
        await _close(manager, ada)


async def test_bodies_are_bounded_and_malformed_ones_get_a_clear_error(make_node):
    node, manager, (ada,) = await _building(make_node, "4B")
    try:
        url = node.url + "/api/reports"
        big = '{"what": "' + "x" * 70_000 + '"}'
        status, body = await call(ada, "POST", url, data=big, headers={"Content-Type": "application/json"})
        assert status == 413 and "limit" in body["error"]
        deep = "[" * 30_000 + "]" * 30_000
        status, body = await call(ada, "POST", node.url + "/api/sos", data=deep,
                                  headers={"Content-Type": "application/json"})
        assert status == 400
        raw = (b"--XyZ\r\nContent-Type: text/plain\r\n\r\n" + b"no name on this part" * 1000
               + b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"what\"\r\n\r\nA bike was stolen today"
               + b"\r\n--XyZ--\r\n")
        status, body = await call(ada, "POST", url, data=raw,
                                  headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
        assert status == 400 and "needs a name" in body["error"]
        _, listed = await call(ada, "GET", url)
        assert listed["reports"] == []
    finally:
        await _close(manager, ada)


async def test_two_quick_share_clicks_publish_one_event(make_node):
    node, manager, (ada,) = await _building(make_node, "4B")
    try:
        _, posted = await call(ada, "POST", node.url + "/api/reports",
                               json={"what": "Broken glass all over the playground", "category": "safety-hazard"})
        url = node.url + f"/api/reports/{posted['report']['id']}/share"
        results = await asyncio.gather(call(manager, "POST", url), call(manager, "POST", url))
        assert sorted(status for status, _ in results) == [200, 409]
        assert len([e for e in await node.store.recent(10, REPORT)]) == 1
    finally:
        await _close(manager, ada)


async def test_a_second_copy_of_one_cap_alert_is_not_announced_again(make_node):
    node, manager, (ada,) = await _building(make_node, "4B")
    try:
        stream = await open_stream(ada, node.url)
        cap = manager_alert({"event": "Boil water", "expires_hours": 3}, node_key="ab" * 32, node_name="x",
                            location=None)
        first = await node.engine.publish(ALERT, {"cap": cap}, ttl=3600)
        second = await node.engine.publish(ALERT, {"cap": cap}, ttl=3600)     # as if a second node polled it
        _, kind, data = await stream.next()
        assert kind == "alert" and data["event"] == first.id
        await call(manager, "POST", node.url + "/api/alerts", json={"event": "Marker", "expires_hours": 1})
        _, kind, data = await stream.next()
        assert data["cap"]["info"][0]["event"] == "Marker" and data["event"] != second.id
        stream.response.close()
    finally:
        await _close(manager, ada)
