"""Small named values the node keeps across restarts (the `node_state` table): one owner for that table."""

from __future__ import annotations

from typing import Sequence

from sync import Database, Migration

COMPONENT = "state"
MIGRATIONS: Sequence[Migration] = [
    (1, ["CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"]),
]
RESTORED = "restored_from_backup"   # set by `nnode restore`, cleared once a peer has told us our own latest events
AUDIT_HEAD = "audit_head"           # the audit-log seq whose head was last published to peers


class NodeState:
    """Read and write the node's named values."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        """The value stored under `key`, or None."""
        rows = await self.db.reader.execute_fetchall("SELECT value FROM node_state WHERE key = ?", (key,))
        return str(list(rows)[0][0]) if rows else None

    async def set(self, key: str, value: str) -> None:
        """Store `value` under `key` (replacing any)."""
        async with self.db.write() as conn:
            await conn.execute("INSERT INTO node_state (key, value) VALUES (?, ?) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    async def delete(self, key: str) -> None:
        """Forget `key`."""
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM node_state WHERE key = ?", (key,))
