"""Where an official alert applies: by shape, or by the node's own codes (alerts.geocodes) when it gives none."""

import logging
from pathlib import Path

import aiohttp
import pytest

from node.config import load
from node.errors import ConfigError
from node.safety.alerts import live_messages
from node.safety.geocodes import Geocodes
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample

KINGS = "urn:oid:2.49.0.1.840.0.0c5f2d3e7a1b9c8d6e4f3a2b1c0d9e8f7a6b5c4d.001.1"
BROOKLYN = {"node__latitude": "40.6782", "node__longitude": "-73.9442",
            "alerts__geocodes": ["SAME=036047", "UGC=NYZ075", "ZIP=11215", "NYC-BOROUGH=Brooklyn"]}
BUFFALO = {"node__latitude": "42.8864", "node__longitude": "-78.8784", "alerts__geocodes": ["SAME=036029",
                                                                                           "UGC=NYZ010"]}


async def public_alerts(node) -> list[str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + "/api/alerts") as resp:
            assert resp.status == 200
            return [a["cap"]["identifier"] for a in (await resp.json())["alerts"]]


async def test_a_zone_warning_without_a_polygon_reaches_the_county_it_names(make_node):
    brooklyn = await make_node("bk", **BROOKLYN)
    buffalo = await make_node("buf", **BUFFALO)
    warning = current(sample("nws_winter_storm_kings.xml"))
    [event] = (await import_alerts(brooklyn.engine, warning)).events
    await import_alerts(buffalo.engine, warning)
    assert await public_alerts(brooklyn) == [KINGS]
    assert await public_alerts(buffalo) == []
    async with aiohttp.ClientSession() as session, session.get(brooklyn.url + "/alerts.atom") as resp:
        assert KINGS.encode() in await resp.read()
    # and open pages hear of it, by the same rule
    codes = Geocodes.parse(brooklyn.config.alerts.geocodes)
    messages = await live_messages(brooklyn.store, [event], (40.6782, -73.9442), codes=codes)
    assert [kind for kind, _, _ in messages] == ["alert"]


@pytest.mark.parametrize("codes, shown", [
    (["UGC=NYZ075"], True),                  # the zone alone
    (["SAME=036047"], True),                 # the county alone
    (["SAME=136047"], True),                 # a part of the county (P=1) is in the county
    (["FIPS=36047"], True),                  # the same county as a 5-digit FIPS code
    (["ZIP=11215"], False),                  # a code the alert names nothing of: not here
    (["SAME=036061", "UGC=NYZ072"], False),  # Manhattan
])
async def test_each_kind_of_code_decides_for_a_code_only_alert(make_node, codes, shown):
    node = await make_node("n", node__latitude="40.7", node__longitude="-73.9", alerts__geocodes=codes)
    await import_alerts(node.engine, current(sample("nws_winter_storm_kings.xml")))
    assert await public_alerts(node) == ([KINGS] if shown else [])


async def test_a_node_that_cannot_place_a_code_only_alert_shows_it_and_says_why(make_node, caplog):
    """A location but no codes: the node cannot tell, and errs on the side of warning."""
    with caplog.at_level(logging.WARNING, logger="nnode"):
        node = await make_node("n", node__latitude="40.6782", node__longitude="-73.9442",
                               alerts__feeds=["http://127.0.0.1:9/feed"])
    assert any(r.getMessage().startswith("alerts.geocodes is empty") for r in caplog.records)
    await import_alerts(node.engine, current(sample("nws_winter_storm_kings.xml")))
    assert await public_alerts(node) == [KINGS]


async def test_a_shape_decides_where_the_node_has_a_location_codes_otherwise(make_node):
    storm = current(sample("thunderstorm.xml"))           # a polygon in Tuolumne County, and its SAME 006109
    outside = await make_node("out", node__latitude="38.00", node__longitude="-121.00",
                              alerts__geocodes=["SAME=006109"])
    no_place = await make_node("codes", alerts__geocodes=["SAME=006109"])
    elsewhere = await make_node("else", alerts__geocodes=["SAME=006001"])
    for node in (outside, no_place, elsewhere):
        await import_alerts(node.engine, storm)
    assert await public_alerts(outside) == []             # in the county, outside the polygon: the shape wins
    assert await public_alerts(no_place) == ["KSTO1055887203"]
    assert await public_alerts(elsewhere) == []


def test_codes_match_as_publishers_write_them():
    mine = Geocodes.parse(("SAME=036047", "ZIP=11215", "nyc borough=Brooklyn"))
    assert mine.matches({"valueName": "SAME", "value": "036000"})        # the whole state
    assert not mine.matches({"valueName": "SAME", "value": "006000"})
    assert mine.matches({"valueName": "UGC", "value": "NYC047"})         # NWS county UGC of the same county
    assert mine.matches({"valueName": "ZIP", "value": "11215-2401"})     # ZIP+4
    assert mine.matches({"valueName": "NYC-BOROUGH", "value": " brooklyn "})
    assert not mine.matches({"valueName": "NYC-BOROUGH", "value": "Queens"})
    assert not mine.matches({"valueName": "SAME", "value": "not-a-code"})


@pytest.mark.parametrize("entry, message", [
    ('"SAME=36047x"', "a SAME/FIPS county is 6 digits"),
    ('"UGC=Brooklyn"', "a UGC code is two letters"),
    ('"ZIP=1121"', "a ZIP code is 5 digits"),
    ('"Brooklyn"', "expected NAME=value"),
    ('"=x"', "expected NAME=value"),
])
def test_a_bad_geocode_in_the_config_is_named(tmp_path: Path, entry, message):
    path = tmp_path / "node.toml"
    path.write_text(f"[alerts]\ngeocodes = [\"UGC=NYZ075\", {entry}]\n")
    with pytest.raises(ConfigError, match=f"node.toml: alerts.geocodes.*{message}"):
        load(path)
