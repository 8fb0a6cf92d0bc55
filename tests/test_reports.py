"""Reports: the anti-profiling rules, photos checked by decoding and stripped, moderation and sharing as an event."""

import sqlite3
import struct

import aiohttp
import cv2
import numpy as np

from node.safety.reports import REPORT
from tests.conftest import wait_until
from tests.people import browser, call, claim, invite, join

WHAT = "Someone tried every car door on the street around 2 am."


def jpeg_with_gps_exif() -> bytes:
    """A real JPEG with an APP1 Exif segment carrying a recognisable GPS marker, as phones write them."""
    image = np.zeros((480, 640, 3), np.uint8)
    cv2.rectangle(image, (100, 100), (300, 400), (40, 180, 220), -1)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    payload = b"Exif\x00\x00" + b"GPSLatitude=40.712812;GPSLongitude=-74.006015" * 4
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = encoded.tobytes()
    return data[:2] + app1 + data[2:]


def form(**fields) -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        if name == "photo":
            data.add_field("photo", value, filename="photo.jpg", content_type="image/jpeg")
        else:
            data.add_field(name, value)
    return data


def stored_reports(node) -> int:
    with sqlite3.connect(node.config.db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM reports").fetchone()[0]


async def test_describing_a_person_needs_two_details_besides_race(make_node):
    node = await make_node("r")
    async with browser() as manager, browser() as resident:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        url = node.url + "/api/reports"
        status, body = await call(resident, "POST", url, data=form(what=WHAT, category="crime", person_race="Black"))
        assert status == 400 and "race or ethnicity alone does not describe a person" in body["error"]
        status, body = await call(resident, "POST", url, data=form(what=WHAT, category="crime", person_race="White",
                                                                    person_hair="short"))
        assert status == 400 and "at least two other details" in body["error"]
        status, body = await call(resident, "POST", url, data=form(what=WHAT, person_clothing="red hoodie"))
        assert status == 400 and "needs at least 2 details" in body["error"]
        status, body = await call(resident, "POST", url, data=form(person_clothing="red hoodie",
                                                                    person_height="tall"))
        assert status == 400 and "say what happened first" in body["error"]
        status, body = await call(resident, "POST", url, data=form(what=WHAT, category="gossip"))
        assert status == 400 and "field 'category'" in body["error"]
        assert stored_reports(node) == 0                 # nothing half-stored
        status, body = await call(resident, "POST", url, data=form(
            what=WHAT, category="crime", where="Elm St", when="2026-11-22T02:10", person_race="Hispanic",
            person_clothing="red hoodie, grey jeans", person_height="about 6 ft"))
        assert status == 201, body
        assert body["report"]["person"] == {"race": "Hispanic", "clothing": "red hoodie, grey jeans",
                                            "height": "about 6 ft"}
        status, body = await call(resident, "POST", url, json={"what": WHAT, "category": "safety-hazard"})
        assert status == 201


async def test_photos_are_decoded_and_stripped_of_metadata(make_node):
    node = await make_node("r", reports__max_photo_bytes=65536)
    async with browser() as manager, browser() as resident:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        url = node.url + "/api/reports"
        status, body = await call(resident, "POST", url, data=form(what=WHAT, photo=b"<svg>not a photo</svg>" * 9))
        assert status == 400 and "not an image" in body["error"]
        status, body = await call(resident, "POST", url, data=form(what=WHAT, photo=np.random.default_rng(1)
                                                                    .bytes(70_000)))
        assert status == 413 and "over the limit" in body["error"]
        assert stored_reports(node) == 0
        original = jpeg_with_gps_exif()
        status, body = await call(resident, "POST", url, data=form(what=WHAT, photo=original))
        assert status == 201 and body["report"]["has_photo"]
        async with resident.get(url + f"/{body['report']['id']}/photo") as resp:
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            served = await resp.read()
        assert b"GPSLatitude" not in served and b"GPSLatitude" in original
        decoded = cv2.imdecode(np.frombuffer(served, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (480, 640, 3)


async def test_moderation_shares_without_the_reporter_or_hides(make_node):
    a = await make_node("a")
    b = await make_node("b")
    await a.approve(b)
    await b.approve(a)
    async with browser() as manager, browser() as reporter, browser() as neighbour, browser() as manager_b, \
            browser() as resident_b:
        await claim(a, manager)
        await claim(b, manager_b)
        await join(a, reporter, (await invite(a, manager, unit="4B", name="Ada Lovelace"))["code"])
        await join(a, neighbour, (await invite(a, manager, unit="7F"))["code"])
        await join(b, resident_b, (await invite(b, manager_b, unit="1A"))["code"])
        _, posted = await call(reporter, "POST", a.url + "/api/reports", data=form(
            what=WHAT, category="crime", where="Elm St", photo=jpeg_with_gps_exif()))
        report_id = posted["report"]["id"]
        # The building sees it without who made it; the manager sees who, and it waits in the queue.
        _, seen = await call(neighbour, "GET", a.url + "/api/reports")
        assert seen["reports"][0]["what"] == WHAT and "reporter" not in seen["reports"][0]
        assert not seen["reports"][0]["mine"]
        _, queue = await call(manager, "GET", a.url + "/api/reports")
        assert queue["reports"][0]["reporter"] == {"unit": "4B", "name": "Ada Lovelace"}
        assert queue["reports"][0]["queue"] is True
        # Residents may not moderate.
        assert (await call(neighbour, "POST", a.url + f"/api/reports/{report_id}/share"))[0] == 403
        # Shared: a signed event without the reporter's identity or photo reaches the next building.
        status, shared = await call(manager, "POST", a.url + f"/api/reports/{report_id}/share")
        assert status == 200 and shared["report"]["status"] == "shared" and not shared["report"]["queue"]
        event_id = shared["report"]["event"]
        await wait_until(lambda: _has(b, event_id))
        event = await b.store.get(event_id)
        assert event.kind == REPORT
        body_text = event.body.decode()
        assert "Ada" not in body_text and "4B" not in body_text and "photo" not in body_text
        _, timeline = await call(resident_b, "GET", b.url + "/api/timeline?types=report")
        assert [item["data"]["what"] for item in timeline["items"]] == [WHAT]
        # Hidden: withdrawn from the neighborhood (tombstone) and from the building's residents.
        status, hidden = await call(manager, "POST", a.url + f"/api/reports/{report_id}/hide")
        assert status == 200 and hidden["report"]["status"] == "hidden"
        await wait_until(lambda: _dropped(b, event_id))
        _, seen = await call(neighbour, "GET", a.url + "/api/reports")
        assert seen["reports"] == []
        assert (await call(neighbour, "GET", a.url + f"/api/reports/{report_id}/photo"))[0] == 404
        _, own = await call(reporter, "GET", a.url + "/api/reports")
        assert own["reports"][0]["status"] == "hidden" and own["reports"][0]["mine"]
        status, body = await call(manager, "POST", a.url + f"/api/reports/{report_id}/promote")
        assert status == 404 and "share, hide or restore" in body["error"]


async def _has(node, event_id) -> bool:
    return await node.store.get(event_id) is not None


async def _dropped(node, event_id) -> bool:
    event = await node.store.get(event_id)
    return event is None or event.body is None
