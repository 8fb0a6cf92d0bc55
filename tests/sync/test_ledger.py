"""The heads, tips, gaps and counts the store keeps as it writes equal a full recomputation from its events."""

import random

import nacl.signing
import pytest

from sync import Database, EventStore, create_event, setup_schema
from sync._store import MIGRATIONS, Status
from tests.sync.kinds import build_test_registry

REG = build_test_registry()
KEYS = [nacl.signing.SigningKey.generate() for _ in range(4)]


@pytest.fixture
async def store(tmp_path):
    db = await Database.open(tmp_path / "node.db")
    await setup_schema(db)
    yield EventStore(db)
    await db.close()


def _notice(key, seq, text="x"):
    return create_event(key, REG, kind="notice", seq=seq, body={"text": text}, ttl=3600)


def _tombstone(key, seq, target):
    return create_event(key, REG, kind="tombstone", seq=seq, body={"target": target.id}, ttl=7200)


async def _recomputed(store):
    """Heads, tips, gaps and counts as a scan of every event finds them."""
    rows = await store.db.reader.execute_fetchall("SELECT author, seq, id, kind FROM events ORDER BY author, seq")
    heads, tips, gaps, kinds, held = {}, {}, set(), {}, {}
    for author, seq, event_id, kind in rows:
        below = heads.get(author, 0)
        if seq > below + 1:
            gaps.add((author, below + 1, seq - 1))
        heads[author], tips[author] = seq, event_id
        kinds[kind] = kinds.get(kind, 0) + 1
        held[author] = held.get(author, 0) + 1
    return heads, tips, gaps, kinds, held


async def _kept(store):
    heads, tips = await store.heads_and_tips()
    gaps = {tuple(g) for g in await store.gaps(limit=100_000, per_author=100_000)}
    held = dict(await store.db.reader.execute_fetchall("SELECT author, held FROM event_authors"))
    return heads, tips, gaps, await store.counts_by_kind(), held


async def _check(store):
    kept, recomputed = await _kept(store), await _recomputed(store)
    assert kept == recomputed
    latest = {(a, lo, hi) for a, lo, hi in recomputed[2]
              if sum(1 for b, other, _ in recomputed[2] if b == a and other > lo) < 2}
    assert {tuple(g) for g in await store.gaps(limit=100_000, per_author=2)} == latest   # each author's 2 latest
    assert await store.count() == sum((await store.counts_by_kind()).values())
    assert await store.heads() == (await store.heads_and_tips())[0]


@pytest.mark.parametrize("seed", [18, 19, 20, 21])
async def test_kept_values_equal_a_recomputation_through_random_writes(store, seed):
    rng = random.Random(seed)
    stored = []
    for _ in range(60):
        batch = []
        for _ in range(rng.randint(1, 12)):
            key = rng.choice(KEYS)
            batch.append(_notice(key, rng.randint(1, 40), text=str(rng.random())))
        if stored and rng.random() < 0.5:   # duplicates of what is held
            batch += rng.sample(stored, min(len(stored), 3))
        if stored and rng.random() < 0.3:   # a tombstone of a held event, at a fresh seq of its author
            target = rng.choice(stored)
            key = next(k for k in KEYS if k.verify_key.encode().hex() == target.author)
            batch.append(_tombstone(key, rng.randint(41, 60), target))
        plan = await store.prepare(batch)
        new = [e for e, s in zip(plan.events, plan.statuses, strict=True) if s is Status.NEW and e is not None]
        stored += await store.commit(new, [], "peer")
        if rng.random() < 0.25:
            await store.purge_expired(now=2**40)
        if rng.random() < 0.3:   # deletes, one row or a run of an author's seqs (as drop_beyond_range does)
            author = rng.choice(KEYS).verify_key.encode().hex()
            lo = rng.randint(1, 60)
            async with store.db.write() as conn:
                await conn.execute("DELETE FROM events WHERE author = ? AND seq BETWEEN ? AND ?",
                                   (author, lo, lo + rng.choice((0, 0, 3, 20))))
        await _check(store)


@pytest.mark.parametrize("seed", [31, 32])
async def test_a_writer_that_bypasses_commit_keeps_the_ledger_too(store, seed):
    # commit keeps the ledger once per batch; plain SQL (another tool, an older release) gets the per-row trigger.
    rng = random.Random(seed)
    for round_ in range(40):
        batch = [_notice(rng.choice(KEYS), rng.randint(1, 30), text=str(rng.random())) for _ in range(8)]
        if round_ % 2:
            async with store.db.write() as conn:
                await conn.executemany(
                    "INSERT OR IGNORE INTO events (id, author, seq, kind, ts, expires, body_hash, sig, body, "
                    "received, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'peer')",
                    [(e.id, e.author, e.seq, e.kind, e.ts, e.expires, e.body_hash, e.sig, e.body) for e in batch])
        else:
            await store.commit(batch, [], "peer")   # without prepare: held slots are ignored by the insert
        await _check(store)
    assert (await store.db.reader.execute_fetchall("SELECT COUNT(*) FROM event_batch"))[0][0] == 0


async def test_migration_fills_the_ledger_from_events_already_held(tmp_path):
    path = tmp_path / "old.db"
    db = await Database.open(path)
    await db.migrate("sync", [m for m in MIGRATIONS if m[0] == 1])
    store = EventStore(db)
    events = [_notice(key, seq) for key in KEYS[:3] for seq in (1, 2, 5, 9, 10, 30)]
    async with db.write() as conn:   # as a release before the ledger stored them
        await conn.executemany(
            "INSERT INTO events (id, author, seq, kind, ts, expires, body_hash, sig, body, received, origin) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'peer')",
            [(e.id, e.author, e.seq, e.kind, e.ts, e.expires, e.body_hash, e.sig, e.body) for e in events])
    assert (await db.reader.execute_fetchall(
        "SELECT name FROM sqlite_master WHERE name = 'event_authors'")) == []
    assert await setup_schema(db) == 6
    await _check(store)
    assert len(await store.gaps(limit=1000, per_author=1000)) == 9
    await db.close()



async def test_a_batch_holding_events_already_stored_counts_only_the_new_ones(store):
    events = [_notice(KEYS[0], seq) for seq in (1, 2, 4, 7)]
    await store.commit(events[:2], [], "peer")
    await store.commit(events, [], "peer")   # committed without prepare: the insert ignores seqs 1 and 2
    await _check(store)
    assert await store.count() == 4
    assert {tuple(g) for g in await store.gaps()} == {(KEYS[0].verify_key.encode().hex(), 3, 3),
                                                       (KEYS[0].verify_key.encode().hex(), 5, 6)}
