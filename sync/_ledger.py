"""What the store keeps about its events as they are written: each author's head, tip, count and missing seq
ranges, and the count of each kind, so heads, gaps, tips and counts cost the size of the answer, not of the store.

Triggers on `events` keep them in the same transaction as every insert and delete, whichever code writes; the
insert triggers use no conflict clause but an upsert, because an outer `INSERT OR IGNORE` would override one (an
upsert's DO UPDATE it does not). Updates of `events` (bodies dropped by expiry or tombstones) change none of them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence

_TABLES = [
    """CREATE TABLE event_authors (
        author TEXT PRIMARY KEY,
        head INTEGER NOT NULL,
        tip TEXT NOT NULL,
        held INTEGER NOT NULL
    ) WITHOUT ROWID""",
    # Each author's missing seqs below its head, as disjoint ranges [first, last].
    """CREATE TABLE event_gaps (
        author TEXT NOT NULL,
        first INTEGER NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (author, first)
    ) WITHOUT ROWID""",
    "CREATE INDEX event_gaps_last ON event_gaps (author, last)",
    "CREATE TABLE event_kinds (kind TEXT PRIMARY KEY, held INTEGER NOT NULL) WITHOUT ROWID",
    # recent(kind): newest first within a kind (an index holds the rowid, so it also orders by it).
    "CREATE INDEX events_kind ON events (kind)",
    # The events of a kind that still have a body, by expiry: alerts in force without reading every alert held.
    "CREATE INDEX events_live ON events (kind, expires) WHERE body IS NOT NULL",
]

_BACKFILL = [
    "INSERT INTO event_kinds (kind, held) SELECT kind, COUNT(*) FROM events GROUP BY kind",
    "INSERT INTO event_authors (author, head, tip, held) SELECT e.author, e.seq, e.id, h.held FROM events e "
    "JOIN (SELECT author, MAX(seq) AS top, COUNT(*) AS held FROM events GROUP BY author) h "
    "ON e.author = h.author AND e.seq = h.top",
    "INSERT INTO event_gaps (author, first, last) SELECT author, prev + 1, seq - 1 FROM (SELECT author, seq, "
    "LAG(seq, 1, 0) OVER (PARTITION BY author ORDER BY seq) AS prev FROM events) WHERE seq - prev > 1",
]

# Three triggers on insert, so that the common case (an author's next seq) runs two statements, not eleven; the
# conditions of the last two exclude each other whichever fires first (after either, the head is NEW.seq, and before
# the insert it cannot be: (author, seq) is unique).
_HEAD = "(SELECT head FROM event_authors WHERE author = NEW.author)"

_ON_INSERT_KIND = """CREATE TRIGGER events_ledger_kind AFTER INSERT ON events BEGIN
    INSERT INTO event_kinds (kind, held) VALUES (NEW.kind, 1) ON CONFLICT (kind) DO UPDATE SET held = held + 1;
END"""

_ON_INSERT_NEXT = f"""CREATE TRIGGER events_ledger_next AFTER INSERT ON events WHEN {_HEAD} = NEW.seq - 1 BEGIN
    UPDATE event_authors SET held = held + 1, head = NEW.seq, tip = NEW.id WHERE author = NEW.author;
