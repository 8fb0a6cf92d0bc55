"""Sharing a 40-minute range as one bundle in a real browser at phone size (Debian's Chromium through Playwright):
the agency asks for 40 minutes; the manager picks the range on the phone, sees the clips, footage and gaps the node
counts, and shares it blurred as one bundle; the agency downloads it, runs `nnode verify` offline and plays every
picture of the joined video. Screenshots land in test-artifacts/sharing-browser/."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import av
import pytest

from node.keys import AUDIT, DESK
from tests.people import PASSWORD, call, claim
from tests.people import browser as http_client
from tests.sharing.flow import HERE, Agency, add_clip, make_video, request_fields
from tests.sharing.test_sharing_browser import shot
from tests.test_browser import (
    PHONE,
    chromium,  # noqa: F401 (a fixture)
)

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 2                                                  # each clip: 2 s at 10 pictures a second
OFFSETS = (60, 62, 700, 1200, 1900, 2300)                    # seconds into the 40-minute window

pytestmark = pytest.mark.timeout(720)


def verify_offline(data: bytes, folder: Path, agency: Agency, node_key: str) -> tuple[str, int, float]:
    """What the agency does on its own computer: `nnode verify` (no config, no network), then play range.mp4
    through; (the report, pictures decoded, the last picture's time)."""
    bundle = folder / "case.nnbundle"
    bundle.write_bytes(data)
    key = folder / "agency.key"
    key.write_text(agency.keys.encoded())
    env = os.environ | {"NNODE_CONFIG": str(folder / "no-such-config.toml"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "node", "verify", str(bundle), "--key", str(key), "--out",
                          str(folder / "evidence"), "--node-key", node_key], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    with av.open(str(folder / "evidence" / "range.mp4")) as container:
        times = [frame.time for frame in container.decode(video=0)]
    assert times == sorted(times)
    return run.stdout, len(times), times[-1]


async def test_a_40_minute_range_is_shared_as_one_bundle_verified_offline_and_played(make_node, chromium,  # noqa: F811
                                                                                      tmp_path):
    from playwright.async_api import expect

    node = await make_node("home", node__name="Elm Street 12", node__latitude=HERE[0], node__longitude=HERE[1],
                           cameras__devices=[{"id": "yard", "name": "Back yard", "url": "sim:",
                                              "detect_motion": False}])
    start = float(int(time.time()) - 50 * 60)
    video = make_video(tmp_path, seconds=SECONDS)
    for offset in OFFSETS:
        await add_clip(node, video, start=start + offset, seconds=SECONDS)
    agency = Agency()
    errors: list[str] = []
    try:
        async with http_client() as manager_http:
            await claim(node, manager_http)
            status, body = await call(manager_http, "POST", node.url + "/api/agencies",
                                      json={"key": agency.id, "name": "Metro Police Department"})
            assert status == 201, body
            fields = request_fields(start=start, minutes=40, case_number="2026-0077")
            status, body = await agency.ask(node.url, fields)
            assert status == 201, body

            context = await chromium.new_context(**PHONE, timezone_id="America/New_York", locale="en-US")
            phone = await context.new_page()
            phone.on("pageerror", lambda exc: errors.append(str(exc)))
            await phone.goto(node.url + "/login")
            await phone.fill("#login-password", PASSWORD)
            await phone.click("#login-submit")
            await phone.wait_for_url(node.url + "/manage")
            card = phone.locator(f'#agency-requests-list article[data-id="{fields["id"]}"]')
            await expect(card).to_contain_text("2026-0077", timeout=15_000)
            await expect(card.locator("li.request-clip")).to_have_count(len(OFFSETS))

            # The range picker: the camera, and the request's window by default; the node counts what it covers.
            await card.locator(".range-open").click()
            form = card.locator(".range-form")
            await expect(form).to_be_visible()
            await expect(form.locator(".range-camera")).to_have_value("yard")
            await expect(form.locator(".range-camera option")).to_have_text(["Back yard (6 matching clips)"])
            summary = form.locator(".range-summary")
            await expect(summary.locator(".range-total")).to_contain_text("6 clips of Back yard, 12 s of footage")
            await expect(summary.locator(".range-gap-count")).to_contain_text("6 gaps with nothing recorded")
            await expect(summary.locator(".range-gaps li")).to_have_count(6)
            await expect(form.locator('input[value="redacted"]')).to_be_checked()
            await form.scroll_into_view_if_needed()
            await shot(phone, "range-1-picker", full_page=False)

            # Narrowed to the first 20 minutes, it covers 3 clips; back to the whole window, then shared blurred.
            window_start = datetime.strptime(await form.locator(".range-from").input_value(), "%Y-%m-%dT%H:%M")
            await form.locator(".range-to").fill((window_start + timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M"))
            await expect(summary.locator(".range-total")).to_contain_text("3 clips of Back yard")
            await form.locator(".range-cancel").click()
            await card.locator(".range-open").click()
            await expect(summary.locator(".range-total")).to_contain_text("6 clips of Back yard")
            entries = len(await node.app[AUDIT].entries())
            await form.locator(".range-submit").click()
            item = card.locator("li.range-item")
            await expect(card.locator(".range-share > .form-status")).to_have_text("")
            await expect(item).to_have_count(1)
            await expect(item).to_contain_text("Range shared: faces and plates blurred")
            await expect(item).to_contain_text("Back yard, 6 clips")
            await expect(item).to_have_attribute("data-consent", "ready", timeout=420_000)
            await expect(item.locator(".consent-text")).to_contain_text("Ready for the agency")
            await shot(card.locator(".range-share"), "range-2-shared")
            # One consent, one bundle built: two entries, not one per clip.
            assert [e["action"] for e in (await node.app[AUDIT].entries())[entries:]] == ["consent", "bundle_built"]
            await context.close()

        # The agency: one bundle, downloaded, verified offline and played through.
        status, body = await agency.call("GET", node.url + "/api/agency/bundles")
        (bundle,) = body["bundles"]
        status, data = await agency.call("GET", node.url + bundle["url"], raw=True)
        assert status == 200
        report, pictures, last = await asyncio.to_thread(verify_offline, data, tmp_path, agency,
                                                         node.app[DESK].node_key)
    finally:
        await agency.close()
    assert "VERIFIED" in report and "6 clips, 6 gaps" in report and report.count("(checked)") == 6
    assert "redaction   none" not in report   # blurred, as a one-clip share is
    assert pictures == len(OFFSETS) * SECONDS * 10
    assert last == pytest.approx(len(OFFSETS) * SECONDS - 0.1, abs=0.05)
    assert f"{pictures} pictures, {len(OFFSETS) * SECONDS:.1f} s" in report
    assert errors == []
