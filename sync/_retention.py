"""Retention of event headers: pruning expired headers in short batches, and the settled slots it leaves.

A pruned event leaves no gap: its slot (author, seq) lies below the author's head, is not held and is in no gap,
and the store refuses whatever arrives there later ("settled"). So a peer that still holds the event cannot bring it
back, an author cannot sign a second event at the seq, and no round of anti-entropy asks for it. Each author's head
event is never pruned, so heads stay what peers hold, a node restored from a backup never reuses its own seqs, and
every other author's slots below the head keep their meaning. The watermark is the latest expiry pruned so far.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from ._db import Database

# While a row is in event_pruning (only inside a pruning transaction), deleting an event makes no gap.
_DELETE_GAPS = """CREATE TRIGGER events_ledger_delete AFTER DELETE ON events BEGIN
    UPDATE event_kinds SET held = held - 1 WHERE kind = OLD.kind;
    DELETE FROM event_kinds WHERE kind = OLD.kind AND held <= 0;
    -- below the head, the seq becomes missing: one gap with its neighbours (unless pruned: then it is settled)
    INSERT OR REPLACE INTO event_gaps (author, first, last) SELECT OLD.author,
        COALESCE((SELECT first FROM event_gaps WHERE author = OLD.author AND last = OLD.seq - 1), OLD.seq),
        COALESCE((SELECT last FROM event_gaps WHERE author = OLD.author AND first = OLD.seq + 1), OLD.seq)
        FROM event_authors WHERE author = OLD.author AND head > OLD.seq AND NOT EXISTS (SELECT 1 FROM event_pruning);
    DELETE FROM event_gaps WHERE author = OLD.author AND first = OLD.seq + 1
        AND EXISTS (SELECT 1 FROM event_authors WHERE author = OLD.author AND head > OLD.seq)
        AND NOT EXISTS (SELECT 1 FROM event_pruning);
    -- the head itself: the next seq down becomes the head, and what lay between them is no longer missing
    UPDATE event_authors SET held = held - 1 WHERE author = OLD.author;
    DELETE FROM event_authors WHERE author = OLD.author AND held <= 0;
    UPDATE event_authors SET head = (SELECT MAX(seq) FROM events WHERE author = OLD.author),
        tip = (SELECT id FROM events WHERE author = OLD.author ORDER BY seq DESC LIMIT 1)
        WHERE author = OLD.author AND head = OLD.seq;
    DELETE FROM event_gaps WHERE author = OLD.author
        AND last >= COALESCE((SELECT head FROM event_authors WHERE author = OLD.author), 0);
END"""

RETENTION_MIGRATION: Sequence[str] = [
    "CREATE TABLE event_pruning (flag INTEGER PRIMARY KEY CHECK (flag = 1))",
    "CREATE TABLE event_horizon (id INTEGER PRIMARY KEY CHECK (id = 1), watermark INTEGER NOT NULL, "
    "pruned INTEGER NOT NULL)",
    "INSERT INTO event_horizon (id, watermark, pruned) VALUES (1, 0, 0)",
    # Headers without a body by expiry: what pruning reads. A row enters it when its body is dropped (expiry
    # purge, tombstone), so storing a live event, the common write, does not touch it.
    "CREATE INDEX events_bare ON events (expires) WHERE body IS NULL",
    "DROP TRIGGER events_ledger_delete",
    _DELETE_GAPS,
]

BATCH = 500          # headers deleted per transaction: a few milliseconds of the writer each
MAX_BATCHES = 100    # per run; what is left waits for the next run


@dataclass(frozen=True)
class Retention:
    """How long headers stay: `keep_after` seconds past their expiry, and at most `max_headers` in all (beyond it,
    the longest-expired go first, never an event still in force)."""

    keep_after: int
    max_headers: int


_CANDIDATES = (
    "SELECT e.rowid, e.id, e.expires FROM events AS e INDEXED BY events_bare "
    "WHERE e.body IS NULL AND e.expires <= ? "
    "AND e.seq < (SELECT head FROM event_authors WHERE author = e.author) ORDER BY e.expires LIMIT ?")


async def prune_batch(conn: aiosqlite.Connection, cutoff: int, limit: int) -> int:
    """Inside a write transaction: delete up to `limit` body-less, non-head headers expired by `cutoff`, earliest
    expiry first, with their tombstone entries; returns how many."""
    rows = list(await conn.execute_fetchall(_CANDIDATES, (cutoff, limit)))
    if not rows:
        return 0
    await conn.execute("INSERT INTO event_pruning (flag) VALUES (1)")
    await conn.executemany("DELETE FROM events WHERE rowid = ?", [(r[0],) for r in rows])
    await conn.executemany("DELETE FROM tombstones WHERE tombstone_id = ?", [(r[1],) for r in rows])
    await conn.execute("DELETE FROM event_pruning")
    await conn.execute("UPDATE event_horizon SET watermark = max(watermark, ?), pruned = pruned + ?",
                       (max(r[2] for r in rows), len(rows)))
    return len(rows)


async def prune(db: Database, policy: Retention, *, now: int | None = None, batch: int = BATCH,
                max_batches: int = MAX_BATCHES) -> int:
    """Prune headers by `policy` in transactions of `batch` rows (other writers run between them); bodies must
    have been purged first (expired events' are). Returns how many were pruned."""
    now = int(time.time()) if now is None else now
    total = 0
    for _ in range(max_batches):
        async with db.write() as conn:
            rows = list(await conn.execute_fetchall("SELECT COALESCE(SUM(held), 0) FROM event_kinds"))
            over = int(rows[0][0]) - policy.max_headers
            done = await prune_batch(conn, now - policy.keep_after, batch)
            if not done and over > 0:   # over the cap: expired headers still within their keep time
                done = await prune_batch(conn, now, min(batch, over))
        total += done
        if not done:
            break
    return total


async def horizon(db: Database) -> tuple[int, int]:
    """(watermark: the latest expiry pruned, pruned: headers pruned in all)."""
    rows = list(await db.reader.execute_fetchall("SELECT watermark, pruned FROM event_horizon"))
    return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)


async def settled_slots(conn: aiosqlite.Connection, slots: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
    """Of these (author, seq) slots, which none holds (the caller checked), the settled ones: below the author's
    head and in no gap, so pruned (or, before pruning existed, never possible)."""
    settled: set[tuple[str, int]] = set()
    for author, seq in slots:
        rows = list(await conn.execute_fetchall(
            "SELECT a.head, (SELECT g.last FROM event_gaps AS g WHERE g.author = a.author AND g.first <= ? "
            "ORDER BY g.first DESC LIMIT 1) FROM event_authors AS a WHERE a.author = ?", (seq, author)))
        if rows and seq < rows[0][0] and (rows[0][1] is None or rows[0][1] < seq):
            settled.add((author, seq))
    return settled
