"""Live delivery to open pages: a persisted feed of messages and a Server-Sent Events stream that resumes.

Every message is first written to the `feed` table, which gives it its increasing id, then handed to the streams of
its audience. A page that reconnects says the last id it saw (the browser's `Last-Event-ID`, or `?after=`) and gets
what it missed, in order, before live messages; so a dropped connection loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from aiohttp import web

from sync import Database, Migration

from .accounts import Session
from .errors import BadRequest

log = logging.getLogger("nnode.live")

HEARTBEAT = 15.0          # seconds between keep-alive comments on an idle stream
QUEUE_LIMIT = 1000        # messages a slow page may fall behind before it is cut off (it resumes from its last id)
REPLAY_LIMIT = 5000       # most missed messages replayed on reconnect; more means "reload"
FEED_DAYS = 7             # how long messages stay replayable

ALL, MANAGERS, RESPONDERS = "all", "managers", "responders"

MIGRATIONS: Sequence[Migration] = [
    (4, [
        """CREATE TABLE feed (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created INTEGER NOT NULL,
            type TEXT NOT NULL,
            audience TEXT NOT NULL,
            data TEXT NOT NULL
        )""",
    ]),
]


def resident_audience(resident_id: int) -> str:
    """The audience of one resident's own messages (their SOS being acknowledged...)."""
    return f"resident:{resident_id}"


def may_receive(session: Session, audience: str) -> bool:
    """True if `session` is in `audience`."""
    if audience == ALL:
        return True
    if session.role == "manager":
        return True
    if audience == RESPONDERS:
        return session.on_call
    return session.role == "resident" and audience == resident_audience(session.subject)


KEEP_ALIVE = (0, b": keep-alive\n\n")   # a comment line: keeps NATs open and finds dead clients


def encode(message_id: int, kind: str, data: str) -> bytes:
    """One SSE message (data is JSON on one line)."""
    return f"id: {message_id}\nevent: {kind}\ndata: {data}\n\n".encode()


@dataclass(eq=False)
class Subscriber:
    """One open stream: its session (as of the last check), its cookie and a bounded queue of encoded messages."""

    session: Session
    token: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False


