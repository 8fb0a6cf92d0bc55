"""Cameras and clips in a real browser (Debian's Chromium through Playwright): the manager sees a simulated camera
streaming and lets residents watch it; a resident on a phone sees it, plays a motion clip, watches live, and uploads
a clip of their own; the manager holds a clip, cannot delete it while held, and releases it. Screenshots land in
test-artifacts/camera-browser/."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from node.keys import CAMERAS
from tests.conftest import wait_until
from tests.firmware.tools import need
from tests.people import PASSWORD, claim, invite
from tests.people import browser as http_client
from tests.test_browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.test_browser import (
    PHONE,
    chromium,  # noqa: F401 (a fixture, used by name)
)

ARTIFACTS = BROWSER_ARTIFACTS.parent / "camera-browser"
# Someone crosses the picture for 1.5 s every 5 s; pre and post capture of 1 s.
SIM = {"id": "yard", "name": "Back yard", "url": "sim:?width=320&height=240&fps=10&period=5&walk=1.5",
       "pre_capture": 1, "post_capture": 1}
UNNAMED_CONTROLS = """() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter(e => e.offsetParent !== null && e.type !== 'hidden')
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby') && !(e.textContent || '').trim())
    .map(e => e.id || e.outerHTML.slice(0, 80))"""
VIDEO_STATE = """(uid) => {
    const video = document.querySelector(`#clips-list li[data-uid="${uid}"] video`);
    return video && {readyState: video.readyState, duration: video.duration, error: video.error && video.error.code};
}"""


@pytest.fixture
def doorbell(tmp_path) -> Path:
    """A 2 s WebM such as a doorbell camera saves (VP8, which the node re-encodes to H.264)."""
    need("ffmpeg")
    path = tmp_path / "doorbell.webm"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
                    "-t", "2", "-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", str(path)],
                   check=True, timeout=60)
    return path


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def played(page, uid: str) -> dict:
    """Press a clip in the list and wait until its <video> knows its duration (or fails)."""
    await page.click(f'#clips-list li[data-uid="{uid}"] .clip-open')
    await page.wait_for_function(f"""() => {{ const s = ({VIDEO_STATE})("{uid}");
        return s && (s.error || (s.readyState >= 1 && Number.isFinite(s.duration))); }}""", timeout=15_000)
    return await page.evaluate(VIDEO_STATE, uid)


async def test_cameras_and_clips_in_a_real_browser(make_node, chromium, doorbell):  # noqa: F811 (the fixture)
    from playwright.async_api import expect

    node = await make_node("home", cameras__devices=[SIM], node__name="Elm Street 12")
    errors: list[str] = []
    async with http_client() as claimer:
        await claim(node, claimer)
        code = (await invite(node, claimer, unit="4B", name="Ada"))["code"]

    # The manager signs in, sees the camera streaming and lets residents watch it.
    manager_context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    console = await manager_context.new_page()
    console.on("pageerror", lambda exc: errors.append(f"console page: {exc}"))
    await console.goto(node.url + "/login")
    await console.fill("#login-password", PASSWORD)
    await console.click("#login-submit")
    await console.wait_for_url(node.url + "/manage")
    camera = console.locator('#cameras-list article[data-camera="yard"]')
    # The simulated walker may be crossing the yard right now, which the state line says too.
    streaming = re.compile("^Streaming \\(320 \u00d7 240\\)(, motion now)?$")
    await expect(camera.locator(".camera-state")).to_have_text(streaming, timeout=20_000)
    await expect(console.locator("#camera-yard-residents")).not_to_be_checked()
    await console.check("#camera-yard-residents")
    await expect(camera).to_contain_text("Back yard: residents can watch.")
    await shot(console, "1-console-camera")

    # A resident on their phone (in New York) sees the camera and, soon, a clip of someone crossing the yard.
    phone_context = await chromium.new_context(**PHONE, timezone_id="America/New_York", locale="en-US")
    phone = await phone_context.new_page()
    phone.on("pageerror", lambda exc: errors.append(f"resident page: {exc}"))
    await phone.goto(node.url + f"/join#code={code}")
    await phone.click("#join-submit")
    await phone.wait_for_url(node.url + "/")
    await phone.click('#tabs button[data-view="cameras"]')
    await expect(phone.locator('#cameras-list article[data-camera="yard"]')).to_contain_text("Back yard")
    await expect(phone.locator("#cameras-status")).to_have_text("")
    first = phone.locator("#clips-list li.clip").first
    await expect(first).to_contain_text("Back yard", timeout=45_000)
    uid = await first.get_attribute("data-uid")
    clips = (await (await phone.request.get(node.url + "/api/clips")).json())["clips"]
    clip = next(c for c in clips if c["uid"] == uid)

    # Pressing the clip plays it: the browser reads the MP4 and finds the same duration as the node.
    video = await played(phone, uid)
    assert video["error"] is None and video["readyState"] >= 1, video
    assert abs(video["duration"] - clip["duration"]) <= 0.3, (video, clip)
    await shot(phone, "2-resident-clip")
    await phone.click(f'#clips-list li[data-uid="{uid}"] .clip-close')
    await expect(phone.locator(f'#clips-list li[data-uid="{uid}"] video')).to_have_count(0)

    # Live view: only on request, a real picture, and the node's viewer place is given back on Stop.
    assert node.app[CAMERAS].camera("yard").viewers == 0
    await phone.click('#cameras-list article[data-camera="yard"] .camera-watch')
    live = phone.locator('#cameras-list article[data-camera="yard"] .camera-live img')
    await expect(live).to_be_visible()
    await phone.wait_for_function("""() => {
        const img = document.querySelector('#cameras-list article[data-camera="yard"] .camera-live img');
        return img && img.complete && img.naturalWidth > 0; }""", timeout=15_000)
    assert await live.evaluate("img => img.naturalWidth") == 320
    await shot(phone, "3-resident-live")
    await phone.click('#cameras-list article[data-camera="yard"] .camera-watch')
    await expect(live).to_have_count(0)
    await wait_until(lambda: node.app[CAMERAS].camera("yard").viewers == 0, timeout=10)

    # Upload: a file that is not a video is refused with the node's reason; a WebM from a doorbell is stored,
    # with the time the resident typed read in their own time zone, and plays back.
    await expect(phone.locator("#upload-private")).to_contain_text("private to you")
    await phone.set_input_files("#upload-file", {"name": "letter.mp4", "mimeType": "video/mp4",
                                                 "buffer": b"Dear neighbours, this is not a video.\n" * 50})
    await phone.click("#upload-submit")
    await expect(phone.locator("#upload-status")).to_contain_text("upload: ", timeout=15_000)
    await phone.set_input_files("#upload-file", str(doorbell))
    await phone.fill("#upload-recorded", "2025-11-20T21:15")
    await phone.fill("#upload-note", "parcel taken")
    await phone.click("#upload-submit")
    await expect(phone.locator("#upload-status")).to_contain_text("only you can see it", timeout=30_000)
    mine = phone.locator("#clips-list li.clip", has_text="Your upload")
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text("Nov 20, 2025, 9:15")
    upload_uid = await mine.get_attribute("data-uid")
    uploads = [c for c in (await (await phone.request.get(node.url + "/api/clips")).json())["clips"] if c["upload"]]
    assert [c["uid"] for c in uploads] == [upload_uid] and uploads[0]["note"] == "parcel taken"
    assert uploads[0]["start"] == datetime(2025, 11, 20, 21, 15, tzinfo=timezone(timedelta(hours=-5))).timestamp()
    video = await played(phone, upload_uid)
    assert video["error"] is None and abs(video["duration"] - 2.0) <= 0.3, video
    await shot(phone, "4-resident-upload")
    await mine.locator(".clip-delete").click()
    await mine.get_by_role("button", name="Yes, delete it").click()
    await expect(mine).to_have_count(0)
    await expect(phone.locator("#clips-status")).to_have_text("Your upload was deleted.")

    # The manager never sees the upload; watches the motion clip and, without stopping it, holds it with a note;
    # a held clip cannot be deleted, and the page says why in the node's words.
    item = console.locator(f'#clips-list li[data-uid="{uid}"]')
    await expect(item).to_be_visible(timeout=10_000)
    await expect(console.locator(f'#clips-list li[data-uid="{upload_uid}"]')).to_have_count(0)
    video = await played(console, uid)
    assert video["error"] is None and abs(video["duration"] - clip["duration"]) <= 0.3, video
    watching = await item.locator("video").element_handle()
    await item.locator(".clip-hold").click()
    await console.fill(f"#hold-note-{uid}", "police case 14")
    await item.get_by_role("button", name="Hold clip").click()
    await expect(item.locator(".clip-holds")).to_contain_text("police case 14")
    assert await watching.evaluate("v => v.isConnected && !v.error")  # the same video, still open
    await item.locator(".clip-close").click()
    await expect(item.locator(".clip-open img")).to_be_visible()
    await item.locator(".clip-delete").click()
    await item.locator(".clip-delete-yes").click()
    await expect(item).to_contain_text("cannot be deleted until its holds are released")
    await shot(console, "5-console-held")
    await item.locator(".clip-release").click()
    await expect(item.locator(".tag-held")).to_have_count(0)
    await item.locator(".clip-delete").click()
    await item.locator(".clip-delete-yes").click()
    await expect(item).to_have_count(0)
    assert await console.evaluate(UNNAMED_CONTROLS) == []

    # In the resident app the manager sees every camera, and no upload form: uploads are for residents.
    await console.goto(node.url + "/#cameras")
    await expect(console.locator('#cameras-list article[data-camera="yard"]')).to_be_visible()
    await expect(console.locator("#upload-manager")).to_be_visible()
    await expect(console.locator("#upload-form")).to_be_hidden()
    for page in (phone, console):
        assert await page.evaluate(UNNAMED_CONTROLS) == []
    await phone_context.close()
    await manager_context.close()
    assert errors == []
