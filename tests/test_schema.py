"""Migrations per component: each numbered from 1, checked before anything runs, and old databases converted."""

from __future__ import annotations

import sqlite3

import pytest

from node.schema import COMPONENTS, LEGACY, check_components, migrate_all
from sync import Database, DatabaseError


async def _versions(db: Database) -> dict[str, int]:
    rows = await db.reader.execute_fetchall("SELECT component, version FROM schema_version")
    return {row[0]: row[1] for row in rows}


async def test_a_new_database_gets_every_component_at_its_own_version(tmp_path):
    db = await Database.open(tmp_path / "n.db")
    try:
        await migrate_all(db)
        versions = await _versions(db)
        assert versions.pop("sync") >= 1
        assert versions == {name: len(migrations) for name, migrations in COMPONENTS}
        await migrate_all(db)   # a second run changes nothing
        assert (await _versions(db))["desk"] == len(dict(COMPONENTS)["desk"])
    finally:
        await db.close()


def test_duplicate_components_and_versions_and_gaps_are_refused():
    one = [(1, ["CREATE TABLE a (x)"])]
    with pytest.raises(DatabaseError, match="'a' is listed twice"):
        check_components([("a", one), ("a", one)])
    with pytest.raises(DatabaseError, match=r"'b': migration versions must be 1 to 2 .* got \[1, 1\]"):
        check_components([("b", [(1, []), (1, [])])])
    with pytest.raises(DatabaseError, match=r"'c': .* got \[1, 3\]"):
        check_components([("c", [(1, []), (3, [])])])
    with pytest.raises(DatabaseError, match=r"'d': .* got \[2\]"):
        check_components([("d", [(2, [])])])


async def test_a_refused_component_list_applies_nothing(tmp_path):
    db = await Database.open(tmp_path / "n.db")
    try:
        with pytest.raises(DatabaseError):
            await migrate_all(db, [("a", [(1, ["CREATE TABLE a (x)"])]), ("a", [(1, [])])])
        assert await _versions(db) == {}
    finally:
        await db.close()


def _legacy_database(path, version: int) -> None:
    """A database as the software before per-component counters left it: every table, one 'node' counter."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    for name in LEGACY[:version]:
        for statement in dict(COMPONENTS)[name][0][1]:
            conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES ('node', ?)", (version,))
    conn.execute("INSERT INTO node_state VALUES ('audit_head', '7')")
    conn.commit()
    conn.close()


async def test_the_old_shared_counter_is_converted_and_nothing_stored_is_lost(tmp_path):
    _legacy_database(tmp_path / "old.db", len(LEGACY))
    db = await Database.open(tmp_path / "old.db")
    try:
        await migrate_all(db)
        versions = await _versions(db)
        assert "node" not in versions
        assert all(versions[name] == len(migrations) for name, migrations in COMPONENTS)
        rows = await db.reader.execute_fetchall("SELECT value FROM node_state WHERE key = 'audit_head'")
        assert [row[0] for row in rows] == ["7"]
    finally:
        await db.close()


async def test_a_partly_migrated_old_database_gets_the_rest(tmp_path):
    _legacy_database(tmp_path / "old.db", 4)   # claim, state, accounts, live
    db = await Database.open(tmp_path / "old.db")
    try:
        await migrate_all(db)
        tables = {row[0] for row in await db.reader.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"residents", "feed", "reports", "sos", "consents"} <= tables
    finally:
        await db.close()


async def test_an_old_counter_newer_than_this_software_is_refused(tmp_path):
    _legacy_database(tmp_path / "old.db", len(LEGACY))
    conn = sqlite3.connect(tmp_path / "old.db")
    conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'node'")
    conn.commit()
    conn.close()
    db = await Database.open(tmp_path / "old.db")
    try:
        with pytest.raises(DatabaseError, match="'node' is version 99, newer than this software knows"):
            await migrate_all(db)
        assert (await _versions(db)) == {"node": 99, "sync": (await _versions(db))["sync"]}
    finally:
        await db.close()
