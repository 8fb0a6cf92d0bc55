"""HTTPS at a host name in a real browser (Debian's Chromium through Playwright), the node's CA trusted the way a
resident trusts it: added to the browser's own certificate store (an NSS database in a fresh HOME), never with
certificate errors ignored. The name nnode-test.local is mapped to 127.0.0.1 by Chromium's host resolver rules (it
maps the name only; TLS, certificate checks and the secure-context rules are the browser's own).

A device without the CA sees the install steps and the fingerprint on the invite page, is refused at the https
address, and is told that notifications need it; a device with the CA is moved from http to https, is a secure
context there, and the agency portal, notifications and the transparency checks work; a certificate the CA's key
signs for another name is refused by the browser (the name constraints). Screenshots land in test-artifacts/tls/."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from node.tls.authority import Wanted, issue
from tests.conftest import bound_socket
from tests.firmware.tools import require
from tests.people import browser as http_client
from tests.people import call, claim, invite
from tests.sharing.flow import Agency, request_fields
from tests.test_browser import ARTIFACTS as BROWSER_ARTIFACTS
from tests.test_browser import CHROMIUM, FLAGS, PHONE

ARTIFACTS = BROWSER_ARTIFACTS.parent / "tls"
NAME = "nnode-test.local"
OTHER = "bank-test.example"   # a name the node's CA must not be able to vouch for
HERE = {"node__latitude": "40.7128", "node__longitude": "-74.0060"}


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def trust_in_nss(home: Path, ca_pem: Path) -> None:
    """Add the CA to the NSS database Chromium on Linux reads ($HOME/.pki/nssdb), trusted for websites."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{database}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{database}", "-t", "C,,", "-n", "nnode", "-i", str(ca_pem)],
                   check=True, capture_output=True)


@contextlib.asynccontextmanager
async def phone(playwright, home: Path, **options):
    """A Chromium of its own (profile and HOME in `home`), at a phone's size, resolving NAME to 127.0.0.1."""
    args = [*FLAGS, f"--host-resolver-rules=MAP {NAME} 127.0.0.1, MAP {OTHER} 127.0.0.1"]
    context = await playwright.chromium.launch_persistent_context(
        str(home / "profile"), executable_path=CHROMIUM, args=args, headless=True, env={"HOME": str(home)},
        **PHONE, **options)
    try:
        yield context
    finally:
        await context.close()


@contextlib.asynccontextmanager
async def forged_site(folder: Path, node):
    """An HTTPS server for OTHER with a certificate the node's own CA key signed (as a thief of that key would)."""
    tls = folder / "tls"
    ca = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), None)
    key, forged = issue(ca_key, ca, Wanted(frozenset({OTHER}), frozenset()))
    cert_file, key_file = folder.parent / "forged.pem", folder.parent / "forged.key"
    cert_file.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    app = web.Application()
    async def forged_page(request: web.Request) -> web.Response:
        return web.Response(text="a forged site")
    app.router.add_get("/", forged_page)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = bound_socket()
    try:
        await web.SockSite(runner, sock, ssl_context=context).start()
    except BaseException:
        sock.close()
        await runner.cleanup()
        raise
    try:
        yield f"https://{OTHER}:{sock.getsockname()[1]}/"
    finally:
        await runner.cleanup()


