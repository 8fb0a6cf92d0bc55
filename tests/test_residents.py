"""Roles and sessions: invites, manager sign-in, revocation, the route table's roles, local networks, same origin."""

import sqlite3

import aiohttp
import pytest
from aiohttp import web

from node.keys import ACCOUNTS
from node.routes import ROUTE_POLICY, Route, route_table
from tests.people import PASSWORD, browser, call, claim, invite, join


async def test_invite_redeemed_once_makes_a_resident(make_node):
    node = await make_node("r")
    async with browser() as manager, browser() as resident, browser() as stranger:
        await claim(node, manager)
        made = await invite(node, manager, unit="4B", name="Ada")
        assert made["link"] == f"{node.url}/join#code={made['code']}" and made["qr_svg"].startswith("<?xml")
        # Only a hash is stored.
        with sqlite3.connect(node.config.db_path) as conn:
            stored = [r[0] for r in conn.execute("SELECT code_hash FROM invites")]
        assert made["code"] not in str(stored)
        typed = made["code"].lower().replace("-", " ")
        joined = await join(node, resident, typed)
        assert joined["role"] == "resident" and joined["unit"] == "4B" and joined["name"] == "Ada"
        status, body = await call(stranger, "POST", node.url + "/api/join", json={"code": made["code"]})
        assert status == 403 and "used, revoked or expired" in body["error"]
        status, body = await call(resident, "GET", node.url + "/api/session")
        assert body["role"] == "resident" and body["unit"] == "4B" and body["node"]["emergency_number"] == "911"
        status, body = await call(manager, "GET", node.url + "/api/invites")
        assert [i["state"] for i in body["invites"]] == ["used"]
        status, body = await call(manager, "GET", node.url + "/api/residents")
        assert [(r["unit"], r["name"], r["sessions"]) for r in body["residents"]] == [("4B", "Ada", 1)]


async def test_roles_are_enforced_per_route(make_node):
    node = await make_node("r")
    async with browser() as manager, browser() as resident, browser() as anonymous:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        status, body = await call(anonymous, "GET", node.url + "/api/residents")
        assert status == 401 and "sign in" in body["error"]
        status, body = await call(resident, "GET", node.url + "/api/residents")
        assert status == 403 and "manager" in body["error"]
        status, body = await call(resident, "POST", node.url + "/api/invites", json={"unit": "9Z"})
        assert status == 403
        status, body = await call(resident, "POST", node.url + "/api/sos/1/ack")
        assert status == 403                      # not on call
        status, _ = await call(manager, "GET", node.url + "/api/residents")
        assert status == 200


def test_every_route_declares_known_roles():
    table = route_table()
    assert len({(r.method, r.path) for r in table}) == len(table)
    with pytest.raises(ValueError, match="roles must be"):
        Route("GET", "/x", lambda r: None, frozenset({"everyone"}))
    with pytest.raises(ValueError, match="roles must be"):
        Route("GET", "/x", lambda r: None, frozenset())


async def test_a_route_without_declared_roles_is_refused(make_node):
    node = await make_node("r", start=False)
    from node.app import create_app

    app = create_app(node.config, node.key)

    async def sneaky(request):
        return web.json_response({"ok": True, "secret": 42})
    app.router.add_get("/api/sneaky", sneaky)   # added behind the table's back
    runner = web.AppRunner(app)
    await runner.setup()
    from tests.conftest import bound_socket
    sock = bound_socket()
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        async with aiohttp.ClientSession() as session:
            status, body = await call(session, "GET", f"http://127.0.0.1:{port}/api/sneaky")
        assert status == 403 and "no declared roles" in body["error"] and "secret" not in body
        assert all(route in app[ROUTE_POLICY] for route in app.router.routes() if route.handler is not sneaky)
    finally:
        await runner.cleanup()


