"""Header retention: expired headers are pruned in batches, their slots settled, and the kept heads, gaps and
counts stay what the events held say; a crash in the middle of a prune loses nothing else."""

import asyncio
import os
import random
import signal
import sys
import textwrap
from pathlib import Path

import nacl.signing
import pytest

from sync import Database, EventStore, Retention, create_event, setup_schema
from sync._retention import prune
from sync._store import Status
from tests.sync.kinds import build_test_registry

REG = build_test_registry()
KEYS = [nacl.signing.SigningKey.generate() for _ in range(3)]
NOW = 1_900_000_000
ROOT = str(Path(__file__).resolve().parents[2])
DAY = 86_400


@pytest.fixture
async def store(tmp_path):
    db = await Database.open(tmp_path / "node.db")
    await setup_schema(db)
    yield EventStore(db)
    await db.close()


def _notice(key, seq, *, ts, ttl=3600, text="x"):
    return create_event(key, REG, kind="notice", seq=seq, body={"text": text}, ttl=ttl, now=ts)


def _author(key):
    return key.verify_key.encode().hex()


async def _ingest(store, events):
    plan = await store.prepare(events)
    new = [e for e, s in zip(plan.events, plan.statuses, strict=True) if s is Status.NEW]
    return plan, await store.commit(new, [], "peer", now=NOW)


async def _ledger(store):
    heads, tips = await store.heads_and_tips()
    gaps = {tuple(g) for g in await store.gaps(limit=100_000, per_author=100_000)}
    held = dict(await store.db.reader.execute_fetchall("SELECT author, held FROM event_authors"))
    return heads, tips, gaps, held, await store.counts_by_kind()


async def _recount(store):
    rows = await store.db.reader.execute_fetchall("SELECT author, kind FROM events")
    held, kinds = {}, {}
    for author, kind in rows:
        held[author] = held.get(author, 0) + 1
        kinds[kind] = kinds.get(kind, 0) + 1
    return held, kinds


async def test_prune_keeps_heads_gaps_and_counts_and_settles_the_pruned_slots(store):
    rng = random.Random(18)
    events = []
    for key in KEYS:
        for seq in rng.sample(range(1, 80), 50):   # holes stay gaps
            age = rng.choice((400, 200, 40, 20, 0))   # days since ts: long expired ... in force
            events.append(_notice(key, seq, ts=NOW - age * DAY, ttl=rng.choice((3600, 10 * DAY)), text=str(seq)))
    rng.shuffle(events)
    _, stored = await _ingest(store, events)
    # tombstones of some events, by their authors, that expire with their targets' era
    targets = rng.sample([e for e in stored if e.ts < NOW - 300 * DAY], 6)
    tombs = [create_event(next(k for k in KEYS if _author(k) == t.author), REG, kind="tombstone",
                          seq=100 + i, body={"target": t.id}, ttl=11 * DAY, now=t.ts + 60) for i, t in enumerate(targets)]
    assert len((await _ingest(store, tombs))[1]) == len(tombs)
    await store.purge_expired(now=NOW)
    heads, tips, gaps, _, _ = await _ledger(store)
    before = {e.id: e for e in stored + tombs}
    policy = Retention(keep_after=30 * DAY, max_headers=10**6)

    pruned = await prune(store.db, policy, now=NOW, batch=7)
    assert pruned > 0
    kept = {r[0] for r in await store.db.reader.execute_fetchall("SELECT id FROM events")}
    gone = set(before) - kept
    assert len(gone) == pruned
    for event in before.values():
        is_head = event.seq == heads[event.author]
        if event.expires + policy.keep_after <= NOW and not is_head:
            assert event.id in gone
        else:
            assert event.id in kept   # in force, within its keep time, or its author's latest
    # Heads, tips and gaps are unchanged (a pruned slot is settled, not missing); counts follow what is held.
    new_heads, new_tips, new_gaps, held, kinds = await _ledger(store)
    assert (new_heads, new_tips, new_gaps) == (heads, tips, gaps)
    assert (held, kinds) == await _recount(store)
    assert await store.count() == len(kept)
    assert await store.horizon() == (max(before[i].expires for i in gone), pruned)
    assert not await store.db.reader.execute_fetchall(
        f"SELECT 1 FROM tombstones WHERE tombstone_id IN ({','.join('?' * len(gone))})", list(gone))

    # Offered again by a peer that still holds them, the pruned events are settled: not stored, no new gap.
    plan, again = await _ingest(store, [before[i] for i in gone])
    assert again == [] and set(plan.statuses) == {Status.SETTLED}
    # So is another event an author signs at a pruned seq (an equivocation there stores nothing either).
    victim = before[sorted(gone)[0]]
    other = _notice(next(k for k in KEYS if _author(k) == victim.author), victim.seq, ts=NOW, text="second")
    plan, again = await _ingest(store, [other])
    assert again == [] and plan.statuses == [Status.SETTLED]
    # An event in a gap is still wanted, however old; what is held is a duplicate.
    author, first, _ = sorted(gaps)[0]
    key = next(k for k in KEYS if _author(k) == author)
    plan, again = await _ingest(store, [_notice(key, first, ts=NOW - 500 * DAY),
                                           before[next(i for i in sorted(kept) if before[i].expires > NOW)]])
    assert plan.statuses == [Status.NEW, Status.DUPLICATE] and len(again) == 1
    assert (await _ledger(store))[3:] == await _recount(store)
    # Nothing left to prune: a second run does nothing.
    await store.purge_expired(now=NOW)
    before_second = await store.count()
    assert await prune(store.db, policy, now=NOW) == 1   # the old event just stored in the gap
    assert await store.count() == before_second - 1
    assert await prune(store.db, policy, now=NOW) == 0


