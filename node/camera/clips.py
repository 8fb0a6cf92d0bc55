"""The clip index: one SQLite row per clip file, kept in agreement with the files through crashes.

Every change to the files is bracketed by the index (DESIGN.md section 7, docs/cameras.md):

- **Promotion**: a row is committed in state `writing` (with the file names it will use) before any file is
  written; the files are written under temporary names, synced and renamed; then the row becomes `ready` with the
  clip's size and sha256. A final name exists only for a complete file.
- **Purge**: the row becomes `purging` (committed), the files are unlinked, then the row is deleted.

`reconcile()` runs at start-up and finishes whatever a crash (SIGKILL, power cut) interrupted: a `writing` row
whose clip file exists is completed by hashing that file, one without is dropped; a `purging` row is purged; a
`ready` row whose file vanished is dropped; temporary files and files no row names are removed.

Holds (the `holds` table from node/sos.py, extended here) keep footage from every purge: a hold names one clip
(manager, consent) or a time window of the building's cameras (SOS); it stops holding once `released` is set.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import aiosqlite

from node.durable import sha256_file, sync_folder
from node.errors import Conflict, NotFound
from node.sql import inserted_id
from sync import Database, Migration

log = logging.getLogger("nnode.camera")

BUILDING = "building"
UPLOAD_CAMERA = "upload"
PART = ".part"

COMPONENT = "clips"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE clips (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            camera TEXT NOT NULL,
            owner TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('motion', 'sos', 'manual', 'upload')),
            state TEXT NOT NULL CHECK (state IN ('writing', 'ready', 'purging')),
            start REAL NOT NULL,
            end REAL NOT NULL,
            duration REAL NOT NULL DEFAULT 0,
            motion_score REAL NOT NULL DEFAULT 0,
            size INTEGER NOT NULL DEFAULT 0,
            sha256 TEXT NOT NULL DEFAULT '',
            width INTEGER NOT NULL DEFAULT 0,
            height INTEGER NOT NULL DEFAULT 0,
            file TEXT NOT NULL,
            thumbnail TEXT,
            note TEXT NOT NULL DEFAULT '',
            created INTEGER NOT NULL
        )""",
        "CREATE INDEX clips_by_camera ON clips (camera, start)",
        "CREATE INDEX clips_by_owner ON clips (owner, start)",
        "ALTER TABLE holds ADD COLUMN clip_id INTEGER",
        "ALTER TABLE holds ADD COLUMN camera TEXT",
        "ALTER TABLE holds ADD COLUMN note TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE camera_access (
            camera TEXT PRIMARY KEY,
            residents INTEGER NOT NULL,
            responders INTEGER NOT NULL,
            updated INTEGER NOT NULL
        )""",
    ]),
]

_HELD = """EXISTS (SELECT 1 FROM holds h WHERE h.released IS NULL AND (h.clip_id = c.id OR (h.clip_id IS NULL
    AND c.owner = 'building' AND (h.camera IS NULL OR h.camera = c.camera) AND h.start < c.end AND h.end > c.start)))"""
_HELD_ROW = _HELD.replace("c.", "clips.")  # the same test in an UPDATE of clips (no alias there)
_COLUMNS = ("id, uid, camera, owner, kind, state, start, end, duration, motion_score, size, sha256, width, height, "
            "file, thumbnail, note, created")
_FIELDS = tuple(c.strip() for c in _COLUMNS.split(","))  # ClipRow's fields, in the order they are selected


class ClipNotFound(NotFound):
    """No such clip, or not one the caller may see (the two are not told apart)."""



@dataclass(frozen=True)
class ClipRow:
    """One indexed clip; `file` and `thumbnail` are relative to the index's folder."""

    id: int
    uid: str
    camera: str
    owner: str
    kind: str
    state: str
    start: float
    end: float
    duration: float
    motion_score: float
    size: int
    sha256: str
    width: int
    height: int
    file: str
    thumbnail: str | None
    note: str
    created: int
    held: bool = False

    @property
    def is_upload(self) -> bool:
        return self.camera == UPLOAD_CAMERA