class Hub:
    """The feed and its subscribers."""

    def __init__(self, db: Database, lookup: Callable[[str], Awaitable[Session | None]]) -> None:
        self.db = db
        self.lookup = lookup          # session token -> live Session or None (accounts.session)
        self.subscribers: set[Subscriber] = set()
        self._lock = asyncio.Lock()   # feed ids reach subscribers in order
        self.closed = False
        self._heartbeat: asyncio.Task | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add an open stream (and start the shared heartbeat with the first one)."""
        self.subscribers.add(subscriber)
        if self._heartbeat is None and not self.closed:
            self._heartbeat = asyncio.create_task(self._beat(), name="nnode-live-heartbeat")

    async def _beat(self) -> None:
        # One task for every stream, rather than a timer per stream and message: with a thousand open pages the
        # per-message timers were a quarter of the fan-out's cost.
        while not self.closed:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.recheck()   # belt and braces: sessions that expired meanwhile end their streams
            except Exception:
                log.exception("live session check failed")
            for subscriber in list(self.subscribers):
                self._offer(subscriber, KEEP_ALIVE)

    async def publish(self, kind: str, data: dict[str, Any], audience: str = ALL) -> int:
        """Store a message and send it to every open stream in its audience; returns its feed id."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        async with self._lock:
            async with self.db.write() as conn:
                cursor = await conn.execute("INSERT INTO feed (created, type, audience, data) VALUES (?, ?, ?, ?)",
                                            (int(time.time()), kind, audience, text))
            message_id = cursor.lastrowid
            message = (message_id, encode(message_id, kind, text))
            for subscriber in list(self.subscribers):
                if may_receive(subscriber.session, audience):
                    self._offer(subscriber, message)
        return message_id

    def _offer(self, subscriber: Subscriber, message: tuple[int, bytes] | None) -> None:
        try:
            subscriber.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Too slow to keep up: end its stream; the browser reconnects and resumes from its last id.
            subscriber.overflowed = True
            self.subscribers.discard(subscriber)

    async def recheck(self) -> None:
        """Look every open stream's session up again, after a revocation, sign-out or on-call change: a revoked
        session's stream ends, and a changed role or on-call flag applies to the next message."""
        found: dict[str, Session | None] = {}
        for subscriber in list(self.subscribers):
            if subscriber.token not in found:
                found[subscriber.token] = await self.lookup(subscriber.token)
            session = found[subscriber.token]
            if session is None:
                self.subscribers.discard(subscriber)
                self._offer(subscriber, None)
            else:
                subscriber.session = session

    async def last_id(self) -> int:
        """The newest feed id (0 when empty)."""
        rows = await self.db.reader.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM feed")
        return rows[0][0]

    async def missed(self, session: Session, after: int) -> list[tuple[int, bytes]] | None:
        """Messages after `after` for `session`, oldest first; None if more than REPLAY_LIMIT were missed."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT id, type, audience, data FROM feed WHERE id > ? ORDER BY id LIMIT ?", (after, REPLAY_LIMIT + 1))
        if len(rows) > REPLAY_LIMIT:
            return None
        return [(row[0], encode(row[0], row[1], row[3])) for row in rows if may_receive(session, row[2])]

    async def forget(self, kind: str, report_id: int) -> None:
        """Drop stored messages about one building report (it was hidden), so no replay shows it again."""
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM feed WHERE type = ? AND json_extract(data, '$.report.id') = ? "
                               "AND json_extract(data, '$.report.source') = 'building'", (kind, report_id))

    async def purge(self, *, now: int | None = None) -> int:
        """Forget messages older than FEED_DAYS."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute("DELETE FROM feed WHERE created < ?", (now - FEED_DAYS * 86_400,))
        return cursor.rowcount

    async def close(self, app: web.Application | None = None) -> None:
        """End every open stream (at shutdown, so the server does not wait on them)."""
        self.closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for subscriber in list(self.subscribers):
            self._offer(subscriber, None)
        self.subscribers.clear()


def _after(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"Last-Event-ID/after must be a feed id (a non-negative integer), got {raw[:40]!r}")
    return int(raw)


async def stream(request: web.Request) -> web.StreamResponse:
    """GET /api/stream: Server-Sent Events for the caller, resuming after Last-Event-ID or ?after=."""
    from .app import HUB

    hub: Hub = request.app[HUB]
    from .api_people import SESSION_COOKIE, session_of
    session = session_of(request)
    after = _after(request)
    if after is None:
        after = await hub.last_id()   # read before subscribing: a message published in between is replayed
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    subscriber = Subscriber(session, request.cookies.get(SESSION_COOKIE, ""))
    hub.subscribe(subscriber)   # subscribe before reading the backlog, so nothing falls between the two
    try:
        await response.write(b"retry: 2000\n\n")
        last = after
        backlog = await hub.missed(session, after)
        if backlog is None:
            await response.write(b"event: reset\ndata: {}\n\n")
            last = await hub.last_id()
        else:
            for message_id, payload in backlog:
                await response.write(payload)
                last = message_id
        queue = subscriber.queue
        while not hub.closed and not (subscriber.overflowed and queue.empty()):
            messages = [await queue.get()]
            while not queue.empty():     # whatever else is waiting goes out in the same write
                messages.append(queue.get_nowait())
            chunk, ended = [], False
            for message in messages:
                if message is None:
                    ended = True
                    break
                if message is KEEP_ALIVE or message[0] > last:
                    chunk.append(message[1])
                    last = max(last, message[0])
            if chunk:
                await response.write(b"".join(chunk))
            if ended:
                break
    except ConnectionResetError:
        return response
    finally:
        hub.subscribers.discard(subscriber)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
