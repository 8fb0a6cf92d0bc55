"""Live delivery to open pages: a persisted feed of messages and a Server-Sent Events stream that resumes.

Every message gets the next feed id from the hub, is handed to the streams of its audience and is written to the
`feed` table meanwhile (the disk's fsync is not on the way to the pages). A page that reconnects says the last id it
saw (the browser's `Last-Event-ID`, or `?after=`) and gets what it missed, in order, before live messages (the
message being written comes from memory until its row is in); so a dropped connection loses nothing.

The feed is a replay buffer of messages about what is stored elsewhere (events, reports, SOS calls are written
before their message is published), not one of the writes DESIGN invariant 6 makes durable. Ids stay increasing
across restarts: the hub takes its first id from SQLite's AUTOINCREMENT counter plus two, since the one message a
crash can catch unwritten (written under the hub's lock, one at a time) was at most the counter plus one, and a page
that saw it must not take a later message with the same id for one it already has.
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

from node.people.accounts import Session
from sync import Database, Migration

log = logging.getLogger("nnode.live")

HEARTBEAT = 15.0          # seconds between keep-alive comments on an idle stream
QUEUE_LIMIT = 1000        # batches a slow page may fall behind before it is cut off (it resumes from its last id)
COALESCE = 0.02           # seconds: when messages come faster than this, each stream gets them in one write per period
WRITE_RATE = 5000         # ...and it grows so that all the streams together get at most this many writes a second
MAX_COALESCE = 0.5        # ...up to this
WRITE_BUFFER_LIMIT = 1 << 20   # bytes a live page may fall behind (unsent) before it is cut off
EOF_TIMEOUT = 10.0        # seconds an ended stream's last chunk may take to leave
REPLAY_LIMIT = 5000       # most missed messages replayed on reconnect; more means "reload"
FEED_DAYS = 7             # how long messages stay replayable

ALL, MANAGERS, RESPONDERS = "all", "managers", "responders"

COMPONENT = "live"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
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


KEEP_ALIVE = b": keep-alive\n\n"   # a comment line: keeps NATs open and finds dead clients


def encode(message_id: int, kind: str, data: str) -> bytes:
    """One SSE message (data is JSON on one line)."""
    return f"id: {message_id}\nevent: {kind}\ndata: {data}\n\n".encode()


def http_chunk(payload: bytes) -> bytes:
    """`payload` as one HTTP/1.1 chunk (RFC 9112, 7.1)."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)


