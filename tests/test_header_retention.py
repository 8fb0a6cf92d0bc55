"""Header retention between real nodes on loopback: a node that pruned old headers does not get them back from a
peer that keeps them, nothing is sent round again, and a new node still gets everything some peer keeps."""

import aiohttp

from tests.conftest import wait_until
from tests.test_ops import _metrics


async def _count_is(node, n):
    return await node.store.count() == n


async def test_pruned_events_do_not_come_back_from_a_peer_that_keeps_them(make_node):
    # a prunes headers as soon as events expire; b keeps them (the default 30 days).
    a = await make_node("a", events__keep_headers_days=0, events__purge_interval=1, sync__anti_entropy_interval=1)
    b = await make_node("b", sync__anti_entropy_interval=1)
    await a.approve(b)
    await b.approve(a)
    old = [await a.engine.publish("notice", {"text": f"short {i}"}, ttl=1) for i in range(10)]
    latest = await a.engine.publish("notice", {"text": "still in force"}, ttl=3600)
    await wait_until(lambda: _count_is(b, 11))
    # Once expired, a's scheduled job prunes the ten: its latest event stays, and so do the head and no gap.
    await wait_until(lambda: _count_is(a, 1), timeout=30)
    assert await a.store.heads() == {a.id: latest.seq}
    assert await a.store.gaps() == []
    assert await a.store.horizon() == (max(e.expires for e in old), 10)
    stored, pulls = a.engine.stats.stored, a.engine.stats.pull_requests
    b_stored = b.engine.stats.stored
    # Rounds of anti-entropy with b, which still holds all eleven: nothing comes back, either way.
    await wait_until(lambda: a.engine.stats.pull_requests >= pulls + 3, timeout=30)
    assert await a.store.count() == 1 and a.engine.stats.stored == stored
    assert await b.store.count() == 11 and b.engine.stats.stored == b_stored
    # b pushing them again (a replay) stores nothing either: their slots are settled.
    lines = [(await b.store.get(e.id)).without_body().to_line() for e in old]   # expired: as a peer sends them
    result = await a.engine.ingest(lines, origin=b.id)
    assert result.stored == [] and not result.rejected and result.duplicates == 10
    assert await a.store.count() == 1 and await a.store.gaps() == []
    assert await a.store.counts_by_kind() == {"notice": 1}
    async with aiohttp.ClientSession() as session:
        m = await _metrics(session, a)
    assert m[("nnode_events_stored", (("kind", "notice"),))] == 1
    assert m[("nnode_events_pruned_total", ())] == 10
    assert m[("nnode_events_horizon_timestamp_seconds", ())] == max(e.expires for e in old)

    # A new node that syncs with a first has a gap where a pruned; b, which keeps them, fills it.
    c = await make_node("c", sync__anti_entropy_interval=1)
    await c.approve(a)
    await a.approve(c)
    await wait_until(lambda: _count_is(c, 1))
    assert await c.store.gaps() == [[a.id, 1, 10]]
    await c.approve(b)
    await b.approve(c)
    await wait_until(lambda: _count_is(c, 11))
    assert await c.store.gaps() == []
    assert await c.store.heads() == await a.store.heads() == await b.store.heads()
    assert [(await c.store.get(e.id)).body for e in old] == [None] * 10   # expired: headers only
