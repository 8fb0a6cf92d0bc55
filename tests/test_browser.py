"""The web app in a real browser (Debian's Chromium through Playwright): a resident joins with an invite, sees an
alert from a peer node arrive live, posts a report, presses SOS; the manager's console receives it and acknowledges.
Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.firmware.tools import require
from tests.people import PASSWORD, call, claim
from tests.people import browser as http_client

ARTIFACTS = Path(os.environ.get("NNODE_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")) / "browser"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}
NEXT_DOOR = {"node__latitude": "40.7140", "node__longitude": "-74.0075"}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture
async def chromium():
    require(shutil.which(CHROMIUM) is not None, "needs Debian's chromium")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(False, "needs the playwright package")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_resident_and_manager_in_a_real_browser(make_node, chromium):
    from playwright.async_api import expect

    peer = await make_node("peer", **HERE)
    home = await make_node("home", **NEXT_DOOR, node__name="Elm Street 12")
    await peer.approve(home)
    await home.approve(peer)
    errors: list[str] = []
    async with http_client() as peer_manager, http_client() as claimer:
        await claim(peer, peer_manager)
        await claim(home, claimer)

        # The manager signs in with the password and makes an invite for 4B in the console.
        manager_context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        console = await manager_context.new_page()
        console.on("pageerror", lambda exc: errors.append(f"console page: {exc}"))
        await console.goto(home.url + "/login")
        await console.fill("#login-password", PASSWORD)
        await console.click("#login-submit")
        await console.wait_for_url(home.url + "/manage")
        await console.fill("#invite-unit", "4B")
        await console.fill("#invite-name", "Ada")
        await console.click("#invite-submit")
        await expect(console.locator("#invite-code")).to_have_text(
            __import__("re").compile(r"^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$"))
        code = (await console.locator("#invite-code").text_content()).strip()
        await expect(console.locator("#invite-qr svg")).to_be_visible()
        await expect(console.locator("#live-status")).to_have_attribute("data-state", "live")
        await shot(console, "1-console-invite")

        # The resident opens the invite link on their phone and lands in the app, live.
        phone_context = await chromium.new_context(**PHONE)
        phone = await phone_context.new_page()
        phone.on("pageerror", lambda exc: errors.append(f"resident page: {exc}"))
        await phone.goto(home.url + f"/join#code={code}")
        await expect(phone.locator("#join-code")).to_have_value(code)
        await phone.click("#join-submit")
        await phone.wait_for_url(home.url + "/")
        await expect(phone.locator("#live-status")).to_have_attribute("data-state", "live")
        await expect(phone.locator("#who")).to_contain_text("4B")
        await shot(phone, "2-resident-joined")

        # An alert published on the peer node appears on the open page without a reload.
        status, posted = await call(peer_manager, "POST", peer.url + "/api/alerts", json={
            "event": "Gas leak", "headline": "Gas leak on Elm Street: stay indoors", "severity": "Severe",
            "urgency": "Immediate", "certainty": "Observed", "category": "Safety", "expires_hours": 2,
            "instruction": "Keep windows closed."})
        assert status == 200, posted
        alert = phone.locator(f'#alerts-list article[data-event="{posted["event"]}"]')
        await expect(alert).to_contain_text("Gas leak on Elm Street", timeout=15_000)
        await expect(alert).to_contain_text("Severe")
        await shot(phone, "3-alert-live")

        # The resident reports what they saw; a description by race alone is refused with the reason.
        await phone.click('#tabs button[data-view="report"]')
        await phone.fill("#report-what", "Someone tried every car door in the garage around 2 am.")
        await phone.select_option("#report-category", "suspicious-activity")
        await phone.check("#report-person-toggle")
        await phone.fill("#person-race", "White")
        await phone.click("#report-submit")
        await expect(phone.locator("#report-status")).to_contain_text("other than race or ethnicity")
        await phone.fill("#person-clothing", "green parka")
        await phone.fill("#person-height", "short")
        await phone.click("#report-submit")
        # It describes a person by race (with enough else): held, the reporter told so, the console shows why.
        await expect(phone.locator("#report-status")).to_contain_text("reviews it before neighbors see it",
                                                                      timeout=10_000)
        await expect(phone.locator("#reports-list")).to_contain_text("car door")
        await expect(phone.locator("#reports-list .tag-held")).to_have_text("Held for review")
        await shot(phone, "4-report-posted")
        held = console.locator("#moderation-list article.report", has_text="car door")
        await expect(held).to_contain_text("Held: it mentions race or ethnicity (white)", timeout=15_000)
        await expect(held.locator('button[data-action="restore"]')).to_have_text(
            __import__("re").compile("Show to the building"))
        await shot(console, "4b-console-held-report")

        # SOS: the page says it does not call 911; the console hears it at once and acknowledges.
        await phone.click('#tabs button[data-view="sos"]')
        await expect(phone.locator("#sos-not-911")).to_contain_text("does not call 911")
        await expect(phone.locator("#sos-call")).to_have_attribute("href", "tel:911")
        await phone.fill("#sos-note", "smoke in the stairwell")
        await phone.click("#sos-button")
        await phone.click("#sos-confirm")
        banner = console.locator("#sos-banner")
        await expect(banner).to_be_visible(timeout=5_000)
        await expect(banner).to_contain_text("4B")
        await expect(banner).to_contain_text("smoke in the stairwell")
        await shot(console, "5-console-sos")
        await console.click("#sos-ack-button")
        await expect(phone.locator("#sos-state")).to_contain_text("Acknowledged", timeout=10_000)
        await shot(phone, "6-resident-acknowledged")

        # Keyboard and labels: every form control on both pages has an accessible name.
        for page in (phone, console):
            unnamed = await page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
                .filter(e => e.offsetParent !== null && e.type !== 'hidden')
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                             && !e.getAttribute('aria-labelledby') && !(e.textContent || '').trim())
                .map(e => e.id || e.outerHTML.slice(0, 80))""")
            assert unnamed == [], unnamed
        await phone_context.close()
        await manager_context.close()
    assert errors == []