KEEP_ALIVE_CHUNK = http_chunk(KEEP_ALIVE)


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages for one stream from one flush, oldest first: (feed id, encoded) each; all of them joined, and that
    again as one HTTP/1.1 chunk (built once, written to every live stream that gets the same batch)."""

    messages: tuple[tuple[int, bytes], ...]
    payload: bytes
    chunk: bytes

    @classmethod
    def of(cls, messages: Sequence[tuple[int, bytes]]) -> "Batch":
        payload = b"".join(encoded for _, encoded in messages)
        return cls(tuple(messages), payload, http_chunk(payload))

    def after(self, last: int) -> "Batch | None":
        """The messages newer than feed id `last` (self if all are), or None."""
        if self.messages[0][0] > last:
            return self
        newer = [m for m in self.messages if m[0] > last]
        return Batch.of(newer) if newer else None


def _audience_key(session: Session) -> tuple[str, bool, int]:
    """What may_receive looks at: sessions with the same key get the same messages."""
    return session.role, session.on_call, session.subject


@dataclass(eq=False)
class Subscriber:
    """One open stream: its session (as of the last check) and cookie.

    A stream starts catching up: the page's missed messages are written from the database while what is published
    meanwhile waits in `queue`. Once both are out it goes live: `transport` is set and the hub writes each batch to
    it at once, framed as an HTTP chunk when `chunked`, with no task woken per stream. `last` is the newest feed id
    written to it, and `ended` is done when the stream should end (revoked session, shutdown, too slow, gone).
    """

    session: Session
    token: str
    queue: asyncio.Queue[Batch | bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    transport: asyncio.Transport | None = None
    chunked: bool = True
    last: int = 0
    ended: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Hub:
    """The feed and its subscribers."""

    def __init__(self, db: Database, lookup: Callable[[str], Awaitable[Session | None]]) -> None:
        self.db = db
        self.lookup = lookup          # session token -> live Session or None (accounts.session)
        self.subscribers: set[Subscriber] = set()
        self._lock = asyncio.Lock()   # feed ids reach subscribers in order
        self.closed = False
        self._heartbeat: asyncio.Task[None] | None = None
        # Stored messages not yet handed to the streams: (feed id, audience, encoded), in id order. One flush hands
        # them over: at once when the streams have been idle for a period, else a period after the previous flush.
        # A write to a socket costs more than the rest of a message's fan-out together, so at 50 messages a second
        # a thousand streams would otherwise spend the node's whole core in send().
        self._pending: list[tuple[int, str, bytes]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = -MAX_COALESCE
        self._next_id: int | None = None   # the next feed id (read from the database on first use)
        # The message whose row is being written (under _lock, so at most one): (id, type, audience, data).
        self._unwritten: tuple[int, str, str, str] | None = None
        # Told of each stored message (kind, data, audience), synchronously and in feed order: Web Push (node/push).
        self.listeners: list[Callable[[str, dict[str, Any], str], None]] = []

    def period(self) -> float:
        """Least seconds between two flushes: COALESCE, longer with many streams (WRITE_RATE writes a second at
        most in all), at most MAX_COALESCE."""
        return max(COALESCE, min(MAX_COALESCE, len(self.subscribers) / WRITE_RATE))

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
                if subscriber.transport is not None:
                    self._write(subscriber, subscriber.transport,
                                KEEP_ALIVE_CHUNK if subscriber.chunked else KEEP_ALIVE)
                else:
                    self._offer(subscriber, KEEP_ALIVE)

    async def _first_id(self) -> int:
        """The id after every one this feed has given (see the module's notes for the two)."""
        rows: list[Any] = list(await self.db.reader.execute_fetchall(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'feed'), 0), COALESCE(MAX(id), 0) "
            "FROM feed"))
        return max(int(rows[0][0]), int(rows[0][1])) + 2

    async def publish(self, kind: str, data: dict[str, Any], audience: str = ALL) -> int:
        """Send a message to every open stream in its audience (at the next flush) and store it; returns its feed
        id once its row is written. If the write fails, the streams have it, a replay will not, and this raises."""
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        async with self._lock:
            if self._next_id is None:
                self._next_id = await self._first_id()
            message_id, self._next_id = self._next_id, self._next_id + 1
            self._unwritten = (message_id, kind, audience, text)
            self._pending.append((message_id, audience, encode(message_id, kind, text)))
            if self._flush_handle is None and not self.closed:
                loop = asyncio.get_running_loop()
                self._flush_handle = loop.call_at(max(loop.time(), self._last_flush + self.period()), self.flush)
            try:
                row = (message_id, int(time.time()), kind, audience, text)
                await self.db.transact(lambda conn: conn.execute(
                    "INSERT INTO feed (id, created, type, audience, data) VALUES (?, ?, ?, ?, ?)", row))
            finally:
                self._unwritten = None
        for listener in self.listeners:
            listener(kind, data, audience)
        return message_id

    def flush(self) -> None:
        """Hand the pending messages to every open stream in their audience, one batch per stream."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, []
        if not pending:
            return
        everyone = Batch.of([(message_id, encoded) for message_id, _, encoded in pending]) \
            if all(audience == ALL for _, audience, _ in pending) else None
        batches: dict[tuple[str, bool, int], Batch | None] = {}
        for subscriber in list(self.subscribers):
            batch = everyone
            if batch is None:
                key = _audience_key(subscriber.session)
                if key not in batches:
                    mine = [(message_id, encoded) for message_id, audience, encoded in pending
                            if may_receive(subscriber.session, audience)]
                    batches[key] = Batch.of(mine) if mine else None
                batch = batches[key]
            if batch is None:
                continue
            if subscriber.transport is None:
                self._offer(subscriber, batch)
            elif (newer := batch.after(subscriber.last)) is not None:
                if self._write(subscriber, subscriber.transport, newer.chunk if subscriber.chunked else newer.payload):
                    subscriber.last = newer.messages[-1][0]

    def _write(self, subscriber: Subscriber, transport: asyncio.Transport, data: bytes) -> bool:
        """Write to a live stream (its `transport`); end it if its page is gone or too far behind (it resumes from
        its last id)."""
        if transport.is_closing():
            self.end(subscriber)
            return False
        if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            # Too slow to keep up (or not reading): drop what it has not taken, and the connection; the browser
            # reconnects and resumes from its last id.
            subscriber.overflowed = True
            self.end(subscriber)
            transport.abort()
            return False
        transport.write(data)
        return True

    def _offer(self, subscriber: Subscriber, message: Batch | bytes | None) -> None:
        try:
            subscriber.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Too slow to keep up: end its stream; the browser reconnects and resumes from its last id.
            subscriber.overflowed = True
            self.subscribers.discard(subscriber)

    def end(self, subscriber: Subscriber) -> None:
        """End one stream (its handler writes the last chunk and returns)."""
        self.subscribers.discard(subscriber)
        if subscriber.transport is None:
            self._offer(subscriber, None)
        if not subscriber.ended.done():
            subscriber.ended.set_result(None)

    async def recheck(self) -> None:
        """Look every open stream's session up again, after a revocation, sign-out or on-call change: a revoked
        session's stream ends, and a changed role or on-call flag applies to the next message."""
        found: dict[str, Session | None] = {}
        for subscriber in list(self.subscribers):
            if subscriber.token not in found:
                found[subscriber.token] = await self.lookup(subscriber.token)
            session = found[subscriber.token]
            if session is None:
                self.end(subscriber)
            else:
                subscriber.session = session

    async def last_id(self) -> int:
        """The newest feed id given out (at start, before the first message: one past the newest stored)."""
        if self._next_id is None:
            return await self._first_id() - 1
        return self._next_id - 1

    async def missed(self, session: Session, after: int) -> list[tuple[int, bytes]] | None:
        """Messages after `after` for `session`, oldest first (the one being written, from memory); None if more
        than REPLAY_LIMIT were missed."""
        unwritten = self._unwritten   # taken before the read: if its row lands meanwhile, the read has it too
        rows: list[Any] = list(await self.db.reader.execute_fetchall(
            "SELECT id, type, audience, data FROM feed WHERE id > ? ORDER BY id LIMIT ?", (after, REPLAY_LIMIT + 1)))
        if unwritten is not None and unwritten[0] > after and all(row[0] != unwritten[0] for row in rows):
            rows.append(unwritten)
        if len(rows) > REPLAY_LIMIT:
            return None
        return [(row[0], encode(row[0], row[1], row[3])) for row in rows if may_receive(session, row[2])]

    async def forget(self, kind: str, report_id: int) -> None:
        """Drop stored messages about one building report (it was hidden), so no replay shows it again."""
        async with self._lock, self.db.write() as conn:   # the lock: after any message being written
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
        self.flush()   # what was published goes out before the end
        self.closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        for subscriber in list(self.subscribers):
            self.end(subscriber)
        self.subscribers.clear()
