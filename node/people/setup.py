"""The setup page: claim an unclaimed node with its one-time code and choose the manager's password."""

from __future__ import annotations

import html
import ipaddress

from aiohttp import web

from node.errors import NodeError
from node.http import SESSION_COOKIE, read_body
from node.keys import CLAIMS, CONFIG
from node.names import public_url
from node.people.claim import MIN_PASSWORD, SESSION_TTL, ClaimError, qr_svg, setup_url
from node.people.models import ClaimBody
from sync import RateLimited, RateLimiter

# Guessing a 60-bit code is hopeless anyway; this keeps scrypt from being used to load the node. Per address only
# (a shared limit would let one host lock the manager out), and never for the device's own screen.
_attempts_per_address = RateLimiter(rate=5 / 60, burst=5)


class ClaimRefused(NodeError):
    """A claim attempt was refused."""

    reason = "claim"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _is_loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Set up {name}</title>
<style>
body {{ font: 1.1rem/1.5 system-ui, sans-serif; max-width: 32rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; background: #fff; }}
label {{ display: block; margin-top: 1rem; font-weight: 600; }}
input {{ font: inherit; width: 100%; padding: .5rem; border: 2px solid #333; border-radius: .3rem;
        box-sizing: border-box; }}
button {{ font: inherit; margin-top: 1.5rem; padding: .6rem 1.2rem; background: #0b5394; color: #fff;
         border: 0; border-radius: .3rem; }}
button:focus, input:focus {{ outline: 3px solid #f1c232; }}
#status {{ margin-top: 1rem; font-weight: 600; }}
img {{ width: 16rem; height: 16rem; }}
</style></head>
<body><main>
<h1>Set up {name}</h1>
{body}
</main></body></html>
"""

_FORM = """<p>Type the claim code shown on the node's screen and choose the manager password.</p>
{qr}
<form id="claim">
<label for="code">Claim code</label>
<input id="code" name="code" autocomplete="one-time-code" autocapitalize="characters" required
       placeholder="ABCD-EFGH-JKMN">
<label for="password">Manager password (at least {min} characters)</label>
<input id="password" name="password" type="password" autocomplete="new-password" minlength="{min}" required>
<button type="submit">Claim this node</button>
<p id="status" role="status" aria-live="polite"></p>
</form>
<script>
const form = document.getElementById("claim");
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("code")) form.code.value = hash.get("code");
form.addEventListener("submit", async (event) => {{
  event.preventDefault();
  const status = document.getElementById("status");
  status.textContent = "Checking...";
  const response = await fetch("/setup/claim", {{method: "POST", headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{code: form.code.value, password: form.password.value}})}});
  const answer = await response.json();
  status.textContent = answer.ok ? "Claimed. You are this node's manager." : answer.error;
}});
</script>
"""


async def setup_page(request: web.Request) -> web.Response:
    """GET /setup: the claim form (with the code's QR on the device's own screen)."""
    claims = request.app[CLAIMS]
    name = html.escape(request.app[CONFIG].node.name)
    if await claims.claimed():
        body = "<p>This node has a manager. Ask them for an invitation.</p>"
    else:
        qr = ""
        if _is_loopback(request) and claims.current:
            qr = ('<p>Scan with your phone to claim from there:</p>'
                  '<img src="/setup/qr.svg" alt="QR code of the setup link with the claim code">')
        body = _FORM.format(qr=qr, min=MIN_PASSWORD)
    return web.Response(text=_PAGE.format(name=name, body=body), content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                                 "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                                            "style-src 'unsafe-inline'; img-src 'self'"})


async def setup_qr(request: web.Request) -> web.Response:
    """GET /setup/qr.svg: the claim link as a QR, only for the device's own screen and only while unclaimed."""
    claims = request.app[CLAIMS]
    if not _is_loopback(request):
        raise ClaimRefused("the claim QR is shown only on the node's own screen", 403)
    if await claims.claimed() or not claims.current:
        raise ClaimRefused("there is no claim code to show", 404)
    return web.Response(body=qr_svg(setup_url(public_url(request.app[CONFIG]), claims.current)),
                        content_type="image/svg+xml", headers={"Cache-Control": "no-store"})


async def claim(request: web.Request) -> web.Response:
    """POST /setup/claim {code, password}: become the manager; sets the session cookie."""
    try:
        if not _is_loopback(request):
            _attempts_per_address.check(request.remote or "?")
    except RateLimited as exc:
        raise ClaimRefused(f"too many claim attempts; retry in {exc.retry_after:.0f} s", 429) from exc
    body = await read_body(request, ClaimBody)
    try:
        token = await request.app[CLAIMS].claim(body.code, body.password)
    except ClaimError as exc:
        raise ClaimRefused(str(exc), exc.status) from exc
    response = web.json_response({"ok": True, "role": "manager"})
    response.set_cookie(SESSION_COOKIE, token, max_age=SESSION_TTL, httponly=True, samesite="Strict", path="/")
    return response
