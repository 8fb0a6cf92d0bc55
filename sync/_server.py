"""The sync endpoints of DESIGN section 5, as aiohttp handlers. Errors are raised as SyncError for the app to render."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from aiohttp import web

from ._client import NDJSON
from ._engine import SyncEngine
from ._errors import BatchTooLarge, MalformedEvent, PeerNotApproved, SyncError
from ._event import MAX_EVENT_BYTES
from ._httpsig import ReplayCache, verify_request
from ._ratelimit import RateLimiter
from ._store import MAX_GAP_RANGES


class BadRequest(SyncError):
    """A sync request body is not what the endpoint takes."""

    status = 400
    reason = "bad_request"


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BatchTooLarge(f"request body is {request.content_length} bytes, the limit is {limit}")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise BatchTooLarge(f"request body exceeds the limit of {limit} bytes")
    return bytes(body)


# (method, path, SyncServer method, signed by an approved peer?)
ENDPOINTS = (
    ("GET", "/.well-known/nnode", "handle_descriptor", False),
    ("GET", "/sync/v1/heads", "handle_heads", True),
    ("POST", "/sync/v1/pull", "handle_pull", True),
    ("POST", "/sync/v1/push", "handle_push", True),
)


class SyncServer:
    """Authenticates peers (RFC 9421, approval, skew, replay, rate) and serves heads, pull and push."""

    def __init__(self, engine: SyncEngine, descriptor: Callable[[], dict[str, Any]]) -> None:
        self.engine = engine
        self.descriptor = descriptor
        settings = engine.settings
        self.replay = ReplayCache(window=settings.max_skew)
        self.limiter = RateLimiter(settings.rate, settings.burst)

    async def authenticate(self, request: web.Request, body: bytes) -> str:
        """The approved peer key that signed this request, or an AuthError / RateLimited."""
        url = f"http://{request.host}{request.raw_path}"
        try:
            verified = verify_request(request.method, url, request.headers, body,
                                      max_skew=self.engine.settings.max_skew, replay=self.replay)
            self.limiter.check(verified.keyid)
            if not await self.engine.peers.is_approved(verified.keyid):
                raise PeerNotApproved(f"key {verified.keyid[:16]} is not an approved peer of this node; "
                                      "its manager must approve it (nnode peer approve)")
        except SyncError as exc:
            self.engine.stats.refused[exc.reason] += 1
            raise
        return verified.keyid

    async def handle_descriptor(self, request: web.Request) -> web.Response:
        """GET /.well-known/nnode: who this node is, signed."""
        return web.json_response(self.descriptor())

    async def handle_heads(self, request: web.Request) -> web.Response:
        """GET /sync/v1/heads: {author: max seq}."""
        await self.authenticate(request, b"")
        return web.json_response(await self.engine.store.heads())

    async def handle_pull(self, request: web.Request) -> web.StreamResponse:
        """POST /sync/v1/pull: NDJSON of the events the caller lacks, one batch, then {"end": {count, more}}."""
        body = await _read_bounded(request, 1024 * 1024)
        await self.authenticate(request, body)
        heads, gaps, limit = self._parse_pull(body)
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        sent = 0
        more = False
        async for lines, more in self.engine.store.pull_stream(
                heads, gaps, limit=limit, max_bytes=self.engine.settings.max_batch_bytes, now=int(time.time())):
            if lines:
                await response.write(b"\n".join(lines) + b"\n")
                sent += len(lines)
        # The end record tells the caller the batch is complete (a cut stream lacks it) and whether to ask again.
        await response.write(json.dumps({"end": {"count": sent, "more": more}}).encode() + b"\n")
        await response.write_eof()
        return response

    def _parse_pull(self, body: bytes) -> tuple[dict[str, int], list, int]:
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"pull body is not JSON: {exc}") from exc
        if not isinstance(value, dict) or set(value) - {"heads", "gaps", "limit"}:
            raise BadRequest("pull body must be an object with heads, gaps and limit")
        heads = value.get("heads", {})
        if not isinstance(heads, dict) or not all(isinstance(k, str) and type(v) is int for k, v in heads.items()):
            raise BadRequest("pull 'heads' must map author keys to integers")
        gaps = value.get("gaps", [])
        if (not isinstance(gaps, list) or len(gaps) > MAX_GAP_RANGES
                or not all(isinstance(g, list) and len(g) == 3 and isinstance(g[0], str)
                           and type(g[1]) is int and type(g[2]) is int for g in gaps)):
            raise BadRequest(f"pull 'gaps' must be at most {MAX_GAP_RANGES} [author, first, last] ranges")
        limit = value.get("limit", self.engine.settings.pull_limit)
        if type(limit) is not int or limit < 1:
            raise BadRequest("pull 'limit' must be a positive integer")
        return heads, gaps, min(limit, self.engine.settings.max_batch_events)

    async def handle_push(self, request: web.Request) -> web.Response:
        """POST /sync/v1/push: NDJSON events; stores the valid ones and reports each rejection."""
        settings = self.engine.settings
        body = await _read_bounded(request, settings.max_batch_bytes)
        origin = await self.authenticate(request, body)
        lines = body.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if not lines:
            raise MalformedEvent("push body holds no events (NDJSON, one event per line)")
        if len(lines) > settings.max_batch_events:
            raise BatchTooLarge(f"push holds {len(lines)} events, the limit is {settings.max_batch_events}")
        result = await self.engine.ingest(lines, origin)
        report = result.as_json()
        if not result.rejected:
            return web.json_response({"ok": True, "results": report})
        index, first = result.rejected[0]
        where = f"event {index + 1} of {len(lines)}" if len(lines) > 1 else "event"
        return web.json_response({"ok": False, "error": f"{where}: {first}", "status": first.status,
                                  "reason": first.reason, "results": report}, status=first.status)


__all__ = ["ENDPOINTS", "SyncServer", "BadRequest", "MAX_EVENT_BYTES"]
