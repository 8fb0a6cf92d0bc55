"""Areas of interest (DESIGN section 9): a node keeps and forwards only the events whose area touches its own, asks its
peers for only those, and they push it only those; events with no area reach everyone, as do nodes without one."""

import json
import time

import aiohttp
import nacl.signing
import pytest

from node.config import ConfigError, load
from node.federation.areas import ROUNDING_M, alert_areas, interest, request_areas, sos_areas
from node.federation.kinds import build_registry
from sync import Circle, create_event, distance_m
from tests.conftest import signed, wait_until
from tests.people import browser, call, claim

NEW_YORK = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}
NEXT_DOOR = {"node__latitude": "40.7140", "node__longitude": "-74.0075"}     # about 200 m away
CHICAGO = {"node__latitude": "41.8781", "node__longitude": "-87.6298"}
AREA = {"sync__interest_radius_m": 3000}


def alert_form(event: str, **more) -> dict:
    return {"event": event, "headline": f"{event} near the park", "severity": "Severe", "urgency": "Immediate",
            "certainty": "Observed", "category": "Safety", "expires_hours": 2, "radius_km": 1, **more}


def test_the_areas_of_each_kind():
    cap = {"cap": {"info": [{"area": [{"areaDesc": "Park", "polygon": [], "circle": ["40.7128,-74.0060 1.5"]}]}]}}
    assert alert_areas(cap) == (Circle(40_712_800, -74_006_000, 1500),)
    square = "40.70,-74.01 40.70,-74.00 40.71,-74.00 40.71,-74.01 40.70,-74.01"
    (around,) = alert_areas({"cap": {"info": [{"area": [{"areaDesc": "Block", "polygon": [square], "circle": []}]}]}})
    for corner in square.split():
        lat, lon = (int(float(x) * 1_000_000) for x in corner.split(","))
        assert distance_m(around, Circle(lat, lon, 0)) <= around.radius_m      # every corner inside
    assert around.radius_m < 720                                              # half the diagonal, 697 m
    named_only = {"cap": {"info": [{"area": [{"areaDesc": "The whole county", "polygon": [], "circle": []}]}]}}
    assert alert_areas(named_only) is None                                     # no shape: everywhere
    assert sos_areas({"building": "Oak", "raised": 1, "location": {"lat_e6": 40_710_000, "lon_e6": -74_010_000}}) \
        == (Circle(40_710_000, -74_010_000, ROUNDING_M),)
    assert sos_areas({"building": "Oak", "raised": 1}) is None
    assert request_areas({"request": {"area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 300}}}}) \
        == (Circle(40_712_800, -74_006_000, 300),)
    registry = build_registry()
    assert registry.areas("report", {"what": "anything"}) is None              # no coordinates: everywhere
    assert registry.areas("alert", cap) == alert_areas(cap)
    assert interest({"lat_e6": 40_710_000, "lon_e6": -74_010_000}, 0) is None
    assert interest({"lat_e6": 40_710_000, "lon_e6": -74_010_000}, 2000).radius_m == 2000 + ROUNDING_M


def test_an_area_of_interest_needs_the_building_location(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("[sync]\ninterest_radius_m = 2000\n")
    with pytest.raises(ConfigError, match="sync.interest_radius_m: .*node.latitude"):
        load(config)
    config.write_text('[node]\nlatitude = "40.7128"\nlongitude = "-74.0060"\n[sync]\ninterest_radius_m = -1\n')
    with pytest.raises(ConfigError, match="sync.interest_radius_m: expected a number >= 0"):
        load(config)
    config.write_text('[node]\nlatitude = "40.7128"\nlongitude = "-74.0060"\n[sync]\ninterest_radius_m = 2000\n')
    assert load(config).sync.interest_radius_m == 2000


async def test_a_city_node_keeps_forwards_and_pulls_only_what_touches_its_area(make_node):
    a = await make_node("a", **NEW_YORK, **AREA)
    b = await make_node("b", **NEXT_DOOR, **AREA)
    c = await make_node("c", **CHICAGO, **AREA)
    everything = await make_node("d", **CHICAGO)                # no area of interest: keeps everything
    nodes = (a, b, c, everything)
    for x in nodes:
        for y in nodes:
            if x is not y:
                await x.approve(y)
    async with browser() as manager_a, browser() as manager_c:
        await claim(a, manager_a)
        await claim(c, manager_c)
        status, near_a = await call(manager_a, "POST", a.url + "/api/alerts", json=alert_form("Gas leak"))
        assert status == 200, near_a
        _, near_c = await call(manager_c, "POST", c.url + "/api/alerts", json=alert_form("Flooding"))
        notice = await a.engine.publish("notice", {"text": "Block party on Saturday"}, ttl=3600)

        async def held(node, event_id) -> bool:
            return await node.store.get(event_id) is not None

        for node, wanted in ((b, (near_a["event"], notice.id)), (c, (near_c["event"], notice.id)),
                             (everything, (near_a["event"], near_c["event"], notice.id))):
            for event_id in wanted:
                await wait_until(lambda node=node, event_id=event_id: held(node, event_id))
        # Every node has pulled from every other at least once: each knows the others' areas.
        await wait_until(lambda: all(x.engine.interests.get(y.id, 0) != 0 for x in nodes for y in nodes
                                     if x is not y))
        assert a.engine.interests[c.id] == interest({"lat_e6": 41_880_000, "lon_e6": -87_630_000}, 3000)
        assert a.engine.interests[everything.id] is None
        # Chicago never stored New York's alert, and New York never Chicago's: either the first push came before
        # the sender knew the other's area and was dropped there, or the sender already knew and skipped it (which
        # of the two depends on when the start-up pulls ran; a push is dropped at C further down in any case).
        assert not await held(c, near_a["event"]) and not await held(a, near_c["event"])
        assert not await held(b, near_c["event"])
        assert c.engine.stats.out_of_area + a.engine.stats.out_of_area >= 1
        # A second New York alert is not even pushed to Chicago now: A skips it, C sees nothing of it.
        dropped_at_c, skipped_at_a = c.engine.stats.out_of_area, a.engine.stats.out_of_area
        _, second = await call(manager_a, "POST", a.url + "/api/alerts", json=alert_form("Road closure"))
        await wait_until(lambda: held(b, second["event"]))
        await wait_until(lambda: held(everything, second["event"]))
        assert a.engine.stats.out_of_area > skipped_at_a
        # Anti-entropy does not bring it either: a pull by C from A answers nothing out of C's area.
        peer_a = next(p for p in await c.peers.list() if p.key == a.id)
        assert await c.engine.sync_with(peer_a) == 0
        assert not await held(c, second["event"]) and c.engine.stats.out_of_area == dropped_at_c
        # And a peer that pushes it anyway (one that keeps everything) has it dropped, unverified and unstored.
        line = (await everything.store.get(second["event"])).to_line()
        async with aiohttp.ClientSession() as http:
            status, answer = await signed(http, everything.key, "POST", c.url + "/sync/v1/push", line + b"\n")
        assert status == 200 and answer["results"] == {"accepted": 0, "duplicates": 0, "out_of_area": 1,
                                                         "rejected": []}, answer
        assert not await held(c, second["event"])
        # A lag from before (heads against heads) means nothing with an area: it is forgotten, not kept stale.
        await c.peers.record_sync(a.id, error=None, lag=7)
        assert await c.engine.sync_with(peer_a) == 0
        assert next(p for p in await c.peers.list() if p.key == a.id).lag is None


async def test_an_equivocation_is_caught_even_when_one_version_is_for_elsewhere(make_node):
    chicago = await make_node("c", **CHICAGO, **AREA)
    relay = await make_node("r", **CHICAGO)
    await chicago.approve(relay)
    await relay.approve(chicago)
    author = nacl.signing.SigningKey.generate()
    here = {"lat_e6": 41_880_000, "lon_e6": -87_630_000}
    there = {"lat_e6": 40_710_000, "lon_e6": -74_010_000}
    versions = [create_event(author, chicago.engine.registry, kind="sos", seq=1, ttl=3600,
                             body={"building": "Oak Court", "raised": int(time.time()), "location": where})
                for where in (here, there)]
    async with aiohttp.ClientSession() as http:
        status, answer = await signed(http, relay.key, "POST", chicago.url + "/sync/v1/push",
                                      versions[0].to_line() + b"\n")
        assert status == 200 and answer["results"]["accepted"] == 1, answer
        # The New York version of the same seq is out of Chicago's area, but it is the author signing twice.
        status, answer = await signed(http, relay.key, "POST", chicago.url + "/sync/v1/push",
                                      versions[1].to_line() + b"\n")
    assert status == 409 and answer["reason"] == "equivocation", answer
    assert author.verify_key.encode().hex() in await chicago.store.quarantined()


async def test_a_pull_for_an_area_reads_a_bounded_number_of_rows(make_node, monkeypatch):
    import sync._store
    node_ = await make_node("a", **NEW_YORK)
    for i in range(300):
        await node_.engine.publish("notice", {"text": f"notice {i}"}, ttl=3600)
    wanted = {100, 200, 300}

    async def pull(**kw):
        lines, more = [], False
        async for chunk, has_more in node_.store.pull_stream({}, [], max_bytes=1 << 20, now=int(time.time()),
                                                             keep=lambda e: e.seq in wanted, **kw):
            lines += chunk
            more = has_more   # what the last chunk said
        return [json.loads(line)["seq"] for line in lines], more

    assert await pull(limit=2, chunk=50) == ([100, 200], True)     # the limit counts what is sent
    assert await pull(limit=10, chunk=50) == ([100, 200, 300], False)
    monkeypatch.setattr(sync._store, "MAX_SCAN", 150)
    assert await pull(limit=10, chunk=50) == ([100], False)         # 150 rows read, then it stops


async def test_a_pull_with_a_bad_interest_is_refused_and_changes_nothing(make_node):
    a = await make_node("a", **NEW_YORK)
    b = await make_node("b", **NEXT_DOOR)
    await a.approve(b)
    before = dict(a.engine.interests)
    async with aiohttp.ClientSession() as http:
        for bad, words in (({"lat_e6": 95_000_000, "lon_e6": 0, "radius_m": 10}, "lat_e6"),
                           ({"lat_e6": 1, "lon_e6": 2}, "lat_e6, lon_e6, radius_m"),
                           ("here", "lat_e6, lon_e6, radius_m")):
            body = json.dumps({"heads": {}, "interest": bad}).encode()
            status, answer = await signed(http, b.key, "POST", a.url + "/sync/v1/pull", body,
                                          content_type="application/json")
            assert status == 400 and "interest" in answer["error"] and words in answer["error"], answer
    assert a.engine.interests == before
