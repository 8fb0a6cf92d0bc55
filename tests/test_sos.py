"""SOS: reaches responders, is acknowledged, escalates to the webhook and then nearby nodes, holds footage."""

import sqlite3

import pytest
from aiohttp import web

import node.safety.sos
from node.keys import SOS_DESK
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
