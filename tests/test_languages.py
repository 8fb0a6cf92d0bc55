"""The interface in the resident's language (node/web/i18n.js), in Chromium at phone size: a phone set to Spanish
gets the invite page, the app's tabs and forms, and an NWS warning's Spanish text in Spanish; the language menu
switches to Chinese and back, and the choice stays on the device. Every catalogue entry is checked against the
texts the pages and modules really contain, so a catalogue cannot drift from the interface silently."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.firmware.tools import require
from tests.people import browser as http_client
from tests.people import claim, invite
from tests.test_browser import PHONE, chromium, shot  # noqa: F401  (chromium is a fixture)

WEB = Path(__file__).parent.parent / "node" / "web"
BROOKLYN = {"node__latitude": "40.60", "node__longitude": "-73.96"}   # inside the flash flood warning's polygon


def catalogue(language: str) -> dict:
    """The STRINGS and PATTERNS of a catalogue module, read by Node.js (the module is plain data)."""
    require(subprocess.run(["node", "--version"], capture_output=True).returncode == 0, "needs Node.js")
    script = (f"import('{(WEB / f'i18n-{language}.js').as_uri()}').then((m) => "
              "console.log(JSON.stringify({strings: m.STRINGS, patterns: m.PATTERNS})))")
    found = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)


@pytest.mark.parametrize("language", ["es", "zh"])
def test_every_catalogue_entry_translates_a_text_the_interface_has(language):
    """A key that appears in no page or module is a typo or a text that was since reworded: it translates nothing."""
    sources = " ".join(" ".join(path.read_text().split()) for path in [*WEB.glob("*.html"), *WEB.glob("*.js"),
                                                                        *(WEB / "partials").glob("*.html")]
                       if not path.name.startswith(("i18n", "leaflet")))
    sources = html.unescape(sources.encode().decode("unicode_escape", errors="ignore") + " " + sources)
    # A text a module composes (a template literal with ${...} parts) is matched against the templates themselves.
    templates = [re.compile(".*?".join(re.escape(" ".join(part.split())) for part in re.split(r"\$\{[^}]*\}",
                                                                                             literal)) + r"\Z")
                 for literal in re.findall(r"`([^`]*)`", sources) if "${" in literal]
    found = catalogue(language)
    assert len(found["strings"]) >= 100, len(found["strings"])
    missing = [key for key in found["strings"]
               if key not in sources and not any(t.match(key) for t in templates)]
    for english, translated in found["patterns"]:
        # a translation may leave a part out (Chinese has no plural "s"), never invent one
        assert set(re.findall(r"\{\d+\}", translated)) <= set(re.findall(r"\{\d+\}", english)), english
        pieces = [piece.strip() for piece in re.split(r"\{\d+\}", english) if len(piece.strip()) > 3]
        if not all(piece in sources for piece in pieces):
            missing.append(english)
    # Some are sentences a module joins from several literals; more than a few means the catalogue has drifted.
    entries = len(found["strings"]) + len(found["patterns"])
    assert len(missing) <= entries // 10, missing


async def test_a_phone_in_spanish_gets_the_interface_and_the_warning_in_spanish(make_node, chromium):  # noqa: F811
    from playwright.async_api import expect

    node = await make_node("home", **BROOKLYN, node__name="Elm Street 12")
    await import_alerts(node.engine, current(sample("nws_flash_flood_maximal.xml")))
    async with http_client() as manager:
        await claim(node, manager)
        code = (await invite(node, manager))["code"]
    context = await chromium.new_context(**PHONE, locale="es-MX")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    es = catalogue("es")["strings"]

    await page.goto(node.url + f"/join#code={code}")
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    await expect(page.locator("h1")).to_have_text(es["Join your building's node"])
    await expect(page.locator('label[for="join-code"]')).to_contain_text(es["Invite code"])
    await page.click("#join-submit")
    await page.wait_for_url(node.url + "/")

    # The tabs and the section titles, and the warning's own Spanish info (the NWS sends both languages).
    await expect(page.locator('#tabs button[data-view="alerts"]')).to_contain_text(es["Alerts"])
    await expect(page.locator('#tabs button[data-view="report"]')).to_contain_text(es["Report"])
    await expect(page.locator("#alerts-list article")).to_contain_text("Aviso de Inundaciones Repentinas")
    await page.click('#tabs button[data-view="report"]')
    await expect(page.locator("#report-title")).to_have_text(es["Report something"])
    await expect(page.locator('label[for="report-what"]')).to_contain_text(es["What happened?"])
    # Text the modules add later is translated as it arrives: an error after a bad submit.
    await page.click('#tabs button[data-view="timeline"]')
    await expect(page.locator("#timeline-list")).to_contain_text("Aviso de Inundaciones Repentinas")
    await shot(page, "language-es-timeline")
    await page.click('#tabs button[data-view="alerts"]')
    await shot(page, "language-es-alerts")
    english_left = await page.evaluate("""() => [...document.querySelectorAll('#tabs button, h2, label')]
        .filter((e) => e.offsetParent !== null).map((e) => e.textContent.trim())
        .filter((t) => /\\b(the|your|and|Report|Alerts|Cameras)\\b/.test(t))""")
    assert not english_left, english_left

    # The menu: Chinese, kept for this device (a reload stays Chinese), then back to English.
    await page.select_option("#language-select", "zh")
    await page.wait_for_load_state("load")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    zh = catalogue("zh")["strings"]
    await expect(page.locator('#tabs button[data-view="alerts"]')).to_contain_text(zh["Alerts"])
    # The alert's own words are never touched by the interface's catalogue (no Chinese info: the next language)
    await expect(page.locator("#alerts-list article h3")).to_have_text(
        "Aviso de Inundaciones Repentinas emitido el 4 de agosto a las 4:05PM EDT hasta las 7:15PM EDT por NWS Upton NY")
    await shot(page, "language-zh-alerts")
    await page.reload()
    await expect(page.locator('#tabs button[data-view="map"]')).to_contain_text(zh["Map"])
    await page.select_option("#language-select", "en")
    await page.wait_for_load_state("load")
    await expect(page.locator('#tabs button[data-view="alerts"]')).to_contain_text("Alerts")
    await expect(page.locator("#alerts-list article")).to_contain_text("Flash Flood Warning")
    assert not errors, errors
    await context.close()
