"""Agencies post, update and cancel real CAP 1.2 (XML or its JSON form) as themselves: the <sender> is the agency's
registered identity, and only the original sender may update or cancel an alert."""

import json
from xml.etree.ElementTree import tostring

import pytest

from node.safety.cap import alert_to_element, parse_document
from node.sharing.agencies import cap_sender
from tests.cap_samples import current, sample
from tests.people import browser, call, claim
from tests.sharing.flow import Agency
from tests.test_alert_authority import reply
from tests.test_feed_shapes import KINGS

NWS = "w-nws.webmaster@noaa.gov"


@pytest.fixture
async def agencies(make_node):
    """A node, its manager signed in, and two registered agencies: an emergency office and a police department."""
    node = await make_node("b", agencies__alerts_burst=20)
    oem, police = Agency(), Agency()
    async with browser() as manager:
        await claim(node, manager)
        for agency, name in ((oem, "NYC Emergency Management"), (police, "Metro PD")):
            status, body = await call(manager, "POST", node.url + "/api/agencies", json={"key": agency.id,
                                                                                        "name": name})
            assert status == 201 and body["agency"]["cap_sender"] == cap_sender(agency.id)
        try:
            yield node, manager, oem, police
        finally:
            await oem.close()
            await police.close()


async def post_xml(agency: Agency, url: str, document: bytes) -> tuple[int, dict]:
    headers = agency.headers("POST", url, document) | {"Content-Type": "application/cap+xml"}
    async with agency.session.post(url, data=document, headers=headers) as resp:
        return resp.status, json.loads(await resp.read())


def as_agency(document: bytes, agency: Agency) -> bytes:
    return document.replace(f"<sender>{NWS}</sender>".encode(), f"<sender>{cap_sender(agency.id)}</sender>".encode())


async def in_force(manager, node) -> list[tuple[str, str, str]]:
    status, body = await call(manager, "GET", node.url + "/api/alerts")
    return [(a["cap"]["identifier"], a["cap"]["msgType"], a["cap"]["sender"]) for a in body["alerts"]]


async def test_an_agency_posts_updates_and_cancels_its_own_cap(agencies):
    node, manager, oem, police = agencies
    url = node.url + "/api/agency/cap"
    warning = as_agency(current(sample("nws_winter_storm_kings.xml")), oem)
    status, body = await post_xml(oem, url, warning)
    assert status == 201, body
    assert body["cap"]["sender"] == cap_sender(oem.id) and body["signature"] == "unsigned"
    assert await in_force(manager, node) == [(KINGS, "Alert", cap_sender(oem.id))]

    count = await node.store.count()
    status, again = await post_xml(oem, url, warning)                  # the same alert twice: nothing changes
    assert status == 200 and again["held"] is True and await node.store.count() == count

    status, body = await post_xml(oem, url, current(sample("nws_winter_storm_kings.xml")))   # as the NWS
    assert status == 403 and "is not this agency; its alerts are sent as" in body["error"]

    # Another agency cannot cancel it: not as itself (not its alert), nor as the original sender (not its identity).
    prank = reply(warning, sender=NWS, number=7).replace(f"<sender>{cap_sender(oem.id)}</sender>".encode(),
                                                          f"<sender>{cap_sender(police.id)}</sender>".encode())
    status, body = await post_xml(police, url, prank)
    assert status == 403 and "only the original sender may update or cancel" in body["error"]
    status, body = await post_xml(police, url, reply(warning, sender=cap_sender(oem.id), number=8))
    assert status == 403 and "is not this agency" in body["error"]
    assert await in_force(manager, node) == [(KINGS, "Alert", cap_sender(oem.id))]

    # The agency updates it in CAP's JSON form, then cancels the update as XML.
    [update] = parse_document(reply(warning, sender=cap_sender(oem.id), msg_type="Update", number=2))
    update["info"][0]["headline"] = "Winter Storm Warning extended"
    status, body = await oem.call("POST", url, update)
    assert status == 201, body
    assert await in_force(manager, node) == [(KINGS[:-1] + "2", "Update", cap_sender(oem.id))]
    [cancel] = parse_document(reply(warning, sender=cap_sender(oem.id), number=3))
    cancel["references"] = [{"sender": update["sender"], "identifier": update["identifier"], "sent": update["sent"]}]
    status, body = await post_xml(oem, url, tostring(alert_to_element(cancel), xml_declaration=True,
                                                     encoding="utf-8"))
    assert status == 201, body
    assert await in_force(manager, node) == []


async def test_bad_cap_from_an_agency_is_refused_with_the_reason(agencies):
    node, manager, oem, _ = agencies
    url = node.url + "/api/agency/cap"
    status, body = await post_xml(oem, url, b"<alert><unclosed></alert>")
    assert status == 400 and "not well-formed XML" in body["error"]
    feed = b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>'
    status, body = await post_xml(oem, url, feed)
    assert status == 400 and "expected one CAP 1.2 <alert>" in body["error"]
    status, body = await oem.call("POST", url, {"identifier": "x"})
    assert status == 400 and "alert/sender: required element is missing" in body["error"]
    expired = as_agency(sample("nws_winter_storm_kings.xml"), oem)       # as published in January: expired
    status, body = await post_xml(oem, url, expired)
    assert status == 400 and "expired" in body["error"]
    stranger = Agency()
    try:
        status, body = await post_xml(stranger, url, as_agency(current(sample("nws_winter_storm_kings.xml")),
                                                               stranger))
    finally:
        await stranger.close()
    assert status == 403
    assert await node.store.count() == 0


async def test_the_agency_alert_form_sends_as_the_agency(agencies):
    node, manager, oem, _ = agencies
    status, body = await oem.call("POST", node.url + "/api/agency/alerts", {"event": "Police activity",
                                                                             "expires_hours": 2})
    assert status == 201 and body["cap"]["sender"] == cap_sender(oem.id)


async def test_both_alert_routes_spend_one_allowance(make_node):
    node = await make_node("b", agencies__alerts_burst=2)
    agency = Agency()
    async with browser() as manager:
        await claim(node, manager)
        await call(manager, "POST", node.url + "/api/agencies", json={"key": agency.id, "name": "Metro PD"})
        try:
            status, _ = await agency.call("POST", node.url + "/api/agency/alerts", {"event": "Police activity"})
            assert status == 201
            warning = as_agency(current(sample("nws_winter_storm_kings.xml")), agency)
            assert (await post_xml(agency, node.url + "/api/agency/cap", warning))[0] == 201
            status, body = await post_xml(agency, node.url + "/api/agency/cap", warning)
            assert status == 429 and "agencies.alerts_per_hour" in json.dumps(body)
        finally:
            await agency.close()