async def test_revocation_ends_sessions_at_once(make_node):
    node = await make_node("r")
    async with browser() as manager, browser() as resident:
        await claim(node, manager)
        await join(node, resident, (await invite(node, manager))["code"])
        _, body = await call(manager, "GET", node.url + "/api/residents")
        resident_id = body["residents"][0]["id"]
        assert (await call(resident, "GET", node.url + "/api/reports"))[0] == 200
        status, _ = await call(manager, "POST", node.url + f"/api/residents/{resident_id}/revoke")
        assert status == 200
        status, body = await call(resident, "GET", node.url + "/api/reports")
        assert status == 401
        # An unused invite can be revoked; a revoked one no longer works.
        spare = await invite(node, manager, unit="5C")
        assert (await call(manager, "POST", node.url + f"/api/invites/{spare['id']}/revoke"))[0] == 200
        async with browser() as late:
            status, body = await call(late, "POST", node.url + "/api/join", json={"code": spare["code"]})
            assert status == 403


async def test_manager_signs_in_by_password_or_one_time_link(make_node):
    node = await make_node("r")
    async with browser() as first:
        await claim(node, first)
    async with browser() as again:
        status, body = await call(again, "POST", node.url + "/api/login", json={"password": "wrong password!"})
        assert status == 403 and body["error"] == "wrong password"
        status, body = await call(again, "POST", node.url + "/api/login", json={"password": PASSWORD})
        assert status == 200 and body["role"] == "manager"
        _, body = await call(again, "GET", node.url + "/api/sessions")
        current = [s for s in body["sessions"] if s["current"]]
        assert len(body["sessions"]) == 2 and len(current) == 1
        assert (await call(again, "POST", node.url + "/api/logout"))[0] == 200
        assert (await call(again, "GET", node.url + "/api/sessions"))[0] == 401
    link = await node.app[ACCOUNTS].login_link()
    async with browser() as by_link, browser() as replay:
        status, body = await call(by_link, "POST", node.url + "/api/login", json={"token": link.code})
        assert status == 200 and body["role"] == "manager"
        status, body = await call(replay, "POST", node.url + "/api/login", json={"token": link.code})
        assert status == 403 and "admin-link" in body["error"]


async def test_resident_routes_answer_only_from_local_networks(make_node):
    node = await make_node("r", http__local_networks=["192.168.0.0/16"])
    async with browser() as session:
        status, body = await call(session, "POST", node.url + "/api/join", json={"code": "AAAA-BBBB-CCCC-DDDD"})
        assert status == 403 and "building's network" in body["error"]
        status, body = await call(session, "GET", node.url + "/api/timeline")
        assert status == 403 and "building's network" in body["error"]
        async with session.get(node.url + "/") as resp:
            assert resp.status == 403
        async with session.get(node.url + "/healthz") as resp:
            assert resp.status == 200                         # public routes stay public


async def test_state_changes_must_come_from_the_node_own_pages(make_node):
    node = await make_node("r")
    async with browser() as manager:
        await claim(node, manager)
        status, body = await call(manager, "POST", node.url + "/api/invites", json={"unit": "1A"},
                                  headers={"Origin": "http://evil.example"})
        assert status == 403 and "cross-site" in body["error"]
        status, _ = await call(manager, "POST", node.url + "/api/invites", json={"unit": "1A"},
                               headers={"Origin": node.url})
        assert status == 200
        _, body = await call(manager, "GET", node.url + "/api/invites")
        assert len(body["invites"]) == 1                    # the cross-site one was never made


async def test_bad_input_gets_a_clear_error(make_node):
    node = await make_node("r")
    async with browser() as manager:
        await claim(node, manager)
        status, body = await call(manager, "POST", node.url + "/api/invites", json={"unit": ""})
        assert status == 400 and "'unit' is required" in body["error"]
        status, body = await call(manager, "POST", node.url + "/api/invites", data="unit=4B",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 400 and "send JSON" in body["error"]
        status, body = await call(manager, "POST", node.url + "/api/residents/abc/revoke")
        assert status == 404 and "must be a number" in body["error"]
        status, body = await call(manager, "POST", node.url + "/api/residents/7/on-call", json={"on_call": "yes"})
        assert status == 400 and "true or false" in body["error"]
