"""Comfort on a phone, in Chromium at phone size: dark mode that stays readable, files checked before they are sent
(with the error in view above the tab bar), required fields marked, and the console and transparency page fitting
the screen. Screenshots land in test-artifacts/browser/."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np

from tests.people import browser as http_client
from tests.people import call, claim, invite
from tests.test_browser import HERE, PASSWORD, PHONE, chromium, shot  # noqa: F401  (chromium is a fixture)

# Every visible text's contrast against what is behind it, with the WCAG 2 formula: 4.5:1, or 3:1 for large text
# (24 px, or 18.66 px bold). Elements over pictures (video, map tiles) are skipped: their background is not a colour.
CONTRAST = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const behind = (node) => {
    for (let at = node; at; at = at.parentElement) {
      const style = getComputedStyle(at);
      if (style.backgroundImage !== "none" || ["VIDEO", "IMG", "svg"].includes(at.tagName)) return null;
      const [r, g, b, a = 1] = rgb(style.backgroundColor);
      if (a > 0.5) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const node = text.parentElement;
    if (!text.textContent.trim() || !node || node.closest("[hidden], .visually-hidden, .leaflet-container, svg")) {
      continue;
    }
    const box = node.getBoundingClientRect();
    const style = getComputedStyle(node);
    if (!box.width || !box.height || style.visibility === "hidden" || Number(style.opacity) === 0) continue;
    const back = behind(node);
    if (!back) continue;
    const fore = lum(rgb(style.color));
    const ratio = (Math.max(fore, lum(back)) + 0.05) / (Math.min(fore, lum(back)) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      low.push(`${ratio.toFixed(2)} ${node.tagName}.${node.className} ${JSON.stringify(text.textContent.trim().slice(0, 40))}`);
    }
  }
  return { low, page: getComputedStyle(document.body).backgroundColor };
}"""


async def _resident(chromium, node, code: str, **context):  # noqa: F811
    page = await (await chromium.new_context(**PHONE, **context)).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(node.url + f"/join#code={code}")
    await page.click("#join-submit")
    await page.wait_for_url(node.url + "/")
    return page, errors


async def test_dark_mode_follows_the_phone_and_every_text_stays_readable(make_node, chromium):  # noqa: F811
    from playwright.async_api import expect

    node = await make_node("home", **HERE, node__name="Elm Street 12")
    async with http_client() as manager:
        await claim(node, manager)
        for severity in ("Extreme", "Severe", "Moderate", "Minor"):
            status, _ = await call(manager, "POST", node.url + "/api/alerts", json={
                "event": f"{severity} test", "headline": f"A {severity.lower()} alert", "severity": severity})
            assert status == 200
        codes = {scheme: (await invite(node, manager, unit=unit))["code"] for scheme, unit in (("dark", "4B"),
                                                                                             ("light", "5C"))}
    for scheme in ("dark", "light"):
        page, errors = await _resident(chromium, node, codes[scheme], color_scheme=scheme)
        await expect(page.locator("#alerts-list article")).to_have_count(4)
        for view in ("alerts", "report", "cameras", "sos", "timeline"):
            await page.click(f'#tabs button[data-view="{view}"]')
            await expect(page.locator(f"#view-{view}")).to_be_visible()
            found = await page.evaluate(CONTRAST)
            assert not found["low"], (scheme, view, found["low"])
            dark = sum(int(v) for v in found["page"][4:-1].split(",")[:3]) < 150
            assert dark == (scheme == "dark"), (scheme, found["page"])
        await page.click('#tabs button[data-view="alerts"]')
        await shot(page, f"comfort-{scheme}-alerts")
        assert not errors, errors
        await page.context.close()

    console = await (await chromium.new_context(**PHONE, color_scheme="dark")).new_page()
    await console.goto(node.url + "/login")
    await console.fill("#login-password", PASSWORD)
    await console.click("#login-submit")
    await console.wait_for_url(node.url + "/manage")
    await expect(console.locator("#live-status")).to_have_attribute("data-state", "live")
    found = await console.evaluate(CONTRAST)
    assert not found["low"], found["low"]
    await shot(console, "comfort-dark-console")
    await console.context.close()


