"""Other nodes' audit-log heads, as this node received them: the copies a node's own verification is checked against
(DESIGN invariant 4).

Every `audit-head` event of another node is kept in `audit_heads`, append-only (triggers refuse UPDATE and DELETE),
with the signed event itself, so that a node whose operator rewrote or truncated its log, and deleted its own
copies of its heads, still finds the heads it published here. The events store is no place for that evidence: it
drops bodies by TTL and tombstone, and the author may tombstone its own events.

A head must extend the ones held for its author: in the order the author published them (the event seq), the
entry seqs they name never go down, and one entry seq always comes with one hash. A head that breaks this is
refused before it is stored (SyncEngine.admission: the pushing peer is told, nothing is forwarded), recorded in
`audit_head_conflicts`, logged, counted in `nnode_events_rejected_total{reason="contradicts"}` and shown on the
manager's peer list.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Sequence

import aiosqlite

from node.sharing.events import AUDIT_HEAD_KIND
from sync import Contradicts, Database, Event, EventRejected, Migration

log = logging.getLogger("nnode.audit")

COMPONENT = "audit_heads"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE audit_heads (
            author TEXT NOT NULL,
            event_seq INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            event TEXT NOT NULL,
            received INTEGER NOT NULL,
            PRIMARY KEY (author, event_seq)
        )""",
        "CREATE INDEX audit_heads_by_seq ON audit_heads (author, seq)",
        """CREATE TRIGGER audit_heads_no_update BEFORE UPDATE ON audit_heads
           BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END""",
        """CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
           BEGIN SELECT RAISE(ABORT, 'audit_heads is append-only'); END""",
        """CREATE TABLE audit_head_conflicts (
            event_id TEXT PRIMARY KEY,
            author TEXT NOT NULL,
            event_seq INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL,
            event TEXT NOT NULL,
            reason TEXT NOT NULL,
            at INTEGER NOT NULL
        )""",
        "CREATE INDEX audit_head_conflicts_by_author ON audit_head_conflicts (author, at)",
        # heads held per author, kept with each insert, so the cap costs one lookup however many are held
        "CREATE TABLE audit_head_counts (author TEXT PRIMARY KEY, held INTEGER NOT NULL)",
    ]),
]

MAX_HEADS_PER_AUTHOR = 20_000   # years of an honest node's heads; a flood from one author stops there
MAX_CONFLICTS_PER_AUTHOR = 100  # evidence kept of refused heads, per author
MAX_ANSWER = 256                # heads in one answer of GET /sync/v1/audit-heads


