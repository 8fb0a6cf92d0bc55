"""`nnode agency-client portal`: the agency portal, a page the agency serves itself on this computer's loopback.

The browser talks only to this local server, which holds the agency key, signs every call to the node with it
(AgencyClient) and checks the node's key against the agency's pins before anything is listed or fetched
(node/sharing/pins.py). The key never goes into the page, and no node serves a page that could read it. A bundle is
downloaded and verified here, into the agency's folder, and the page shows the report and plays the clip.

Only this computer reaches it: it binds 127.0.0.1, answers only a Host naming that address or localhost (a web
page cannot rebind its own name onto it), and every API call carries the per-run token the command prints in the
portal's address (a fragment, so it never reaches a server log; a page elsewhere cannot read it, and a custom header
cannot be sent across origins without the CORS preflight this server never answers).
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import web

from node.errors import NodeError
from node.sharing.bundle import SUFFIX
from node.sharing.client import AgencyClient, AgencyClientError
from node.sharing.errors import VerifyError
from node.sharing.pins import Expected, KnownNodes, NodeKeyChanged
from node.sharing.verify import verify_bundle

HOST = "127.0.0.1"
TOKEN_HEADER = "NNode-Portal-Token"
FILES = Path(__file__).parent / "portal_files"
WEB = Path(__file__).parents[1] / "web"
ASSETS = {"portal.js": (FILES, "text/javascript; charset=utf-8"), "app.css": (WEB, "text/css; charset=utf-8"),
          "icon-192.png": (WEB, "image/png")}
SERVED = ("clip.mp4", "clip.webm", "range.mp4", "report.txt", "manifest.json")
"""What the page may open of a verified bundle's folder."""
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "media-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY", "Cache-Control": "no-store"}
_ID = frozenset("0123456789abcdef")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message, "status": status}, status=status, headers=HEADERS)


