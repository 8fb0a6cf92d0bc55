"""Per-agency rate limits: a burst of footage requests, official alerts, downloads or calls is cut off with 429,
Retry-After and a JSON error naming the limit; what was accepted before stays, and other agencies are unaffected."""

from __future__ import annotations

import json
import time

from node.keys import AUDIT, DESK, STORE
from node.sharing.events import REQUEST_KIND
from node.sharing.requests import sign_request as sign_document
from tests.conftest import wait_until
from tests.people import browser, call, claim
from tests.sharing.flow import HERE, Agency, add_clip, make_video, request_fields


async def agency_call(agency: Agency, method: str, url: str, body=None) -> tuple[int, dict, dict]:
    """(status, JSON answer, headers) of one signed agency call."""
    data = json.dumps(body).encode() if body is not None else None
    async with agency.session.request(method, url, data=data, headers=agency.headers(method, url, data)) as resp:
        return resp.status, json.loads(await resp.read()), dict(resp.headers)


async def register(manager, node, *agencies: Agency) -> None:
    for number, agency in enumerate(agencies):
        status, body = await call(manager, "POST", node.url + "/api/agencies",
                                  json={"key": agency.id, "name": f"Agency {number}", "jurisdiction": "Metro"})
        assert status == 201, body


def assert_limited(status: int, body: dict, headers: dict, what: str, setting: str) -> int:
    """The refusal: 429, the shared error shape naming the limit and its settings, and a whole-second Retry-After."""
    assert status == 429, body
    assert body["ok"] is False and body["status"] == 429 and body["reason"] == "rate_limited", body
    assert body["limit"] == f"agencies.{setting}_per_{'minute' if setting == 'calls' else 'hour'}, " \
                            f"agencies.{setting}_burst", body
    assert f"too many {what}" in body["error"], body
    retry = int(headers["Retry-After"])
    assert retry >= 1
    return retry


async def test_forty_requests_at_once_are_cut_to_the_burst_and_only_those_reach_the_peer(make_node):
    a = await make_node("a", node__latitude=HERE[0], node__longitude=HERE[1])
    b = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1])
    await a.approve(b)
    await b.approve(a)
    hasty, other = Agency(), Agency()
    async with browser() as manager:
        await claim(a, manager)
        await register(manager, a, hasty, other)
        try:
            answers = [await agency_call(hasty, "POST", a.url + "/api/agency/requests",
                                         sign_document(request_fields(), hasty.keys)) for _ in range(40)]
            accepted = [body["request"]["id"] for status, body, _ in answers if status == 201]
            assert len(accepted) == 10, f"{len(accepted)} of 40 accepted"     # the default burst
            for status, body, headers in answers[10:]:
                retry = assert_limited(status, body, headers, "footage requests", "requests")
                assert retry <= 3600 // 30 + 1                     # 30 per hour after it
            # another agency has its own allowance
            status, body, _ = await agency_call(other, "POST", a.url + "/api/agency/requests",
                                                sign_document(request_fields(), other.keys))
            assert status == 201, body
            accepted.append(body["request"]["id"])

            def request_ids(events) -> set[str]:
                return {json.loads(e.body)["request"]["id"] for e in events if e.body}

            async def peer_has_them() -> bool:
                return request_ids(await b.app[STORE].recent(limit=100, kind=REQUEST_KIND)) >= set(accepted)
            await wait_until(peer_has_them, timeout=30)
            assert request_ids(await a.app[STORE].recent(limit=100, kind=REQUEST_KIND)) == set(accepted)
            assert request_ids(await b.app[STORE].recent(limit=100, kind=REQUEST_KIND)) == set(accepted)
            received = [e for e in await a.app[AUDIT].entries(limit=1000) if e["action"] == "request_received"]
            assert len(received) == 11
        finally:
            await hasty.close()
            await other.close()


async def test_official_alerts_in_a_row_stop_at_the_configured_burst(make_node):
    node = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                           agencies__alerts_burst=2, agencies__alerts_per_hour=2)
    agency = Agency()
    async with browser() as manager:
        await claim(node, manager)
        await register(manager, node, agency)
        try:
            answers = [await agency_call(agency, "POST", node.url + "/api/agency/alerts",
                                         {"event": "Police activity", "headline": f"Avoid Elm St ({n})",
                                          "severity": "Moderate", "urgency": "Immediate", "expires_hours": 2})
                       for n in range(10)]
            assert [status for status, _, _ in answers[:2]] == [201, 201], answers[:2]
            for status, body, headers in answers[2:]:
                retry = assert_limited(status, body, headers, "official alerts", "alerts")
                assert 1700 <= retry <= 1800        # 2 per hour: the next one in about half an hour
            status, alerts = await call(manager, "GET", node.url + "/api/alerts")
            shown = json.dumps(alerts["alerts"])
            assert "Avoid Elm St (0)" in shown and "Avoid Elm St (1)" in shown
            assert not any(f"Avoid Elm St ({n})" in shown for n in range(2, 10)), shown
            # the agency's reads are not writes: still answered
            status, body, _ = await agency_call(agency, "GET", node.url + "/api/agency/requests")
            assert status == 200, body
        finally:
            await agency.close()


async def test_downloads_and_calls_have_their_own_limits(make_node, tmp_path):
    node = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1],
                           cameras__devices=[{"id": "yard", "url": "sim:", "detect_motion": False}],
                           agencies__downloads_burst=2, agencies__calls_burst=12, agencies__calls_per_minute=1)
    start = time.time() - 50 * 60
    clip = await add_clip(node, make_video(tmp_path), start=start + 600)
    agency, other = Agency(), Agency()
    async with browser() as manager:
        await claim(node, manager)
        await register(manager, node, agency, other)
        try:
            fields = request_fields(start=start)
            first_call = time.monotonic()
            status, body, _ = await agency_call(agency, "POST", node.url + "/api/agency/requests",
                                                sign_document(fields, agency.keys))
            assert status == 201, body
            status, body = await call(manager, "POST",
                                      f"{node.url}/api/requests/{fields['id']}/clips/{clip.uid}/consent",
                                      json={"choice": "redacted"})
            assert status == 201, body
            await node.app[DESK].idle()
            status, body, _ = await agency_call(agency, "GET", node.url + "/api/agency/bundles")
            (bundle,) = body["bundles"]
            url = node.url + bundle["url"]
            for _ in range(2):      # calls 3 and 4
                async with agency.session.get(url, headers=agency.headers("GET", url, None)) as resp:
                    assert resp.status == 200 and len(await resp.read()) == bundle["size"]
            status, body, headers = await agency_call(agency, "GET", url)
            assert_limited(status, body, headers, "bundle downloads", "downloads")
            downloads = [e for e in await node.app[AUDIT].entries(limit=1000) if e["action"] == "download"]
            assert len(downloads) == 2    # the refused download was not audited, nor served
            # every signed call counts against calls_burst (12): 5 made, 7 more answered, then refused
            for _ in range(7):
                status, body, _ = await agency_call(agency, "GET", node.url + "/api/agency/requests")
                assert status == 200, body
            status, body, headers = await agency_call(agency, "GET", node.url + "/api/agency/requests")
            retry = assert_limited(status, body, headers, "agency calls", "calls")
            # 1 call a minute refills the burst: the next one is due a minute after the first, less what has passed
            # since (a loaded machine takes many seconds to build the bundle in between)
            assert 60 - (time.monotonic() - first_call) - 2 <= retry <= 60
            status, body, _ = await agency_call(other, "GET", node.url + "/api/agency/requests")
            assert status == 200, body
        finally:
            await agency.close()
            await other.close()