class HeadBook:
    """The `audit_heads` table: other nodes' heads, checked and kept append-only."""

    def __init__(self, db: Database, node_key: str) -> None:
        self.db = db
        self.node_key = node_key

    async def admit(self, events: Sequence[Event]) -> dict[str, EventRejected]:
        """Keep the audit heads among `events` that extend what is held; refuse the others ({event id: why})."""
        heads = [e for e in events if e.kind == AUDIT_HEAD_KIND and e.author != self.node_key and e.body is not None]
        if not heads:
            return {}
        refused: dict[str, EventRejected] = {}
        async with self.db.write() as conn:
            for event in sorted(heads, key=lambda e: (e.author, e.seq)):
                problem = await self._problem(conn, event)
                if problem is None:
                    body = event.body_value()
                    cursor = await conn.execute(
                        "INSERT OR IGNORE INTO audit_heads (author, event_seq, seq, hash, event, received) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (event.author, event.seq, body["seq"], body["hash"],
                                                       event.to_line().decode(), int(time.time())))
                    if cursor.rowcount:
                        await conn.execute("INSERT INTO audit_head_counts (author, held) VALUES (?, 1) "
                                           "ON CONFLICT (author) DO UPDATE SET held = held + 1", (event.author,))
                    continue
                refused[event.id] = Contradicts(f"audit head of {event.author[:16]} (event seq {event.seq}): "
                                                f"{problem}; refused (history rewritten or truncated?)")
                await self._record(conn, event, problem)
        return refused

    async def _problem(self, conn: aiosqlite.Connection, event: Event) -> str | None:
        """Why this head does not extend the ones held for its author, or None.

        Every query is an index lookup: the heads held are in order (entry seqs never go down with the event seq,
        which is what this checks), so the neighbours in event-seq order bound the entry seq."""
        body = event.body_value()
        seq, digest, author = body["seq"], body["hash"], event.author

        async def one(sql: str, *args: Any) -> Any:
            row = await (await conn.execute(sql, (author, *args))).fetchone()
            return None if row is None else row[0]

        if await one("SELECT 1 FROM audit_heads WHERE author = ? AND event_seq = ?", event.seq) is not None:
            return None   # already held (INSERT OR IGNORE keeps the first)
        other = await one("SELECT hash FROM audit_heads WHERE author = ? AND seq = ? AND hash != ? LIMIT 1",
                          seq, digest)
        if other is not None:
            return f"entry {seq} comes with hash {digest[:16]}, but a head held here gives it {other[:16]}"
        before = await one("SELECT seq FROM audit_heads WHERE author = ? AND event_seq < ? "
                           "ORDER BY event_seq DESC LIMIT 1", event.seq)
        if before is not None and seq < before:
            return f"it names entry {seq}, below entry {before} of a head it published before"
        after = await one("SELECT seq FROM audit_heads WHERE author = ? AND event_seq > ? "
                          "ORDER BY event_seq LIMIT 1", event.seq)
        if after is not None and seq > after:
            return f"it names entry {seq}, above entry {after} of a head it published after it"
        held = await one("SELECT held FROM audit_head_counts WHERE author = ?") or 0
        if held >= MAX_HEADS_PER_AUTHOR:
            return f"{held} heads of this author are held already, the most kept"
        return None

    async def _record(self, conn: aiosqlite.Connection, event: Event, problem: str) -> None:
        body = event.body_value()
        row = await (await conn.execute("SELECT COUNT(*) FROM audit_head_conflicts WHERE author = ?",
                                        (event.author,))).fetchone()
        if row and row[0] >= MAX_CONFLICTS_PER_AUTHOR:
            return
        cursor = await conn.execute(
            "INSERT OR IGNORE INTO audit_head_conflicts (event_id, author, event_seq, seq, hash, event, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (event.id, event.author, event.seq, body["seq"], body["hash"],
                                                event.to_line().decode(), problem, int(time.time())))
        if cursor.rowcount:
            log.warning("audit head refused", extra={"author": event.author, "event_seq": event.seq,
                                                     "entry": body["seq"], "problem": problem})

    async def held(self, author: str, *, limit: int = MAX_ANSWER) -> tuple[list[dict[str, Any]], int]:
        """The signed head events held for `author`, highest entry first (at most `limit`), and how many in all."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT event FROM audit_heads WHERE author = ? ORDER BY seq DESC, event_seq DESC LIMIT ?",
            (author, limit))
        total = list(await self.db.reader.execute_fetchall("SELECT held FROM audit_head_counts WHERE author = ?",
                                                           (author,)))
        return [json.loads(r[0]) for r in rows], int(total[0][0]) if total else 0

    async def refused(self, author: str) -> int:
        """How many heads of `author` were refused here."""
        rows = await self.db.reader.execute_fetchall("SELECT COUNT(*) FROM audit_head_conflicts WHERE author = ?",
                                                     (author,))
        return int(list(rows)[0][0])

    async def conflicts(self) -> dict[str, dict[str, Any]]:
        """Per author with refused heads: how many, and the latest refusal's reason and time."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT author, COUNT(*), MAX(at), (SELECT reason FROM audit_head_conflicts c2 WHERE c2.author = "
            "c.author ORDER BY at DESC, rowid DESC LIMIT 1) FROM audit_head_conflicts c GROUP BY author")
        return {r[0]: {"refused": r[1], "last": r[2], "reason": r[3]} for r in rows}

    async def catch_up(self, events: Sequence[Event]) -> None:
        """Take in heads already in the events store (stored while the node started, or before this table
        existed); those held already cost one lookup each."""
        await self.admit(events)
