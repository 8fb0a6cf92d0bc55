"""The sharing flow end to end, with two real nodes and an agency client over HTTP: the request made at node A
reaches node B; B's manager consents to one of two matching clips; the agency obtains exactly that one and verifies
it offline; every agency route tried for the other clip yields no clip bytes."""

from __future__ import annotations

import asyncio
import json
import time

import nacl.signing

from node.keys import AUDIT, DESK, STORE
from node.sharing.agencies import sign_credential
from node.sharing.audit import verify_database
from node.sharing.verify import verify_bundle
from tests.conftest import wait_until
from tests.people import browser, call, claim
from tests.sharing.flow import FAR, HERE, NEAR, Agency, add_clip, make_video, request_fields

ANCHOR = nacl.signing.SigningKey(bytes(range(40, 72)))


async def two_nodes(make_node):
    """A (4 km away, where the agency asks) and B (the building with the footage), approved peers."""
    a = await make_node("a", node__latitude=FAR[0], node__longitude=FAR[1])
    b = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                        agencies__trust_anchors=[ANCHOR.verify_key.encode().hex()],
                        cameras__devices=[{"id": "yard", "url": "sim:", "name": "Back yard",
                                           "latitude": NEAR[0], "longitude": NEAR[1], "detect_motion": False}])
    await a.approve(b)
    await b.approve(a)
    return a, b


async def b_requests(manager, b) -> list:
    status, body = await call(manager, "GET", b.url + "/api/requests")
    assert status == 200, body
    return body["requests"]


