"""HTTP handlers for the manager's view of peer nodes, and the sync protocol's endpoints in the route table."""

from __future__ import annotations

from aiohttp import web

from node.errors import NotFound
from node.federation.areas import peer_location
from node.http import MANAGER, PEER, PUBLIC, Handler, Route
from node.keys import AUDIT_HEADS, ENGINE, PEERS, SYNC_SERVER
from sync import SYNC_ENDPOINTS


async def peers(request: web.Request) -> web.Response:
    """GET /api/peers: known nodes, approved or waiting."""
    # audit_conflict: audit-log heads of this peer refused here because they do not extend those held (a rewritten
    # or truncated history), which its manager should look into; None when there are none.
    conflicts = await request.app[AUDIT_HEADS].conflicts() if AUDIT_HEADS in request.app else {}
    listed = [{"key": p.key, "name": p.name, "url": p.url, "state": p.state, "source": p.source,
               "last_sync": p.last_sync, "last_error": p.last_error, "location": peer_location(p.location),
               "audit_conflict": conflicts.get(p.key)}
              for p in await request.app[PEERS].list()]
    return web.json_response({"ok": True, "peers": listed})


async def approve_peer(request: web.Request) -> web.Response:
    """POST /api/peers/{key}/approve: let a discovered node sync with this one."""
    key = request.match_info["key"]
    if not await request.app[PEERS].approve(key):
        raise NotFound(f"no known peer {key[:16]}")
    request.app[ENGINE].wake()
    return web.json_response({"ok": True})


def _sync_handler(attribute: str) -> Handler:
    """A handler calling the sync server, which is created at start-up (after the routes are fixed)."""
    async def handler(request: web.Request) -> web.StreamResponse:
        return await getattr(request.app[SYNC_SERVER], attribute)(request)  # type: ignore[no-any-return]
    handler.__name__ = handler.__qualname__ = f"sync_{attribute}"
    return handler


def routes() -> list[Route]:
    """The manager's peer routes and the sync protocol's endpoints (signed ones for approved peers only)."""
    manager = frozenset({MANAGER})
    table = [
        Route("GET", "/api/peers", peers, manager),
        Route("POST", "/api/peers/{key}/approve", approve_peer, manager),
    ]
    for method, path, attribute, signed in SYNC_ENDPOINTS:
        table.append(Route(method, path, _sync_handler(attribute), frozenset({PEER if signed else PUBLIC})))
    return table
