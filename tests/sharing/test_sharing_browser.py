"""Sharing with agencies in a real browser (Debian's Chromium through Playwright): the manager registers an agency
in the console; the agency posts an emergency request; the console shows the banner and the request with the
simulated camera's matching clip; the manager shares it blurred, sees the bundle become ready, and withdraws it; a
resident reads the transparency page. Screenshots land in test-artifacts/sharing-browser/."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import nacl.public
import nacl.signing
import pytest

from node.sharing.agency_keys import AgencyKey
from node.sharing.requests import format_time, sign_request
from sync import sign_request as sign_http
from tests.camera.test_camera_browser import SIM, UNNAMED_CONTROLS, doorbell  # noqa: F401 (a fixture)
from tests.conftest import wait_until
from tests.people import PASSWORD, call, claim, invite
from tests.people import browser as http_client
from tests.test_browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.test_browser import (
    PHONE,
    chromium,  # noqa: F401 (a fixture)
)

ARTIFACTS = BROWSER_ARTIFACTS.parent / "sharing-browser"
HERE = {"node.latitude": "40.7128", "node.longitude": "-74.0060", "cameras.devices": [SIM]}

STICKY = "(v) => document.querySelectorAll('.console-nav, .tabbar').forEach(e => { e.style.visibility = v; })"

pytestmark = pytest.mark.timeout(480)


async def shot(target, name: str, full_page: bool = True) -> None:
    """A screenshot of a page (whole, or what is on screen), or of one element (a Playwright locator)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = str(ARTIFACTS / f"{name}.png")
    if hasattr(target, "goto"):
        await target.screenshot(path=path, full_page=full_page)
    else:  # the console's sticky section links would cover part of the element
        await target.page.evaluate(STICKY, "hidden")
        await target.screenshot(path=path)
        await target.page.evaluate(STICKY, "")


def footage_request(key: AgencyKey, now: float) -> dict:
    """An emergency request for the last 20 minutes within 200 m of the building, signed by the agency."""
    fields = {"v": 1, "id": secrets.token_hex(16), "case_number": "2026-0042",
              "reason": "Burglary reported at the back of the building; looking for people crossing the yard.",
              "window": {"start": format_time(now - 1200), "end": format_time(now + 300)},
              "area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 200}},
              "urgency": "emergency", "contact": "Det. Diaz", "expires": format_time(now + 86400),
              "created": format_time(now)}
    return sign_request(fields, key)


