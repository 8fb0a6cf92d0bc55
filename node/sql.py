"""Typed helpers for the node's SQLite statements, where aiosqlite's types are looser than what a statement gives."""

from __future__ import annotations

import aiosqlite


def inserted_id(cursor: aiosqlite.Cursor) -> int:
    """The rowid of the row the cursor's INSERT just made (sqlite3 types it optional: None before any INSERT)."""
    row_id = cursor.lastrowid
    if row_id is None:
        raise RuntimeError("the statement inserted no row")
    return row_id
