"""The manager's console in a real browser shows each official feed's last poll (time, HTTP status, alerts found,
each entry skipped and why) and, on each alert, what its XML signature was found to be."""

from __future__ import annotations

import re

from node.keys import FEEDS
from tests.conftest import serving, wait_until
from tests.people import PASSWORD, claim
from tests.people import browser as http_client
from tests.test_browser import chromium, shot  # noqa: F401 (the fixture)
from tests.test_feed_shapes import Publisher, cap, nws_atom


async def test_the_console_shows_each_feeds_last_poll_and_alert_signatures(make_node, chromium):  # noqa: F811
    from playwright.async_api import expect

    agency = Publisher()
    agency.files = {"1": cap(1)}
    agency.feed = nws_atom(["/cap/1", "/cap/missing"])
    async with serving(agency.app()) as base:
        failing = base + "/nothing-here"
        node = await make_node("home", alerts__feeds=[base + "/feed", failing], alerts__poll_interval=30,
                               alerts__geocodes=["UGC=NYZ075"])
        status = node.app[FEEDS].status
        await wait_until(lambda: status[base + "/feed"]["ok"] and status[failing]["failures"] >= 1)
        async with http_client() as claimer:
            await claim(node, claimer)
        errors: list[str] = []
        context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        try:
            console = await context.new_page()
            console.on("pageerror", lambda exc: errors.append(str(exc)))
            await console.goto(node.url + "/login")
            await console.fill("#login-password", PASSWORD)
            await console.click("#login-submit")
            await console.wait_for_url(node.url + "/manage")
            good = console.locator(f'#console-feeds-list article[data-url="{base}/feed"]')
            await expect(good).to_contain_text("HTTP 200, atom: 2 entries, 1 alerts found, 1 published")
            await expect(good).to_contain_text(re.compile(r"/cap/missing: .*HTTP 404"))
            await expect(good).to_contain_text("Last poll")
            bad = console.locator(f'#console-feeds-list article[data-url="{failing}"]')
            await expect(bad).to_contain_text("FAILED (HTTP 404")
            await expect(console.locator("#console-alerts-list")).to_contain_text("Not signed by the publisher")
            await shot(console, "console-feeds")
        finally:
            await context.close()
        assert errors == []
