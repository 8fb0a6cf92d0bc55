"""Live delivery: alerts from a peer reach open resident pages, a dropped stream resumes without loss, audiences."""

import asyncio
import socket

import pytest

from node.keys import HUB
from node.safety.live import REPLAY_LIMIT
from tests.conftest import wait_until
from tests.people import browser, call, claim, invite, join, open_stream

HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}
NEXT_DOOR = {"node__latitude": "40.7140", "node__longitude": "-74.0075"}   # about 200 m away


def alert_form(event: str, **more) -> dict:
    return {"event": event, "headline": f"{event} near the park", "severity": "Severe", "urgency": "Immediate",
            "certainty": "Observed", "category": "Safety", "expires_hours": 2, "radius_km": 1, **more}


async def test_alert_posted_on_a_peer_appears_live_and_resumes_after_a_drop(make_node):
    a = await make_node("a", **HERE)
    b = await make_node("b", **NEXT_DOOR)
    await a.approve(b)
    await b.approve(a)
    async with browser() as manager_a, browser() as manager_b, browser() as resident:
        await claim(a, manager_a)
        await claim(b, manager_b)
        await join(b, resident, (await invite(b, manager_b, unit="4B"))["code"])
        stream = await open_stream(resident, b.url)
        status, posted = await call(manager_a, "POST", a.url + "/api/alerts", json=alert_form("Gas leak"))
        assert status == 200, posted
        feed_id, kind, data = await stream.next()
        assert kind == "alert" and data["event"] == posted["event"]
        assert data["cap"]["info"][0]["headline"] == "Gas leak near the park"
        # The page drops off; two more alerts are posted meanwhile; it comes back with its last id.
        stream.response.close()
        ids = []
        for name in ("Water main break", "Road closure"):
            _, posted = await call(manager_a, "POST", a.url + "/api/alerts", json=alert_form(name))
            ids.append(posted["event"])
        await wait_until(lambda: _stored(b, ids))
        resumed = await open_stream(resident, b.url, last_id=feed_id)
        got = [await resumed.next() for _ in ids]
        assert [data["event"] for _, _, data in got] == ids            # none lost, in order
        assert [message_id for message_id, _, _ in got] == sorted(message_id for message_id, _, _ in got)
        # ...and live messages follow the replay, with no duplicate.
        _, posted = await call(manager_a, "POST", a.url + "/api/alerts", json=alert_form("All clear drill"))
        _, kind, data = await resumed.next()
        assert kind == "alert" and data["event"] == posted["event"]
        resumed.response.close()
        # The resident's page also lists them without the stream.
        _, body = await call(resident, "GET", b.url + "/api/alerts")
        assert {x["event"] for x in body["alerts"]} >= set(ids)


async def _stored(node, ids) -> bool:
    return all([await node.store.get(i) is not None for i in ids])


async def test_alerts_for_other_places_do_not_reach_the_page(make_node):
    far = {"node__latitude": "41.8781", "node__longitude": "-87.6298"}      # Chicago
    a = await make_node("a", **HERE)
    b = await make_node("b", **far)
    await a.approve(b)
    await b.approve(a)
    async with browser() as manager_a, browser() as manager_b, browser() as resident:
        await claim(a, manager_a)
        await claim(b, manager_b)
        await join(b, resident, (await invite(b, manager_b))["code"])
        stream = await open_stream(resident, b.url)
        _, far_alert = await call(manager_a, "POST", a.url + "/api/alerts", json=alert_form("Flooding"))
        await wait_until(lambda: _stored(b, [far_alert["event"]]))
        _, near = await call(manager_b, "POST", b.url + "/api/alerts", json=alert_form("Power cut"))
        _, kind, data = await stream.next()
        assert data["event"] == near["event"]                 # the Flooding alert for New York never came
        stream.response.close()