async def test_sharing_with_an_agency_in_a_real_browser(make_node, chromium, doorbell):  # noqa: F811 (fixtures)
    from playwright.async_api import expect

    node = await make_node("home", node__name="Elm Street 12",
                           **{name.replace(".", "__"): value for name, value in HERE.items()})
    agency_key = nacl.signing.SigningKey.generate()
    agency_hex = agency_key.verify_key.encode().hex()
    errors: list[str] = []

    async with http_client() as manager_http, http_client() as agency_http:
        await claim(node, manager_http)
        code = (await invite(node, manager_http, unit="4B", name="Ada"))["code"]

        # A motion clip of the yard, inside the window the agency will ask for.
        clips: list[dict] = []

        async def have_clip() -> bool:
            status, body = await call(manager_http, "GET", node.url + "/api/clips")
            clips[:] = [c for c in body.get("clips", []) if c.get("camera") == "yard"] if status == 200 else []
            return bool(clips)
        await wait_until(have_clip, timeout=60, interval=0.5)
        uid = clips[0]["uid"]

        # The manager registers the agency in the console, by its key.
        manager_context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        console = await manager_context.new_page()
        console.on("pageerror", lambda exc: errors.append(f"console page: {exc}"))
        console.on("console", lambda msg: errors.append(f"console page: {msg.text}")
                   if msg.type == "error" and "Content Security Policy" in msg.text else None)
        await console.goto(node.url + "/login")
        await console.fill("#login-password", PASSWORD)
        await console.click("#login-submit")
        await console.wait_for_url(node.url + "/manage")
        await expect(console.locator("#agency-requests-status")).to_contain_text("No requests from agencies")
        await console.fill("#agency-key", agency_hex.upper())  # pasted in capitals: the page normalizes it
        await console.fill("#agency-name", "Metro Police Department")
        await console.fill("#agency-jurisdiction", "Metro City")
        await console.fill("#agency-contact", "records@metro.example")
        await console.click("#agency-submit")
        await expect(console.locator("#agency-form-status")).to_contain_text("Metro Police Department is registered")
        row = console.locator(f'#agencies-body tr[data-key="{agency_hex}"]')
        await expect(row).to_contain_text("Metro Police Department")
        await expect(row).to_contain_text("Active")
        await expect(console.locator("#live-status")).to_have_attribute("data-state", "live")
        await shot(console.locator("#agencies"), "1-console-agency-registered")

        # The agency posts an emergency request, signed with its key.
        document = footage_request(AgencyKey(agency_key, nacl.public.PrivateKey.generate()), time.time())
        url = node.url + "/api/agency/requests"
        body = json.dumps(document).encode()
        headers = sign_http(agency_key, "POST", url, body, tag="nnode-agency") | {"Content-Type": "application/json"}
        async with agency_http.post(url, data=body, headers=headers) as resp:
            assert resp.status == 201, await resp.text()

        # The console shows the emergency banner at once, and the request with the matching clip.
        banner = console.locator("#agency-banner")
        await expect(banner).to_be_visible(timeout=10_000)
        await expect(banner).to_contain_text("Metro Police Department")
        await expect(banner).to_contain_text("2026-0042")
        await expect(banner).to_contain_text("Nothing is shared unless")
        card = console.locator(f'#agency-requests-list article[data-id="{document["id"]}"]')
        await expect(card).to_contain_text("2026-0042", timeout=10_000)
        await expect(card).to_contain_text("Emergency")
        await expect(card).to_contain_text("Det. Diaz")
        await expect(card).to_contain_text("Within 200 m of 40.7128, -74.0060")
        clip = card.locator(f'li.request-clip[data-uid="{uid}"]')
        await expect(clip).to_contain_text("Back yard")
        await expect(clip).to_have_attribute("data-consent", "none")
        await expect(clip.locator(".clip-thumb")).to_be_visible()
        await expect(card).not_to_contain_text("null")
        await expect(card).not_to_contain_text("undefined")
        await card.scroll_into_view_if_needed()
        await shot(console, "2-console-emergency", full_page=False)

        # "Review the request" takes the manager to it; the banner goes.
        await console.click("#agency-banner-review")
        await expect(banner).to_be_hidden()
        assert await console.evaluate("document.activeElement.closest('article')?.dataset.id") == document["id"]

        # The clip plays in place.
        await clip.locator(".request-play").click()
        await console.wait_for_function("""(uid) => {
            const v = document.querySelector(`li.request-clip[data-uid="${uid}"] video`);
            return v && (v.error || (v.readyState >= 1 && Number.isFinite(v.duration))); }""", arg=uid, timeout=15_000)
        assert await clip.locator("video").evaluate("v => v.error === null")
        await clip.locator(".request-play").click()
        await expect(clip.locator("video")).to_have_count(0)

        # Sharing the original asks again; the manager goes back and shares it blurred (the default).
        await clip.locator(".consent-share").click()
        await expect(clip.locator('input[value="redacted"]')).to_be_checked()
        await clip.locator('input[value="original"]').check()
        await clip.locator(".consent-submit").click()
        confirm = clip.locator(".consent-confirm")
        await expect(confirm).to_be_visible()
        await expect(confirm).to_contain_text("unblurred")
        await confirm.get_by_role("button", name="No, go back").click()
        await expect(confirm).to_be_hidden()
        await clip.locator('input[value="redacted"]').check()
        assert await console.evaluate(UNNAMED_CONTROLS) == []
        await shot(card, "3-console-share-choice")
        await clip.locator(".consent-submit").click()
        await expect(clip.locator(".consent-state")).to_contain_text("faces and plates blurred")
        assert await clip.get_attribute("data-consent") in ("building", "ready")
        status, listed = await call(manager_http, "GET", node.url + "/api/requests")
        assert status == 200
        consent = next(c for r in listed["requests"] if r["id"] == document["id"] for c in r["clips"]
                       if c["uid"] == uid)["consent"]
        assert consent and consent["choice"] == "redacted", consent

        # Redaction takes a while; the page follows by itself until the bundle is ready.
        await expect(clip).to_have_attribute("data-consent", "ready", timeout=120_000)
        await expect(clip.locator(".consent-state")).to_contain_text("Ready for the agency")
        await shot(card, "4-console-ready")

        # Withdrawn before the agency downloaded it: the clip is not shared any more.
        await clip.locator(".consent-withdraw").click()
        await expect(clip).to_have_attribute("data-consent", "none")
        await expect(clip.locator(".consent-share")).to_be_visible()
        await expect(clip.locator(".form-status")).to_contain_text("Consent withdrawn")
        status, listed = await call(manager_http, "GET", node.url + "/api/requests")
        assert next(c for r in listed["requests"] if r["id"] == document["id"] for c in r["clips"]
                    if c["uid"] == uid)["consent"] is None
        assert await console.evaluate(UNNAMED_CONTROLS) == []
        await shot(card, "5-console-withdrawn")

        # A resident on their phone: no request matches their (no) uploads yet.
        phone_context = await chromium.new_context(**PHONE, timezone_id="America/New_York", locale="en-US")
        phone = await phone_context.new_page()
        phone.on("pageerror", lambda exc: errors.append(f"resident page: {exc}"))
        phone.on("console", lambda msg: errors.append(f"resident page: {msg.text}")
                 if msg.type == "error" and "Content Security Policy" in msg.text else None)
        await phone.goto(node.url + f"/join#code={code}")
        await phone.click("#join-submit")
        await phone.wait_for_url(node.url + "/")
        await phone.click('#tabs button[data-view="cameras"]')
        await phone.click("#requests-link")
        await expect(phone.locator("#requests-title")).to_be_visible()
        await expect(phone.locator('#tabs button[data-view="cameras"]')).to_have_attribute("aria-current", "page")
        await expect(phone.locator("#requests-status")).to_contain_text("No agency has asked")

        # They upload a clip from their doorbell, recorded five minutes ago (their clock, New York): it falls in
        # the window, so the request now shows them that clip, and only to them.
        await phone.locator("#view-requests").get_by_role("link", name="Back to Cameras").click()
        recorded = datetime.now(ZoneInfo("America/New_York")) - timedelta(minutes=5)
        await phone.set_input_files("#upload-file", str(doorbell))
        await phone.fill("#upload-recorded", recorded.strftime("%Y-%m-%dT%H:%M"))
        await phone.click("#upload-submit")
        await expect(phone.locator("#upload-status")).to_contain_text("only you can see it", timeout=30_000)
        await phone.click('#tabs button[data-view="alerts"]')
        await phone.click('#tabs button[data-view="cameras"]')
        await expect(phone.locator("#requests-count")).to_contain_text("1 waiting for your answer")
        await phone.click("#requests-link")
        mine = phone.locator(f'#requests-list article[data-id="{document["id"]}"]')
        await expect(mine).to_contain_text("2026-0042")
        upload = mine.locator("li.request-clip")
        await expect(upload).to_have_count(1)
        await expect(upload).to_contain_text("Your upload")
        await expect(mine).to_contain_text("1 of your clips matches")
        await upload.locator(".consent-share").click()
        await expect(upload.locator('input[value="redacted"]')).to_be_checked()
        assert await phone.evaluate(UNNAMED_CONTROLS) == []
        await shot(phone, "6-resident-requests", full_page=False)
        await upload.locator(".consent-submit").click()
        await expect(upload).to_have_attribute("data-consent", "ready", timeout=120_000)
        await expect(upload.locator(".consent-withdraw")).to_be_visible()
        await shot(mine, "7-resident-shared")
        # The manager's list never shows the resident's upload.
        await console.reload()
        await expect(card.locator("li.request-clip").first).to_be_visible()
        await expect(card.locator("li.request-clip", has_text="upload")).to_have_count(0)

        await phone.locator("#view-requests").get_by_role("link", name="transparency page").click()
        await phone.wait_for_url(node.url + "/transparency")
        listing = phone.locator("#requests-list")
        await expect(listing).to_contain_text("2026-0042")
        await expect(listing).to_contain_text("Metro Police Department")
        await expect(phone.locator("#head-facts")).to_contain_text("Entries")
        assert await phone.locator("#chart svg rect.chart-bar").count() >= 1
        await expect(phone.locator("#months-body")).to_contain_text("Metro Police Department")
        await expect(phone.locator("#log-body tr")).not_to_have_count(0)
        await expect(phone.locator("#head-check")).to_contain_text("checked the signature")
        await expect(phone.locator("#log-status")).to_contain_text("Checked in this browser")
        assert await phone.evaluate(UNNAMED_CONTROLS) == []
        await expect(listing).to_contain_text("Clips shared1")
        await shot(phone, "8-resident-transparency")

        # Back in the console: a pasted credential that is not JSON is refused with the reason; then the manager
        # revokes the agency, and its request is refused with the reason, nothing left to share.
        await console.fill("#credential-text", "{not json")
        await console.click("#credential-submit")
        await expect(console.locator("#credential-status")).to_contain_text("not valid JSON")
        await row.locator(".agency-revoke").click()
        await console.fill(f"#revoke-reason-{agency_hex}", "the key was reported stolen")
        await row.locator(".agency-revoke-yes").click()
        await expect(row).to_contain_text("Revoked on")
        await expect(row).to_contain_text("the key was reported stolen")
        await expect(card).to_have_attribute("data-status", "refused")
        await expect(card.locator(".refusal")).to_contain_text("revoked")
        await expect(card.locator(".consent-share")).to_have_count(0)
        assert await console.evaluate(UNNAMED_CONTROLS) == []
        await shot(console.locator("#agencies"), "9-console-revoked")

        await phone_context.close()
        await manager_context.close()
    assert errors == []
