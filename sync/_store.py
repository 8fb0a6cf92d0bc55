"""The event store on SQLite: idempotent by id, unique (author, seq), tombstones, quarantine and pull planning."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypedDict

from ._canonical import MAX_SAFE_INT
from ._db import Database, Migration
from ._errors import AuthorQuarantined, Equivocation, EventRejected, InvalidBody
from ._event import Event, encode_line, tombstone_target
from ._ledger import BATCH_MIGRATION, LEDGER_MIGRATION, apply_batch
from ._retention import RETENTION_MIGRATION, Retention, horizon, prune, settled_slots

MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE events (
            id TEXT PRIMARY KEY,
            author TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            ts INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            body_hash TEXT NOT NULL,
            sig TEXT NOT NULL,
            body BLOB,
            received INTEGER NOT NULL,
            origin TEXT NOT NULL,
            UNIQUE (author, seq)
        )""",
        "CREATE INDEX events_expiring ON events(expires) WHERE body IS NOT NULL",
        # Keyed by (target, author): a tombstone deletes only its own author's event, so one by anyone else
        # must not take the slot of the real one.
        """CREATE TABLE tombstones (
            target TEXT NOT NULL,
            author TEXT NOT NULL,
            tombstone_id TEXT NOT NULL,
            PRIMARY KEY (target, author)
        )""",
        """CREATE TABLE quarantine (
            author TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            evidence TEXT NOT NULL,
            at INTEGER NOT NULL
        )""",
    ]),
    # Heads, tips, gaps and counts kept as events are written, and indexes for reads by kind (sync/_ledger.py);
    # versions 2 and 3 are the peers' tables (sync/_peers.py).
    (4, LEDGER_MIGRATION),
    # Pruning of expired headers and the settled slots it leaves (sync/_retention.py).
    (5, RETENTION_MIGRATION),
    # The ledger kept once per batch by `commit`, the per-row trigger left for other writers (sync/_ledger.py).
    (6, BATCH_MIGRATION),
]

MAX_GAP_RANGES = 256
MAX_SCAN = 50_000     # rows one pull with an area of interest may read (most of them may be for elsewhere)
GAPS_PER_AUTHOR = 8
PURGE_BATCH = 500     # bodies dropped per transaction
INSERT_ROWS = 500     # rows per INSERT statement of a commit (11 values each, within SQLite's 32,766)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_COLUMNS = "id, author, seq, kind, ts, expires, body_hash, sig, body"
_SLOT_COLUMNS = ", ".join(f"events.{c}" for c in _COLUMNS.split(", "))
# Events at a list of (author, seq) slots: CROSS JOIN keeps the list outside, so each slot is one index lookup
# (`(author, seq) IN (VALUES ...)` is planned as a scan of every event).
_BY_SLOT = "CROSS JOIN events ON events.author = slots.column1 AND events.seq = slots.column2"

# A missing seq range as a pull request carries it: [author, first, last].
Gap = Sequence[str | int]


class Quarantine(TypedDict):
    """Why and since when an author is quarantined, with both signed headers as evidence."""

    reason: str
    evidence: dict[str, Any]
    at: int


def _row_event(row: sqlite3.Row) -> Event:
    return Event(id=row[0], author=row[1], seq=row[2], kind=row[3], ts=row[4], expires=row[5], body_hash=row[6],
                 sig=row[7], body=row[8])


class Status(Enum):
    """What storing an incoming event would do."""

    NEW = "new"                  # unknown: verify its signature, then insert
    FILL_BODY = "fill_body"      # we hold its header only; the body (already hash-checked) can be added
    DUPLICATE = "duplicate"      # already held as it is: nothing to do
    EQUIVOCATION = "equivocation"  # same (author, seq), other id: verify, then quarantine the author
    SETTLED = "settled"          # its slot was pruned (below the author's head, in no gap): ignored, not stored


