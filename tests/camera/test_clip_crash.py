"""The clip index and the clip files agree after a SIGKILL at any point of a promotion or a purge, and held clips
survive every crash (a child process promotes, holds and purges real clips; the test kills it and reconciles)."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from node.camera import record
from node.camera.clips import ClipIndex, ClipNotFound
from node.durable import sha256_file
from node.schema import migrate_all
from sync import Database
from tests.firmware.tools import need

REPO = Path(__file__).resolve().parents[2]
CAMERAS = ("front", "back")
ROUNDS = 25

CHILD = r'''
"""Promotes, holds and purges clips forever, for the parent to SIGKILL at random moments."""
import asyncio, os, random, sys, time
from pathlib import Path

from node.schema import migrate_all
from node import durable
from node.camera import record
from node.camera.clips import ClipIndex
from sync import Database, setup_schema

db_path, root, log_path, seed = sys.argv[1:5]
segments = sys.argv[5:]
CAMERAS = ("front", "back")
rng = random.Random(seed)


def pause(most):
    time.sleep(rng.uniform(0, most))  # blocking on purpose: widens the window a kill may land in


class SlowOs:
    """os for promote(): a pause after each rename, so kills land between the thumbnail's and the clip's."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        os.replace(src, dst)
        pause(0.03)


class SlowIndex(ClipIndex):
    """Pauses around each clip's unlink, while its row says `purging` (or `writing`, when abandoned)."""

    async def _unlink(self, clip, temporary=False):
        pause(0.05)
        await super()._unlink(clip, temporary)
        pause(0.05)


durable.os = SlowOs()   # publish()'s rename, used by promote() for the thumbnail and the clip
log = open(log_path, "a")


def note(line):
    log.write(line + "\n")
    log.flush()
    os.fsync(log.fileno())  # written only after what it reports was committed


async def main():
    db = await Database.open(db_path)
    await migrate_all(db)
    index = SlowIndex(db, Path(root))
    rows = await db.reader.execute_fetchall("SELECT start, end FROM holds WHERE clip_id IS NULL")
    if not rows:  # an SOS-style hold of a time window, placed before any clip exists
        start = int(time.time()) - 3 * 86400
        async with db.write() as conn:
            await conn.execute("INSERT INTO holds (reason, ref, start, end, created) VALUES ('sos', 'crash', ?, ?, ?)",
                               (start, start + 3600, int(time.time())))
        rows = [(start, start + 3600)]
    window = rows[0]
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        clips = await index.list(cameras=CAMERAS, limit=500)
        unheld = [c for c in clips if not c.held]
        op = rng.random()
        if len(unheld) < 3 or op < 0.5:
            if rng.random() < 0.1:
                start = rng.uniform(window[0], window[1] - 5)
            else:
                start = time.time() - rng.uniform(0, 10 * 86400)
            row = await index.begin(camera=rng.choice(CAMERAS), owner="building", kind="motion", start=start,
                                    end=start + 2)
            pause(0.05)
            clip = await loop.run_in_executor(None, record.promote, segments, index.path(row.file),
                                              index.path(row.thumbnail))
            pause(0.05)
            row = await index.finish(row.id, start=start, end=start + clip.duration, duration=clip.duration,
                                     size=clip.size, sha256=clip.sha256, width=160, height=120)
            note(f"ready {row.uid}")
            if rng.random() < 0.15:
                await index.hold(row, "manager", "manager", "crash test")
                note(f"held {row.uid}")
        elif op < 0.6:
            await index.delete(rng.choice(unheld), why="crash test")
        elif op < 0.65:
            target = rng.choice(unheld)
            await index.hold(target, "consent", "crash test")
            note(f"held {target.uid}")
        elif op < 0.85:
            oldest = sorted(unheld, key=lambda c: c.start)[:rng.randint(1, 4)]
            await index.purge_oldest(sum(c.size for c in oldest))
        else:
            await index.purge_expired({"front": 4, "back": 8}, 7)


