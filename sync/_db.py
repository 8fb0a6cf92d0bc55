"""One SQLite database file in WAL mode: a writer connection behind a lock, a reader connection, and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

from ._errors import SyncError

T = TypeVar("T")

# (version, statements) per component; versions start at 1 and increase by one.
Migration = tuple[int, Sequence[str]]


class DatabaseError(SyncError):
    """The database could not be opened, migrated or written."""


class SchemaTooNew(DatabaseError):
    """A component's tables are at a version newer than this software's migrations reach (a newer release wrote
    them); nothing was migrated."""

    def __init__(self, path: Path, component: str, found: int, known: int) -> None:
        super().__init__(f"{path}: schema of {component!r} is version {found}, newer than this software knows "
                         f"({known}); refusing to run an older version on it")
        self.component, self.found, self.known = component, found, known


async def _connect(path: Path, *, writer: bool) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    await conn.execute("PRAGMA busy_timeout = 10000")
    if writer:
        row = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
        mode = str(row[0]) if row is not None else "no answer"
        if mode.lower() != "wal":
            raise DatabaseError(f"{path}: could not switch to WAL journal mode (got {mode})")
        # An acknowledged write must survive a power cut: fsync the WAL on every commit.
        await conn.execute("PRAGMA synchronous = FULL")
        # 32 MiB of page cache for the writer (SQLite's default is 2 MiB): an event's insert touches a random page
        # of the id index, which at a million events is about 100 MB; each miss is a read and a page parse.
        await conn.execute("PRAGMA cache_size = -32768")
        await conn.execute("PRAGMA foreign_keys = ON")
    else:
        await conn.execute("PRAGMA query_only = ON")
    return conn


class Database:
    """The node's database: `write()` for serialized transactions, `reader` for queries of committed data."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self.writer = writer
        self.reader = reader
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> Database:
        """Open (creating if needed) the database file in WAL mode with synchronous=FULL."""
        path = Path(path)
        try:
            writer = await _connect(path, writer=True)
            await writer.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                                 "component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            reader = await _connect(path, writer=False)
        except sqlite3.Error as exc:
            raise DatabaseError(f"{path}: cannot open database: {exc}") from exc
        return cls(path, writer, reader)

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply the component's pending migrations, each in its own transaction; return the version reached."""
        async with self._lock:
            row = await (await self.writer.execute(
                "SELECT version FROM schema_version WHERE component = ?", (component,))).fetchone()
            current: int = row[0] if row else 0
            known = max((v for v, _ in migrations), default=0)
            if current > known:
                raise SchemaTooNew(self.path, component, current, known)
            for version, statements in sorted(migrations):
                if version <= current:
                    continue
                try:
                    async with self._transaction() as conn:
                        for statement in statements:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO schema_version(component, version) VALUES (?, ?) "
                            "ON CONFLICT(component) DO UPDATE SET version = excluded.version", (component, version))
                except sqlite3.Error as exc:
                    raise DatabaseError(f"{self.path}: migration {component} v{version} failed: {exc}") from exc
                current = version
            return current

    async def vacuum_into(self, path: Path) -> None:
        """Write a consistent copy of the database to the new file `path` (SQLite's VACUUM INTO), between writes."""
        async with self._lock:
            try:
                await self.writer.execute("VACUUM INTO ?", (str(path),))
            except sqlite3.Error as exc:
                raise DatabaseError(f"{self.path}: cannot copy the database to {path}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time: BEGIN IMMEDIATE, COMMIT on success, ROLLBACK on error or cancellation.

        aiosqlite runs a statement in its thread even when the task awaiting it is cancelled, so BEGIN, COMMIT and
        ROLLBACK are each awaited to their end (a cancellation meanwhile is raised afterwards): a writer cancelled at
        any point leaves no transaction open on the shared connection for the next one. A writer cancelled while its
        COMMIT runs may have committed."""
        async with self._lock, self._transaction() as conn:
            yield conn

    async def transact(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` as one write transaction in a single trip to the writer's thread: BEGIN IMMEDIATE,
        `work`, COMMIT (ROLLBACK if anything raises), for paths where a hop per statement shows (this node's own
        events on their way to the residents' pages). `work` runs in that thread: plain sqlite3 calls, nothing of
        the event loop. A caller cancelled meanwhile gets its cancellation once the transaction has ended, which
        may have committed."""
        def run() -> T:
            conn = self.writer._conn   # aiosqlite's own connection, used from its own thread
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        async with self._lock:
            result: T
            result, cancelled = await _to_the_end(
                self.writer._execute(run))  # type: ignore[no-untyped-call] # aiosqlite's own, untyped
            if cancelled is not None:
                raise cancelled
            return result

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the reader in one trip to its thread (several queries, one hop); plain
        sqlite3 calls only. Each statement sees committed data (WAL), not necessarily one snapshot across them."""
        result: T = await self.reader._execute(  # type: ignore[no-untyped-call] # aiosqlite's own, untyped
            lambda: work(self.reader._conn))
        return result

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The transaction of write(), for a caller that holds the lock."""
        cancelled = await self._settle("BEGIN IMMEDIATE")
        if cancelled is not None:
            await self._rollback()
            raise cancelled
        try:
            yield self.writer
        except BaseException:
            await self._rollback()
            raise
        try:
            cancelled = await self._settle("COMMIT")
        except BaseException:
            await self._rollback()
            raise
        if cancelled is not None:
            raise cancelled

    async def _settle(self, sql: str) -> asyncio.CancelledError | None:
        """Run one statement on the writer to its end, whatever cancels the caller meanwhile; return that
        cancellation (for the caller to raise once the connection is in a known state) or None."""
        _, cancelled = await _to_the_end(self.writer.execute(sql))
        return cancelled

    async def _rollback(self) -> None:
        """Roll back whatever is open on the writer (nothing, if SQLite already did); a cancellation is deferred."""
        try:
            cancelled = await self._settle("ROLLBACK")
        except sqlite3.Error as exc:
            if self.writer.in_transaction:
                raise DatabaseError(f"{self.path}: rollback failed: {exc}") from exc
            return
        if cancelled is not None:
            raise cancelled

    async def integrity_ok(self) -> bool:
        """True if SQLite's quick integrity check passes."""
        row = await (await self.reader.execute("PRAGMA quick_check")).fetchone()
        return row is not None and str(row[0]) == "ok"

    async def integrity_probe(self) -> bool:
        """A cheap liveness check through the writer connection (queued behind any write, so a wedged write, say a
        stalled fsync, makes it late) and the reader."""
        for conn in (self.writer, self.reader):
            row = await (await conn.execute("SELECT 1")).fetchone()
            if row is None or row[0] != 1:
                return False
        return True

    async def close(self) -> None:
        """Close both connections; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for conn in (self.reader, self.writer):
            with contextlib.suppress(Exception):
                await conn.close()


async def _to_the_end(work: Awaitable[T]) -> tuple[T, asyncio.CancelledError | None]:
    """Await `work` to its end, whatever cancels the caller meanwhile: its result, and that cancellation (for the
    caller to raise once the connection is in a known state) or None."""
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    return task.result(), cancelled
