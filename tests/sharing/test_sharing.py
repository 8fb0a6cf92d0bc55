"""The sharing flow on one node (and a peer where history matters): refusals with their reasons, residents' own
uploads, withdrawal, ignoring, holds after download, expiry, emergency alerts, the CLI, and a rewritten audit log."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
import time

import nacl.signing
import pytest

from node.keys import AUDIT, DESK, STORE
from node.sharing.agency_keys import AgencyKey
from node.sharing.audit import HEAD_CONTEXT, entry_hash
from node.sharing.requests import sign_request as sign_document
from node.sharing.verify import verify_bundle
from sync import sign_request
from tests.conftest import wait_until
from tests.people import browser, call, claim, invite, join, open_stream
from tests.sharing.flow import HERE, Agency, add_clip, make_video, request_fields


@pytest.fixture
async def building(make_node, tmp_path):
    """A node with two clips in a 40-minute window, its manager signed in, and a registered agency."""
    node = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                           cameras__devices=[{"id": "yard", "url": "sim:", "detect_motion": False}])
    start = time.time() - 50 * 60
    video = make_video(tmp_path)
    clips = [await add_clip(node, video, start=start + 600), await add_clip(node, video, start=start + 900)]
    agency = Agency()
    async with browser() as manager:
        await claim(node, manager)
        status, body = await call(manager, "POST", node.url + "/api/agencies",
                                  json={"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro City"})
        assert status == 201, body
        try:
            yield node, manager, agency, clips, start
        finally:
            await agency.close()


async def consent(manager, node, request_id: str, uid: str, choice: str = "redacted") -> dict:
    status, body = await call(manager, "POST", f"{node.url}/api/requests/{request_id}/clips/{uid}/consent",
                              json={"choice": choice})
    assert status == 201, body
    await node.app[DESK].idle()
    return await node.app[DESK].store.consent(body["consent"]["id"])


async def test_refusals_name_what_is_wrong(building):
    node, manager, agency, clips, start = building
    url = node.url + "/api/agency/requests"
    session = agency.session

    async with session.post(url, json={}) as resp:
        assert resp.status == 403 and "not signed" in (await resp.json())["error"]
    body = json.dumps(sign_document(request_fields(start=start), agency.keys)).encode()
    sync_signed = sign_request(agency.key, "POST", url, body) | {"Content-Type": "application/json"}
    async with session.post(url, data=body, headers=sync_signed) as resp:
        assert resp.status == 403 and 'tag="nnode-agency"' in (await resp.json())["error"]
    stranger = Agency()
    status, answer = await stranger.ask(node.url, request_fields(start=start))
    await stranger.close()
    assert status == 403 and "not registered at this node" in answer["error"]
    headers = agency.headers("POST", url, body)
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 201
    async with session.post(url, data=body, headers=headers) as resp:
        assert resp.status == 403 and "replay" in (await resp.json())["error"]
    altered = body.replace(b"burglary", b"burglarx")
    async with session.post(url, data=altered, headers=agency.headers("POST", url, body)) as resp:
        assert resp.status == 403 and "Content-Digest" in (await resp.json())["error"]
    tampered = json.loads(body)
    tampered["reason"] = "anything at all"
    status, answer = await agency.call("POST", url, tampered)
    assert status == 400 and answer["error"].startswith("sig:")

    for fields, expected in [
        (request_fields(start=start, minutes=5), "out of policy: the window is 5 min"),
        (request_fields(start=start, radius=2000), "out of policy: the area is"),
        (request_fields(start=start, case_number=""), "out of policy: a case number is required"),
        (request_fields(start=start, expires_in=-60), "expires: the request expired"),
    ]:
        status, answer = await agency.ask(node.url, fields)
        assert status == 400 and expected in answer["error"], answer
    other = nacl.signing.SigningKey.generate()
    status, answer = await agency.call("POST", url, sign_document(request_fields(start=start), AgencyKey(other, agency.keys.box)))
    assert status == 403 and "another agency key" in answer["error"]

    # Revoked: every call is refused, naming the revocation.
    status, _ = await call(manager, "POST", f"{node.url}/api/agencies/{agency.id}/revoke", json={"reason": "left"})
    assert status == 200
    status, answer = await agency.call("GET", node.url + "/api/agency/bundles")
    assert status == 403 and "revoked" in answer["error"]
    status, answer = await call(manager, "POST", node.url + "/api/agencies",
                                json={"key": agency.id, "name": "Metro PD again"})
    assert status == 409 and "revoked agencies stay revoked" in answer["error"]
    # Nothing a refusal touched was stored, and the log shows what was received.
    actions = [e["action"] for e in await node.app[AUDIT].entries()]
    assert actions == ["agency_registered", "request_received", "agency_revoked"]


async def test_residents_see_only_their_own_uploads_and_share_the_original_only_by_choice(building, tmp_path):
    node, manager, agency, clips, start = building
    async with browser() as alice, browser() as bob:
        await join(node, alice, (await invite(node, manager, "2A"))["code"])
        await join(node, bob, (await invite(node, manager, "3C"))["code"])
        upload = await add_clip(node, make_video(tmp_path, "door.mp4"), start=start + 1200, camera="upload",
                                owner=f"resident:{await _resident_id(node)}")
        fields = request_fields(start=start, urgency="emergency")
        status, _ = await agency.ask(node.url, fields)
        assert status == 201

        status, body = await call(alice, "GET", node.url + "/api/requests")
        (request,) = body["requests"]
        assert [c["uid"] for c in request["clips"]] == [upload.uid]
        assert (await call(bob, "GET", node.url + "/api/requests"))[1]["requests"] == []
        (request,) = (await call(manager, "GET", node.url + "/api/requests"))[1]["requests"]
        assert {c["uid"] for c in request["clips"]} == {c.uid for c in clips}   # not Alice's upload

        # Nobody else may consent for Alice's clip, and she may not consent for the building's.
        for session, uid in ((manager, upload.uid), (bob, upload.uid), (alice, clips[0].uid)):
            status, body = await call(session, "POST",
                                      f"{node.url}/api/requests/{fields['id']}/clips/{uid}/consent", json={})
            assert status == 404, body
        status, body = await call(alice, "POST", f"{node.url}/api/requests/{fields['id']}/clips/{upload.uid}"
                                  "/consent", json={"choice": "everything"})
        assert status == 400 and "choice" in body["error"]
        given = await consent(alice, node, fields["id"], upload.uid, choice="original")
        assert given["choice"] == "original"

    (listed,) = (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"]
    status, data = await agency.call("GET", node.url + listed["url"], raw=True)
    (tmp_path / "b.nnbundle").write_bytes(data)
    result = await asyncio.to_thread(verify_bundle, tmp_path / "b.nnbundle", agency.keys, tmp_path / "out",
                                     expected_node_key=node.id)
    manifest = result.manifest
    assert manifest["delivered"]["kind"] == "original" and manifest["delivered"]["redaction"] is None
    assert manifest["delivered"]["sha256"] == upload.sha256 and manifest["camera"]["id"] == "upload"
    by = manifest["consent"]["by"]
    assert by["role"] == "resident" and by["id"].startswith("resident-") and "2A" not in json.dumps(manifest)


async def _resident_id(node) -> int:
    rows = await node.app[DESK].db.reader.execute_fetchall("SELECT MIN(id) FROM residents")
    return rows[0][0]


async def test_withdrawn_or_ignored_clips_leave_nothing_for_the_agency(building):
    node, manager, agency, clips, start = building
    fields = request_fields(start=start)
    assert (await agency.ask(node.url, fields))[0] == 201
    given = await consent(manager, node, fields["id"], clips[0].uid)
    assert given["state"] == "ready"
    bundle_path = node.app[DESK].bundle_path(given["bundle_uid"])
    assert bundle_path.is_file()
    status, body = await call(manager, "DELETE", f"{node.url}/api/requests/{fields['id']}/clips/{clips[0].uid}"
                              "/consent")
    assert status == 200 and body["consent"]["state"] == "withdrawn"
    assert not bundle_path.exists()
    assert (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"] == []
    status, _ = await agency.call("GET", f"{node.url}/api/agency/bundles/{given['bundle_uid']}")
    assert status == 404
    status, body = await agency.call("GET", f"{node.url}/api/agency/requests/{fields['id']}")
    assert body["request"]["disclosures"] == []
    # The clip is no longer held: the manager may delete it.
    status, body = await call(manager, "DELETE", f"{node.url}/api/clips/{clips[0].uid}")
    assert status == 200, body
    actions = [e["action"] for e in await node.app[AUDIT].entries()]
    assert actions[-3:] == ["consent", "bundle_built", "withdrawal"]


async def test_hold_lasts_until_the_period_after_download_then_the_clip_is_purged_and_logged(building):
    node, manager, agency, clips, start = building
    desk = node.app[DESK]
    fields = request_fields(start=start)
    assert (await agency.ask(node.url, fields))[0] == 201
    given = await consent(manager, node, fields["id"], clips[0].uid, choice="original")
    assert (await agency.call("GET", f"{node.url}/api/agency/bundles/{given['bundle_uid']}", raw=True))[0] == 200
    hold_days = node.config.agencies.hold_days
    await desk.tick(now=time.time() + (hold_days - 1) * 86400)  # after the request expired, but downloaded: held
    status, body = await call(manager, "DELETE", f"{node.url}/api/clips/{clips[0].uid}")
    assert status == 409 and "consent" in body["error"]
    await desk.tick(now=time.time() + (hold_days + 1) * 86400)
    status, _ = await call(manager, "GET", f"{node.url}/api/clips/{clips[0].uid}")
    assert status == 404
    assert not desk.bundle_path(given["bundle_uid"]).exists()
    actions = [e["action"] for e in await node.app[AUDIT].entries()]
    assert actions[-3:] == ["download", "hold_released", "clip_purged"]


async def test_a_request_that_expires_before_download_ends_its_consents(building):
    node, manager, agency, clips, start = building
    fields = request_fields(start=start, expires_in=3600)
    assert (await agency.ask(node.url, fields))[0] == 201
    given = await consent(manager, node, fields["id"], clips[1].uid)
    await node.app[DESK].tick(now=time.time() + 7200)
    assert not node.app[DESK].bundle_path(given["bundle_uid"]).exists()
    status, body = await call(manager, "DELETE", f"{node.url}/api/clips/{clips[1].uid}")
    assert status == 200, body
    assert (await node.app[AUDIT].entries())[-1]["action"] == "bundle_expired"


async def test_an_emergency_request_alerts_the_managers_open_page_at_once(building):
    node, manager, agency, clips, start = building
    stream = await open_stream(manager, node.url)
    try:
        fields = request_fields(start=start, urgency="emergency")
        assert (await agency.ask(node.url, fields))[0] == 201
        while True:
            _, kind, data = await stream.next(timeout=10)
            if kind == "agency-request":
                break
        assert data == {"id": fields["id"], "urgency": "emergency", "case_number": fields["case_number"],
                        "agency_name": "Metro PD"}
    finally:
        stream.response.close()
    # Still nothing is shared without a yes.
    assert (await agency.call("GET", node.url + "/api/agency/bundles"))[1]["bundles"] == []


async def nnode(node, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "node", "--data-dir", str(node.config.node.data_dir), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_cli_registers_and_revokes_agencies_and_verifies_the_audit_log(make_node):
    node = await make_node("c", node__latitude=HERE[0], node__longitude=HERE[1])
    key = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    code, out, err = await nnode(node, "agency", "add", key, "--name", "County Sheriff", "--jurisdiction", "County")
    assert code == 0 and "registered" in out, err
    code, out, _ = await nnode(node, "agency", "list")
    assert key in out and "County Sheriff" in out and "active" in out
    code, _, err = await nnode(node, "agency", "add", "abc", "--name", "x")
    assert code == 1 and "key: expected an ed25519 public key" in err
    code, out, _ = await nnode(node, "agency", "revoke", key, "--reason", "merged")
    assert code == 0 and "revoked" in out
    await wait_until(lambda: _head_published(node), timeout=10)
    code, out, err = await nnode(node, "audit", "verify")
    # One head per entry or one for both, as the publisher happened to batch them: all must match.
    assert code == 0 and "2 entries" in out and re.search(r"\b[12] heads published to peers match", out), (out, err)


async def _head_published(node) -> bool:
    return bool(await node.app[STORE].recent(limit=5, kind="audit-head"))


async def test_a_rewritten_audit_log_is_caught_by_the_heads_its_peers_hold(make_node, building):
    node, manager, agency, clips, start = building
    peer = await make_node("p")
    await node.approve(peer)
    await peer.approve(node)
    fields = request_fields(start=start)
    assert (await agency.ask(node.url, fields))[0] == 201
    await consent(manager, node, fields["id"], clips[0].uid)
    head = await node.app[AUDIT].head()

    async def peer_holds_head():
        return any(e.author == node.id and json.loads(e.body)["seq"] == head["seq"]
                   for e in await peer.app[STORE].recent(limit=50, kind="audit-head"))
    await wait_until(peer_holds_head, timeout=20)
    await node.stop()

    # Someone with the node's key rewrites history: the consent becomes a withdrawal, every later entry is re-hashed
    # and re-signed, and the heads the node itself published are deleted so the chain alone looks fine.
    key = node.key
    with sqlite3.connect(node.config.db_path) as db:
        rows = db.execute("SELECT seq, at, action, agency, request_id, clip, actor, detail, prev FROM audit "
                          "ORDER BY seq").fetchall()
        prev = "0" * 64
        for seq, at, action, agency_key, request_id, clip, actor, detail, _ in rows:
            if action == "consent":
                action = "withdrawal"
            entry = {"seq": seq, "at": at, "action": action, "agency": agency_key, "request_id": request_id,
                     "clip": clip, "actor": actor, "detail": json.loads(detail), "prev": prev}
            digest = entry_hash(entry)
            db.execute("UPDATE audit SET action = ?, prev = ?, hash = ?, sig = ? WHERE seq = ?",
                       (action, prev, digest, key.sign(HEAD_CONTEXT + digest.encode()).signature.hex(), seq))
            prev = digest
        db.execute("DELETE FROM events WHERE kind = 'audit-head'")
    code, out, err = await nnode(node, "audit", "verify", "--local")
    assert code == 0, err  # with its own heads gone, the node alone cannot tell (its peers can: test_audit_peers)

    # Back online, anti-entropy returns the heads its peer kept, and the rewrite shows.
    await node.start()
    await node.engine.sync_with(await node.peers.get(peer.id))
    await node.stop()
    code, out, err = await nnode(node, "audit", "verify")
    assert code == 3 and "history rewritten" in err, (out, err)
    await node.start()


async def test_a_registered_agency_posts_an_official_alert_that_residents_see(building):
    node, manager, agency, clips, start = building
    status, body = await agency.call("POST", node.url + "/api/agency/alerts",
                                     {"event": "Police activity", "headline": "Avoid Elm St between 3rd and 5th",
                                      "severity": "Moderate", "urgency": "Immediate", "expires_hours": 2})
    assert status == 201, body
    assert body["cap"]["info"][0]["senderName"] == "Metro PD"
    status, alerts = await call(manager, "GET", node.url + "/api/alerts")
    assert "Avoid Elm St between 3rd and 5th" in json.dumps(alerts["alerts"]), alerts
    status, body = await agency.call("POST", node.url + "/api/agency/alerts", {"headline": "no event"})
    assert status == 400 and "missing required key 'event'" in body["error"]
    stranger = Agency()
    status, body = await stranger.call("POST", node.url + "/api/agency/alerts", {"event": "Fake"})
    await stranger.close()
    assert status == 403 and "not registered" in body["error"]


async def test_review_regressions_bad_input_races_and_leftovers(building):
    """Defects a review found: each is refused or cleaned up now."""
    node, manager, agency, clips, start = building
    desk = node.app[DESK]
    # A name not in Unicode NFC is stored normalised (the signed log holds NFC only), not a 500.
    other = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    status, body = await call(manager, "POST", node.url + "/api/agencies",
                              json={"key": other, "name": "Police de Montre\u0301al"})
    assert status == 201 and body["agency"]["name"] == "Police de Montr\u00e9al"
    # A credential header nested too deep is a clear 400 for anyone, registered or not.
    deep = "[" * 100_000 + "]" * 100_000
    import base64
    async with agency.session.get(node.url + "/api/agency/bundles", headers=agency.headers(
            "GET", node.url + "/api/agency/bundles", None) | {"NNode-Agency-Credential":
                                                              base64.urlsafe_b64encode(deep.encode()).decode()}) as r:
        assert r.status in (400, 403)
    status, body = await agency.call("POST", node.url + "/api/agency/alerts", None)
    assert status == 400
    # A bundle of a request that expired before the first download is no longer given out.
    fields = request_fields(start=start)
    assert (await agency.ask(node.url, fields))[0] == 201
    given = await consent(manager, node, fields["id"], clips[0].uid)
    async with desk.db.write() as conn:
        await conn.execute("UPDATE agency_requests SET expires = ? WHERE id = ?", (time.time() - 1, fields["id"]))
    status, _ = await agency.call("GET", f"{node.url}/api/agency/bundles/{given['bundle_uid']}")
    assert status == 404
    await desk.tick()
    status, body = await agency.call("GET", f"{node.url}/api/agency/requests/{fields['id']}")
    assert body["request"]["disclosures"] == []  # the count went back to nothing
    # A bundle file no consent vouches for (a crash between a withdrawal and its unlink) goes at the next start.
    stray = desk.bundle_path("f" * 32)
    stray.write_bytes(b"left behind")
    await node.stop()
    await node.start()
    assert not stray.exists()


async def test_a_relayed_request_cannot_borrow_another_agencys_credential(make_node):
    from node.sharing.agencies import sign_credential
    anchor = nacl.signing.SigningKey.generate()
    a = await make_node("a")
    b = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                        agencies__trust_anchors=[anchor.verify_key.encode().hex()])
    await a.approve(b)
    await b.approve(a)
    accredited, impostor = Agency(), Agency()
    try:
        credential = sign_credential(anchor, agency=accredited.id, name="State Police", jurisdiction="",
                                     contact="")
        document = sign_document(request_fields(), impostor.keys)
        await a.engine.publish("agency-request", {"request": document, "credential": credential}, ttl=3600)

        async def seen():
            rows = await b.app[DESK].db.reader.execute_fetchall(
                "SELECT status, refusal FROM agency_requests WHERE id = ?", (document["id"],))
            return rows and rows[0]
        await wait_until(seen, timeout=20)
        assert tuple(await seen()) == ("refused", "this agency is not registered at this node")
        assert await b.app[DESK].registry.get(accredited.id) is None
        assert await b.app[AUDIT].entries() == []
    finally:
        await accredited.close()
        await impostor.close()
