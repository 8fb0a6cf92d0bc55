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


def _two_keys_in_order():
    import nacl.signing
    while True:
        first, second = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
        if first.verify_key.encode().hex() < second.verify_key.encode().hex():
            return first, second


async def test_a_quarantined_author_does_not_stall_the_pull(make_node):
    from node.federation.kinds import build_registry
    from sync import create_event
    reg = build_registry()
    x, y = _two_keys_in_order()        # x's events come first in the peer's stream
    a = await make_node("a")
    b = await make_node("b", sync__pull_limit=3, sync__max_batch_events=3)
    xs = [create_event(x, reg, kind="notice", seq=i, body={"text": f"x{i}"}, ttl=3600) for i in range(1, 8)]
    ys = [create_event(y, reg, kind="notice", seq=1, body={"text": "y"}, ttl=3600)]
    await a.engine.ingest([e.to_line() for e in xs + ys], origin="test")
    await b.store.quarantine(xs[0], "0" * 64)
    await a.approve(b)
    await b.approve(a)
    await wait_until(lambda: _has(b, {ys[0].id}))
    assert not {e.id for e in xs} & await b.ids()


async def test_many_unfillable_gaps_of_one_author_do_not_hide_another_authors_gap(make_node):
    from node.federation.kinds import build_registry
    from sync import create_event
    reg = build_registry()
    import nacl.signing
    holey, other = nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate()
    node = await make_node("g")
    events = [create_event(holey, reg, kind="notice", seq=s, body={"text": "h"}, ttl=3600) for s in range(1, 600, 2)]
    events += [create_event(other, reg, kind="notice", seq=s, body={"text": "o"}, ttl=3600) for s in (1, 3)]
    await node.store.commit(events, [], "test")
    gaps = await node.store.gaps()
    assert [other.verify_key.encode().hex(), 2, 2] in gaps
    assert sum(g[0] == holey.verify_key.encode().hex() for g in gaps) <= 8


async def test_anti_entropy_finds_an_equivocation_pushes_missed(make_node):
    import nacl.signing

    from node.federation.kinds import build_registry
    from sync import create_event
    reg = build_registry()
    liar = nacl.signing.SigningKey.generate()
    a = await make_node("a")
    b = await make_node("b")
    one = create_event(liar, reg, kind="notice", seq=1, body={"text": "to a"}, ttl=3600)
    other = create_event(liar, reg, kind="notice", seq=1, body={"text": "to b"}, ttl=3600)
    await a.store.commit([one], [], "test")
    await b.store.commit([other], [], "test")
    await a.approve(b)
    await b.approve(a)
    liar_id = liar.verify_key.encode().hex()
    await wait_until(lambda: _quarantined(a, liar_id))
    await wait_until(lambda: _quarantined(b, liar_id))


async def _quarantined(node, author):
    return author in await node.store.quarantined()


async def test_a_copied_descriptor_cannot_move_an_approved_peer(make_node):
    import aiohttp
    from aiohttp import web

    from sync import BadDescriptor, add_discovered
    from tests.conftest import serving
    a = await make_node("a")
    b = await make_node("b")
    await b.approve(a)
    async with aiohttp.ClientSession() as session:
        async with session.get(a.url + "/.well-known/nnode") as resp:
            copy = await resp.json()
    async def replay_copy(request):
        return web.json_response(copy)

    rogue = web.Application()
    rogue.router.add_get("/.well-known/nnode", replay_copy)
    async with serving(rogue) as rogue_url:
        with pytest.raises(BadDescriptor, match="nonce"):
            await add_discovered(b.engine, a.id, rogue_url, source="mdns", trusted=False)
        assert (await b.peers.get(a.id)).url == a.url


async def test_a_pull_cut_mid_stream_keeps_what_arrived_and_resumes(make_node):
    from aiohttp import web

    from tests.conftest import serving
    a = await make_node("a")
    for i in range(120):
        await a.engine.publish("notice", {"text": f"c{i}"}, ttl=3600)
    b = await make_node("b", sync__anti_entropy_interval=3600)

    async def heads(request):
        return web.json_response(await a.store.heads())

    async def cut_pull(request):
        lines, _ = await a.store.pull_batch({}, [], limit=1000, max_bytes=1 << 24, now=int(time.time()))
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(b"\n".join(lines[:30]) + b"\n" + lines[30][:50])   # then the line breaks off
        request.transport.close()
        return response

    flaky = web.Application()
    flaky.router.add_get("/sync/v1/heads", heads)
    flaky.router.add_post("/sync/v1/pull", cut_pull)
    async with serving(flaky) as flaky_url:
        await b.peers.seen(a.id, name="a", url=flaky_url, source="manual", approve=True)
        assert await b.engine.sync_with(await b.peers.get(a.id)) is None      # the round failed...
        assert await b.store.count() == 30                                     # ...but kept what arrived
        assert (await b.peers.get(a.id)).last_error
    await b.peers.approve(a.id, url=a.url)
    await a.approve(b)
    assert await b.engine.sync_with(await b.peers.get(a.id)) == 90
    assert b.engine.stats.duplicates == 0
