"""The sync endpoints of DESIGN section 5, as aiohttp handlers. Errors are raised as SyncError for the app to render."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Container
from typing import Any

from aiohttp import web

from ._area import Circle
from ._client import NDJSON
from ._descriptor import NONCE
from ._engine import SyncEngine
from ._errors import BatchTooLarge, MalformedEvent, PeerNotApproved, SyncError
from ._event import MAX_EVENT_BYTES
from ._httpsig import ReplayCache, check_authority, check_content_digest, verify_request
from ._ratelimit import RateLimiter
from ._store import Gap
from ._wire import WireError, decode_pull


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

    def __init__(self, engine: SyncEngine, descriptor: Callable[[str | None], dict[str, Any]],
                 names: Container[str]) -> None:
        """`names`: the authorities this node answers to, spelled as `normal_authority` spells them."""
        self.engine = engine
        self.descriptor = descriptor
        self.names = names
        settings = engine.settings
        self.replay = ReplayCache(window=settings.max_skew)
        self.limiter = RateLimiter(settings.rate, settings.burst)

    async def authenticate(self, request: web.Request) -> str:
        """The approved peer key that signed this request's headers, or AuthError / Misdirected / RateLimited /
        PeerNotApproved.

        `@method`, `@path` and `@query` are those of the request line the router served (never parsed out of a
        URL that the Host header is part of), and the Host must be one of this node's names: a request signed for
        another node or another endpoint never passes. Runs before the body is read; handlers then read it
        (bounded) and check its Content-Digest.
        """
        target = request.rel_url
        url = f"http://{request.host}{target.raw_path}" + (f"?{target.raw_query_string}"
                                                          if target.raw_query_string else "")
        has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding") is not None
        try:
            verified = verify_request(request.method, url, request.headers, None, has_body=has_body,
                                      max_skew=self.engine.settings.max_skew)
            check_authority(request.host, self.names)
            self.limiter.check(verified.keyid)
            if not await self.engine.peers.is_approved(verified.keyid):
                raise PeerNotApproved(f"key {verified.keyid[:16]} is not an approved peer of this node; "
                                      "its manager must approve it (nnode peer approve)")
            # Only approved, rate-limited peers' signatures enter the replay cache, so strangers cannot fill it.
            self.replay.check_and_add(verified.signature, time.time(), verified.keyid)
        except SyncError as exc:
            self.engine.stats.refused[exc.reason] += 1
            raise
        return verified.keyid

    async def _signed_body(self, request: web.Request, limit: int) -> bytes:
        body = await _read_bounded(request, limit)
        try:
            check_content_digest(request.headers, body)
        except SyncError as exc:
            self.engine.stats.refused[exc.reason] += 1
            raise
        return body

    async def handle_descriptor(self, request: web.Request) -> web.Response:
        """GET /.well-known/nnode[?nonce=N]: who this node is, signed (over the caller's nonce if given)."""
        nonce = request.query.get("nonce")
        if nonce is not None and not NONCE.match(nonce):
            raise BadRequest("nonce must be 16 to 64 characters of [A-Za-z0-9_-]")
        return web.json_response(self.descriptor(nonce))

    async def handle_heads(self, request: web.Request) -> web.Response:
        """GET /sync/v1/heads: {author: max seq}."""
        await self.authenticate(request)
        return web.json_response(await self.engine.store.heads())

    async def handle_pull(self, request: web.Request) -> web.StreamResponse:
        """POST /sync/v1/pull: NDJSON of the events the caller lacks, one batch, then {"end": {count, more}}."""
        caller = await self.authenticate(request)
        body = await self._signed_body(request, 4 * 1024 * 1024)
        heads, gaps, tips, limit, interest = self._parse_pull(body)
        self.engine.interests[caller] = interest    # what we push it from now on, too
        keep = None if interest is None else (lambda event: self.engine.applies(event, interest))
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        # Events that differ from the caller's at its own head come first: that is how anti-entropy finds an
        # author who signed two events with one seq when the pushes that would have shown it were missed.
        divergent = await self.engine.store.divergent(heads, tips)
        if divergent:
            await response.write(b"\n".join(divergent) + b"\n")
        sent = len(divergent)
        more = False
        async for lines, cut in self.engine.store.pull_stream(
                heads, gaps, limit=limit, max_bytes=self.engine.settings.max_batch_bytes, now=int(time.time()),
                keep=keep, caller=caller):
            more = cut
            if lines:
                await response.write(b"\n".join(lines) + b"\n")
                sent += len(lines)
        # The end record tells the caller the batch is complete (a cut stream lacks it) and whether to ask again.
        await response.write(json.dumps({"end": {"count": sent, "more": more}}).encode() + b"\n")
        await response.write_eof()
        return response

    def _parse_pull(self, body: bytes) -> tuple[dict[str, int], list[Gap], dict[str, str], int, Circle | None]:
        """The pull request, strictly typed and bounded (see _wire.py); BadRequest says what is wrong and where."""
        try:
            request = decode_pull(body)
            interest = request.circle()
        except WireError as exc:
            raise BadRequest(str(exc)) from None
        limit = self.engine.settings.pull_limit if request.limit is None else request.limit
        gaps: list[Gap] = [list(gap) for gap in request.gaps]
        return request.heads, gaps, request.tips, min(limit, self.engine.settings.max_batch_events), interest

    async def handle_push(self, request: web.Request) -> web.Response:
        """POST /sync/v1/push: NDJSON events; stores the valid ones and reports each rejection."""
        settings = self.engine.settings
        origin = await self.authenticate(request)
        body = await self._signed_body(request, settings.max_batch_bytes)
        count = body.count(b"\n") + (not body.endswith(b"\n"))
        if count > settings.max_batch_events:   # counted before splitting: 8 MiB of newlines is 8 M lines
            raise BatchTooLarge(f"push holds {count} lines, the limit is {settings.max_batch_events} events")
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


__all__ = ["ENDPOINTS", "MAX_EVENT_BYTES", "BadRequest", "SyncServer"]
