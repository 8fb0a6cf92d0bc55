"""The database across an update and its rollback: a snapshot before the first migration, restored when an older
release finds a schema newer than it knows.

New software migrates the database on its first start, which on the appliance is the update's trial boot. Just
before the first migration that changes an existing database, `open_current` copies it (`VACUUM INTO`, to a
temporary file, fsynced, renamed) to `node.db.pre-update` on the data partition, with the schema the software
before the update knew. If the trial is rolled back, the older release starts on a database it does not know:
it moves that database aside (`node.db.newer-<UTC time>`, with its WAL, kept, never deleted), puts the snapshot
in its place and logs both. What arrived during the trial comes back from peers by anti-entropy; the node holds
back its own new events until a peer has told it its latest ones (the `restored_from_backup` flag, as after
`nnode restore`), so it never signs a second event at a sequence number it already used.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Sequence

from node.durable import fsync_file, sync_folder
from node.errors import NodeError
from node.schema import COMPONENTS, Component, known_versions, migrate_all
from node.state import RESTORED, NodeState
from sync import Database

log = logging.getLogger("nnode.snapshot")

SNAPSHOT_SUFFIX = ".pre-update"
ASIDE_INFIX = ".newer-"


class SchemaNewer(NodeError):
    """The database was written by a newer release and no snapshot this release knows can replace it."""


def snapshot_path(db_path: Path) -> Path:
    """Where the pre-update snapshot of `db_path` is kept (next to it, on the data partition)."""
    return db_path.with_name(db_path.name + SNAPSHOT_SUFFIX)


def _versions(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        return {str(name): int(version) for name, version in conn.execute("SELECT component, version FROM "
                                                                            "schema_version")}
    except sqlite3.OperationalError:   # no schema_version table: nothing was ever migrated
        return {}


def read_versions(path: Path) -> dict[str, int]:
    """The schema versions recorded in the database file at `path`, read-only. Blocking: run in a thread."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return _versions(conn)


def _too_new(versions: dict[str, int], known: dict[str, int]) -> list[tuple[str, int, int]]:
    """(component, found, known) for each component this release knows whose version is higher than it knows.
    A component it does not know at all (a newer release added it) is ignored, as migrate_all ignores it."""
    return [(name, found, known[name]) for name, found in sorted(versions.items())
            if name in known and found > known[name]]


def _install(source: Path, target: Path) -> None:
    """Copy `source` over `target` whole: a temporary file, fsynced, renamed, the folder fsynced."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o600)
    fsync_file(tmp)
    os.replace(tmp, target)
    sync_folder(target.parent)


def _restore(db_path: Path, snapshot: Path) -> Path:
    """Move the database (and its WAL) aside under a timestamped name, then put the snapshot in its place; returns
    the name it was moved to. Blocking: run in a thread."""
    aside = db_path.with_name(f"{db_path.name}{ASIDE_INFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    # SQLite finds a WAL by the database's name plus -wal: renamed together they stay one readable database.
    for suffix in ("-wal", "-shm", ""):
        source = db_path.with_name(db_path.name + suffix)
        if source.exists():
            source.rename(aside.with_name(aside.name + suffix))
    sync_folder(db_path.parent)
    _install(snapshot, db_path)
    return aside


async def _take_snapshot(db: Database) -> Path:
    """Write the database as it is now to its snapshot path, atomically."""
    target = snapshot_path(db.path)
    tmp = target.with_name(target.name + ".tmp")
    await asyncio.to_thread(tmp.unlink, missing_ok=True)
    await db.vacuum_into(tmp)
    await asyncio.to_thread(fsync_file, tmp)
    await asyncio.to_thread(os.replace, tmp, target)
    await asyncio.to_thread(sync_folder, target.parent)
    return target


def _explain(db_path: Path, newer: list[tuple[str, int, int]], why: str) -> str:
    found = ", ".join(f"{name!r} is version {have} (this software knows {known})" for name, have, known in newer)
    return (f"{db_path}: a newer release wrote this database ({found}) and {why}; install that release again "
            f"(`rauc install`), or restore a backup with `nnode restore --force`")


async def _replace_newer(db_path: Path, newer: list[tuple[str, int, int]], known: dict[str, int]) -> Path:
    """Restore the pre-update snapshot over a database this release cannot run on, or raise SchemaNewer."""
    snapshot = snapshot_path(db_path)
    if not await asyncio.to_thread(snapshot.exists):
        raise SchemaNewer(_explain(db_path, newer, f"there is no pre-update snapshot ({snapshot})"))
    try:
        versions = await asyncio.to_thread(read_versions, snapshot)
    except sqlite3.Error as exc:
        raise SchemaNewer(_explain(db_path, newer, f"its pre-update snapshot {snapshot} cannot be read ({exc})")
                          ) from exc
    if still := _too_new(versions, known):
        raise SchemaNewer(_explain(db_path, newer, f"its pre-update snapshot {snapshot} is newer too ("
                                   + ", ".join(f"{n!r} version {h}" for n, h, _ in still) + ")"))
    aside = await asyncio.to_thread(_restore, db_path, snapshot)
    log.warning(f"{db_path} was written by a newer release (" + ", ".join(f"{n} v{h} > v{k}" for n, h, k in newer)
                + f"), after a rollback: moved it aside to {aside.name} (kept) and restored the pre-update snapshot "
                f"{snapshot.name}; what arrived since comes back from peers", extra={"aside": str(aside)})
    return aside


async def open_current(db_path: Path, components: Sequence[Component] = COMPONENTS) -> Database:
    """Open the database and bring it to this release's schema: snapshot it before its first migration, or restore
    the snapshot when a newer release (a rolled-back trial) wrote it."""
    known = known_versions(components)
    db = await Database.open(db_path)
    try:
        versions = {str(name): int(version) for name, version in await db.reader.execute_fetchall(
            "SELECT component, version FROM schema_version")}
        restored = False
        if newer := _too_new(versions, known):
            await db.close()
            await _replace_newer(db_path, newer, known)
            db = await Database.open(db_path)
            versions, restored = {}, True
        elif versions and any(versions.get(name, 0) < version for name, version in known.items() if name != "node"):
            snapshot = await _take_snapshot(db)
            log.info(f"database snapshot before migrating: {snapshot.name}", extra={"snapshot": str(snapshot)})
        await migrate_all(db, components)
        if restored:
            await NodeState(db).set(RESTORED, str(int(time.time())))
    except BaseException:
        await db.close()
        raise
    return db