async def test_each_message_reaches_only_its_audience(make_node):
    node = await make_node("n", **HERE)
    async with browser() as manager, browser() as neighbour, browser() as responder, browser() as caller:
        await claim(node, manager)
        await join(node, neighbour, (await invite(node, manager, unit="1A"))["code"])
        await join(node, responder, (await invite(node, manager, unit="2B", name="Sam"))["code"])
        await join(node, caller, (await invite(node, manager, unit="3C", name="Ada"))["code"])
        _, body = await call(manager, "GET", node.url + "/api/residents")
        sam = next(r["id"] for r in body["residents"] if r["name"] == "Sam")
        assert (await call(manager, "POST", node.url + f"/api/residents/{sam}/on-call", json={"on_call": True}))[0] \
            == 200
        streams = {name: await open_stream(session, node.url) for name, session in
                   (("manager", manager), ("neighbour", neighbour), ("responder", responder), ("caller", caller))}
        status, raised = await call(caller, "POST", node.url + "/api/sos", json={"note": "fell on the stairs"})
        assert status == 201
        for name in ("manager", "responder"):
            _, kind, data = await streams[name].next()
            assert kind == "sos" and data["sos"]["unit"] == "3C" and data["sos"]["note"] == "fell on the stairs"
        status, acked = await call(responder, "POST", node.url + f"/api/sos/{raised['sos']['id']}/ack")
        assert status == 200 and acked["first"]
        _, kind, data = await streams["caller"].next()
        assert kind == "sos-ack" and data["sos"]["acked_by"] == "Sam"
        # A broadcast reaches everyone; the neighbour's first message is that, not the SOS or its ack.
        await node.app[HUB].publish("report-moderated", {"id": 0, "status": "building"})
        _, kind, _ = await streams["neighbour"].next()
        assert kind == "report-moderated"
        for stream in streams.values():
            stream.response.close()


async def test_a_page_too_far_behind_is_told_to_reload(make_node, monkeypatch):
    import node.safety.live
    monkeypatch.setattr(node.safety.live, "REPLAY_LIMIT", 3)
    node_ = await make_node("n")
    async with browser() as manager:
        await claim(node_, manager)
        hub = node_.app[HUB]
        for i in range(5):
            await hub.publish("report-moderated", {"id": i, "status": "building"})
        stream = await open_stream(manager, node_.url, last_id=0)
        _, kind, _ = await stream.next()
        assert kind == "reset"
        stream.response.close()
        status, body = await call(manager, "GET", node_.url + "/api/stream?after=x1")
        assert status == 400 and "feed id" in body["error"]
    assert REPLAY_LIMIT == 5000


async def test_shutdown_ends_open_streams(make_node):
    node = await make_node("n")
    async with browser() as manager:
        await claim(node, manager)
        stream = await open_stream(manager, node.url)
        await asyncio.wait_for(node.stop(), 10)
        try:
            await stream.next(timeout=5)
        except ConnectionError:
            pass
        stream.response.close()


async def test_idle_streams_get_keep_alives_and_expired_sessions_end(make_node, monkeypatch):
    import sqlite3

    import node.safety.live
    monkeypatch.setattr(node.safety.live, "HEARTBEAT", 0.2)
    node_ = await make_node("n")
    async with browser() as manager:
        await claim(node_, manager)
        stream = await open_stream(manager, node_.url)
        seen = []
        async with asyncio.timeout(5):
            while b"keep-alive" not in b"".join(seen):
                seen.append(await stream.response.content.readline())
        with sqlite3.connect(node_.config.db_path) as conn:      # the session expires under the open page
            conn.execute("UPDATE sessions SET expires = 0")
        async with asyncio.timeout(5):
            while await stream.response.content.readline():
                pass                                             # ...and the stream ends
        stream.response.close()


async def test_the_map_shows_the_building_its_peers_and_alert_areas(make_node):
    node_ = await make_node("n", **HERE)
    await node_.peers.seen("ab" * 32, name="Oak Court", url="http://127.0.0.1:9", source="mdns",
                           location={"lat_e6": 40720000, "lon_e6": -74010000})
    async with browser() as manager:
        await claim(node_, manager)
        _, posted = await call(manager, "POST", node_.url + "/api/alerts", json=alert_form("Gas leak", radius_km=2))
        status, body = await call(manager, "GET", node_.url + "/api/map")
    assert status == 200
    assert body["node"] == {"name": node_.config.node.name, "lat": 40.7128, "lon": -74.006}
    assert body["peers"] == [{"name": "Oak Court", "key": "ab" * 32, "lat": 40.72, "lon": -74.01,
                              "state": "pending"}]
    (area,) = body["areas"]
    assert area["event"] == posted["event"] and area["severity"] == "Severe"
    # centred where the descriptor puts the building (0.01 degree), grown so that it still covers it
    assert area["circles"] == [{"lat": 40.71, "lon": -74.01, "radius_km": 2.8}] and area["polygons"] == []