END"""

# What an insert of any seq does to the gaps and to a new author (the general trigger's body, less the count).
_SEQ_GAPS = """    -- a seq below the head fills part of a gap: split it around the seq
    INSERT INTO event_gaps (author, first, last) SELECT author, NEW.seq + 1, last FROM event_gaps
        WHERE author = NEW.author AND last > NEW.seq AND first <= NEW.seq;
    UPDATE event_gaps SET last = NEW.seq - 1 WHERE author = NEW.author AND last >= NEW.seq AND first < NEW.seq;
    DELETE FROM event_gaps WHERE author = NEW.author AND first = NEW.seq;
    -- a seq past the head leaves the seqs between them missing (from 1, for an author's first event)
    INSERT INTO event_gaps (author, first, last) SELECT author, head + 1, NEW.seq - 1 FROM event_authors
        WHERE author = NEW.author AND NEW.seq > head + 1;
    INSERT INTO event_gaps (author, first, last) SELECT NEW.author, 1, NEW.seq - 1
        WHERE NEW.seq > 1 AND NOT EXISTS (SELECT 1 FROM event_authors WHERE author = NEW.author);
    INSERT INTO event_authors (author, head, tip, held) SELECT NEW.author, NEW.seq, NEW.id, 0
        WHERE NOT EXISTS (SELECT 1 FROM event_authors WHERE author = NEW.author);
"""

_ON_INSERT_OTHER = f"""CREATE TRIGGER events_ledger_other AFTER INSERT ON events
    WHEN COALESCE({_HEAD}, -1) NOT IN (NEW.seq - 1, NEW.seq) BEGIN
{_SEQ_GAPS}    UPDATE event_authors SET held = held + 1, head = max(head, NEW.seq),
        tip = CASE WHEN NEW.seq > head THEN NEW.id ELSE tip END WHERE author = NEW.author;
END"""

_ON_DELETE = """CREATE TRIGGER events_ledger_delete AFTER DELETE ON events BEGIN
    UPDATE event_kinds SET held = held - 1 WHERE kind = OLD.kind;
    DELETE FROM event_kinds WHERE kind = OLD.kind AND held <= 0;
    -- below the head, the seq becomes missing: one gap with its neighbours
    INSERT OR REPLACE INTO event_gaps (author, first, last) SELECT OLD.author,
        COALESCE((SELECT first FROM event_gaps WHERE author = OLD.author AND last = OLD.seq - 1), OLD.seq),
        COALESCE((SELECT last FROM event_gaps WHERE author = OLD.author AND first = OLD.seq + 1), OLD.seq)
        FROM event_authors WHERE author = OLD.author AND head > OLD.seq;
    DELETE FROM event_gaps WHERE author = OLD.author AND first = OLD.seq + 1;
    -- the head itself: the next seq down becomes the head, and what lay between them is no longer missing
    UPDATE event_authors SET held = held - 1 WHERE author = OLD.author;
    DELETE FROM event_authors WHERE author = OLD.author AND held <= 0;
    UPDATE event_authors SET head = (SELECT MAX(seq) FROM events WHERE author = OLD.author),
        tip = (SELECT id FROM events WHERE author = OLD.author ORDER BY seq DESC LIMIT 1)
        WHERE author = OLD.author AND head = OLD.seq;
    DELETE FROM event_gaps WHERE author = OLD.author
        AND last >= COALESCE((SELECT head FROM event_authors WHERE author = OLD.author), 0);
END"""

LEDGER_MIGRATION: Sequence[str] = [*_TABLES, *_BACKFILL, _ON_INSERT_KIND, _ON_INSERT_NEXT, _ON_INSERT_OTHER, _ON_DELETE]


# Version 6: `EventStore.commit` keeps the ledger once per batch (`apply_batch`), not once per row. While a row is
# in event_batch (only inside such a commit's transaction) the insert trigger does nothing; any other writer (plain
# SQL, an older release's code) still gets the per-row upkeep, now one trigger whose general case also covers an
# author's next seq. The delete trigger (sync/_retention.py) is unchanged. The trigger has no upsert and calls no
# function (max): either may abort, and a trigger that may abort makes SQLite keep a statement journal of every page
# each multi-row INSERT touches (in a temporary file past 64 KiB), even when its WHEN is false; under the commit's
# INSERT OR IGNORE none of its statements can.
_ON_INSERT_ROW = f"""CREATE TRIGGER events_ledger_insert AFTER INSERT ON events
    WHEN NOT EXISTS (SELECT 1 FROM event_batch) BEGIN
    INSERT INTO event_kinds (kind, held) SELECT NEW.kind, 0
        WHERE NOT EXISTS (SELECT 1 FROM event_kinds WHERE kind = NEW.kind);
    UPDATE event_kinds SET held = held + 1 WHERE kind = NEW.kind;
{_SEQ_GAPS}    UPDATE event_authors SET held = held + 1 WHERE author = NEW.author;
    UPDATE event_authors SET head = NEW.seq, tip = NEW.id WHERE author = NEW.author AND NEW.seq > head;
END"""

BATCH_MIGRATION: Sequence[str] = [
    "CREATE TABLE event_batch (flag INTEGER PRIMARY KEY CHECK (flag = 1))",
    "DROP TRIGGER events_ledger_kind",
    "DROP TRIGGER events_ledger_next",
    "DROP TRIGGER events_ledger_other",
    _ON_INSERT_ROW,
]


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted distinct seqs as maximal runs [(first, last)]."""
    runs: list[tuple[int, int]] = []
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _outside(first: int, last: int, runs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of the range [first, last] that none of the sorted, disjoint `runs` covers."""
    parts: list[tuple[int, int]] = []
    for lo, hi in runs:
        if hi < first or lo > last:
            continue
        if lo > first:
            parts.append((first, lo - 1))
        first = hi + 1
    if first <= last:
        parts.append((first, last))
    return parts


def apply_batch(conn: sqlite3.Connection, inserted: Sequence[tuple[str, int, str, str]]) -> None:
    """Inside the write transaction that inserted them with event_batch set: update the ledger for these rows,
    (author, seq, id, kind) each, as the per-row trigger would have, with a few statements per author and kind."""
    kinds = Counter(kind for _, _, _, kind in inserted)
    conn.executemany("INSERT INTO event_kinds (kind, held) VALUES (?, ?) "
                     "ON CONFLICT (kind) DO UPDATE SET held = held + excluded.held", kinds.items())
    by_author: dict[str, dict[int, str]] = defaultdict(dict)
    for author, seq, event_id, _ in inserted:
        by_author[author][seq] = event_id
    authors = list(by_author)
    known: dict[str, tuple[int, str, int]] = {}
    for start in range(0, len(authors), 500):
        chunk = authors[start:start + 500]
        rows = conn.execute(f"SELECT author, head, tip, held FROM event_authors WHERE author IN "
                            f"({','.join('?' * len(chunk))})", chunk).fetchall()
        known.update((r[0], (r[1], r[2], r[3])) for r in rows)
    upserts, removed, added = [], [], []
    for author, ids in by_author.items():
        head, tip, held = known.get(author, (0, "", 0))
        seqs = sorted(ids)
        below = [s for s in seqs if s < head]
        if below:   # seqs below the head fill parts of its gaps: each gap they touch gives way to what is left
            gaps = conn.execute(
                "SELECT first, last FROM event_gaps WHERE author = ? AND last >= ? AND first <= ?",
                (author, below[0], below[-1])).fetchall()
            runs = _runs(below)
            for first, last in gaps:
                removed.append((author, first))
                added += [(author, lo, hi) for lo, hi in _outside(first, last, runs)]
        above = [s for s in seqs if s > head]
        if above:   # seqs past the head leave what lies between them missing (from 1, for a new author)
            added += [(author, lo, hi) for lo, hi in _outside(head + 1, above[-1], _runs(above))]
            head, tip = above[-1], ids[above[-1]]
        upserts.append((author, head, tip, held + len(seqs)))
    conn.executemany("DELETE FROM event_gaps WHERE author = ? AND first = ?", removed)
    conn.executemany("INSERT INTO event_gaps (author, first, last) VALUES (?, ?, ?)", added)
    conn.executemany("INSERT INTO event_authors (author, head, tip, held) VALUES (?, ?, ?, ?) ON CONFLICT "
                     "(author) DO UPDATE SET head = excluded.head, tip = excluded.tip, held = excluded.held", upserts)
