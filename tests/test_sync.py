"""Federation with real servers on loopback: convergence, catch-up, gossip forwarding, resumable pulls."""

import time

import pytest

from tests.conftest import wait_until


async def _mesh(*nodes):
    for a in nodes:
        for b in nodes:
            if a is not b:
                await a.approve(b)


async def _converged(*nodes) -> bool:
    sets = [await n.ids() for n in nodes]
    return all(s == sets[0] for s in sets)


async def test_three_nodes_converge(make_node):
    a, b, c = [await make_node(n) for n in "abc"]
    await _mesh(a, b, c)
    published = []
    for node in (a, b, c):
        for i in range(5):
            published.append(await node.engine.publish("notice", {"text": f"{node.name} {i}"}, ttl=3600))
    expected = {e.id for e in published}
    for node in (a, b, c):
        await wait_until(lambda n=node: _has(n, expected))
    for node in (a, b, c):
        event = await node.store.get(published[0].id)
        assert event.body_value() == {"text": "a 0"}


async def _has(node, ids) -> bool:
    return ids <= await node.ids()


async def test_stopped_node_catches_up_when_it_returns(make_node):
    a, b, c = [await make_node(n) for n in "abc"]
    await _mesh(a, b, c)
    first = await a.engine.publish("notice", {"text": "before"}, ttl=3600)
    await wait_until(lambda: _has(c, {first.id}))
    await c.stop()
    during = [await a.engine.publish("notice", {"text": f"a while c is down {i}"}, ttl=3600) for i in range(20)]
    during += [await b.engine.publish("notice", {"text": f"b while c is down {i}"}, ttl=3600) for i in range(20)]
    await wait_until(lambda: _has(b, {e.id for e in during}))
    assert not {e.id for e in during} & await _ids_offline(c)
    await c.start()
    await wait_until(lambda: _has(c, {e.id for e in during} | {first.id}))
    assert await _converged(a, b, c)


async def _ids_offline(node):
    import sqlite3
    with sqlite3.connect(node.config.db_path) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM events")}


async def test_gossip_forwards_through_a_middle_node(make_node):
    # a and c do not know each other; b forwards what it receives (push gossip, dedupe by id).
    a, b, c = [await make_node(n, sync__anti_entropy_interval=3600) for n in "abc"]
    await a.approve(b)
    await b.approve(a)
    await b.approve(c)
    await c.approve(b)
    event = await a.engine.publish("notice", {"text": "relayed"}, ttl=3600)
    await wait_until(lambda: _has(c, {event.id}))
    back = await c.engine.publish("notice", {"text": "and back"}, ttl=3600)
    await wait_until(lambda: _has(a, {back.id}))
    # Forwarding stops at nodes that already hold the event: each node stored each event once.
    assert b.engine.stats.duplicates <= 2


async def test_pull_is_batched_and_resumes(make_node):
    a = await make_node("a")
    for i in range(120):
        await a.engine.publish("notice", {"text": f"n{i}"}, ttl=3600)
    b = await make_node("b", sync__pull_limit=25, sync__max_batch_events=25)
    # A first pull broke off after 40 events: b keeps them and the next pull starts after them.
    lines, more = await a.store.pull_batch({}, [], limit=40, max_bytes=1 << 20, now=int(time.time()))
    assert more and len(lines) == 40
    await b.engine.ingest(lines, origin=a.id)
    await a.approve(b)
    await b.approve(a)
    await wait_until(lambda: _count_is(b, 120))
    assert await _converged(a, b)
    assert b.engine.stats.duplicates == 0          # nothing was sent twice
    assert b.engine.stats.pull_requests >= 4       # 80 events in batches of 25


async def _count_is(node, n):
    return await node.store.count() == n


async def test_gaps_are_repaired_by_anti_entropy(make_node):
    a = await make_node("a", sync__anti_entropy_interval=3600)
    b = await make_node("b", sync__anti_entropy_interval=1)
    events = [await a.engine.publish("notice", {"text": f"g{i}"}, ttl=3600) for i in range(6)]
    # b received seq 1, 2 and 5 only (say pushes of 3, 4 and 6 were lost).
    await b.engine.ingest([events[i].to_line() for i in (0, 1, 4)], origin=a.id)
    assert await b.store.gaps() == [[a.id, 3, 4]]
    await b.approve(a)
    await a.approve(b)
    await wait_until(lambda: _count_is(b, 6))
    assert await b.store.gaps() == []


@pytest.mark.parametrize("drop", ["tombstone first", "target first"])
async def test_deleted_event_stays_deleted(make_node, drop):
    a = await make_node("a")
    b = await make_node("b")
    event = await a.engine.publish("notice", {"text": "mistake"}, ttl=3600)
    tomb = await a.engine.delete(event.id)
    lines = [event.to_line(), (await a.store.get(tomb.id)).to_line()]
    if drop == "tombstone first":
        lines.reverse()
    for line in lines:
        await b.engine.ingest([line], origin=a.id)
    assert (await b.store.get(event.id)).body is None
    # The full event arriving again (a replay with its body) stays deleted.
    await b.engine.ingest([event.to_line()], origin=a.id)
    assert (await b.store.get(event.id)).body is None
    assert (await a.store.get(event.id)).body is None
