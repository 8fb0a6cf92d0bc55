"""Operations: /healthz, Prometheus /metrics, the descriptor, and JSON errors for unknown routes."""

import aiohttp
import nacl.signing
from prometheus_client.parser import text_string_to_metric_families

from sync import check_descriptor
from tests.conftest import signed, wait_until
from tests.test_rejections import event_line


async def _metrics(session, node):
    async with session.get(node.url + "/metrics") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain")
        samples = {}
        for family in text_string_to_metric_families(await resp.text()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples


async def test_healthz_descriptor_and_errors(make_node):
    node = await make_node("a", node__latitude="40.712776", node__longitude="-74.005974")
    async with aiohttp.ClientSession() as session:
        async with session.get(node.url + "/healthz") as resp:
            assert resp.status == 200 and await resp.json() == {"ok": True, "node": node.id, "db": "ok"}
        async with session.get(node.url + "/.well-known/nnode") as resp:
            descriptor = check_descriptor(await resp.json(), expect_key=node.id)
            assert descriptor["name"] == "a" and descriptor["protocols"] == ["nnode-sync/1"]
            assert descriptor["location"] == {"lat_e6": 40_710_000, "lon_e6": -74_010_000}  # coarse, ~1 km
        async with session.get(node.url + "/nope") as resp:
            body = await resp.json()
            assert resp.status == 404 and body["ok"] is False and body["status"] == 404
        async with session.put(node.url + "/healthz") as resp:
            assert resp.status == 405 and (await resp.json())["status"] == 405


async def test_metrics_report_events_rejections_peers_and_lag(make_node):
    a = await make_node("a")
    b = await make_node("b")
    for i in range(3):
        await a.engine.publish("notice", {"text": f"m{i}"}, ttl=3600)
    await a.approve(b)
    await b.approve(a)
    await wait_until(lambda: _stored(b, 3))
    stranger = nacl.signing.SigningKey.generate()
    async with aiohttp.ClientSession() as session:
        code, _ = await signed(session, a.key, "POST", b.url + "/sync/v1/push",
                               event_line(stranger, kind="bogus") + b"\n")
        assert code == 422
        refused_before = b.engine.stats.refused["not_approved"]   # a may have asked before b approved it
        code, _ = await signed(session, stranger, "GET", b.url + "/sync/v1/heads")
        assert code == 403
        await wait_until(lambda: _synced(b, a))
        m = await _metrics(session, b)
    assert m[("nnode_events_stored", (("kind", "notice"),))] == 3
    assert m[("nnode_events_rejected_total", (("reason", "unknown_kind"),))] == 1
    assert m[("nnode_sync_requests_refused_total", (("reason", "not_approved"),))] == refused_before + 1
    assert m[("nnode_peers", (("state", "approved"),))] == 1
    labels = (("name", "a"), ("peer", a.id[:16]))
    assert m[("nnode_peer_sync_lag_events", labels)] == 0
    assert m[("nnode_peer_last_sync_timestamp_seconds", labels)] > 1.7e9
    assert ("nnode_peer_sync_age_seconds", labels) in m


async def _stored(node, n):
    return await node.store.count() == n


async def _synced(node, other):
    peer = await node.peers.get(other.id)
    return peer.last_sync is not None and peer.lag == 0
