"""The agency portal as the agency runs it: `nnode agency-client portal` serves the page on its own computer's
127.0.0.1 and signs there, and the node is reached over the network (here at 127.0.0.2). In Debian's Chromium through
Playwright: a request out of policy shows the node's reason at the field; a good one is signed by the portal, names
the agency's separate encryption key, and is listed; the bundle an owner consented to is fetched, verified against
the pinned node key and played; the page never holds the key. Then another node answers at the same address and the
portal refuses it, naming both keys and the pins file. Screenshots land in test-artifacts/agency-portal/."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
from aiohttp import web

import node.camera.motion  # noqa: F401 (the camera manager imports OpenCV lazily, in the loop: load it here first)
from node.keys import DESK
from node.sharing import load_agency_key, write_agency_key
from node.sharing.client import AgencyClient
from tests.conftest import wait_until
from tests.people import browser as http_client
from tests.people import call, claim
from tests.test_browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.test_browser import chromium  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = BROWSER_ARTIFACTS.parent / "agency-portal"
SIM = {"id": "yard", "name": "Back yard", "url": "sim:?width=320&height=240&fps=10&period=5&walk=1.5",
       "pre_capture": 1, "post_capture": 1}
HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}
ZONE = "America/New_York"
NETWORK = "127.0.0.2"
"""Where the node is reached: another address than the portal's 127.0.0.1."""
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


