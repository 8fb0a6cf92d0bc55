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
                    await conn.execute(
                        "INSERT OR IGNORE INTO audit_heads (author, event_seq, seq, hash, event, received) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (event.author, event.seq, body["seq"], body["hash"],
                                                       event.to_line().decode(), int(time.time())))
                    continue
                refused[event.id] = Contradicts(f"audit head of {event.author[:16]} (event seq {event.seq}): "
                                                f"{problem}; refused (history rewritten or truncated?)")
                await self._record(conn, event, problem)
        return refused

    async def _problem(self, conn: aiosqlite.Connection, event: Event) -> str | None:
        """Why this head does not extend the ones held for its author, or None."""
        body = event.body_value()
        seq, digest = body["seq"], body["hash"]
        row = await (await conn.execute(
            "SELECT COUNT(*), (SELECT event FROM audit_heads WHERE author = ? AND event_seq = ?), "
            "(SELECT MAX(seq) FROM audit_heads WHERE author = ? AND event_seq < ?), "
            "(SELECT MIN(seq) FROM audit_heads WHERE author = ? AND event_seq > ?), "
            "(SELECT hash FROM audit_heads WHERE author = ? AND seq = ? AND hash != ? LIMIT 1) "
            "FROM audit_heads WHERE author = ?",
            (event.author, event.seq, event.author, event.seq, event.author, event.seq, event.author, seq, digest,
             event.author))).fetchone()
        count, same_slot, before, after, other = row if row else (0, None, None, None, None)
        if same_slot is not None:
            return None   # already held (INSERT OR IGNORE keeps the first)
        if other is not None:
            return f"entry {seq} comes with hash {digest[:16]}, but a head held here gives it {other[:16]}"
        if before is not None and seq < before:
            return f"it names entry {seq}, below entry {before} of a head it published before"
        if after is not None and seq > after:
            return f"it names entry {seq}, above entry {after} of a head it published after it"
        if count >= MAX_HEADS_PER_AUTHOR:
            return f"{count} heads of this author are held already, the most kept"
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
        total = await self.db.reader.execute_fetchall("SELECT COUNT(*) FROM audit_heads WHERE author = ?", (author,))
        return [json.loads(r[0]) for r in rows], int(list(total)[0][0])

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

    async def catch_up(self, events: Sequence[Event]) -> int:
        """Take in heads already in the events store (stored before this table existed); how many were new."""
        before = await self.db.reader.execute_fetchall("SELECT COUNT(*) FROM audit_heads")
        await self.admit(events)
        after = await self.db.reader.execute_fetchall("SELECT COUNT(*) FROM audit_heads")
        return int(list(after)[0][0]) - int(list(before)[0][0])
