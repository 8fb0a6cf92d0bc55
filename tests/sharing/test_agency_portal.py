"""The agency portal (/agency) in a real browser (Debian's Chromium through Playwright): the agency picks its key file,
which WebCrypto (Ed25519) uses in the page and never uploads; a request out of policy shows the node's reason at the
field; a good request is signed in the page, accepted and listed; the bundle an owner consented to downloads with a
signed call and verifies offline. Screenshots land in test-artifacts/agency-portal/."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from node.sharing import load_agency_key, verify_bundle, write_agency_key
from node.sharing.client import AgencyClient
from tests.conftest import wait_until
from tests.people import browser as http_client
from tests.people import call, claim
from tests.test_browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.test_browser import chromium  # noqa: F401 (a fixture)

ARTIFACTS = BROWSER_ARTIFACTS.parent / "agency-portal"
SIM = {"id": "yard", "name": "Back yard", "url": "sim:?width=320&height=240&fps=10&period=5&walk=1.5",
       "pre_capture": 1, "post_capture": 1}
HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}
ZONE = "America/New_York"
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter(e => e.offsetParent !== null && e.type !== 'hidden')
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby') && !(e.textContent || '').trim())
    .map(e => e.id || e.outerHTML.slice(0, 80))"""


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def local(moment: datetime) -> str:
    """A datetime-local value in the page's time zone."""
    return moment.astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%dT%H:%M")


