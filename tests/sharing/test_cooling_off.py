"""The cooling-off period: a consent is invisible to the agency and to peers until it is over, and a withdrawal
within it leaves their views byte-for-byte as if nothing had been shared; after it, a consent is shown and logged,
and a withdrawal is logged as before. Emergency requests have no cooling-off period."""

from __future__ import annotations

import json
import time

import pytest

import node.sharing.lifecycle
from node.keys import AUDIT, DESK
from node.sharing.events import AUDIT_HEAD_KIND
from tests.conftest import wait_until
from tests.people import browser, call, claim
from tests.sharing.flow import HERE, Agency, add_clip, make_video, request_fields


@pytest.fixture(autouse=True)
def quick_heads(monkeypatch):
    monkeypatch.setattr(node.sharing.lifecycle, "AUDIT_HEAD_INTERVAL", 0.2)


async def _building(make_node, tmp_path, cooling_off: int):
    node = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                           agencies__cooling_off_seconds=cooling_off,
                           cameras__devices=[{"id": "yard", "url": "sim:", "detect_motion": False}])
    peer = await make_node("p")
    await node.approve(peer)
    await peer.approve(node)
    start = time.time() - 50 * 60
    clip = await add_clip(node, make_video(tmp_path), start=start + 600)
    return node, peer, clip, start


async def _register(node, manager, agency: Agency) -> None:
    status, body = await call(manager, "POST", node.url + "/api/agencies",
                              json={"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro City"})
    assert status == 201, body


async def seen_by_others(node, peer, agency: Agency, manager, request_id: str) -> str:
    """Everything the agency, residents' transparency page and the peer can see of the node's sharing, as JSON."""
    views = {}
    for path in ("/api/agency/bundles", "/api/agency/requests", f"/api/agency/requests/{request_id}"):
        status, views[path] = await agency.call("GET", node.url + path)
        assert status == 200, views[path]
    status, transparency = await call(manager, "GET", node.url + "/api/transparency")
    assert status == 200
    transparency.pop("peer_check")   # when the node last compared its log with peers' copies: not about sharing
    views["transparency"] = transparency
    views["transparency/log"] = (await call(manager, "GET", node.url + "/api/transparency/log"))[1]
    # What the node would send its peers (every event it authored) and what the peer holds from it.
    views["node events"] = sorted(e.id for e in await node.store.recent(limit=1000) if e.author == node.id)
    views["peer events"] = sorted(e.id for e in await peer.store.recent(limit=1000) if e.author == node.id)
    return json.dumps(views, sort_keys=True)


async def settled(node, peer) -> bool:
    """Whether the node published its audit log's head and the peer holds every event the node authored."""
    head = await node.app[AUDIT].head()
    heads = [e.body_value()["seq"] for e in await node.store.recent(limit=10, kind=AUDIT_HEAD_KIND)]
    mine = {e.id for e in await node.store.recent(limit=1000) if e.author == node.id}
    return head is not None and head["seq"] in heads and mine <= await peer.ids()


async def test_a_withdrawal_within_the_cooling_off_period_leaves_no_trace(make_node, tmp_path):
    node, peer, clip, start = await _building(make_node, tmp_path, cooling_off=3600)
    agency = Agency()
    async with browser() as manager:
        await claim(node, manager)
        await _register(node, manager, agency)
        fields = request_fields(start=start)
        assert (await agency.ask(node.url, fields))[0] == 201
        await wait_until(lambda: settled(node, peer))   # the request and its audit head reached the peer
        status, body = await call(manager, "GET", node.url + "/api/requests")
        assert body["requests"][0]["cooling_off_seconds"] == 3600   # stated before the owner decides
        before = await seen_by_others(node, peer, agency, manager, fields["id"])

        url = f"{node.url}/api/requests/{fields['id']}/clips/{clip.uid}/consent"
        status, body = await call(manager, "POST", url, json={"choice": "redacted"})
        assert status == 201, body
        given = body["consent"]
        assert given["cooling_off"] and given["visible_at"] >= given["created"] + 3600
        await node.app[DESK].idle()
        assert (await node.app[DESK].store.consent(given["id"]))["state"] == "ready"   # built, yet unseen
        assert await seen_by_others(node, peer, agency, manager, fields["id"]) == before
        status, _ = await agency.call("GET", f"{node.url}/api/agency/bundles/{given['bundle_uid']}", raw=True)
        assert status == 404   # even with its id

        status, body = await call(manager, "DELETE", url)
        assert status == 200 and body["consent"]["state"] == "withdrawn" and body["consent"]["erased"], body
        assert not node.app[DESK].bundle_path(given["bundle_uid"]).exists()
        await node.app[DESK].tick()
        assert await seen_by_others(node, peer, agency, manager, fields["id"]) == before
        # The clip is no longer held, and it can be shared again.
        status, body = await call(manager, "POST", url, json={"choice": "redacted"})
        assert status == 201, body
    await agency.close()


async def test_a_consent_past_its_cooling_off_period_is_shown_and_its_withdrawal_logged(make_node, tmp_path):
    node, peer, clip, start = await _building(make_node, tmp_path, cooling_off=4)
    agency = Agency()
    async with browser() as manager:
        await claim(node, manager)
        await _register(node, manager, agency)
        fields = request_fields(start=start)
        assert (await agency.ask(node.url, fields))[0] == 201
        url = f"{node.url}/api/requests/{fields['id']}/clips/{clip.uid}/consent"
        status, body = await call(manager, "POST", url, json={"choice": "redacted"})
        assert status == 201, body
        given = body["consent"]
        await node.app[DESK].idle()
        bundles = (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"]
        assert bundles == [] or time.time() >= given["visible_at"]

        async def listed() -> bool:
            return bool((await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"])
        await wait_until(listed, timeout=60)
        actions = [e["action"] for e in await node.app[AUDIT].entries()]
        assert actions[-2:] == ["consent", "bundle_built"]

        async def counted_at_peer() -> bool:
            return [n for n, count, _ in await peer.app[DESK].store.disclosures(fields["id"], agency.id)
                    if count == 1] == [node.id]
        await wait_until(counted_at_peer, timeout=30)
        status, body = await agency.call("GET", f"{node.url}/api/agency/requests/{fields['id']}")
        assert [d["bundles"] for d in body["request"]["disclosures"]] == [1]

        status, body = await call(manager, "DELETE", url)
        assert status == 200 and body["consent"]["state"] == "withdrawn" and "erased" not in body["consent"]
        assert (await node.app[AUDIT].entries())[-1]["action"] == "withdrawal"
    await agency.close()


async def test_an_emergency_request_sees_a_consent_at_once(make_node, tmp_path):
    node, peer, clip, start = await _building(make_node, tmp_path, cooling_off=3600)
    agency = Agency()
    async with browser() as manager:
        await claim(node, manager)
        await _register(node, manager, agency)
        fields = request_fields(start=start, urgency="emergency")
        assert (await agency.ask(node.url, fields))[0] == 201
        status, body = await call(manager, "GET", node.url + "/api/requests")
        assert body["requests"][0]["cooling_off_seconds"] == 0
        status, body = await call(manager, "POST", f"{node.url}/api/requests/{fields['id']}/clips/{clip.uid}"
                                  "/consent", json={"choice": "redacted"})
        assert status == 201 and not body["consent"]["cooling_off"], body
        await node.app[DESK].idle()
        bundles = (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"]
        assert [b["id"] for b in bundles] == [body["consent"]["bundle_uid"]]
    await agency.close()