async def test_over_the_cap_the_longest_expired_go_first_and_nothing_in_force(store):
    key = KEYS[0]
    expired = [_notice(key, seq, ts=NOW - (20 - seq) * DAY) for seq in range(1, 11)]   # within the keep time
    live = [_notice(key, seq, ts=NOW, ttl=DAY) for seq in range(11, 16)]
    await _ingest(store, expired + live)
    await store.purge_expired(now=NOW)
    assert await prune(store.db, Retention(keep_after=365 * DAY, max_headers=8), now=NOW) == 7
    left = {r[0] for r in await store.db.reader.execute_fetchall("SELECT seq FROM events")}
    assert left == {8, 9, 10, 11, 12, 13, 14, 15}
    # The cap below what is in force: every expired header goes, no live one.
    assert await prune(store.db, Retention(keep_after=365 * DAY, max_headers=1), now=NOW) == 3
    assert {r[0] for r in await store.db.reader.execute_fetchall("SELECT seq FROM events")} == set(range(11, 16))


_CHILD = textwrap.dedent("""
    import asyncio, sys
    from sync import Database, Retention
    from sync._retention import prune, prune_batch

    async def main():
        db = await Database.open(sys.argv[1])
        done = await prune(db, Retention(keep_after=0, max_headers=10**9), now=int(sys.argv[2]), batch=50,
                           max_batches=2)
        print("committed", done, flush=True)
        async with db.write() as conn:
            await prune_batch(conn, int(sys.argv[2]), 50)
            print("inside", flush=True)
            await asyncio.sleep(120)
    asyncio.run(main())
""")


async def test_a_crash_in_the_middle_of_a_prune_loses_nothing_else(store, tmp_path):
    expired = [_notice(key, seq, ts=NOW - 10 * DAY) for key in KEYS for seq in range(1, 101)]
    live = [_notice(key, seq, ts=NOW, ttl=DAY) for key in KEYS for seq in range(101, 111)]
    await _ingest(store, expired + live)
    await store.purge_expired(now=NOW)
    heads, tips, gaps, _, _ = await _ledger(store)
    total = await store.count()
    env = {**os.environ, "PYTHONPATH": ROOT}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, str(store.db.path), str(NOW),
                                                 stdout=asyncio.subprocess.PIPE, env=env)
    try:
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).split() == [b"committed", b"100"]
        # a third batch deleted, not committed
        assert (await asyncio.wait_for(child.stdout.readline(), 60)).strip() == b"inside"
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert await store.db.integrity_ok()
    assert await store.count() == total - 100          # the two committed batches, not the third
    assert not await store.db.reader.execute_fetchall("SELECT 1 FROM event_pruning")
    assert (await _ledger(store))[:3] == (heads, tips, gaps)
    assert (await _ledger(store))[3:] == await _recount(store)
    assert await store.horizon() == (NOW - 10 * DAY + 3600, 100)
    # The prune picks up where it was, and every event in force is still there.
    assert await prune(store.db, Retention(keep_after=0, max_headers=10**9), now=NOW) == 200
    held = {r[0] for r in await store.db.reader.execute_fetchall("SELECT id FROM events")}
    assert {e.id for e in live} <= held
    assert len(held) == len(live)
