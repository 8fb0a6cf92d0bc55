"""Writers cancelled at any point (waiting for the lock, in BEGIN, inside the transaction, in COMMIT) roll back and
leave the shared writer connection free: the store stays consistent and the next write works."""

import asyncio
import random

import nacl.signing
import pytest

from sync import Database, EventStore, create_event, setup_schema
from tests.sync.kinds import build_test_registry

KEY = nacl.signing.SigningKey.generate()
REG = build_test_registry()
WRITERS = 300          # per test, in rounds of ROUND concurrent writers
ROUND = 30
MAX_DELAY = 40         # a writer is cancelled after 0..MAX_DELAY turns of the event loop (or not at all)


@pytest.fixture
async def db(tmp_path):
    database = await Database.open(tmp_path / "node.db")
    await setup_schema(database)
    await database.migrate("test", [(1, ["CREATE TABLE rows (writer INTEGER NOT NULL, part INTEGER NOT NULL)"])])
    yield database
    await database.close()


async def cancel_after(task: asyncio.Task, turns: int) -> None:
    for _ in range(turns):
        if task.done():
            return
        await asyncio.sleep(0)
    task.cancel()


async def run_rounds(make_writer, seed: int) -> tuple[int, int]:
    """Start WRITERS writers in rounds, cancel most at a random turn; return (finished, cancelled)."""
    rng = random.Random(seed)
    finished = cancelled = 0
    for first in range(0, WRITERS, ROUND):
        tasks = [asyncio.ensure_future(make_writer(w)) for w in range(first, first + ROUND)]
        cancellers = [asyncio.ensure_future(cancel_after(t, rng.randrange(MAX_DELAY)))
                      for t in tasks if rng.random() < 0.8]
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        await asyncio.gather(*cancellers)
        for r in results:
            if isinstance(r, asyncio.CancelledError):
                cancelled += 1
            elif isinstance(r, BaseException):
                raise AssertionError(f"a writer failed instead of being cancelled: {r!r}") from r
            else:
                finished += 1
    return finished, cancelled


async def test_cancelled_writers_roll_back_and_the_next_write_works(db):
    async def writer(w: int) -> None:
        async with db.write() as conn:
            for part in range(3):
                await conn.execute("INSERT INTO rows (writer, part) VALUES (?, ?)", (w, part))
                await asyncio.sleep(0)

    finished, cancelled = await run_rounds(writer, seed=15)
    assert finished and cancelled, (finished, cancelled)
    assert not db.writer.in_transaction
    rows = await db.reader.execute_fetchall("SELECT writer, COUNT(*) FROM rows GROUP BY writer")
    assert all(count == 3 for _, count in rows), [r for r in rows if r[1] != 3]
    assert len(rows) >= finished          # a writer cancelled during its COMMIT may have committed
    async with db.write() as conn:
        await conn.execute("INSERT INTO rows (writer, part) VALUES (-1, 0)")
    assert (await db.reader.execute_fetchall("SELECT COUNT(*) FROM rows WHERE writer = -1"))[0][0] == 1
    assert await db.integrity_ok()


async def test_cancelled_event_commits_leave_the_store_consistent(db):
    store = EventStore(db)

    async def writer(w: int) -> None:
        batch = [create_event(KEY, REG, kind="notice", seq=3 * w + i + 1, body={"text": f"{w}"}, ttl=3600)
                 for i in range(3)]
        await store.commit(batch, [], "local")

    finished, cancelled = await run_rounds(writer, seed=8)
    assert finished and cancelled, (finished, cancelled)
    assert not db.writer.in_transaction
    seqs = {r[0] for r in await db.reader.execute_fetchall("SELECT seq FROM events")}
    batches = {(s - 1) // 3 for s in seqs}
    assert all({3 * b + 1, 3 * b + 2, 3 * b + 3} <= seqs for b in batches), "a batch was stored in part"
    assert await store.count() == len(seqs) >= 3 * finished
    last = create_event(KEY, REG, kind="notice", seq=3 * WRITERS + 1, body={"text": "after"}, ttl=3600)
    assert await store.commit([last], [], "local") == [last]
    assert (await store.heads())[last.author] == last.seq


async def test_one_trip_transactions_roll_back_on_error_and_survive_cancellation(db):
    """Database.transact: the work runs in the writer's thread as one transaction; an error inside it rolls all of
    it back and reaches the caller; a cancelled caller gets its cancellation after the transaction has ended."""
    def three_rows(w: int):
        def work(conn):
            for part in range(3):
                conn.execute("INSERT INTO rows (writer, part) VALUES (?, ?)", (w, part))
            return w
        return work

    def fails_halfway(conn):
        conn.execute("INSERT INTO rows (writer, part) VALUES (-2, 0)")
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    import sqlite3
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        await db.transact(fails_halfway)
    assert not db.writer.in_transaction
    assert (await db.reader.execute_fetchall("SELECT COUNT(*) FROM rows WHERE writer = -2"))[0][0] == 0
    assert await db.transact(three_rows(-3)) == -3

    async def writer(w: int) -> None:   # one-trip and statement-by-statement writers, mixed
        if w % 2:
            await db.transact(three_rows(w))
        else:
            async with db.write() as conn:
                for part in range(3):
                    await conn.execute("INSERT INTO rows (writer, part) VALUES (?, ?)", (w, part))

    finished, cancelled = await run_rounds(writer, seed=21)
    assert finished and cancelled, (finished, cancelled)
    assert not db.writer.in_transaction
    rows = await db.reader.execute_fetchall("SELECT writer, COUNT(*) FROM rows GROUP BY writer")
    assert all(count == 3 for _, count in rows), [r for r in rows if r[1] != 3]
    assert len(rows) >= finished + 1
    assert await db.integrity_ok()
