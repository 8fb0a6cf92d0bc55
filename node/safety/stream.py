"""GET /api/stream: the live feed as Server-Sent Events, resuming after the last id the page saw."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import HttpVersion11, web

from node.errors import BadRequest
from node.http import SESSION_COOKIE, session_of
from node.keys import HUB
from node.safety.live import EOF_TIMEOUT, WRITE_BUFFER_LIMIT, Subscriber


def _after(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"Last-Event-ID/after must be a feed id (a non-negative integer), got {raw[:40]!r}")
    return int(raw)


async def stream(request: web.Request) -> web.StreamResponse:
    """GET /api/stream: Server-Sent Events for the caller, resuming after Last-Event-ID or ?after=."""
    hub = request.app[HUB]
    session = session_of(request)
    after = _after(request)
    if after is None:
        after = await hub.last_id()   # read before subscribing: a message published in between is replayed
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    # aiohttp's parser takes HTTP/1.0 and 1.1 only. HTTP/1.0: the body ends with the connection, no framing.
    chunked = request.version == HttpVersion11
    if chunked:
        response.enable_chunked_encoding()         # so the hub's writes, framed by http_chunk, match
    await response.prepare(request)
    subscriber = Subscriber(session, request.cookies.get(SESSION_COOKIE, ""), chunked=chunked)
    hub.subscribe(subscriber)   # subscribe before reading the backlog, so nothing falls between the two
    try:
        await response.write(b"retry: 2000\n\n")
        last = after
        backlog = await hub.missed(session, after)
        if backlog is None:
            await response.write(b"event: reset\ndata: {}\n\n")
            last = await hub.last_id()
        else:
            for start in range(0, len(backlog), 100):   # a hundred messages a write
                part = backlog[start:start + 100]
                await response.write(b"".join(payload for _, payload in part))
                last = part[-1][0]
        # Catching up: what was published meanwhile, through the queue, until it is empty; then live.
        queue = subscriber.queue
        ended = subscriber.overflowed
        while not ended and not hub.closed:
            if queue.empty():
                subscriber.last, subscriber.transport = last, request.transport
                if subscriber.transport is None:   # the page is already gone
                    break
                await subscriber.ended
                break
            chunk = []
            while not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    ended = True
                    break
                if isinstance(item, bytes):   # KEEP_ALIVE, the only bytes offered to a queue
                    chunk.append(item)
                elif (newer := item.after(last)) is not None:
                    chunk.append(newer.payload)
                    last = newer.messages[-1][0]
            if chunk:
                await response.write(b"".join(chunk))
            ended = ended or subscriber.overflowed
    except ConnectionResetError:
        return response
    finally:
        hub.subscribers.discard(subscriber)
    transport = request.transport
    if subscriber.overflowed or transport is None or transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
        if transport is not None:
            transport.abort()   # a page that does not read would hold the last chunk (and this handler) forever
        return response
    with contextlib.suppress(ConnectionResetError, asyncio.TimeoutError):
        await asyncio.wait_for(response.write_eof(), EOF_TIMEOUT)
    return response