async def test_https_at_a_host_name_with_the_ca_in_the_browsers_store(make_node, tmp_path):
    from playwright.async_api import Error, async_playwright, expect

    require(shutil.which(CHROMIUM) is not None, "needs Debian's chromium")
    require(shutil.which("certutil") is not None, "needs certutil (Debian's libnss3-tools)")
    node = await make_node("home", http__names=[NAME], http__tls={"mode": "local-ca"}, node__name="Elm Street 12",
                           **HERE)
    http, https = f"http://{NAME}:{node.port}", f"https://{NAME}:{node.tls_port}"
    ca_pem = node.config.node.data_dir / "tls" / "ca.pem"
    fingerprint = x509.load_pem_x509_certificate(ca_pem.read_bytes()).fingerprint(hashes.SHA256()).hex(":").upper()
    agency = Agency()
    async with http_client() as manager:
        await claim(node, manager)
        status, body = await call(manager, "POST", node.url + "/api/agencies", json={
            "key": agency.id, "name": "Metro Police Department", "jurisdiction": "Metro City",
            "contact": "records@metro.example"})
        assert status in (200, 201), body
        first, second = await invite(node, manager, "2C"), await invite(node, manager, "4B")
    assert first["ca_fingerprint"] == fingerprint   # on the invite the manager hands out (console, print, CLI)

    untrusted = Path(tempfile.mkdtemp(prefix="nn-untrusted-", dir=tmp_path))
    trusted = Path(tempfile.mkdtemp(prefix="nn-trusted-", dir=tmp_path))
    await asyncio.to_thread(trust_in_nss, trusted, ca_pem)
    errors: list[str] = []
    async with async_playwright() as playwright:
        # Without the CA: the invite page shows how to install it and the fingerprint to check; the https address
        # is refused by the browser; the app says notifications need the secure address (not "blocked").
        async with phone(playwright, untrusted) as browser:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{http}/join#code={first['code']}")
            await expect(page.locator("#secure-setup")).to_be_visible()
            await expect(page.locator("#ca-fingerprint")).to_have_text(fingerprint)
            assert await page.evaluate("window.isSecureContext") is False
            await page.click("#secure-check")
            await expect(page.locator("#secure-status")).to_contain_text("does not trust the certificate yet")
            await shot(page, "1-invite-install-the-certificate")
            await page.click("#join-submit")
            await page.wait_for_url(f"{http}/")
            await expect(page.locator("#notify-status")).to_contain_text("need the node's secure (https) address")
            await expect(page.locator("#notify-status")).not_to_contain_text("blocked")
            await shot(page, "2-app-on-http-without-the-certificate")
            refused = await browser.new_page()
            try:
                await refused.goto(f"{https}/")
                raise AssertionError("Chromium opened the https address without trusting the node's CA")
            except Error as exc:
                assert "ERR_CERT_AUTHORITY_INVALID" in str(exc), exc

        # With the CA in the browser's store: the http invite link moves to https (code and all), a secure context.
        async with phone(playwright, trusted, accept_downloads=True) as browser:
            page = await browser.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{http}/join#code={second['code']}")
            await page.wait_for_url(re.compile(re.escape(f"{https}/join")))
            await expect(page.locator("#join-code")).to_have_value(second["code"])
            assert await page.evaluate("window.isSecureContext") is True
            await expect(page.locator("#secure-setup")).to_be_hidden()
            await page.click("#join-submit")
            await page.wait_for_url(f"{https}/")
            await expect(page.locator("#who")).to_contain_text("4B")
            await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
            assert await page.evaluate("window.isSecureContext && !!crypto.subtle") is True
            # Notifications: the browser asks (permission "default"), and the page says nothing is blocked.
            assert await page.evaluate("Notification.permission") == "default"
            await expect(page.locator("#notify-button")).to_be_visible()
            await expect(page.locator("#notify-status")).to_have_text("")
            await shot(page, "3-app-on-https")
            # An http page of the app opened later moves to https as well.
            await page.goto(f"{http}/transparency")
            await page.wait_for_url(f"{https}/transparency")

            # The node's /agency page at the host name names the portal command with this https address and the
            # node's key (the portal itself runs on the agency's computer: tests/sharing/test_agency_portal.py).
            portal = await browser.new_page()
            await portal.set_viewport_size({"width": 1100, "height": 900})   # an agency's desk, not a phone
            portal.on("pageerror", lambda exc: errors.append(str(exc)))
            await portal.goto(f"{https}/agency")
            await expect(portal.locator("#node-address")).to_have_text(https)
            await expect(portal.locator("#node-key")).to_have_text(node.id)
            await expect(portal.get_by_test_id("portal-command")).to_contain_text("nnode agency-client portal")
            await shot(portal, "4-agency-portal-on-https")

            # A request signed by the agency's own portal (here its client code) enters the log; the transparency page
            # checks the log head's signature in the browser.
            status, answer = await agency.ask(node.url, request_fields())
            await agency.close()
            assert status == 201, answer
            await page.reload()
            await expect(page.locator("#head-check")).to_contain_text("checked the signature", timeout=15_000)
            await shot(page, "5-transparency-on-https")

            # The CA's name constraints hold in the browser: a certificate its key signed for another name is
            # refused, although the CA is trusted. It is made exactly as the node's own (authority.issue), which
            # this browser accepted above, so the name is the only difference. (Chromium's verifier reports the
            # violation as ERR_CERT_INVALID.)
            async with forged_site(node.config.node.data_dir, node) as forged_url:
                elsewhere = await browser.new_page()
                try:
                    await elsewhere.goto(forged_url)
                    raise AssertionError("Chromium accepted a certificate outside the CA's name constraints")
                except Error as exc:
                    assert re.search(r"ERR_CERT_(INVALID|NAME_CONSTRAINT_VIOLATION)\b", str(exc)), exc
    assert not errors, errors