async def test_a_burst_reaches_each_stream_in_few_writes_and_a_lone_message_at_once(make_node, monkeypatch):
    import node.safety.live
    from node.people.accounts import Session
    monkeypatch.setattr(node.safety.live, "COALESCE", 2.0)
    node_ = await make_node("n")
    hub = node_.app[HUB]
    everyone = node.safety.live.Subscriber(Session(id=1, role="resident", subject=7), "t1")
    other = node.safety.live.Subscriber(Session(id=2, role="resident", subject=8), "t2")
    hub.subscribe(everyone)
    hub.subscribe(other)
    first = await hub.publish("report-moderated", {"id": 0})
    batch = await asyncio.wait_for(everyone.queue.get(), 1.0)         # idle streams: no wait for the period
    assert [message_id for message_id, _ in batch.messages] == [first]
    ids = [await hub.publish("report-moderated", {"id": i}) for i in range(1, 20)]
    ids.append(await hub.publish("sos-ack", {"sos": {"id": 1}}, node.safety.live.resident_audience(7)))
    assert everyone.queue.empty()                                      # the rest waits for the period...
    batch = await asyncio.wait_for(everyone.queue.get(), 5.0)
    assert [message_id for message_id, _ in batch.messages] == ids     # ...then goes in one batch, in order
    assert batch.payload.count(b"\n\n") == 20 and batch.payload.startswith(f"id: {ids[0]}\n".encode())
    (_, theirs) = [other.queue.get_nowait() for _ in range(2)]          # another resident: not the one's ack
    assert [message_id for message_id, _ in theirs.messages] == ids[:-1]
    assert everyone.queue.empty() and other.queue.empty()


def _cookie(session) -> str:
    return next(c.value for c in session.cookie_jar if c.key == "nnode_session")


