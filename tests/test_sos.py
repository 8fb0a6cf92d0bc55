"""SOS: reaches responders, is acknowledged, escalates to the webhook and then nearby nodes, holds footage."""

import sqlite3

import aiohttp
import pytest
from aiohttp import web

import node.safety.sos
from node.keys import ENGINE, SOS_DESK
from node.safety.sos import SOS
from tests.conftest import serving, wait_until
from tests.people import browser, call, claim, invite, join, open_stream


@pytest.fixture(autouse=True)
def fast_ticks(monkeypatch):
    monkeypatch.setattr(node.safety.sos, "TICK", 0.1)


def webhook_catcher(received: list):
    app = web.Application()

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})
    app.router.add_post("/page-staff", hook)
    return app


async def test_unanswered_sos_escalates_to_webhook_then_nearby_nodes(make_node):
    received: list = []
    async with serving(webhook_catcher(received)) as hook_url:
        a = await make_node("a", node__latitude="40.7128", node__longitude="-74.0060", sos__ack_timeout=1,
                            sos__peer_escalation_after=2, sos__webhook_url=hook_url + "/page-staff")
        b = await make_node("b")
        await a.approve(b)
        await b.approve(a)
        async with browser() as manager, browser() as resident, browser() as manager_b:
            await claim(a, manager)
            await claim(b, manager_b)
            await join(a, resident, (await invite(a, manager, unit="4B", name="Ada"))["code"])
            stream = await open_stream(manager, a.url)
            status, raised = await call(resident, "POST", a.url + "/api/sos", json={"note": "smoke in hallway"})
            assert status == 201
            _, kind, data = await stream.next()
            assert kind == "sos" and data["sos"]["id"] == raised["sos"]["id"]
            _, kind, data = await stream.next()
            assert (kind, data["stage"]) == ("sos-escalated", "webhook")
            assert received[0]["unit"] == "4B" and received[0]["note"] == "smoke in hallway"
            assert data["sos"]["webhook_result"] == "HTTP 200"
            _, kind, data = await stream.next()
            assert (kind, data["stage"]) == ("sos-escalated", "peers")
            event_id = data["sos"]["event"]
            await wait_until(lambda: _has(b, event_id))
            event = await b.store.get(event_id)
            assert event.kind == SOS
            assert "Ada" not in event.body.decode() and "4B" not in event.body.decode()
            # The nearby building's manager sees it in their timeline.
            _, timeline = await call(manager_b, "GET", b.url + "/api/timeline?types=sos")
            assert timeline["items"][0]["title"].startswith("Unanswered SOS at ")
            stream.response.close()
        assert len(received) == 1                             # each step runs once


async def test_acknowledged_sos_does_not_escalate_and_holds_footage(make_node):
    received: list = []
    async with serving(webhook_catcher(received)) as hook_url:
        a = await make_node("a", sos__ack_timeout=1, sos__peer_escalation_after=1,
                            sos__webhook_url=hook_url + "/page-staff", sos__hold_before=120, sos__hold_after=300)
        async with browser() as manager, browser() as resident:
            await claim(a, manager)
            await join(a, resident, (await invite(a, manager))["code"])
            _, raised = await call(resident, "POST", a.url + "/api/sos", json={})
            sos_id = raised["sos"]["id"]
            status, acked = await call(manager, "POST", a.url + f"/api/sos/{sos_id}/ack")
            assert status == 200 and acked["sos"]["acked_by"] == "the manager" and acked["first"]
            status, again = await call(manager, "POST", a.url + f"/api/sos/{sos_id}/ack")
            assert status == 200 and not again["first"]
            _, mine = await call(resident, "GET", a.url + "/api/sos")
            assert mine["calls"][0]["acked_by"] == "the manager"
            # Acknowledged: no escalation step is due for it, however long past both timeouts the escalator looks
            # (it runs only due steps), and none ran.
            assert await a.app[SOS_DESK].due(raised["sos"]["created"] + 3600) == []
            _, calls = await call(manager, "GET", a.url + "/api/sos")
            assert calls["calls"][0]["webhook_at"] is None and calls["calls"][0]["escalated_at"] is None
            assert received == []
        with sqlite3.connect(a.config.db_path) as conn:
            (reason, ref, start, end), = conn.execute("SELECT reason, ref, start, end FROM holds").fetchall()
        assert (reason, ref, end - start) == ("sos", str(sos_id), 420)
        assert start == raised["sos"]["created"] - 120


