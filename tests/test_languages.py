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
from tests.people import PASSWORD, claim, invite
from tests.people import browser as http_client
from tests.test_browser import PHONE, chromium, shot  # noqa: F401  (chromium is a fixture)

WEB = Path(__file__).parent.parent / "node" / "web"
BROOKLYN = {"node__latitude": "40.60", "node__longitude": "-73.96"}   # inside the flash flood warning's polygon


def catalogue(language: str) -> dict:
    """The STRINGS and PATTERNS of a language's catalogue modules (the resident app's and the console's, merged as
    node/web/i18n.js merges them), read by Node.js (the modules are plain data)."""
    require(subprocess.run(["node", "--version"], capture_output=True).returncode == 0, "needs Node.js")
    app, console = (WEB / f"i18n-{language}.js").as_uri(), (WEB / f"i18n-{language}-console.js").as_uri()
    script = (f"Promise.all([import('{app}'), import('{console}')]).then(([a, c]) => "
              "console.log(JSON.stringify({strings: {...c.STRINGS, ...a.STRINGS}, "
              "patterns: [...a.PATTERNS, ...c.PATTERNS]})))")
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


# What a page shows that no catalogue translates, on purpose: commands, names of standards, config keys.
UNTRANSLATED = re.compile(r"^(SOS|Ed25519|nnode audit verify|HTTPS?|SHA-256|Neighborhood Node|[\d\s:.,/()%+-]*|"
                          r".*@.*|[a-z_]+\.[a-z_]+|Clip|Clips|Hash|Normal|Elm Street 12|4B|Ada)$")
ENGLISH_WORDS = re.compile(r"\b(the|and|your|you|of|to|is|are|not|this|with|from|for)\b", re.I)
VISIBLE_TEXT = """() => {
  const texts = [];
  const shown = (el) => el && !el.closest("script, style, [translate=no], code, option, select")
    && el.checkVisibility({ visibilityProperty: true });
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.data.replace(/\\s+/g, " ").trim();
    if (text && shown(node.parentElement)) texts.push(text);
  }
  for (const el of document.querySelectorAll("[placeholder], [aria-label], [title], [alt]")) {
    if (!shown(el) && !el.closest(".visually-hidden")) continue;
    for (const name of ["placeholder", "aria-label", "title", "alt"]) {
      if (el.getAttribute(name)) texts.push(el.getAttribute(name).trim());
    }
  }
  return texts;
}"""


async def english_left(page, language: str) -> list[str]:
    """The texts on `page` still in English: a catalogue key shown as it is, or a phrase of English words."""
    english = {key for key, value in catalogue(language)["strings"].items() if key != value}
    return sorted({text for text in await page.evaluate(VISIBLE_TEXT)
                   if not UNTRANSLATED.match(text) and (text in english or len(ENGLISH_WORDS.findall(text)) >= 2)})


async def test_the_console_and_transparency_page_follow_the_managers_language_on_every_device(
        make_node, chromium):  # noqa: F811
    """The manager chooses Spanish on one phone; on a second phone (its browser in English) the console and the
    transparency page come up in Spanish, with no English left; Chinese the same. The resident's choice on the
    invite page becomes their account's."""
    from playwright.async_api import expect

    node = await make_node("home", **BROOKLYN, node__name="Elm Street 12")
    await import_alerts(node.engine, current(sample("nws_flash_flood_maximal.xml")))
    async with http_client() as manager:
        await claim(node, manager)
        code = (await invite(node, manager, unit="4B", name="Ada"))["code"]
    errors: list[str] = []

    async def phone(locale: str):
        context = await chromium.new_context(**PHONE, locale=locale)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        return context, page

    async def sign_in(page) -> None:
        await page.goto(node.url + "/login")
        await page.fill("#login-password", PASSWORD)
        await page.click("#login-submit")
        await page.wait_for_url(node.url + "/manage")

    # The resident picks Spanish on the invite page before joining: the account keeps it.
    resident_context, resident = await phone("en-US")
    await resident.goto(node.url + f"/join#code={code}")
    await resident.select_option("#language-select", "es")
    await expect(resident.locator("html")).to_have_attribute("lang", "es")
    await resident.goto(node.url + f"/join#code={code}")     # the page took the code out of its address
    await resident.click("#join-submit")
    await resident.wait_for_url(node.url + "/")
    await expect(resident.locator('#tabs button[data-view="alerts"]')).to_contain_text("Alertas")
    # the app saved the device's choice to the account as it opened (a condition, waited on by the page)
    await resident.wait_for_function(
        "() => fetch('/api/session').then((r) => r.json()).then((s) => s.language === 'es')")
    await resident_context.close()

    first_context, first = await phone("en-US")
    await sign_in(first)
    await expect(first.locator("h1")).to_contain_text("manager console")
    await first.select_option("#language-select", "es")
    await first.wait_for_load_state("load")
    await expect(first.locator("html")).to_have_attribute("lang", "es")
    await first_context.close()

    for language, heading in (("es", "consola de administración"), ("zh", "管理控制台")):
        context, page = await phone("en-US")     # another phone, whose browser asks for English
        await sign_in(page)
        await expect(page.locator("html")).to_have_attribute("lang", "es" if language == "es" else "zh-Hans")
        await expect(page.locator("h1")).to_contain_text(heading)
        await expect(page.locator("#residents-body")).to_contain_text("4B")
        await expect(page.locator("#console-alerts-list")).to_contain_text("Flood")
        left = await english_left(page, language)
        assert left == [], "\n".join(left)
        await shot(page, f"language-{language}-console")
        await page.goto(node.url + "/transparency")
        await expect(page.locator("h1")).to_contain_text("transparencia" if language == "es" else "透明度")
        await expect(page.locator("#transparency-status")).not_to_have_text(
            re.compile("Cargando|正在加载|Loading"))
        left = await english_left(page, language)
        assert left == [], "\n".join(left)
        await shot(page, f"language-{language}-transparency")
        if language == "es":   # the choice made here is the account's: the next phone comes up in Chinese
            await page.select_option("#language-select", "zh")
            await page.wait_for_load_state("load")
            await expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
        await context.close()
    assert not errors, errors
