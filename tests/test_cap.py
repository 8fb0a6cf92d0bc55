"""CAP 1.2 parsing: every required element and enumerated value checked, hostile XML refused, areas located."""

from pathlib import Path

import pytest

from node.safety.cap import CapError, area_covers, parse_document

SAMPLE = (Path(__file__).parent / "data/cap/thunderstorm.xml").read_bytes()


def test_a_real_warning_parses_whole():
    [alert] = parse_document(SAMPLE)
    assert alert["identifier"] == "KSTO1055887203" and alert["msgType"] == "Alert" and alert["scope"] == "Public"
    info = alert["info"][0]
    assert info["category"] == ["Met"] and info["urgency"] == "Immediate" and info["severity"] == "Severe"
    assert info["eventCode"] == [{"valueName": "SAME", "value": "SVR"}]
    assert info["expires"] == "2003-06-17T16:00:00-07:00" and info["language"] == "en-US"
    area = info["area"][0]
    assert area["geocode"] == [{"valueName": "SAME", "value": "006109"}]
    assert area["polygon"][0].startswith("38.47,-120.14")


@pytest.mark.parametrize("old, new, message", [
    (b"<status>Actual</status>", b"<status>Real</status>", "alert/status: 'Real' is not one of Actual"),
    (b"<msgType>Alert</msgType>", b"<msgType>Warning</msgType>", "alert/msgType"),
    (b"<scope>Public</scope>", b"<scope>Everyone</scope>", "alert/scope"),
    (b"<category>Met</category>", b"<category>Weather</category>", "alert/info[1]/category"),
    (b"<urgency>Immediate</urgency>", b"<urgency>Now</urgency>", "alert/info[1]/urgency"),
    (b"<severity>Severe</severity>", b"", "alert/info[1]/severity: required"),
    (b"<certainty>Observed</certainty>", b"<certainty>Sure</certainty>", "alert/info[1]/certainty"),
    (b"<responseType>Shelter</responseType>", b"<responseType>Run</responseType>", "responseType"),
    (b"<identifier>KSTO1055887203</identifier>", b"", "alert/identifier: required"),
    (b"<sent>2003-06-17T14:57:00-07:00</sent>", b"<sent>2003-06-17 14:57</sent>", "alert/sent: '2003-06-17 14:57'"),
    (b"<event>SEVERE THUNDERSTORM</event>", b"", "alert/info[1]/event: required"),
    (b"<areaDesc>EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA</areaDesc>", b"", "area[1]/areaDesc"),
    (b"38.62,-119.89 38.47,-120.14</polygon>", b"38.62,-119.89 38.47,-120.15</polygon>", "must end where it starts"),
    (b"<msgType>Alert</msgType>", b"<msgType>Cancel</msgType>", "alert/references: an Cancel must name"),
    (b"<scope>Public</scope>", b"<scope>Restricted</scope>", "alert/restriction: required when scope"),
])
def test_each_rule_is_enforced_with_the_element_named(old, new, message):
    assert old in SAMPLE
    with pytest.raises(CapError) as caught:
        parse_document(SAMPLE.replace(old, new))
    assert message in str(caught.value)


def test_update_refers_to_earlier_alerts():
    update = SAMPLE.replace(b"<msgType>Alert</msgType>", b"<msgType>Update</msgType>").replace(
        b"<scope>Public</scope>",
        b"<scope>Public</scope><references>KSTO@NWS.NOAA.GOV,KSTO1055887200,2003-06-17T14:00:00-07:00</references>")
    [alert] = parse_document(update)
    assert alert["references"] == [{"sender": "KSTO@NWS.NOAA.GOV", "identifier": "KSTO1055887200",
                                    "sent": "2003-06-17T14:00:00-07:00"}]


@pytest.mark.parametrize("document, message", [
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
     b"&x;</alert>", "DTDs and entities are not accepted"),
    (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', "not accepted"),
    (b"<alert><unclosed></alert>", "not well-formed"),
    (b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"/>', "expected a CAP 1.2 <alert> or an Atom"),
    (b"<alert/>" + b" " * (8 * 1024 * 1024), "limit is 8388608"),
])
def test_hostile_or_wrong_documents_are_refused(document, message):
    with pytest.raises(CapError, match=message):
        parse_document(document)


def test_atom_feed_of_alerts():
    body = SAMPLE.split(b"?>", 1)[1]
    feed = (b'<feed xmlns="http://www.w3.org/2005/Atom"><title>alerts</title>'
            b"<entry><content type=\"text/xml\">" + body + b"</content></entry>"
            b"<entry><content type=\"text/xml\">" + body.replace(b"KSTO1055887203", b"KSTO1055887204")
            + b"</content></entry></feed>")
    alerts = parse_document(feed)
    assert [a["identifier"] for a in alerts] == ["KSTO1055887203", "KSTO1055887204"]


def test_area_covers_polygons_and_circles():
    area = parse_document(SAMPLE)[0]["info"][0]["area"][0]
    assert area_covers(area, 38.47, -119.9)         # inside the warned polygon
    assert not area_covers(area, 38.0, -121.0)      # Sacramento, outside
    circle = {"polygon": [], "circle": ["40.7128,-74.0060 5"]}
    assert area_covers(circle, 40.75, -74.0)        # about 4 km away
    assert not area_covers(circle, 40.80, -74.0)    # about 10 km away