async def on_network(node, port: int | None = None) -> tuple[web.SockSite, str]:
    """Serve the node also at 127.0.0.2 (on its own port, or the one given); the site and its address there. The
    node answers to 127.0.0.2 at its own port through http.names."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((NETWORK, int(node.url.rsplit(":", 1)[1]) if port is None else port))
    site = web.SockSite(node.runner, sock)
    await site.start()
    return site, f"http://{NETWORK}:{sock.getsockname()[1]}"


class PortalProcess:
    """`nnode agency-client portal` as the agency starts it, in its own process on port 0 of 127.0.0.1."""

    def __init__(self, *argv: str) -> None:
        self.argv = argv
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.lines: list[str] = []

    async def __aenter__(self) -> "PortalProcess":
        env = os.environ | {"PYTHONPATH": str(ROOT), "NNODE_CONFIG": "/nonexistent/config.toml"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "node", "agency-client", "portal", "--port", "0", *self.argv, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stdout is not None
        while not self.url:
            line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode()
            if not line:
                err = (await self.proc.stderr.read()).decode() if self.proc.stderr else ""
                raise AssertionError(f"the portal ended: {self.lines} {err}")
            self.lines.append(line.rstrip("\n"))
            if line.startswith("agency portal at "):
                self.url = line.split(" at ", 1)[1].strip()
        return self

    @property
    def base(self) -> str:
        return self.url.split("#", 1)[0].rstrip("/")

    @property
    def token(self) -> str:
        return self.url.split("#token=", 1)[1]

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 30)


async def register(node, manager, key) -> None:
    status, body = await call(manager, "POST", node.url + "/api/agencies", json={
        "key": key.public, "name": "Metro Police Department", "jurisdiction": "Metro City",
        "contact": "records@metro.example"})
    assert status in (200, 201), body


async def test_the_portal_on_the_agencys_own_computer(make_node, chromium, tmp_path):  # noqa: F811
    from playwright.async_api import expect

    node = await make_node("home", cameras__devices=[SIM], http__names=[NETWORK], **HERE)
    _, address = await on_network(node)
    key_path = tmp_path / "agency" / "metro.key"
    key_path.parent.mkdir()
    key = await asyncio.to_thread(write_agency_key, key_path)
    secrets_hex = [key.signing.encode().hex(), key.box.encode().hex()]
    out = tmp_path / "evidence"
    async with http_client() as manager, PortalProcess("--key", str(key_path), "--node", address,
                                                       "--out", str(out)) as portal:
        await claim(node, manager)
        await register(node, manager, key)
        assert portal.base.startswith("http://127.0.0.1:")
        assert f"node key {node.id}, first contact now, unverified" in "\n".join(portal.lines)

        context = await chromium.new_context(viewport={"width": 1100, "height": 900}, timezone_id=ZONE,
                                             locale="en-US")
        page = await context.new_page()
        errors: list[str] = []
        sent: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not msg.text.startswith(
            "Failed to load resource: the server responded with a status of 4") else None)
        page.on("request", lambda r: sent.append(f"{r.url} {r.headers} {r.post_data or ''}"))
        await page.goto(portal.url)
        await expect(page.locator("#agency-key")).to_have_text(key.public)
        await expect(page.locator("#encryption-key")).to_have_text(key.encryption_key)
        await expect(page.locator("#node-url")).to_have_text(address)
        await expect(page.locator("#node-key")).to_have_text(node.id)
        await expect(page.locator("#node-key-origin")).to_contain_text("pinned on")
        await expect(page.locator("#req-submit")).to_be_enabled()
        await expect(page.locator("#requests-status")).to_contain_text("No requests from this agency")

        # Five minutes is out of policy: the node's reason shows at the window and in the form's status.
        now = datetime.now().astimezone()
        start = (now - timedelta(minutes=20)).replace(second=0, microsecond=0)
        for field, value in (("#req-case", "2026-004512"), ("#req-reason", "parcel theft in the back yard"),
                             ("#req-start", local(start)), ("#req-end", local(start + timedelta(minutes=5))),
                             ("#req-lat", "40.7128"), ("#req-lon", "-74.0060"), ("#req-radius", "150"),
                             ("#req-contact", "Det. R. Diaz, +1 212 555 0100")):
            await page.fill(field, value)
        await page.click("#req-submit")
        await expect(page.locator("#req-end-error")).to_contain_text(
            "out of policy: the window is 5 min; it must be from 15 min to 12 h")
        await expect(page.locator("#req-status")).to_contain_text("The node refused the request")
        await shot(page, "1-out-of-policy")

        # 25 minutes: signed by the portal, accepted, listed; the request names the separate encryption key.
        await page.fill("#req-end", local(start + timedelta(minutes=25)))
        await page.select_option("#req-urgency", "emergency")
        await page.click("#req-submit")
        await expect(page.locator("#req-status")).to_contain_text("sent", timeout=10_000)
        card = page.locator("#requests-list article").first
        await expect(card).to_contain_text("Case 2026-004512")
        request_id = await card.get_attribute("data-request")
        async with AgencyClient(node.url, await asyncio.to_thread(load_agency_key, key_path)) as client:
            stored = await client.request(request_id)
        assert stored["agency"] == key.public and stored["urgency"] == "emergency"
        row = await node.app[DESK].db.reader.execute_fetchall(
            "SELECT document FROM agency_requests WHERE id = ?", (request_id,))
        assert json.loads(row[0][0])["encryption_key"] == key.encryption_key
        await shot(page, "2-request-listed")

        # The manager shares the yard's clip; the portal fetches the bundle, verifies it and plays the clip.
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
        await bundle.get_by_role("button", name=f"Fetch and verify bundle {bundle_id}").click()
        verified = page.locator(f'[data-verified="{bundle_id}"]')
        await expect(verified).to_contain_text(f"Bundle {bundle_id}: VERIFIED", timeout=60_000)
        await expect(verified).to_contain_text("case 2026-004512")
        report = (out / bundle_id / "report.txt").read_text()
        assert f"bundle id   {bundle_id}" in report and f"sealed to encryption key {key.encryption_key}" in report
        assert f"signed by   node key {node.id}" in report
        duration = await verified.locator("video").evaluate("""v => new Promise(done => {
            if (v.readyState >= 1) done(v.duration);
            v.addEventListener('loadedmetadata', () => done(v.duration));
            v.addEventListener('error', () => done(-1)); })""")
        assert duration > 0
        await shot(page, "3-bundle-verified")
        assert await page.evaluate(UNNAMED_CONTROLS) == []

        # The page talked to the portal alone, and neither private key was ever in a request or the page.
        page_text = await page.content()
        assert sent and all(s.startswith(portal.base + "/") for s in sent), sent
        assert not [s for s in secrets_hex if s in page_text or any(s in line.lower() for line in sent)]

        # Another node answers at the same address: the portal refuses it, naming both keys and the pins file.
        await node.runner.cleanup()
        impostor = await make_node("impostor", http__names=[NETWORK], **HERE)
        await on_network(impostor, int(address.rsplit(":", 1)[1]))
        await page.click("#refresh")
        status_line = page.locator("#portal-status")
        await expect(status_line).to_contain_text(f"answers with node key {impostor.id}, but node key {node.id} "
                                                  "was pinned for it", timeout=15_000)
        await expect(status_line).to_contain_text(str(key_path.parent / "known-nodes.json"))
        await shot(page, "4-changed-node-key-refused")
        await context.close()
    assert errors == []


async def test_the_portal_answers_only_its_own_page_on_loopback(make_node, tmp_path):
    node = await make_node("home", **HERE)
    key_path = tmp_path / "metro.key"
    key = await asyncio.to_thread(write_agency_key, key_path)
    old = tmp_path / "old.key"
    old.write_text(key.signing.encode().hex() + "\n")   # the former single-key file: it opens old bundles only
    async with http_client() as manager, PortalProcess("--key", str(key_path), "--node", node.url) as portal, \
            PortalProcess("--key", str(old), "--node", node.url, "--known-nodes", str(tmp_path / "pins2")) as legacy, \
            aiohttp.ClientSession() as session:
        await claim(node, manager)
        await register(node, manager, key)
        token = {"NNode-Portal-Token": portal.token}
        async with session.get(portal.base + "/") as resp:
            assert resp.status == 200 and "agency portal" in (await resp.text()).lower()
            assert "connect-src 'self'" in resp.headers["Content-Security-Policy"]
        async with session.get(portal.base + "/api/state") as resp:
            assert resp.status == 401 and "#token" in (await resp.json())["error"]
        async with session.get(portal.base + "/api/state", headers={"NNode-Portal-Token": "guess"}) as resp:
            assert resp.status == 401
        # A name that is not the loopback address (a page rebinding its own name to 127.0.0.1) is refused.
        async with session.get(portal.base + "/api/state", headers=token | {"Host": "evil.example"}) as resp:
            assert resp.status == 421
        async with session.get(portal.base + "/api/state", headers=token) as resp:
            state = await resp.json()
            assert resp.status == 200 and state["encryption_key"] == key.encryption_key
            assert state["node_key"] == node.id and key.signing.encode().hex() not in json.dumps(state)
        async with session.post(portal.base + "/api/requests", headers=token,
                                json={"sig": "00", "case_number": "1"}) as resp:
            assert resp.status == 400 and "the portal fills those in" in (await resp.json())["error"]
        async with session.post(portal.base + "/api/bundles/../fetch", headers=token) as resp:
            assert resp.status == 404
        async with session.get(portal.base + "/files/" + "a" * 32 + "/report.txt", headers=token) as resp:
            assert resp.status == 404
        # An old single-key file cannot post a request: the error says how to make a new key file.
        fields = {"case_number": "1", "reason": "r", "window": {"start": "2026-01-01T00:00:00Z",
                  "end": "2026-01-01T00:30:00Z"}, "area": {"circle": {"lat": "1", "lon": "1", "radius_m": 10}},
                  "urgency": "normal", "contact": "c", "expires": "2036-01-01T00:00:00Z"}
        async with session.post(legacy.base + "/api/requests", headers={"NNode-Portal-Token": legacy.token},
                                json=fields) as resp:
            assert resp.status == 400 and "nnode agency-key new" in (await resp.json())["error"]