async def test_agency_portal_signs_requests_and_downloads_bundles(make_node, chromium, tmp_path):  # noqa: F811
    from playwright.async_api import expect

    node = await make_node("home", cameras__devices=[SIM], **HERE)
    key_path = tmp_path / "metro.key"
    key = await asyncio.to_thread(write_agency_key, key_path)
    public = key.verify_key.encode().hex()
    seed = key.encode().hex()
    async with http_client() as manager:
        await claim(node, manager)
        status, body = await call(manager, "POST", node.url + "/api/agencies", json={
            "key": public, "name": "Metro Police Department", "jurisdiction": "Metro City",
            "contact": "records@metro.example"})
        assert status in (200, 201), body

        context = await chromium.new_context(viewport={"width": 1100, "height": 900}, timezone_id=ZONE,
                                             locale="en-US", accept_downloads=True)
        page = await context.new_page()
        errors: list[str] = []
        sent: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # The refusals answer 400, which Chromium logs; anything else (a CSP violation, say) is an error.
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not msg.text.startswith(
            "Failed to load resource: the server responded with a status of 400") else None)
        page.on("request", lambda r: sent.append(f"{r.url} {r.headers} {r.post_data or ''}"))
        await page.goto(node.url + "/agency")
        await expect(page.locator("#node-key")).to_have_text(node.id)
        await expect(page.locator("#req-submit")).to_be_disabled()
        ed25519 = await page.evaluate("""async () => { try {
            await crypto.subtle.generateKey({name: "Ed25519"}, false, ["sign"]); return true; }
            catch (e) { return String(e); } }""")
        assert ed25519 is True, f"this Chromium lacks WebCrypto Ed25519: {ed25519}"

        # A file that is not a key is refused in the page; the agency key file is read and shows its public key.
        await page.set_input_files("#key-file", {"name": "notes.txt", "mimeType": "text/plain",
                                                 "buffer": b"not a key\n"})
        await expect(page.locator("#key-status")).to_contain_text("64 hex digits")
        await page.set_input_files("#key-file", str(key_path))
        await expect(page.locator("#key-public")).to_have_text(public)
        await expect(page.locator("#req-submit")).to_be_enabled()
        await expect(page.locator("#requests-status")).to_contain_text("No requests from this agency")

        # Five minutes is out of policy: the node's reason shows at the window and in the form's status.
        now = datetime.now().astimezone()
        start = (now - timedelta(minutes=20)).replace(second=0, microsecond=0)
        await page.fill("#req-case", "2026-004512")
        await page.fill("#req-reason", "parcel theft in the back yard")
        await page.fill("#req-start", local(start))
        await page.fill("#req-end", local(start + timedelta(minutes=5)))
        await page.fill("#req-lat", "40.7128")
        await page.fill("#req-lon", "-74.0060")
        await page.fill("#req-radius", "150")
        await page.fill("#req-contact", "Det. R. Diaz, +1 212 555 0100")
        await page.click("#req-submit")
        await expect(page.locator("#req-end-error")).to_contain_text(
            "out of policy: the window is 5 min; it must be from 15 min to 12 h")
        await expect(page.locator("#req-end")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#req-status")).to_contain_text("The node refused the request")
        await shot(page, "1-out-of-policy")

        # A polygon that crosses itself is refused at the polygon field.
        await page.check("#area-polygon")
        await expect(page.locator("#req-lat")).to_be_hidden()
        await page.fill("#req-polygon", "40.7120 -74.0070; 40.7135 -74.0050; 40.7135 -74.0070; 40.7120 -74.0050")
        await page.fill("#req-end", local(start + timedelta(minutes=25)))
        await page.click("#req-submit")
        await expect(page.locator("#req-polygon-error")).to_contain_text("cross")
        await expect(page.locator("#req-end-error")).to_be_hidden()

        # The circle, 25 minutes: signed in the page, accepted, listed.
        await page.check("#area-circle")
        await page.select_option("#req-urgency", "emergency")
        await page.click("#req-submit")
        await expect(page.locator("#req-status")).to_contain_text("sent", timeout=10_000)
        card = page.locator("#requests-list article").first
        await expect(card).to_contain_text("Case 2026-004512")
        await expect(card).to_contain_text("emergency")
        request_id = await card.get_attribute("data-request")
        await shot(page, "2-request-listed")

        async with AgencyClient(node.url, await asyncio.to_thread(load_agency_key, key_path)) as client:
            stored = await client.request(request_id)
        assert stored["agency"] == public and stored["urgency"] == "emergency"
        assert stored["area"] == {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 150}}
        assert stored["window"]["start"] == start.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert stored["reason"] == "parcel theft in the back yard"

        # The manager shares the yard's clip; the bundle appears in the portal and downloads with a signed call.
        async def a_clip() -> list:
            _, body = await call(manager, "GET", node.url + "/api/requests")
            mine = [r for r in body["requests"] if r["id"] == request_id]
            return mine and mine[0]["clips"]
        await wait_until(a_clip, timeout=60, interval=0.5)
        clip = (await a_clip())[0]
        status, body = await call(manager, "POST", node.url + f"/api/requests/{request_id}/clips/{clip['uid']}"
                                  "/consent", json={"choice": "redacted"})
        assert status in (200, 201), body

        bundle = page.locator("#bundles-list article").first

        async def listed() -> bool:
            await page.click("#refresh")
            return await page.locator("#bundles-list article").count() > 0
        await wait_until(listed, timeout=180, interval=2.0)
        bundle_id = await bundle.get_attribute("data-bundle")
        await expect(bundle).to_contain_text("Case 2026-004512")
        async with page.expect_download() as info:
            await bundle.get_by_role("button", name=f"Download bundle {bundle_id}").click()
        download = await info.value
        assert download.suggested_filename == f"{bundle_id}.nnbundle"
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        await expect(page.locator("#bundles-status")).to_contain_text(f"Saved {bundle_id}.nnbundle")
        from_file = await asyncio.to_thread(load_agency_key, key_path)
        result = await asyncio.to_thread(verify_bundle, saved, from_file, tmp_path / "verified",
                                         expected_node_key=node.id)
        assert result.manifest["request"]["id"] == request_id
        await shot(page, "3-bundle-downloaded")

        assert await page.evaluate(UNNAMED_CONTROLS) == []
        await context.close()
    assert errors == []
    assert sent and not [s for s in sent if seed in s.lower()], "the private key left the page"