async def test_sos_page_facts_and_bad_input(make_node):
    a = await make_node("a", sos__emergency_number="112")
    async with browser() as manager, browser() as resident:
        await claim(a, manager)
        await join(a, resident, (await invite(a, manager))["code"])
        _, session = await call(resident, "GET", a.url + "/api/session")
        assert session["node"]["emergency_number"] == "112"
        status, body = await call(resident, "POST", a.url + "/api/sos", json={"note": "x" * 501})
        assert status == 400 and "at most 500" in body["error"]
        status, body = await call(manager, "POST", a.url + "/api/sos/999/ack")
        assert status == 404


async def _has(node_, event_id) -> bool:
    return await node_.store.get(event_id) is not None


async def _building(node_):
    """The manager, the resident Ada (4B) who raises calls, her neighbour Ben (5C) and Sam (3C), on call."""
    manager, ada, ben, sam = browser(), browser(), browser(), browser()
    await claim(node_, manager)
    await join(node_, ada, (await invite(node_, manager, unit="4B", name="Ada"))["code"])
    await join(node_, ben, (await invite(node_, manager, unit="5C", name="Ben"))["code"])
    await join(node_, sam, (await invite(node_, manager, unit="3C", name="Sam"))["code"])
    _, residents = await call(manager, "GET", node_.url + "/api/residents")
    sam_id = next(r["id"] for r in residents["residents"] if r["unit"] == "3C")
    status, _ = await call(manager, "POST", node_.url + f"/api/residents/{sam_id}/on-call", json={"on_call": True})
    assert status == 200
    return manager, ada, ben, sam


async def _close(*sessions) -> None:
    for session in sessions:
        await session.close()


async def test_only_the_caller_cancels_a_false_alarm_and_every_page_hears_it(make_node):
    a = await make_node("a", sos__ack_timeout=1, sos__peer_escalation_after=1)
    manager, ada, ben, sam = await _building(a)
    try:
        console, responder, own = (await open_stream(manager, a.url), await open_stream(sam, a.url),
                                   await open_stream(ada, a.url))
        _, raised = await call(ada, "POST", a.url + "/api/sos", json={"note": "pressed it by mistake"})
        sos_id = raised["sos"]["id"]
        assert raised["sos"]["state"] == "open"
        for stream in (console, responder):
            assert (await stream.next())[1] == "sos"
        # Only Ada may take her call back: not her neighbour, not a responder (they resolve), not the manager.
        for other in (ben, sam, manager):
            status, body = await call(other, "POST", a.url + f"/api/sos/{sos_id}/cancel")
            assert status == 403 and "only whoever raised" in body["error"], body
        status, body = await call(ada, "POST", a.url + f"/api/sos/{sos_id}/cancel")
        assert status == 200 and body["sos"]["state"] == "cancelled" and body["sos"]["ended_by"] == "Ada"
        for stream in (console, responder, own):
            _, kind, data = await stream.next()
            assert (kind, data["sos"]["id"], data["sos"]["state"]) == ("sos-ended", sos_id, "cancelled")
        # An ended call leaves the open list, stays in the timeline as cancelled, and cannot be reopened.
        for who in (manager, sam, ada):
            _, listed = await call(who, "GET", a.url + "/api/sos")
            assert listed["calls"] == []
        _, timeline = await call(manager, "GET", a.url + "/api/timeline?types=sos")
        assert timeline["items"][0]["summary"] == "cancelled by Ada (a false alarm)"
        for who, action, body in ((ada, "cancel", None), (sam, "ack", None), (manager, "ack", None),
                                  (sam, "resolve", {"note": "all fine"})):
            status, answer = await call(who, "POST", a.url + f"/api/sos/{sos_id}/{action}", json=body)
            assert status == 409 and "already cancelled by Ada" in answer["error"], (action, answer)
        # Stored, and out of escalation however late the escalator looks.
        assert await a.app[SOS_DESK].due(raised["sos"]["created"] + 3600) == []
        with sqlite3.connect(a.config.db_path) as conn:
            assert conn.execute("SELECT state, ended_by FROM sos WHERE id = ?", (sos_id,)).fetchone() == \
                ("cancelled", "Ada")
        for stream in (console, responder, own):
            stream.response.close()
    finally:
        await _close(manager, ada, ben, sam)