asyncio.run(main())
'''


def _ffmpeg_segment(path: Path, pattern: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", f"{pattern}=size=160x120:rate=15",
                    "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "15", str(path)],
                   check=True, timeout=60)


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> list[str]:
    """Two 1 s H.264 MP4 segments of 160x120, as a recorder's ring holds them."""
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("segments")
    out = []
    for n, pattern in enumerate(("testsrc2", "smptebars")):
        path = folder / f"segment-{n}.mp4"
        _ffmpeg_segment(path, pattern)
        out.append(str(path))
    return out


async def _open_index(db_path: Path, root: Path) -> tuple[Database, ClipIndex]:
    db = await Database.open(db_path)
    await migrate_all(db)
    return db, ClipIndex(db, root)


def _playable(path: Path) -> float:
    """Seconds of H.264 in an MP4 clip (decodes every packet's headers; raises on a damaged file)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        packets = [p for p in container.demux(stream) if p.dts is not None]
        return float((packets[-1].dts + packets[-1].duration - packets[0].dts) * stream.time_base)


async def test_index_and_files_agree_after_sigkills_during_promotions_and_purges(tmp_path, segments):
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    script, db_path, root, log_path = (tmp_path / "child.py", tmp_path / "node.db", tmp_path / "clips",
                                       tmp_path / "child.log")
    script.write_text(CHILD)
    totals = {"completed": 0, "dropped": 0, "purged": 0, "missing": 0, "stray_files": 0}
    held: set[str] = set()
    played: set[str] = set()
    for n in range(ROUNDS):
        why = f"round {n}, seed {seed}"
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(script), str(db_path), str(root), str(log_path), f"{seed}-{n}", *segments,
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            if line == b"ready\n":
                await asyncio.sleep(rng.uniform(0.05, 1.5))
        finally:
            if child.returncode is None:
                child.send_signal(signal.SIGKILL)
            await child.wait()
        assert line == b"ready\n" and child.returncode == -signal.SIGKILL, \
            f"{why}: the child failed by itself: {(await child.stderr.read()).decode()[-3000:]}"
        db, index = await _open_index(db_path, root)
        try:
            done = await index.reconcile()
            for key, count in done.items():
                totals[key] += count
            # A file vanishes only once its row says `purging`: a ready row never loses its file to a crash.
            assert done["missing"] == 0, why
            rows = await db.reader.execute_fetchall(
                "SELECT uid, state, file, thumbnail, size, sha256 FROM clips")
            assert {r[1] for r in rows} <= {"ready"}, why
            named = set()
            for uid, _, file, thumbnail, size, digest in rows:
                assert await asyncio.to_thread(sha256_file, index.path(file)) == (size, digest), f"{why}: {uid}"
                named.add(file)
                if thumbnail is not None:
                    assert index.path(thumbnail).stat().st_size > 0, f"{why}: {uid}"
                    named.add(thumbnail)
                if uid not in played:  # a clip completed by reconcile must be whole, not just hashed
                    assert 1.5 < _playable(index.path(file)) < 2.5, f"{why}: {uid}"
                    played.add(uid)
            on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
            assert on_disk == named, f"{why}: files without rows {on_disk - named}, rows without files " \
                                     f"{named - on_disk}"
            # Held clips never go: those the child logged once their hold was committed, and every clip seen held.
            held |= {entry.split()[1] for entry in log_path.read_text().splitlines() if entry.startswith("held ")}
            held |= {c.uid for c in await index.list(cameras=CAMERAS, limit=1000) if c.held}
            ready = {r[0] for r in rows}
            assert held <= ready, f"{why}: held clips lost: {held - ready}"
        finally:
            await db.close()
    # The kills did land inside promotions and purges, and reconcile repaired them.
    assert totals["completed"] + totals["dropped"] >= 1 and totals["purged"] >= 1, (seed, totals)
    assert len(held) >= 2, (seed, totals)


async def test_a_hold_on_a_clip_whose_purge_has_begun_is_refused(tmp_path, segments):
    db, index = await _open_index(tmp_path / "node.db", tmp_path / "clips")
    unlinking, go_on = asyncio.Event(), asyncio.Event()

    class Paused(ClipIndex):
        async def _unlink(self, clip, temporary=False):
            unlinking.set()
            await go_on.wait()
            await super()._unlink(clip, temporary)

    index = Paused(db, index.root)
    try:
        row = await index.begin(camera="front", owner="building", kind="motion", start=1000.0, end=1002.0)
        clip = await asyncio.get_running_loop().run_in_executor(None, record.promote, segments,
                                                                index.path(row.file), index.path(row.thumbnail))
        row = await index.finish(row.id, start=1000.0, end=1002.0, duration=clip.duration, size=clip.size,
                                 sha256=clip.sha256)
        purge = asyncio.create_task(index.purge_oldest(1))
        await asyncio.wait_for(unlinking.wait(), 10)
        with pytest.raises(ClipNotFound):
            await index.hold(row, "manager", "manager")
        go_on.set()
        assert await purge == row.size
        assert not await db.reader.execute_fetchall("SELECT id FROM holds")
        assert not os.listdir(index.root / "front")
    finally:
        go_on.set()
        await db.close()
