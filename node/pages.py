"""The web app's pages and static files, served by the node itself (no third-party assets: works offline).

A page may hold `<!--#include NAME key="value" ...-->` markers: each is replaced by the partial
web/partials/NAME, a `string.Template` filled with exactly the marker's parameters. Every page is assembled once, when
this module is imported, so a broken marker stops the node at start-up and no request reads or renders a page.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from aiohttp import web

from node.errors import NodeError, NotFound
from node.keys import CONFIG, NAMES, TLS
from sync import normal_authority

WEB = Path(__file__).parent / "web"
PARTIALS = WEB / "partials"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon", ".webmanifest": "application/manifest+json"}
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; "
       "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
           "X-Frame-Options": "DENY"}

INCLUDE = re.compile(r'<!--#include ([^\s"]+?)((?: [\w-]+="[^"]*")*) ?-->')
PARAMETER = re.compile(r' ([\w-]+)="([^"]*)"')


class PageTemplateError(NodeError):
    """A page's include marker names a missing partial or does not match the partial's parameters."""


def assemble(path: Path, partials: Path = PARTIALS) -> str:
    """The page at `path` with each include marker replaced by its filled partial from the `partials` folder."""
    def include(marker: re.Match[str]) -> str:
        name, given = marker.group(1), dict(PARAMETER.findall(marker.group(2)))
        partial = partials / name
        if "/" in name or name.startswith(".") or not partial.is_file():
            raise PageTemplateError(f"{path.name}: {marker.group(0)}: no partial {name!r} in {partials}")
        # The marker's own line ends the partial's last line.
        template = Template(partial.read_text(encoding="utf-8").removesuffix("\n"))
        if not template.is_valid():
            raise PageTemplateError(f"{partial}: a $ that starts no $name parameter (write $$ for a dollar sign)")
        wanted = set(template.get_identifiers())
        if set(given) != wanted:
            raise PageTemplateError(f"{path.name}: {marker.group(0)}: {name} takes the parameters "
                                    f"{sorted(wanted)}, got {sorted(given)}")
        return template.substitute(given)

    source = path.read_text(encoding="utf-8")
    for start in (m.start() for m in re.finditer("<!--#", source)):
        # A misspelt marker would otherwise ship as an invisible comment and leave a hole in the page.
        if not INCLUDE.match(source, start):
            raise PageTemplateError(f"{path.name}: line {source.count(chr(10), 0, start) + 1}: malformed include "
                                    f"marker (expected <!--#include NAME key=\"value\" ...-->)")
    text = INCLUDE.sub(include, source)
    if "<!--#" in text:
        raise PageTemplateError(f"{path.name}: a partial holds an include marker (partials do not nest)")
    return text


def _load(folder: Path) -> dict[str, tuple[bytes, str]]:
    pages = {}
    for path in sorted(folder.glob("*.html")):
        body = assemble(path).encode()
        pages[path.name] = (body, hashlib.sha256(body).hexdigest()[:32])
    return pages


PAGES = _load(WEB)
# The static files served beside the pages, listed once (a request names one of these or gets a 404, with no file
# system call on the event loop).
STATIC = frozenset(p.name for p in WEB.iterdir() if p.is_file() and p.suffix in TYPES and p.suffix != ".html"
                   and not p.name.startswith("."))


def _csp(request: web.Request) -> str:
    """The pages' policy; on plain HTTP with HTTPS on, it also lets the page probe the node's https address
    (web/tls.js), named from the request's Host only when that is one of the node's names."""
    tls, authority = request.app.get(TLS), normal_authority(request.host)
    if tls is None or request.secure or authority is None or authority not in request.app[NAMES]:
        return CSP
    if tls.mode == "files":
        origin = f"https://{urlsplit(request.app[CONFIG].http.url).netloc}"
    else:
        origin = f"https://{authority.rpartition(':')[0]}:{tls.port}"
    return CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}")


def _page(request: web.Request, name: str) -> web.Response:
    body, etag = PAGES[name]
    headers = HEADERS | {"Cache-Control": "no-cache", "Content-Security-Policy": _csp(request)}
    # no-cache makes browsers revalidate each visit; answering 304 keeps that as cheap as serving the file was.
    if any(tag.value in (etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=body, headers=headers | {"Content-Type": "text/html; charset=utf-8"})
    response.etag = etag
    return response


def _file(request: web.Request, name: str) -> web.StreamResponse:
    if name in PAGES:
        return _page(request, name)
    if name not in STATIC:
        raise NotFound(f"no file {name!r}")
    path = WEB / name
    return web.FileResponse(path, headers=HEADERS | {"Content-Type": f"{TYPES[path.suffix]}; charset=utf-8"
                                                     if path.suffix in (".js", ".css")
                                                     else TYPES[path.suffix], "Cache-Control": "max-age=300"})


def page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler serving one HTML page."""
    if name not in PAGES:
        raise PageTemplateError(f"no page {name!r} in {WEB}")

    async def handler(request: web.Request) -> web.Response:
        return _page(request, name)
    handler.__name__ = handler.__qualname__ = f"page_{name.split('.')[0]}"
    handler.__doc__ = f"GET the {name} page."
    return handler


async def static(request: web.Request) -> web.StreamResponse:
    """GET /static/{name}: a script, stylesheet or image of the web app."""
    return _file(request, request.match_info["name"])


AGENCY_FILES = frozenset({"agency.js", "app.css", "icon-192.png"})


async def agency_static(request: web.Request) -> web.StreamResponse:
    """GET /agency/{name}: the script and stylesheet of the page saying where the agency portal lives now."""
    name = request.match_info["name"]
    if name not in AGENCY_FILES:
        raise NotFound(f"no file {name!r}")
    return _file(request, name)


async def service_worker(request: web.Request) -> web.StreamResponse:
    """GET /sw.js: the service worker (served from the root, so its scope is the whole app; always revalidated, so
    a new version reaches phones on their next visit)."""
    return web.FileResponse(WEB / "sw.js", headers=HEADERS | {"Content-Type": "text/javascript; charset=utf-8",
                                                              "Cache-Control": "no-cache"})


async def manifest(request: web.Request) -> web.StreamResponse:
    """GET /manifest.webmanifest: what makes the web app installable (name, icons, colours)."""
    return _file(request, "manifest.webmanifest")