async def test_a_responder_resolves_with_a_note_and_the_manager_releases_the_footage(make_node):
    a = await make_node("a", sos__hold_before=120, sos__hold_after=300)
    manager, ada, ben, sam = await _building(a)
    try:
        own = await open_stream(ada, a.url)
        _, raised = await call(ada, "POST", a.url + "/api/sos", json={})
        sos_id = raised["sos"]["id"]
        hold = raised["sos"]["hold"]
        assert hold["released"] is None and "7 minutes around this call" in hold["why"]
        assert "only the manager" in hold["why"]
        status, acked = await call(sam, "POST", a.url + f"/api/sos/{sos_id}/ack")
        assert status == 200 and acked["sos"]["state"] == "acknowledged"
        assert (await own.next())[1] == "sos-ack"
        # A resident who is not on call cannot resolve; a resolution needs a note; only the manager frees footage.
        status, _ = await call(ben, "POST", a.url + f"/api/sos/{sos_id}/resolve", json={"note": "x"})
        assert status == 403
        status, body = await call(sam, "POST", a.url + f"/api/sos/{sos_id}/resolve", json={"note": "  "})
        assert status == 400 and "note" in body["error"], body
        status, body = await call(sam, "POST", a.url + f"/api/sos/{sos_id}/resolve", json={})
        assert status == 400 and "note" in body["error"], body
        status, body = await call(sam, "POST", a.url + f"/api/sos/{sos_id}/resolve",
                                  json={"note": "helped", "release_hold": True})
        assert status == 403 and "only the manager" in body["error"], body
        _, still = await call(manager, "GET", a.url + "/api/sos")
        assert [c["state"] for c in still["calls"]] == ["acknowledged"]     # nothing half-done by the refusals
        status, body = await call(sam, "POST", a.url + f"/api/sos/{sos_id}/resolve",
                                  json={"note": "Ada had fainted; awake now, her daughter is with her"})
        assert status == 200, body
        resolved = body["sos"]
        assert (resolved["state"], resolved["ended_by"]) == ("resolved", "Sam")
        assert resolved["resolution"].startswith("Ada had fainted") and resolved["hold"]["released"] is None
        _, kind, data = await own.next()
        assert (kind, data["sos"]["state"], data["sos"]["resolution"]) == ("sos-ended", "resolved",
                                                                           resolved["resolution"])
        status, body = await call(ada, "POST", a.url + f"/api/sos/{sos_id}/cancel")
        assert status == 409 and "already resolved by Sam" in body["error"]
        status, body = await call(manager, "POST", a.url + f"/api/sos/{sos_id}/resolve", json={"note": "again"})
        assert status == 409
        # The footage stays held after the call ends, until the manager chooses to release it (once).
        with sqlite3.connect(a.config.db_path) as conn:
            assert conn.execute("SELECT released FROM holds WHERE ref = ?", (str(sos_id),)).fetchone() == (None,)
        status, _ = await call(sam, "POST", a.url + f"/api/sos/{sos_id}/release")
        assert status == 403
        status, body = await call(manager, "POST", a.url + f"/api/sos/{sos_id}/release")
        assert status == 200 and body["hold"]["released"] is not None and "released" in body["hold"]["why"]
        status, body = await call(manager, "POST", a.url + f"/api/sos/{sos_id}/release")
        assert status == 409 and "already released" in body["error"]
        with sqlite3.connect(a.config.db_path) as conn:
            (released,), = conn.execute("SELECT released FROM holds WHERE ref = ?", (str(sos_id),)).fetchall()
        assert released is not None
        own.response.close()
    finally:
        await _close(manager, ada, ben, sam)