@dataclass
class Portal:
    """The local portal's state: the signed client to one node, the pins, the folder bundles are verified into."""

    client: AgencyClient
    pins: KnownNodes
    out: Path
    given: str | None = None
    """The node key as the manager gave it (--node-key), else the pinned one, else pinned at first contact."""
    token: str = ""
    port: int = 0

    def __post_init__(self) -> None:
        self.token = self.token or secrets.token_urlsafe(24)

    async def expected(self) -> Expected:
        """The node's key as pinned, checked against what it serves now (NodeKeyChanged otherwise)."""
        served = await self.client.node_key()
        return await asyncio.to_thread(self.pins.expect, str(self.client.base), served, self.given)

    def app(self) -> web.Application:
        """The portal's aiohttp application."""
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self.page)
        app.router.add_get("/assets/{name}", self.asset)
        app.router.add_get("/api/state", self.state)
        app.router.add_get("/api/requests", self.requests)
        app.router.add_post("/api/requests", self.post_request)
        app.router.add_get("/api/bundles", self.bundles)
        app.router.add_post("/api/bundles/{id}/fetch", self.fetch)
        app.router.add_get("/files/{id}/{name}", self.file)
        return app

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Loopback names only; the token on the API and the verified files; errors as one JSON shape."""
        if request.host not in (f"{HOST}:{self.port}", f"localhost:{self.port}"):
            return _error(421, f"this portal answers only at http://{HOST}:{self.port}/")
        if request.path.startswith(("/api/", "/files/")):
            given = request.headers.get(TOKEN_HEADER) or (request.query.get("token", "")
                                                          if request.path.startswith("/files/") else "")
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return _error(401, "open the portal at the address `nnode agency-client portal` printed (its "
                                   "#token part lets this page call the portal)")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason or "not found")
        except NodeKeyChanged as exc:
            return _error(409, f"FAILED: {exc}")
        except AgencyClientError as exc:
            if exc.status >= 400:
                return _error(exc.status, str(exc))
            return _error(502, f"the node: {exc}")
        except VerifyError as exc:
            return _error(422, f"FAILED: {exc}")
        except NodeError as exc:
            return _error(500, str(exc))

    async def page(self, request: web.Request) -> web.StreamResponse:
        """GET /: the portal page."""
        return web.FileResponse(FILES / "portal.html", headers=HEADERS | {"Content-Type": "text/html; charset=utf-8"})

    async def asset(self, request: web.Request) -> web.StreamResponse:
        """GET /assets/{name}: the page's script, stylesheet and icon."""
        found = ASSETS.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound(reason=f"no file {request.match_info['name']!r}")
        folder, kind = found
        return web.FileResponse(folder / request.match_info["name"], headers=HEADERS | {"Content-Type": kind})

    async def state(self, request: web.Request) -> web.Response:
        """GET /api/state: the agency's keys (public), the node and its key as checked against the pins."""
        keys = self.client.keys
        expected = await self.expected()
        return web.json_response({
            "ok": True, "agency": keys.public, "encryption_key": None if keys.legacy else keys.encryption_key,
            "node": str(self.client.base), "node_key": expected.key, "node_key_origin": expected.origin,
            "pins": str(self.pins.path), "folder": str(self.out)}, headers=HEADERS)

    async def requests(self, request: web.Request) -> web.Response:
        """GET /api/requests: this agency's requests on the node."""
        await self.expected()
        return web.json_response({"ok": True, "requests": await self.client.requests()}, headers=HEADERS)

    async def post_request(self, request: web.Request) -> web.Response:
        """POST /api/requests: the form's fields, signed here with both keys named, posted to the node."""
        try:
            fields = await request.json()
        except ValueError:
            return _error(400, "the request's fields must be a JSON object")
        if not isinstance(fields, dict) or {"agency", "sig", "encryption_key"} & set(fields):
            return _error(400, "the request's fields must be a JSON object without agency, sig or encryption_key "
                               "(the portal fills those in)")
        if self.client.keys.legacy:
            return _error(400, "this agency key file holds one key for signing and opening bundles (the old form), "
                               "so it posts no request; make a new one with `nnode agency-key new FILE` and have the "
                               "node's manager register its public key")
        await self.expected()
        stored = await self.client.post_request(fields)
        return web.json_response({"ok": True, "request": stored}, headers=HEADERS)

    async def bundles(self, request: web.Request) -> web.Response:
        """GET /api/bundles: the node's bundles for this agency, each saying whether it is verified here."""
        await self.expected()
        listed = await self.client.bundles()
        for bundle in listed:
            if isinstance(bundle, dict):
                bundle["verified_here"] = (self.out / str(bundle.get("id")) / "report.txt").is_file()
        return web.json_response({"ok": True, "bundles": listed}, headers=HEADERS)

    def _bundle_id(self, request: web.Request) -> str:
        bundle_id = request.match_info["id"]
        if len(bundle_id) != 32 or not set(bundle_id) <= _ID:
            raise web.HTTPNotFound(reason=f"{bundle_id!r}: not a bundle id (32 lowercase hex digits)")
        return bundle_id

    async def fetch(self, request: web.Request) -> web.Response:
        """POST /api/bundles/{id}/fetch: download the bundle, verify it here against the pinned node key."""
        bundle_id = self._bundle_id(request)
        expected = await self.expected()
        listed = {b.get("id"): b for b in await self.client.bundles() if isinstance(b, dict)}
        if bundle_id not in listed:
            return _error(404, f"the node lists no bundle {bundle_id} for this agency")
        path, target = self.out / f"{bundle_id}{SUFFIX}", self.out / bundle_id
        await asyncio.to_thread(self.out.mkdir, parents=True, exist_ok=True)
        await self.client.download(bundle_id, path, expected_sha256=listed[bundle_id].get("sha256"))
        result = await asyncio.to_thread(verify_bundle, path, self.client.keys, target, expected_node_key=expected.key,
                                         expected_from=expected.origin, replace=True)
        m = result.manifest
        return web.json_response({
            "ok": True, "bundle_id": m["bundle_id"], "created": m["created"], "case_number": m["request"]["case_number"],
            "camera": m["camera"]["name"], "start": m["clip"]["start"], "end": m["clip"]["end"],
            "kind": m["delivered"]["kind"], "folder": str(target), "report": result.report,
            "clip": f"/files/{bundle_id}/{result.clip.name}", "node_key_origin": expected.origin}, headers=HEADERS)

    async def file(self, request: web.Request) -> web.StreamResponse:
        """GET /files/{id}/{name}: a verified bundle's clip or report, from the agency's folder."""
        bundle_id, name = self._bundle_id(request), request.match_info["name"]
        path = self.out / bundle_id / name
        if name not in SERVED or not (self.out / bundle_id / "report.txt").is_file() or not path.is_file():
            raise web.HTTPNotFound(reason=f"no verified {name} for bundle {bundle_id}")
        kind = {"report.txt": "text/plain; charset=utf-8", "manifest.json": "application/json",
                "clip.webm": "video/webm"}.get(name, "video/mp4")
        return web.FileResponse(path, headers=HEADERS | {"Content-Type": kind})


async def serve(portal: Portal, port: int, ready: Callable[[str], None]) -> None:
    """Serve `portal` on 127.0.0.1:`port` (0: any free port) until SIGINT or SIGTERM; `ready` gets its address."""
    runner = web.AppRunner(portal.app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        try:
            await site.start()
        except OSError as exc:
            raise AgencyClientError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc} (choose another "
                                    "with --port)") from None
        portal.port = int(runner.addresses[0][1])
        ready(f"http://{HOST}:{portal.port}/#token={portal.token}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
        await portal.client.close()


def describe_address(url: str) -> str:
    """The lines `nnode agency-client portal` prints once it listens."""
    return (f"agency portal at {url}\n"
            "open it in a browser on this computer; it signs with your key here and never hands it to the page. "
            "Stop it with Ctrl-C.")