class ClipIndex:
    """Clips in SQLite and their files under `root` (root/<camera>/<uid>.mp4 and .jpg)."""

    def __init__(self, db: Database, root: Path) -> None:
        self.db = db
        self.root = Path(root)

    # -- paths

    def path(self, relative: str) -> Path:
        """The absolute path of a file named in a row."""
        return self.root / relative

    def reserved_paths(self, row: ClipRow) -> tuple[Path, Path]:
        """The absolute paths a clip reserved by `begin` and its thumbnail are written to (begin names both)."""
        if row.thumbnail is None:
            raise ValueError(f"clip {row.uid} names no thumbnail")
        return self.path(row.file), self.path(row.thumbnail)

    def folder(self, camera: str) -> Path:
        folder = self.root / camera
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- promotion

    async def begin(self, *, camera: str, owner: str, kind: str, start: float, end: float,
                    motion_score: float = 0.0, note: str = "") -> ClipRow:
        """Reserve a row (state `writing`) and the file names of a clip about to be written."""
        await asyncio.to_thread(self.folder, camera)
        uid = secrets.token_hex(8)
        file, thumbnail = f"{camera}/{uid}.mp4", f"{camera}/{uid}.jpg"
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO clips (uid, camera, owner, kind, state, start, end, motion_score, file, thumbnail, "
                "note, created) VALUES (?, ?, ?, ?, 'writing', ?, ?, ?, ?, ?, ?, ?)",
                (uid, camera, owner, kind, start, end, motion_score, file, thumbnail, note, int(time.time())))
            clip_id = inserted_id(cursor)
        return await self._by_id(clip_id)

    async def finish(self, clip_id: int, *, start: float, end: float, duration: float, size: int, sha256: str,
                     width: int = 0, height: int = 0, thumbnail: bool = True) -> ClipRow:
        """Mark a promoted clip `ready` once its files are in place."""
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE clips SET state = 'ready', start = ?, end = ?, duration = ?, size = ?, sha256 = ?, "
                "width = ?, height = ?, thumbnail = CASE WHEN ? THEN thumbnail END WHERE id = ?",
                (start, end, duration, size, sha256, width, height, thumbnail, clip_id))
        return await self._by_id(clip_id)

    async def abandon(self, clip_id: int) -> None:
        """Drop a clip whose promotion failed (its row and any file it left)."""
        row = await self._by_id(clip_id)
        await self._unlink(row, temporary=True)
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM clips WHERE id = ?", (clip_id,))

    # -- reading

    async def _by_id(self, clip_id: int) -> ClipRow:
        rows = await self._select("c.id = ?", (clip_id,))
        if not rows:
            raise ClipNotFound(f"clip {clip_id} not found")
        return rows[0]

    async def _select(self, where: str, params: Iterable[Any] = (), order: str = "c.start DESC",
                      limit: int | None = None) -> list[ClipRow]:
        columns = ", ".join("c." + c for c in _FIELDS)
        sql = f"SELECT {columns}, {_HELD} AS held FROM clips c WHERE {where} ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = await self.db.reader.execute_fetchall(sql, tuple(params))
        return [ClipRow(**dict(zip(_FIELDS, row)), held=bool(row[-1])) for row in rows]  # held is the last column

    async def get(self, uid: str) -> ClipRow:
        """A ready clip by its uid (ClipNotFound otherwise)."""
        rows = await self._select("c.uid = ? AND c.state = 'ready'", (uid,))
        if not rows:
            raise ClipNotFound(f"clip {uid!r} not found")
        return rows[0]

    async def list(self, *, cameras: Sequence[str] = (), owner: str | None = None, before: float | None = None,
                   after: float | None = None, limit: int = 50) -> builtins.list[ClipRow]:
        """Ready clips, newest first: of the building's `cameras`, plus `owner`'s uploads if given."""
        parts: builtins.list[str] = []
        params: builtins.list[str | float] = []
        if cameras:
            parts.append(f"(c.owner = 'building' AND c.camera IN ({', '.join('?' * len(cameras))}))")
            params += list(cameras)
        if owner is not None:
            parts.append("c.owner = ?")
            params.append(owner)
        if not parts:
            return []
        where = f"c.state = 'ready' AND ({' OR '.join(parts)})"
        if before is not None:
            where += " AND c.start < ?"
            params.append(before)
        if after is not None:
            where += " AND c.end > ?"
            params.append(after)
        return await self._select(where, params, limit=limit)

    async def holds(self, clip: ClipRow) -> builtins.list[dict[str, Any]]:
        """The holds that keep `clip` (reason, note, since)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT id, reason, ref, note, created FROM holds h WHERE h.released IS NULL AND (h.clip_id = ? OR "
            "(h.clip_id IS NULL AND ? = 'building' AND (h.camera IS NULL OR h.camera = ?) AND h.start < ? "
            "AND h.end > ?)) ORDER BY id", (clip.id, clip.owner, clip.camera, clip.end, clip.start))
        return [{"id": r[0], "reason": r[1], "ref": r[2], "note": r[3], "since": r[4]} for r in rows]

    async def usage(self) -> dict[str, int]:
        """Bytes of ready clips per camera (uploads under 'upload')."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT camera, SUM(size), COUNT(*) FROM clips WHERE state = 'ready' GROUP BY camera")
        return {r[0]: r[1] for r in rows}

    # -- holds

    async def hold(self, clip: ClipRow, reason: str, ref: str, note: str = "") -> int:
        """Hold one clip from retention and the free-space guard; ClipNotFound if it is no longer `ready`."""
        async with self.db.write() as conn:
            # Checked in the same transaction as a purge marks its clips: a hold never lands on a clip whose purge
            # has begun (it would be reported as held while its files go).
            cursor = await conn.execute(
                "INSERT INTO holds (reason, ref, start, end, created, clip_id, camera, note) "
                "SELECT ?, ?, ?, ?, ?, id, camera, ? FROM clips WHERE id = ? AND state = 'ready'",
                (reason, ref, int(clip.start), int(clip.end) + 1, int(time.time()), note, clip.id))
            if cursor.rowcount == 0:
                raise ClipNotFound(f"clip {clip.uid!r} not found")
            return inserted_id(cursor)

    async def release(self, clip: ClipRow, reason: str) -> int:
        """Release `clip`'s own holds of `reason`; returns how many."""
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE holds SET released = ? WHERE clip_id = ? AND reason = ? AND released IS NULL",
                (int(time.time()), clip.id, reason))
            return cursor.rowcount

    # -- purging

    async def delete(self, clip: ClipRow, *, why: str) -> None:
        """Delete one clip on request; a held clip is refused (release its holds first)."""
        async with self.db.write() as conn:
            cursor = await conn.execute(
                f"UPDATE clips SET state = 'purging' WHERE id = ? AND state = 'ready' AND NOT {_HELD_ROW}", (clip.id,))
            if cursor.rowcount == 0 and not await self._select("c.id = ? AND c.state = 'ready'", (clip.id,)):
                raise ClipNotFound(f"clip {clip.uid!r} not found")  # deleted or purged meanwhile
            if cursor.rowcount == 0:
                raise Conflict(f"clip {clip.uid} is held ({', '.join(h['reason'] for h in await self.holds(clip))})"
                               " and cannot be deleted until its holds are released")
        await self._finish_purge([clip], why)

    async def mark_purging(self, clip: ClipRow, conn: aiosqlite.Connection) -> bool:
        """Mark `clip` for purging inside the caller's write transaction (False if held or gone); the caller then
        calls finish_purge, and a crash in between is finished by reconcile()."""
        cursor = await conn.execute(
            f"UPDATE clips SET state = 'purging' WHERE id = ? AND state = 'ready' AND NOT {_HELD_ROW}", (clip.id,))
        return cursor.rowcount == 1

    async def finish_purge(self, clip: ClipRow, why: str) -> None:
        """Remove the files and row of a clip marked with mark_purging."""
        await self._finish_purge([clip], why)

    async def purge_expired(self, retention: dict[str, float], default_days: float, now: float | None = None) -> int:
        """Purge clips older than their camera's retention (days; uploads use `default_days`), unless held.
        Returns the bytes freed."""
        now = time.time() if now is None else now
        candidates = await self._select(f"c.state = 'ready' AND NOT {_HELD}", order="c.start")
        # Uploads count from when they were uploaded: a resident's footage of last month is not already expired.
        expired = [c for c in candidates if (c.created if c.is_upload else c.end)
                   < now - 86400 * (default_days if c.is_upload else retention.get(c.camera, default_days))]
        return await self._purge(expired, "retention")

    async def purge_oldest(self, need_bytes: int, *, uploads_only: bool = False, all_or_nothing: bool = False) -> int:
        """Purge the oldest clips that are not held until `need_bytes` are freed (building footage before
        residents' uploads; only uploads with `uploads_only`); returns the bytes freed, which may be less if
        everything left is held. With `all_or_nothing`, nothing is purged unless it frees enough."""
        where = f"c.state = 'ready' AND NOT {_HELD}" + (" AND c.camera = 'upload'" if uploads_only else "")
        candidates = await self._select(where, order="c.camera = 'upload', c.start", limit=1000)
        chosen, total = [], 0
        for clip in candidates:
            if total >= need_bytes:
                break
            chosen.append(clip)
            total += clip.size
        if all_or_nothing and total < need_bytes:
            return 0
        return await self._purge(chosen, "disk space")

    async def _purge(self, clips: builtins.list[ClipRow], why: str) -> int:
        if not clips:
            return 0
        marked = []
        async with self.db.write() as conn:  # a hold placed since the query wins: the WHERE re-checks
            for clip in clips:
                cursor = await conn.execute(f"UPDATE clips SET state = 'purging' WHERE id = ? AND state = 'ready' "
                                            f"AND NOT {_HELD_ROW}", (clip.id,))
                if cursor.rowcount:  # only the clips this call marked: another purge may be under way
                    marked.append(clip)
        await self._finish_purge(marked, why)
        return sum(c.size for c in marked)

    async def _finish_purge(self, clips: builtins.list[ClipRow], why: str) -> None:
        for clip in clips:
            await self._unlink(clip)
        if clips:
            async with self.db.write() as conn:
                await conn.executemany("DELETE FROM clips WHERE id = ? AND state = 'purging'",
                                       [(c.id,) for c in clips])
            log.info("clips purged", extra={"count": len(clips), "why": why,
                                            "bytes": sum(c.size for c in clips)})

    async def _unlink(self, clip: ClipRow, temporary: bool = False) -> None:
        """Remove a clip's files; with `temporary`, also what a failed write left under their temporary names
        (a write that fails, on a full disk say, may leave one until the next start's reconcile otherwise)."""
        def unlink() -> None:
            for name in (clip.file, clip.thumbnail):
                if name:
                    path = self.path(name)
                    path.unlink(missing_ok=True)
                    if temporary:
                        path.with_name("." + path.name + PART).unlink(missing_ok=True)
        await asyncio.get_running_loop().run_in_executor(None, unlink)

    # -- crash recovery

    async def reconcile(self) -> dict[str, int]:
        """Make the index and the files agree after a crash; returns what was done, by action."""
        done = {"completed": 0, "dropped": 0, "purged": 0, "missing": 0, "stray_files": 0}
        loop = asyncio.get_running_loop()
        for clip in await self._select("c.state = 'writing'"):
            path = self.path(clip.file)
            if path.exists():  # renamed into place, so complete: the crash came before the row said so
                size, digest = await loop.run_in_executor(None, sha256_file, path)
                thumb = clip.thumbnail is not None and self.path(clip.thumbnail).exists()
                await self.finish(clip.id, start=clip.start, end=clip.end, duration=max(0.0, clip.end - clip.start),
                                  size=size, sha256=digest, thumbnail=thumb)
                done["completed"] += 1
            else:
                await self.abandon(clip.id)
                done["dropped"] += 1
        purging = await self._select("c.state = 'purging'")
        await self._finish_purge(purging, "purge interrupted")
        done["purged"] = len(purging)
        ready = await self._select("c.state = 'ready'")
        gone = [c for c in ready if not self.path(c.file).exists()]
        if gone:
            log.warning("clip files missing; dropped from the index", extra={"clips": [c.uid for c in gone]})
            async with self.db.write() as conn:
                await conn.executemany("DELETE FROM clips WHERE id = ?", [(c.id,) for c in gone])
            done["missing"] = len(gone)
        known = {name for c in ready if c not in gone for name in (c.file, c.thumbnail) if name}
        done["stray_files"] = await loop.run_in_executor(None, self._remove_strays, known)
        if any(done.values()):
            log.info("clip index reconciled", extra=done)
        return done

    def _remove_strays(self, known: set[str]) -> int:
        removed = 0
        if not self.root.exists():
            return 0
        for folder in [p for p in self.root.iterdir() if p.is_dir()]:
            if folder.name == ".incoming":  # uploads being received when the node stopped
                for path in folder.iterdir():
                    path.unlink(missing_ok=True)
                    removed += 1
                continue
            for path in folder.iterdir():
                relative = f"{folder.name}/{path.name}"
                if path.is_file() and relative not in known and (path.name.endswith(PART)
                                                                 or path.suffix in (".mp4", ".jpg")):
                    path.unlink(missing_ok=True)
                    removed += 1
            sync_folder(folder)
        return removed


def free_bytes_needed(root: Path, min_free_mb: int, min_free_percent: int) -> tuple[int, int]:
    """(free bytes on root's file system, bytes the guard wants free); blocking (statvfs)."""
    import shutil
    usage = shutil.disk_usage(root)
    return usage.free, max(min_free_mb << 20, usage.total * min_free_percent // 100)