async def test_the_manager_resolves_and_releases_at_once(make_node):
    a = await make_node("a")
    async with browser() as manager, browser() as ada:
        await claim(a, manager)
        await join(a, ada, (await invite(a, manager))["code"])
        _, raised = await call(ada, "POST", a.url + "/api/sos", json={})
        sos_id = raised["sos"]["id"]
        status, body = await call(manager, "POST", a.url + f"/api/sos/{sos_id}/resolve",
                                  json={"note": "false alarm, checked in person", "release_hold": True})
        assert status == 200 and body["sos"]["state"] == "resolved" and body["sos"]["hold"]["released"]
        status, body = await call(manager, "POST", a.url + "/api/sos/999/resolve", json={"note": "x"})
        assert status == 404
        # The manager raised one by mistake: it is the manager's own to take back, not the resident's.
        _, own = await call(manager, "POST", a.url + "/api/sos", json={})
        status, _ = await call(ada, "POST", a.url + f"/api/sos/{own['sos']['id']}/cancel")
        assert status == 403
        status, body = await call(manager, "POST", a.url + f"/api/sos/{own['sos']['id']}/cancel")
        assert status == 200 and body["sos"]["state"] == "cancelled" and body["sos"]["ended_by"] == "the manager"


async def test_a_call_ended_after_it_fell_due_is_not_escalated(make_node):
    received: list = []
    async with serving(webhook_catcher(received)) as hook_url:
        a = await make_node("a", sos__ack_timeout=3600, sos__peer_escalation_after=3600,
                            sos__webhook_url=hook_url + "/page-staff")
        async with browser() as manager, browser() as ada:
            await claim(a, manager)
            await join(a, ada, (await invite(a, manager))["code"])
            _, raised = await call(ada, "POST", a.url + "/api/sos", json={})
            desk = a.app[SOS_DESK]
            # The escalator found both steps due (an hour on), then the call was cancelled before they ran.
            late = raised["sos"]["created"] + 7200
            steps = await desk.due(late)
            assert [step for step, _ in steps] == ["webhook"]
            await call(ada, "POST", a.url + f"/api/sos/{raised['sos']['id']}/cancel")
            published: list = []

            async def publish(kind, data, audience):
                published.append(kind)
            async with aiohttp.ClientSession() as session:
                for step in ("webhook", "peers"):
                    await node.safety.sos._run_step(desk, a.app[ENGINE], publish, a.config, None, session, step,
                                                    raised["sos"], {})
            assert received == [] and published == []
            assert (await desk.get(raised["sos"]["id"]))["webhook_at"] is None
            assert await a.store.recent(10, SOS) == []


async def test_calls_stored_before_the_lifecycle_keep_their_state(tmp_path):
    from node.config import build
    from node.safety.sos import MIGRATIONS, SosDesk
    from node.schema import migrate_all
    from sync import Database

    db = await Database.open(tmp_path / "old.db")
    try:
        await db.migrate("sos", MIGRATIONS[:1])   # the software before calls could end
        async with db.write() as conn:
            await conn.execute("INSERT INTO sos (unit, created, acked_by, acked_at) VALUES ('4B', 100, 'Sam', 110)")
            await conn.execute("INSERT INTO sos (unit, created) VALUES ('5C', 200)")
        await migrate_all(db)
        desk = SosDesk(db, build({}))
        assert [(c["unit"], c["state"]) for c in await desk.open_calls(now=300)] == \
            [("5C", "open"), ("4B", "acknowledged")]
        ended = await desk.end(2, "resolved", "the manager", "checked")
        assert ended["state"] == "resolved"
    finally:
        await db.close()
