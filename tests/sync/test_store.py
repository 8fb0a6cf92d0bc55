"""The SQLite store: WAL and synchronous=FULL, migrations, idempotence, unique (author, seq), purge."""

import sqlite3
import time

import nacl.signing
import pytest

from sync import Database, DatabaseError, EventStore, create_event, setup_schema
from tests.sync.kinds import build_test_registry

KEY = nacl.signing.SigningKey.generate()
REG = build_test_registry()


def event(seq, ttl=3600, text="x", now=None):
    return create_event(KEY, REG, kind="notice", seq=seq, body={"text": text}, ttl=ttl, now=now)


@pytest.fixture
async def store(tmp_path):
    db = await Database.open(tmp_path / "node.db")
    await setup_schema(db)
    yield EventStore(db)
    await db.close()


async def test_durability_settings(store):
    db = store.db
    assert (await (await db.writer.execute("PRAGMA journal_mode")).fetchone())[0] == "wal"
    assert (await (await db.writer.execute("PRAGMA synchronous")).fetchone())[0] == 2  # FULL


async def test_migrations_are_versioned_and_idempotent(store, tmp_path):
    rows = await store.db.reader.execute_fetchall("SELECT component, version FROM schema_version")
    assert dict(rows) == {"sync": 6}
    assert await setup_schema(store.db) == 6
    await store.db.writer.execute("UPDATE schema_version SET version = 99 WHERE component = 'sync'")
    with pytest.raises(DatabaseError, match="newer than this software"):
        await setup_schema(store.db)


async def test_insert_is_idempotent_by_id(store):
    e = event(1)
    assert await store.commit([e], [], "local") == [e]
    await store.commit([e], [], "local")
    assert await store.count() == 1
    plan = await store.prepare([e])
    assert plan.statuses[0].value == "duplicate"


async def test_author_seq_is_unique_in_the_schema(store):
    await store.commit([event(1)], [], "local")
    other = event(1, text="other")
    with sqlite3.connect(store.db.path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO events (id, author, seq, kind, ts, expires, body_hash, sig, body, received, origin)"
                     " VALUES (?, ?, 1, 'notice', 0, 1, '', '', NULL, 0, 'x')", (other.id, other.author))
    plan = await store.prepare([other])
    assert plan.statuses[0].value == "equivocation"


async def test_purge_drops_expired_bodies_and_keeps_headers_and_tombstones(store):
    now = int(time.time())
    old = event(1, ttl=60, now=now - 120)
    fresh = event(2)
    await store.commit([old, fresh], [], "x", now=now - 120)
    from sync._event import create_event as ce
    tomb = ce(KEY, REG, kind="tombstone", seq=3, body={"target": fresh.id}, ttl=7200)
    await store.commit([tomb], [], "x")
    assert await store.purge_expired(now=now) == 1
    assert (await store.get(old.id)).body is None
    assert (await store.get(old.id)).header() == old.header()
    assert (await store.get(tomb.id)).body is not None
    tombstones = await store.db.reader.execute_fetchall("SELECT target FROM tombstones")
    assert [r[0] for r in tombstones] == [fresh.id]
    # Expired events are served header-only, so they still fill a puller's gaps.
    lines, more = await store.pull_batch({}, [], limit=10, max_bytes=1 << 20, now=now)
    assert len(lines) == 3 and not more and b'"body"' not in lines[0]
