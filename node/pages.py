"""The web app's pages and static files, served by the node itself (no third-party assets: works offline)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from .errors import NotFound

WEB = Path(__file__).parent / "web"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon", ".webmanifest": "application/manifest+json"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY"}


def _file(name: str) -> web.FileResponse:
    path = WEB / name
    if "/" in name or name.startswith(".") or path.suffix not in TYPES or not path.is_file():
        raise NotFound(f"no file {name!r}")
    cache = "no-cache" if path.suffix == ".html" else "max-age=300"
    return web.FileResponse(path, headers=HEADERS | {"Content-Type": f"{TYPES[path.suffix]}; charset=utf-8"
                                                     if path.suffix in (".html", ".js", ".css")
                                                     else TYPES[path.suffix], "Cache-Control": cache})


def page(name: str):
    """A handler serving one HTML page."""
    async def handler(request: web.Request) -> web.FileResponse:
        return _file(name)
    handler.__name__ = handler.__qualname__ = f"page_{name.split('.')[0]}"
    handler.__doc__ = f"GET the {name} page."
    return handler


async def static(request: web.Request) -> web.FileResponse:
    """GET /static/{name}: a script, stylesheet or image of the web app."""
    return _file(request.match_info["name"])


AGENCY_FILES = frozenset({"agency.js", "app.css"})


async def agency_static(request: web.Request) -> web.FileResponse:
    """GET /agency/{name}: the agency portal's script and stylesheet (nothing else of the web app is public)."""
    name = request.match_info["name"]
    if name not in AGENCY_FILES:
        raise NotFound(f"no file {name!r}")
    return _file(name)