async def test_sos_cancelled_and_resolved_seen_on_two_phones(make_node, chromium):
    """Ada raises an SOS and takes it back; then raises another, which Sam (on call) resolves with a note. Both
    changes reach both open pages at once: the caller's status line, the responder's banner and list."""
    from playwright.async_api import expect

    home = await make_node("home", **NEXT_DOOR, node__name="Elm Street 12")
    errors: list[str] = []
    async with http_client() as manager:
        await claim(home, manager)
        codes = {}
        for unit, name in (("4B", "Ada"), ("3C", "Sam")):
            _, made = await call(manager, "POST", home.url + "/api/invites", json={"unit": unit, "name": name})
            codes[name] = made["invite"]["code"]
        pages = {}
        for name in ("Ada", "Sam"):
            context = await chromium.new_context(**PHONE)
            page = pages[name] = await context.new_page()
            page.on("pageerror", lambda exc, name=name: errors.append(f"{name}'s page: {exc}"))
            await page.goto(home.url + f"/join#code={codes[name]}")
            await page.click("#join-submit")
            await page.wait_for_url(home.url + "/")
        _, listed = await call(manager, "GET", home.url + "/api/residents")
        sam = next(r["id"] for r in listed["residents"] if r["unit"] == "3C")
        status, _ = await call(manager, "POST", home.url + f"/api/residents/{sam}/on-call", json={"on_call": True})
        assert status == 200
        ada, sam_page = pages["Ada"], pages["Sam"]
        await sam_page.reload()   # his page learns he is on call
        for page in (ada, sam_page):
            await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")

        async def raise_sos(note: str) -> None:
            await ada.click('#tabs button[data-view="sos"]')
            await ada.fill("#sos-note", note)
            await ada.click("#sos-button")
            await ada.click("#sos-confirm")
            await expect(ada.locator("#sos-state")).to_contain_text("waiting for a responder")
            await expect(sam_page.locator("#sos-banner")).to_contain_text(note, timeout=10_000)

        # A false alarm: Ada cancels it, and Sam's banner goes away with the reason.
        await raise_sos("pressed by my toddler")
        await shot(sam_page, "7-responder-sos")
        await ada.click("#sos-false-alarm")
        await expect(ada.locator("#sos-state")).to_contain_text("cancelled as a false alarm")
        await expect(ada.locator("#sos-mine")).to_be_hidden()
        await expect(sam_page.locator("#sos-banner")).to_be_hidden(timeout=10_000)
        await expect(sam_page.locator("#sos-ended-note")).to_contain_text("cancelled by the caller")
        await shot(ada, "8-caller-cancelled")

        # A real one: Sam answers it from his SOS tab and resolves it with a note Ada reads.
        await raise_sos("fell in the stairwell")
        await sam_page.click("#sos-ack-button")
        await expect(ada.locator("#sos-state")).to_contain_text("Acknowledged by Sam", timeout=10_000)
        await sam_page.click('#tabs button[data-view="sos"]')
        card = sam_page.locator("#sos-calls article.sos-call")
        await expect(card).to_have_count(1)
        await card.locator(".sos-resolve").click()
        await expect(card.locator(".form-status")).to_contain_text("Say how the call was resolved")
        await card.locator("textarea").fill("Helped her up; her daughter is with her now")
        await shot(sam_page, "9-responder-resolving")
        await card.locator(".sos-resolve").click()
        await expect(sam_page.locator("#sos-calls article.sos-call")).to_have_count(0, timeout=10_000)
        await expect(sam_page.locator("#sos-ended-note")).to_contain_text("resolved by Sam")
        await expect(ada.locator("#sos-state")).to_contain_text("resolved by Sam", timeout=10_000)
        await expect(ada.locator("#sos-state")).to_contain_text("her daughter is with her now")
        await expect(ada.locator("#sos-button")).to_be_visible()      # she can ask for help again
        await shot(ada, "10-caller-resolved")
        for page in pages.values():
            await page.context.close()
    assert errors == []