@dataclass
class Plan:
    """The outcome of `EventStore.prepare` for one batch, in input order."""

    statuses: list[Status | EventRejected] = field(default_factory=list)
    events: list[Event | None] = field(default_factory=list)
    conflicts: dict[int, str] = field(default_factory=dict)  # index -> id we already hold for (author, seq)


class EventStore:
    """Events in SQLite. Writes go through Database.write(); reads use the reader connection."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- reads --------------------------------------------------------------------------------------------------

    async def heads(self) -> dict[str, int]:
        """{author: highest seq held} for every author."""
        rows = await self.db.reader.execute_fetchall("SELECT author, head FROM event_authors")
        return {r[0]: r[1] for r in rows}

    async def heads_and_tips(self) -> tuple[dict[str, int], dict[str, str]]:
        """({author: highest seq}, {author: id of the event at that seq})."""
        rows = await self.db.reader.execute_fetchall("SELECT author, head, tip FROM event_authors")
        return {r[0]: r[1] for r in rows}, {r[0]: r[2] for r in rows}

    async def gaps(self, limit: int = MAX_GAP_RANGES, per_author: int = GAPS_PER_AUTHOR) -> list[list[str | int]]:
        """Missing seq ranges [author, first, last] below each author's head.

        At most `per_author` (the most recent) for each author and `limit` in all, in random order, so that one
        author with many holes that nobody can fill cannot keep another author's gap from being asked for.
        """
        # Each author's most recent ranges by a range of the (author, first) key, from the `per_author`-th one up
        # (all of them if it has fewer): the cost follows authors times `per_author`, however many holes are kept
        # (with an area of interest, most seqs of most authors are held elsewhere).
        rows = await self.db.reader.execute_fetchall(
            "SELECT g.author, g.first, g.last FROM event_authors AS a CROSS JOIN event_gaps AS g "
            "ON g.author = a.author AND g.first >= COALESCE((SELECT first FROM event_gaps WHERE author = a.author "
            "ORDER BY first DESC LIMIT 1 OFFSET ?), 0) ORDER BY random() LIMIT ?", (max(per_author - 1, 0), limit))
        return [[r[0], r[1], r[2]] for r in rows]

    async def divergent(self, heads: dict[str, int], tips: dict[str, str]) -> list[bytes]:
        """Lines of our events at the caller's (author, head seq) whose id differs from the caller's tip."""
        wanted = [(a, heads[a], tips[a]) for a in tips if a in heads]
        lines: list[bytes] = []
        for start in range(0, len(wanted), 400):
            chunk = wanted[start:start + 400]
            rows = await self.db.reader.execute_fetchall(
                f"SELECT {_SLOT_COLUMNS} FROM (VALUES {','.join('(?, ?)' for _ in chunk)}) AS slots {_BY_SLOT}",
                [v for a, seq, _ in chunk for v in (a, seq)])
            theirs = {(a, seq): tip for a, seq, tip in chunk}
            lines += [encode_line(_row_event(r).without_body()) for r in rows if theirs[(r[1], r[2])] != r[0]]
        return lines

    async def get(self, event_id: str) -> Event | None:
        """One event by id."""
        rows = list(await self.db.reader.execute_fetchall(f"SELECT {_COLUMNS} FROM events WHERE id = ?",
                                                          (event_id,)))
        return _row_event(rows[0]) if rows else None

    async def known_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` are stored."""
        found: set[str] = set()
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            rows = await self.db.reader.execute_fetchall(
                f"SELECT id FROM events WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found.update(r[0] for r in rows)
        return found

    async def ids_at(self, slots: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The ids stored at these (author, seq) slots, for those that hold one."""
        found: dict[tuple[str, int], str] = {}
        for start in range(0, len(slots), 400):
            chunk = slots[start:start + 400]
            values = ",".join(["(?, ?)"] * len(chunk))
            rows = await self.db.reader.execute_fetchall(
                f"SELECT events.author, events.seq, events.id FROM (VALUES {values}) AS slots {_BY_SLOT}",
                [value for slot in chunk for value in slot])
            found.update(((r[0], r[1]), r[2]) for r in rows)
        return found

    async def count(self) -> int:
        """How many events (headers) are held."""
        rows = list(await self.db.reader.execute_fetchall("SELECT COALESCE(SUM(held), 0) FROM event_kinds"))
        return int(rows[0][0])

    async def counts_by_kind(self) -> dict[str, int]:
        """{kind: events held}."""
        rows = await self.db.reader.execute_fetchall("SELECT kind, held FROM event_kinds")
        return {r[0]: r[1] for r in rows}

    async def recent(self, limit: int = 50, kind: str | None = None) -> list[Event]:
        """The most recently stored events, newest first."""
        where, args = ("WHERE kind = ?", (kind, limit)) if kind else ("", (limit,))
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM events {where} ORDER BY rowid DESC LIMIT ?", args)
        return [_row_event(r) for r in rows]

    async def with_bodies(self, kind: str, *, now: int | None = None) -> list[Event]:
        """The events of `kind` that still hold a body (and, given `now`, have not expired), newest first.

        Read through an index of bodies by expiry, so the cost follows the events alive, not all of the kind held.
        """
        where, args = ("AND expires > ?", (kind, now)) if now is not None else ("", (kind,))
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM events INDEXED BY events_live WHERE kind = ? AND body IS NOT NULL {where} "
            "ORDER BY rowid DESC", args)
        return [_row_event(r) for r in rows]

    @staticmethod
    def live_slots(conn: sqlite3.Connection, kind: str, now: int) -> list[tuple[str, int, str, int]]:
        """(id, ts, author, seq) of the events with_bodies(kind, now=now) returns, in its order, without reading
        their bodies: for callers that keep what they decoded by event id and read it with other tables in one
        trip (`await store.db.read(lambda conn: store.live_slots(conn, ...) ...)`: node/safety/alerts.py)."""
        rows = conn.execute(
            "SELECT id, ts, author, seq FROM events INDEXED BY events_live WHERE kind = ? AND body IS NOT NULL "
            "AND expires > ? ORDER BY rowid DESC", (kind, now))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def quarantined(self) -> dict[str, Quarantine]:
        """{author: {reason, evidence, at}} for quarantined authors."""
        rows = await self.db.reader.execute_fetchall("SELECT author, reason, evidence, at FROM quarantine")
        return {r[0]: Quarantine(reason=r[1], evidence=json.loads(r[2]), at=r[3]) for r in rows}

    async def pull_stream(self, their_heads: dict[str, int], their_gaps: Iterable[Gap], *, limit: int,
                          max_bytes: int, now: int, chunk: int = 500, keep: Callable[[Event], bool] | None = None,
                          caller: str | None = None) -> AsyncIterator[tuple[list[bytes], bool]]:
        """Lines of the events the caller lacks, by (author, seq), in chunks as they are read.

        Each item is (lines, more): `more` is True on the last item if the limit or byte cap stopped the stream
        before everything was sent. Bodies of expired events are left out: their headers still fill gaps. With
        `keep` (the caller's area of interest), only events it keeps are sent, and no expired ones: with areas, a
        caller's gaps are mostly events meant for elsewhere. Then at most MAX_SCAN rows are read, the authors in
        random order, so that the cost of a pull stays bounded and no author is left out every time. The caller's
        own events always go (expired ones header only), whatever their area: a node restored from a backup numbers
        its next event from what it holds of its own, so it must get back every seq it used.
        """
        ours = await self.heads()
        ranges = [(a, int(lo), int(hi)) for a, lo, hi in their_gaps if isinstance(a, str) and a in ours]
        ranges += [(a, their_heads.get(a, 0) + 1, top) for a, top in ours.items() if top > their_heads.get(a, 0)]
        if keep is None:
            ranges.sort()
        else:
            random.shuffle(ranges)
        sent = size = scanned = 0
        for author, lo, hi in ranges:
            while lo <= hi:
                if keep is not None and scanned >= MAX_SCAN:
                    yield [], False
                    return
                rows = list(await self.db.reader.execute_fetchall(
                    f"SELECT {_COLUMNS} FROM events WHERE author = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT ?",
                    (author, lo, hi, chunk if keep is not None else min(chunk, limit - sent + 1))))
                if not rows:
                    break
                scanned += len(rows)
                lines: list[bytes] = []
                for row in rows:
                    event = _row_event(row)
                    if (keep is not None and event.author != caller
                            and (event.expires <= now or event.body is None or not keep(event))):
                        continue
                    if event.expires <= now:
                        event = event.without_body()
                    line = encode_line(event)
                    if sent >= limit or (sent and size + len(line) > max_bytes):
                        yield lines, True
                        return
                    lines.append(line)
                    sent += 1
                    size += len(line) + 1
                yield lines, False
                lo = rows[-1][2] + 1
        yield [], False

    async def pull_batch(self, their_heads: dict[str, int], their_gaps: Iterable[Gap], *, limit: int,
                         max_bytes: int, now: int) -> tuple[list[bytes], bool]:
        """pull_stream gathered into one list: (lines, more)."""
        lines: list[bytes] = []
        more = False
        async for chunk, cut in self.pull_stream(their_heads, their_gaps, limit=limit, max_bytes=max_bytes,
                                                 now=now):
            lines += chunk
            more = cut
        return lines, more

    async def next_seq(self, author: str) -> int:
        """The seq the author's next event takes (read on the writer, inside its lock, by the caller)."""
        row = await (await self.db.writer.execute(
            "SELECT COALESCE(MAX(head), 0) FROM event_authors WHERE author = ?", (author,))).fetchone()
        return (int(row[0]) if row is not None else 0) + 1

    # -- ingest -------------------------------------------------------------------------------------------------

    async def prepare(self, events: Sequence[Event | EventRejected]) -> Plan:
        """Classify parsed events against what is stored (and earlier in the batch), without writing."""
        plan = Plan()
        valid = [e for e in events if isinstance(e, Event)]
        authors = {e.author for e in valid}
        quarantined = await self._quarantined_among(authors)
        held: dict[tuple[str, int], tuple[str, bool]] = {}
        slots = sorted({(e.author, e.seq) for e in valid})
        for start in range(0, len(slots), 400):   # one query for a batch of any number of authors
            chunk = slots[start:start + 400]
            rows = await self.db.reader.execute_fetchall(
                f"SELECT events.author, events.seq, events.id, events.body IS NOT NULL "
                f"FROM (VALUES {','.join(['(?, ?)'] * len(chunk))}) AS slots {_BY_SLOT}",
                [value for slot in chunk for value in slot])
            for author, seq, event_id, has_body in rows:
                held[(author, seq)] = (event_id, bool(has_body))
        settled = await self._settled_among([s for s in slots if s not in held], authors)
        targets = {t for e in valid if (t := tombstone_target(e))}
        target_info = await self._targets(targets)
        for e in valid:
            target_info.setdefault(e.id, (e.expires, e.author))
        for item in events:
            if not isinstance(item, Event):
                plan.statuses.append(item)
                plan.events.append(None)
                continue
            e = item
            status: Status | EventRejected
            known = held.get((e.author, e.seq))
            target = tombstone_target(e)
            if e.author in quarantined:
                status = AuthorQuarantined(f"author {e.author[:16]} is quarantined for equivocation")
            elif known is None and (e.author, e.seq) in settled:
                status = Status.SETTLED
            elif known is None:
                status = Status.NEW
                if target and target in target_info:
                    expires, author = target_info[target]
                    if author != e.author:
                        status = InvalidBody(f"tombstone for {target[:16]}, an event of another author: "
                                             "only an event's author can delete it")
                    elif expires > e.expires:
                        status = InvalidBody(f"tombstone expires before its target {target[:16]}: "
                                             "a tombstone must outlive what it deletes")
            elif known[0] != e.id:
                status = Status.EQUIVOCATION
                plan.conflicts[len(plan.statuses)] = known[0]
            elif not known[1] and e.body is not None:
                status = Status.FILL_BODY
            else:
                status = Status.DUPLICATE
            if status in (Status.NEW, Status.FILL_BODY):
                held[(e.author, e.seq)] = (e.id, e.body is not None)
            plan.statuses.append(status)
            plan.events.append(e)
        return plan

    async def _settled_among(self, slots: list[tuple[str, int]], authors: set[str]) -> set[tuple[str, int]]:
        """The settled slots among these unheld ones: only a slot below its author's head can be one."""
        if not slots:
            return set()
        rows = await self.db.reader.execute_fetchall(
            f"SELECT author, head FROM event_authors WHERE author IN ({','.join('?' * len(authors))})", tuple(authors))
        heads = {r[0]: r[1] for r in rows}
        below = [(a, seq) for a, seq in slots if seq < heads.get(a, 0)]
        return await settled_slots(self.db.reader, below) if below else set()

    async def _quarantined_among(self, authors: set[str]) -> set[str]:
        if not authors:
            return set()
        rows = await self.db.reader.execute_fetchall(
            f"SELECT author FROM quarantine WHERE author IN ({','.join('?' * len(authors))})", tuple(authors))
        return {r[0] for r in rows}

    async def _targets(self, ids: set[str]) -> dict[str, tuple[int, str]]:
        """{id: (expires, author)} of the held events among `ids`."""
        if not ids:
            return {}
        rows = await self.db.reader.execute_fetchall(
            f"SELECT id, expires, author FROM events WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))
        return {r[0]: (r[1], r[2]) for r in rows}

    async def commit(self, new: Sequence[Event], fills: Sequence[Event], origin: str,
                     *, now: int | None = None) -> list[Event]:
        """Insert verified new events and add bodies to header-only rows, in one transaction.

        Returns what was stored, as stored (a tombstoned event without its body), for forwarding.
        """
        if not new and not fills:
            return []
        received = int(time.time()) if now is None else now
        new_tombstones = [(t, e.author, e.id) for e in new if (t := tombstone_target(e))]
        # A tombstone names an event of its own author, who makes it only after the event: none can name the events
        # this node has just made ("local").
        ids = [e.id for e in new if origin != "local"] + [e.id for e in fills]

        def write(conn: sqlite3.Connection) -> tuple[list[Event], list[Event]]:
            # In the writer's thread, in one trip there (Database.transact): a hop per statement was most of the
            # time from a manager's POST to the residents' pages.
            deleted: set[str] = set()
            for start in range(0, len(ids), 900):
                chunk = ids[start:start + 900]
                rows = conn.execute(
                    f"SELECT target, author FROM tombstones WHERE target IN ({','.join('?' * len(chunk))})", chunk)
                deleted.update(f"{r[0]}:{r[1]}" for r in rows)
            deleted.update(f"{t}:{a}" for t, a, _ in new_tombstones)
            stored = [e.without_body() if f"{e.id}:{e.author}" in deleted else e for e in new]
            _insert(conn, stored, received, origin)
            filled = [e for e in fills if f"{e.id}:{e.author}" not in deleted]
            if filled:
                conn.executemany("UPDATE events SET body = ? WHERE id = ? AND body IS NULL",
                                 [(e.body, e.id) for e in filled])
            if new_tombstones:
                conn.executemany("INSERT OR IGNORE INTO tombstones (target, author, tombstone_id) VALUES (?, ?, ?)",
                                 new_tombstones)
                conn.executemany("UPDATE events SET body = NULL WHERE id = ? AND author = ?",
                                 [(t, a) for t, a, _ in new_tombstones])
            return stored, filled

        stored, filled = await self.db.transact(write)
        return stored + filled

    async def quarantine(self, event: Event, held_id: str, *, now: int | None = None) -> None:
        """Quarantine the author of `event`, keeping both signed headers as evidence."""
        held = await self.get(held_id)
        evidence = {"held": held.header() | {"id": held.id, "sig": held.sig} if held else {"id": held_id},
                    "received": event.header() | {"id": event.id, "sig": event.sig}}
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO quarantine (author, reason, evidence, at) VALUES (?, ?, ?, ?)",
                (event.author, f"equivocation at seq {event.seq}", json.dumps(evidence),
                 int(time.time()) if now is None else now))

    async def release(self, author: str) -> bool:
        """Lift an author's quarantine (a manager's decision); True if it was quarantined."""
        async with self.db.write() as conn:
            cursor = await conn.execute("DELETE FROM quarantine WHERE author = ?", (author,))
            return cursor.rowcount > 0

    async def drop_beyond_range(self, author: str) -> int:
        """Delete `author`'s events numbered past the event format's range (signed before nodes refused to, after a
        peer's false heads moved their numbering): no peer accepts them and they would keep the author's next seq
        out of range for ever. Only an author's own events can be there (ingest refuses them). Returns how many."""
        async with self.db.write() as conn:
            cursor = await conn.execute("DELETE FROM events WHERE author = ? AND seq > ?", (author, MAX_SAFE_INT))
            return cursor.rowcount

    async def prune_headers(self, policy: Retention, *, now: int | None = None) -> int:
        """Delete headers past the retention policy, in short batches (sync/_retention.py); returns how many.
        Only body-less headers are pruned: purge expired bodies first."""
        return await prune(self.db, policy, now=now)

    async def horizon(self) -> tuple[int, int]:
        """(latest expiry pruned, headers pruned in all)."""
        return await horizon(self.db)

    async def purge_expired(self, *, now: int | None = None) -> int:
        """Drop the bodies of expired events, in transactions of a few hundred (other writers run between them);
        headers and the tombstone index stay. Returns how many."""
        cutoff = int(time.time()) if now is None else now
        total = 0
        while True:
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "UPDATE events SET body = NULL WHERE rowid IN (SELECT rowid FROM events INDEXED BY "
                    "events_expiring WHERE body IS NOT NULL AND expires <= ? LIMIT ?)", (cutoff, PURGE_BATCH))
            total += cursor.rowcount
            if cursor.rowcount < PURGE_BATCH:
                return total


def _insert(conn: sqlite3.Connection, events: Sequence[Event], received: int, origin: str) -> None:
    """Insert what is not yet held of `events` and keep the ledger for what was (the rows the insert returns), once
    for the batch: the insert trigger stands aside while event_batch holds its row (sync/_ledger.py)."""
    if not events:
        return
    conn.execute("INSERT INTO event_batch (flag) VALUES (1)")
    inserted: list[tuple[str, int, str, str]] = []
    for start in range(0, len(events), INSERT_ROWS):
        chunk = events[start:start + INSERT_ROWS]
        rows = conn.execute(
            "INSERT OR IGNORE INTO events (id, author, seq, kind, ts, expires, body_hash, sig, body, received, origin) "
            f"VALUES {','.join([_ROW] * len(chunk))} RETURNING author, seq, id, kind",
            [v for e in chunk for v in (e.id, e.author, e.seq, e.kind, e.ts, e.expires, e.body_hash, e.sig, e.body,
                                        received, origin)])
        inserted += [(r[0], r[1], r[2], r[3]) for r in rows]
    apply_batch(conn, inserted)
    conn.execute("DELETE FROM event_batch")


def equivocation_error(event: Event, held_id: str) -> Equivocation:
    """The error for an author caught signing two events with one seq."""
    return Equivocation(f"author {event.author[:16]} signed seq {event.seq} twice (held {held_id[:16]}, "
                        f"received {event.id[:16]}): author quarantined")