async def test_a_request_made_at_a_reaches_b_and_only_the_consented_clip_leaves(make_node, tmp_path):
    a, b = await two_nodes(make_node)
    video = make_video(tmp_path)
    window_start = time.time() - 50 * 60
    shared = await add_clip(b, video, start=window_start + 600)
    kept = await add_clip(b, make_video(tmp_path, "other.mp4", 3), start=window_start + 1200, seconds=3)
    await add_clip(b, video, start=window_start - 7200)                # outside the window: never offered
    agency = Agency()
    agency.credential = sign_credential(ANCHOR, agency=agency.id, name="Metro Police Department",
                                        jurisdiction="Metro City", contact="records@metro.example")
    async with browser() as manager_a, browser() as manager_b:
        await claim(a, manager_a)
        await claim(b, manager_b)
        # A's manager registers the agency by hand; B trusts its accreditation body (the credential).
        status, body = await call(manager_a, "POST", a.url + "/api/agencies",
                                  json={"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro City",
                                        "contact": "records@metro.example"})
        assert status == 201, body
        try:
            fields = request_fields(start=window_start)
            status, body = await agency.ask(a.url, fields)
            assert status == 201, body
            assert body["request"]["id"] == fields["id"] and body["request"]["disclosures"] == []
            status, again = await agency.ask(a.url, fields)
            assert status == 200  # the same request twice is one request

            # It reaches B, which checks the agency itself (by the anchor's credential) and shows both clips.
            await wait_until(lambda: _listed(manager_b, b, fields["id"]), timeout=20)
            (request,) = [r for r in await b_requests(manager_b, b) if r["id"] == fields["id"]]
            assert request["status"] == "open" and request["agency"]["name"] == "Metro Police Department"
            assert {c["uid"] for c in request["clips"]} == {shared.uid, kept.uid}
            assert all(c["consent"] is None for c in request["clips"])

            # Nothing is consented yet: the agency sees no bundle anywhere.
            assert (await agency.call("GET", b.url + "/api/agency/bundles"))[1]["bundles"] == []

            status, body = await call(manager_b, "POST",
                                      f"{b.url}/api/requests/{fields['id']}/clips/{shared.uid}/consent",
                                      json={"choice": "redacted"})
            assert status == 201, body
            await b.app[DESK].idle()
            (request,) = [r for r in await b_requests(manager_b, b) if r["id"] == fields["id"]]
            states = {c["uid"]: c["consent"] and c["consent"]["state"] for c in request["clips"]}
            assert states == {shared.uid: "ready", kept.uid: None}, request

            # A learns of B's disclosure (a count), so the agency asking A knows where to fetch.
            async def disclosed():
                status, body = await agency.call("GET", f"{a.url}/api/agency/requests/{fields['id']}")
                return status == 200 and body["request"]["disclosures"]
            await wait_until(disclosed, timeout=20)
            status, body = await agency.call("GET", f"{a.url}/api/agency/requests/{fields['id']}")
            (disclosure,) = body["request"]["disclosures"]
            assert disclosure == {"node": b.id, "bundles": 1, "at": disclosure["at"], "url": b.url}

            status, body = await agency.call("GET", b.url + "/api/agency/bundles")
            (listed,) = body["bundles"]
            assert listed["request_id"] == fields["id"] and listed["node"] == b.id
            status, data = await agency.call("GET", b.url + listed["url"], raw=True)
            assert status == 200 and len(data) == listed["size"]
            (tmp_path / "got.nnbundle").write_bytes(data)
            result = await asyncio.to_thread(verify_bundle, tmp_path / "got.nnbundle", agency.keys,
                                             tmp_path / "out", expected_node_key=b.id)
            manifest = result.manifest
            assert manifest["clip"]["original"]["sha256"] == shared.sha256
            assert manifest["delivered"]["kind"] == "redacted" and manifest["delivered"]["redaction"]
            assert manifest["request"] == {"id": fields["id"], "case_number": fields["case_number"]}
            assert manifest["camera"]["name"] == "Back yard" and manifest["camera"]["latitude"] == NEAR[0]
            assert manifest["consent"]["by"]["role"] == "manager"
            assert result.clip.stat().st_size > 0

            # Every agency route, tried for the other clip: no clip bytes, nothing naming it.
            kept_bytes = b.app[DESK].clips.path(kept.file).read_bytes()
            for method, path in [("GET", f"/api/agency/bundles/{kept.uid}"), ("GET", "/api/agency/bundles"),
                                 ("GET", f"/api/agency/requests/{fields['id']}"), ("GET", "/api/agency/requests"),
                                 ("GET", f"/api/clips/{kept.uid}/video"), ("GET", f"/api/clips/{kept.uid}"),
                                 ("GET", f"/api/clips/{kept.uid}/thumbnail"), ("GET", "/api/clips"),
                                 ("GET", "/api/requests"),
                                 ("POST", f"/api/requests/{fields['id']}/clips/{kept.uid}/consent")]:
                status, payload = await agency.call(method, b.url + path, raw=True)
                assert kept_bytes[:4096] not in payload, (path, status)
                if kept.uid in path:  # refused (an error may echo the id it was asked for)
                    assert status in (401, 403, 404), (path, status)
                else:                 # a listing: it never names the clip
                    assert status in (200, 401, 403) and kept.uid.encode() not in payload, (path, status)
            # The bundle list still names only the consented clip's bundle.
            assert len((await agency.call("GET", b.url + "/api/agency/bundles"))[1]["bundles"]) == 1

            # Downloaded: the owner can no longer withdraw; the clip is held.
            status, body = await call(manager_b, "DELETE",
                                      f"{b.url}/api/requests/{fields['id']}/clips/{shared.uid}/consent")
            assert status == 409 and "downloaded" in body["error"]
            status, body = await call(manager_b, "DELETE", f"{b.url}/api/clips/{shared.uid}")
            assert status == 409 and "consent" in body["error"]

            # The audit log on B says what happened, verifies, and its head reached A.
            entries = await b.app[AUDIT].entries()
            actions = [e["action"] for e in entries]
            assert actions == ["agency_registered", "request_received", "consent", "bundle_built", "download"]
            head = await b.app[AUDIT].head()

            async def head_at_a():
                events = await a.app[STORE].recent(limit=50, kind="audit-head")
                return any(e.author == b.id and json.loads(e.body)["seq"] == head["seq"] for e in events)
            await wait_until(head_at_a, timeout=20)
            report = await verify_database(b.config.db_path, b.id)
            assert report["entries"] == 5
            status, body = await call(manager_b, "GET", b.url + "/api/transparency")
            (row,) = body["requests"]
            assert row["case_number"] == fields["case_number"] and row["disclosed"] == 1 and row["downloaded"] == 1
            (month,) = body["months"]
            assert month["requests"] == 1 and month["bundles"] == 1 and month["downloads"] == 1

            # Revoked at B: its calls are refused with the reason, and the bundle can no longer be fetched.
            status, body = await call(manager_b, "POST", f"{b.url}/api/agencies/{agency.id}/revoke",
                                      json={"reason": "key reported stolen"})
            assert status == 200, body
            status, body = await agency.call("GET", b.url + listed["url"])
            assert status == 403 and "revoked" in body["error"] and "key reported stolen" in body["error"]
        finally:
            await agency.close()


async def _listed(manager, b, request_id: str) -> bool:
    return any(r["id"] == request_id for r in await b_requests(manager, b))