async def _raw_stream(node_, cookie: str, version: str = "1.1", rcvbuf: int | None = None):
    reader, writer = await asyncio.open_connection("127.0.0.1", node_.port, limit=1 << 20)
    if rcvbuf is not None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    writer.write(f"GET /api/stream HTTP/{version}\r\nHost: 127.0.0.1:{node_.port}\r\n"
                 f"Cookie: nnode_session={cookie}\r\n\r\n"
                 .encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    return reader, writer, head


async def _live(hub, count: int) -> None:
    await wait_until(lambda: _async(sum(s.transport is not None for s in hub.subscribers) >= count))


async def _async(value):
    return value


async def test_live_streams_are_framed_for_http_1_1_and_raw_for_http_1_0(make_node):
    node_ = await make_node("n")
    async with browser() as manager:
        await claim(node_, manager)
        hub = node_.app[HUB]
        r11, w11, head11 = await _raw_stream(node_, _cookie(manager))
        r10, w10, head10 = await _raw_stream(node_, _cookie(manager), "1.0")
        assert b"transfer-encoding: chunked" in head11.lower() and b"chunked" not in head10.lower()
        await _live(hub, 2)
        ids = [await hub.publish("report-moderated", {"id": i, "status": "building"}) for i in range(3)]
        hub.flush()   # hand them over now rather than at the coalescing timer
        # HTTP/1.1: each write is one well-formed chunk; taken apart, they are the SSE messages, in order.
        body, seen = b"", []
        async with asyncio.timeout(10):
            while len(seen) < 3:
                size = int((await r11.readline()).strip(), 16)
                body += (await r11.readexactly(size + 2))[:-2]
                seen = [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")]
        assert seen == ids and body.startswith(b"retry: 2000\n\n")
        raw = b""
        async with asyncio.timeout(10):
            while raw.count(b"\nevent: report-moderated\n") < 3:
                raw += await r10.read(65536)
        assert raw.startswith(b"retry: 2000\n\n") and b"\r\n" not in raw
        assert [int(line[4:]) for line in raw.split(b"\n") if line.startswith(b"id: ")] == ids
        for writer in (w11, w10):
            writer.close()


async def test_a_page_that_stops_reading_is_cut_off_and_resumes(make_node, monkeypatch):
    import node.safety.live
    monkeypatch.setattr(node.safety.live, "WRITE_BUFFER_LIMIT", 64 * 1024)
    monkeypatch.setattr(node.safety.live, "COALESCE", 0.0)
    node_ = await make_node("n")
    async with browser() as manager:
        await claim(node_, manager)
        hub = node_.app[HUB]
        reader, writer, _ = await _raw_stream(node_, _cookie(manager), rcvbuf=4096)
        await _live(hub, 1)
        (slow,) = hub.subscribers
        slow.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        big = "x" * 16_000
        ids = []
        async with asyncio.timeout(30):
            while hub.subscribers and len(ids) < 2000:
                ids.append(await hub.publish("report-moderated", {"id": len(ids), "note": big}))
                hub.flush()
        assert not hub.subscribers and slow.overflowed and slow.ended.done()   # cut off, not buffered without end
        writer.close()
        # The page comes back with the last id it got and misses nothing.
        stream = await open_stream(manager, node_.url, last_id=ids[0])
        got = [(await stream.next())[0] for _ in ids[1:]]
        assert got == ids[1:]
        stream.response.close()


async def test_the_write_period_grows_with_the_number_of_streams(make_node):
    import node.safety.live
    from node.people.accounts import Session
    node_ = await make_node("n")
    hub = node_.app[HUB]
    assert hub.period() == node.safety.live.COALESCE == 0.02
    for count, period in ((10, 0.02), (100, 0.02), (500, 0.1), (1000, 0.2), (2000, 0.4), (10_000, 0.5)):
        while len(hub.subscribers) < count:
            hub.subscribers.add(node.safety.live.Subscriber(Session(id=len(hub.subscribers), role="resident", subject=1), ""))
        assert hub.period() == pytest.approx(period)
    hub.subscribers.clear()



async def test_a_message_reaches_the_streams_while_its_row_waits_for_the_disk(make_node):
    """The fsync of the feed's row is not on the way to the pages; a page that reconnects meanwhile still gets the
    message, from memory, and once the row is in, from the table."""
    from node.people.accounts import Session
    from node.safety.live import Hub, Subscriber
    node_ = await make_node("n")
    hub = node_.app[HUB]
    before = await hub.publish("report-moderated", {"id": 0})
    page = Subscriber(Session(id=1, role="resident", subject=7), "t1")
    hub.subscribe(page)
    release = asyncio.Event()
    holding = asyncio.Event()

    async def hold_the_writer():
        async with hub.db.write():   # a slow disk: the writer is busy until released
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_writer())
    await holding.wait()
    publishing = asyncio.create_task(hub.publish("report-moderated", {"id": 1}))
    batch = await asyncio.wait_for(page.queue.get(), 10)            # delivered while the row is not written
    assert [m for m, _ in batch.messages] == [before + 1] and not publishing.done()
    resident = Session(id=2, role="resident", subject=8)
    replay = await hub.missed(resident, before)                     # a page reconnecting now gets it too
    assert [m for m, _ in replay] == [before + 1] and b'"id":1' in replay[0][1]
    assert await hub.last_id() == before + 1
    release.set()
    assert await asyncio.wait_for(publishing, 10) == before + 1
    await holder
    assert [m for m, _ in await hub.missed(resident, before)] == [before + 1]   # now from the table
    rows = await hub.db.reader.execute_fetchall("SELECT id FROM feed WHERE id > ?", (before,))
    assert [r[0] for r in rows] == [before + 1]
    # A hub started on the same database (a restart) goes on above every id given out, with a gap of one for a
    # message a crash could have caught unwritten.
    again = Hub(hub.db, hub.lookup)
    assert await again.last_id() == before + 2
    assert await again.publish("report-moderated", {"id": 2}) == before + 3


async def test_a_message_whose_row_cannot_be_written_is_refused_to_its_caller_and_ids_stay_unique(make_node):
    from node.safety.live import Hub
    node_ = await make_node("n")
    hub = node_.app[HUB]
    first = await hub.publish("report-moderated", {"id": 0})
    async with hub.db.write() as conn:   # a row already at the next id: its INSERT fails (as a full disk would)
        await conn.execute("INSERT INTO feed (id, created, type, audience, data) VALUES (?, 0, 'x', 'all', '{}')",
                           (first + 1,))
    import sqlite3
    with pytest.raises(sqlite3.IntegrityError):
        await hub.publish("report-moderated", {"id": 1})
    assert await hub.publish("report-moderated", {"id": 2}) == first + 2   # the failed id is not given twice
    assert await Hub(hub.db, hub.lookup).last_id() == first + 3


async def test_a_managers_alert_reaches_the_pages_while_its_event_is_written_and_only_once(make_node):
    """The page hears of the alert while the node's writer is still busy (the event's fsync is not on its way);
    the manager's POST is answered only once the event is stored; the relay does not send the alert twice."""
    node_ = await make_node("n", **HERE)
    async with browser() as manager, browser() as resident:
        await claim(node_, manager)
        await join(node_, resident, (await invite(node_, manager))["code"])
        stream = await open_stream(resident, node_.url)
        release, holding = asyncio.Event(), asyncio.Event()

        async def hold_the_writer():
            async with node_.app[HUB].db.write():   # a slow disk: nothing is written until released
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold_the_writer())
        await holding.wait()
        posting = asyncio.create_task(call(manager, "POST", node_.url + "/api/alerts", json=alert_form("Gas leak")))
        try:
            _, kind, data = await asyncio.wait_for(stream.next(), 10)
            assert kind == "alert" and data["cap"]["info"][0]["event"] == "Gas leak"
            assert not posting.done() and await node_.store.get(data["event"]) is None   # not stored, not answered
        finally:
            release.set()
        await holder
        status, posted = await asyncio.wait_for(posting, 10)
        assert status == 200 and posted["event"] == data["event"]
        assert (await node_.store.get(posted["event"])) is not None
        # The next message the page gets is the next alert, not the first one again from the relay.
        _, second = await call(manager, "POST", node_.url + "/api/alerts", json=alert_form("Road closure"))
        _, kind, data = await asyncio.wait_for(stream.next(), 10)
        assert (kind, data["event"]) == ("alert", second["event"])
        # A page that connects later gets each alert once in its replay.
        replay = await open_stream(resident, node_.url, last_id=0)
        seen = []
        for _ in range(2):
            _, kind, data = await asyncio.wait_for(replay.next(), 10)
            seen.append((kind, data["event"]))
        assert seen == [("alert", posted["event"]), ("alert", second["event"])]
        stream.response.close()
        replay.response.close()


async def test_an_alert_announced_early_whose_event_is_not_stored_is_withdrawn_from_the_pages(make_node):
    node_ = await make_node("n", **HERE)
    async with browser() as manager, browser() as resident:
        await claim(node_, manager)
        await join(node_, resident, (await invite(node_, manager))["code"])
        stream = await open_stream(resident, node_.url)
        async with node_.app[HUB].db.write() as conn:   # the event's INSERT fails, as a full disk would make it
            await conn.execute("CREATE TRIGGER refuse_alerts BEFORE INSERT ON events WHEN NEW.kind = 'alert' "
                               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        status, _ = await call(manager, "POST", node_.url + "/api/alerts", json=alert_form("Gas leak"))
        assert status >= 500
        _, kind, data = await asyncio.wait_for(stream.next(), 10)
        assert kind == "alert"
        _, kind, withdrawn = await asyncio.wait_for(stream.next(), 10)
        assert (kind, withdrawn["event"]) == ("alert-withdrawn", data["event"])
        assert await node_.store.get(data["event"]) is None
        _, listed = await call(resident, "GET", node_.url + "/api/alerts")
        assert listed["alerts"] == []
        stream.response.close()