def _video(path: Path, seconds: int) -> Path:
    """A real WebM video (VP8) of `seconds`, which Chromium reads the length of."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(seconds * 10):
            picture = np.full((120, 160, 3), (i * 7) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


async def test_files_are_checked_before_sending_and_the_error_shows_above_the_tab_bar(make_node, chromium,  # noqa: F811
                                                                                     tmp_path):
    from playwright.async_api import expect

    node = await make_node("home", **HERE, cameras__upload_max_mb=1, cameras__upload_max_seconds=2,
                           reports__max_photo_bytes=65536)
    long_video = await asyncio.to_thread(_video, tmp_path / "doorbell.webm", 4)
    async with http_client() as manager:
        await claim(node, manager)
        code = (await invite(node, manager))["code"]
    page, errors = await _resident(chromium, node, code)
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if request.method == "POST" else None)
    await page.click('#tabs button[data-view="cameras"]')
    status = page.locator("#upload-status")

    async def refused(files, words: str) -> None:
        await page.set_input_files("#upload-file", files)
        await expect(status).to_contain_text(words)
        await page.click("#upload-submit")
        await expect(status).to_contain_text(words)
        await expect(page.locator("#upload-file")).to_have_attribute("aria-invalid", "true")
        # In view, above the tab bar (which covers the bottom of a phone's screen).
        box, bar = await status.bounding_box(), await page.locator("#tabs").bounding_box()
        assert box["y"] >= 0 and box["y"] + box["height"] <= bar["y"] + 1, (box, bar)

    await refused({"name": "porch.mp4", "mimeType": "video/mp4", "buffer": b"\0" * (2 << 20)},
                  "is 2 MB; this building takes videos up to 1 MB")
    await shot(page, "comfort-upload-too-big")
    await refused({"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8\xff" + b"\0" * 100},
                  "is not a video (image/jpeg)")
    await refused({"name": "nothing.mp4", "mimeType": "video/mp4", "buffer": b""}, "is empty")
    await refused(str(long_video), "this building takes videos up to 0 min")   # 4 s against 2 s, in whole minutes
    assert not [url for url in sent if "/api/uploads" in url], sent

    await page.click('#tabs button[data-view="report"]')
    await page.set_input_files("#report-photo", {"name": "big.jpg", "mimeType": "image/jpeg",
                                                 "buffer": b"\xff\xd8\xff" + b"\0" * 100_000})
    await expect(page.locator("#report-status")).to_contain_text("this building takes photos up to 66 KB")
    await expect(page.locator("#report-photo-preview img")).to_have_count(0)
    assert not errors, errors


async def test_required_fields_are_marked_on_every_page(make_node, chromium):  # noqa: F811
    node = await make_node("home", **HERE)
    async with http_client() as manager:
        await claim(node, manager)
        code = (await invite(node, manager))["code"]
    context = await chromium.new_context(**PHONE)
    page = await context.new_page()
    unmarked = """() => [...document.querySelectorAll('input[required], textarea[required], select[required]')]
        .map((f) => [f.id, document.querySelector(`label[for="${f.id}"]`)])
        .filter(([, label]) => !label || !label.textContent.includes('(required)')).map(([id]) => id)"""
    for path in ("/join", "/login", "/agency"):
        await page.goto(node.url + path)
        await page.wait_for_load_state("networkidle")
        assert await page.evaluate(unmarked) == [], path
    await page.goto(node.url + f"/join#code={code}")
    await page.click("#join-submit")
    await page.wait_for_url(node.url + "/")
    assert await page.evaluate(unmarked) == []
    await page.goto(node.url + "/login")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(node.url + "/manage")
    assert await page.evaluate(unmarked) == []
    assert "(required)" in await page.locator('label[for="alert-area"]').text_content()
    await context.close()


async def test_the_console_and_the_transparency_page_fit_a_phone(make_node, chromium):  # noqa: F811
    from playwright.async_api import expect

    node = await make_node("home", **HERE, node__name="Elm Street 12")
    async with http_client() as manager:
        await claim(node, manager)
    context = await chromium.new_context(**PHONE)
    page = await context.new_page()
    overflow = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    await page.goto(node.url + "/login")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.wait_for_url(node.url + "/manage")
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    header = await page.locator("header.topbar").bounding_box()
    nav = await page.locator("nav.console-nav").bounding_box()
    assert header["height"] <= 170 and nav["height"] <= 90, (header, nav)   # 844 px tall: most of it is content
    wide = """() => [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right
        > document.documentElement.clientWidth + 1 && !(e.parentElement && e.parentElement.closest('.table-wrap, .console-nav ul')))
        .map((e) => `${e.tagName}#${e.id}.${e.className}`).slice(0, 8)"""
    assert await page.evaluate(overflow) <= 0, await page.evaluate(wide)
    await shot(page, "comfort-console-phone")
    await page.goto(node.url + "/transparency")
    await page.wait_for_load_state("networkidle")
    assert await page.evaluate(overflow) <= 0, await page.evaluate(wide)
    await shot(page, "comfort-transparency-phone")
    await context.close()
