"""A node whose clips and camera ring live on a small disk (a size-limited tmpfs): the free-space guard purges the
oldest unheld clips before the disk fills and never a held one; a disk that something else fills leaves the node
serving, and its camera records again once space returns."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import time
from pathlib import Path

from node.camera import manager, record
from node.camera.record import Recorder
from node.camera.sources import source_for
from tests.conftest import wait_until
from tests.firmware.tools import need, require
from tests.people import browser, call, claim

# Someone crosses a 720p picture for 1.5 s every 5 s: about 0.25 MB of video a second, a clip of 1.5 MB every 5 s.
SIM = {"id": "yard", "name": "Yard", "url": "sim:?width=1280&height=720&fps=15&period=5&walk=1.5",
       "pre_capture": 1, "post_capture": 1}
DISK_MB = 16
RESERVE_MB = 5


def _unmount(point: Path) -> None:
    if subprocess.run(["umount", str(point)], check=False, capture_output=True, timeout=30).returncode:
        # Busy: a file under it is still open (see the leak test below). Detach it anyway; the kernel frees it
        # when the last descriptor closes, and no mount outlives the test.
        subprocess.run(["umount", "-l", str(point)], check=True, timeout=30)


@contextlib.contextmanager
def tmpfs(folder: Path, size_mb: int):
    """A tmpfs of `size_mb` MiB mounted on `folder` (created) for the block; needs root."""
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    need("mount", "umount")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)], check=True, timeout=30)
    try:
        yield folder
    finally:
        _unmount(folder)


@contextlib.contextmanager
def small_disk(data_dir: Path, size_mb: int):
    """One small data disk for a node's clips and its recorders' rings, as on an appliance: a tmpfs whose folders
    are bind-mounted on data_dir/clips and data_dir/cameras (the database stays outside). Yields the tmpfs."""
    with tmpfs(data_dir.parent / f"{data_dir.name}-disk", size_mb) as disk:
        bound: list[Path] = []
        try:
            for name in ("clips", "cameras"):
                (disk / name).mkdir()
                (data_dir / name).mkdir(exist_ok=True)
                subprocess.run(["mount", "--bind", str(disk / name), str(data_dir / name)], check=True, timeout=30)
                bound.append(data_dir / name)
            yield disk
        finally:
            for point in bound:
                _unmount(point)


def fill(path: Path) -> None:
    """Grow `path` until its file system has no byte left (blocking)."""
    with open(path, "ab", buffering=0) as handle:
        block = b"\0" * (1 << 20)
        try:
            while True:
                handle.write(block)  # unbuffered: writes what fits, then fails with ENOSPC
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


def open_files_under(folder: Path) -> list[str]:
    """Files under `folder` this process has open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(folder) + "/"):
                found.append(target)
    return found


async def test_free_space_guard_on_a_small_disk_and_a_full_disk(make_node, monkeypatch):
    monkeypatch.setattr(manager, "RING_MARGIN", 8.0)  # a ring of about 10 s: the small disk is for clips
    monkeypatch.setattr(record, "RECONNECT_MAX", 1.0)  # retry a camera whose disk was full every second
    node = await make_node("a", start=False, cameras__devices=[SIM], cameras__min_free_mb=RESERVE_MB,
                           cameras__min_free_percent=0, cameras__check_interval=1, sos__hold_before=0)
    with small_disk(node.config.node.data_dir, DISK_MB) as disk:
        try:
            await node.start()
            async with browser() as session:
                await claim(node, session)
                await _fill_guard_and_recover(node, session, disk)
        finally:
            await node.stop()


async def _fill_guard_and_recover(node, session, disk: Path) -> None:
    reserve = RESERVE_MB << 20
    seen: dict[str, dict] = {}
    listed: dict[str, dict] = {}
    least_free = [shutil.disk_usage(disk).free]

    async def look() -> dict:
        """The manager's view of clips and cameras; remembers every clip ever listed and the least free space."""
        least_free[0] = min(least_free[0], shutil.disk_usage(disk).free)
        status, body = await call(session, "GET", node.url + "/api/clips", params={"limit": "500"})
        assert status == 200, body
        listed.clear()
        listed.update({c["uid"]: c for c in body["clips"]})
        seen.update(listed)
        status, body = await call(session, "GET", node.url + "/api/cameras")
        assert status == 200, body
        return body

    async def some_clip() -> bool:
        await look()
        return bool(listed)
    await wait_until(some_clip, timeout=40, interval=0.5)
    held = min(listed.values(), key=lambda c: c["start"])
    status, body = await call(session, "POST", node.url + f"/api/clips/{held['uid']}/hold", json={"note": "case 7"})
    assert status == 200 and body["holds"][0]["reason"] == "manager", body

    # Clips go on until more footage was saved than the whole disk holds: the guard purges the oldest unheld ones.
    async def outgrown() -> bool:
        await look()
        return sum(c["size"] for c in seen.values()) > DISK_MB << 20 and len(seen) - len(listed) >= 3
    await wait_until(outgrown, timeout=70, interval=0.5)
    body = await look()
    purged = [c for uid, c in seen.items() if uid not in listed]
    kept = [c for c in listed.values() if not c["held"]]
    assert listed[held["uid"]]["held"] and kept
    assert max(c["start"] for c in purged) < min(c["start"] for c in kept), "not the oldest footage purged first"
    assert body["storage"]["purged_bytes"] > 0 and not body["storage"]["disk_full"]
    yard = body["cameras"][0]["state"]
    assert yard["reconnects"] == 0 and yard["note"] is None, yard  # no write ever found the disk full
    # The reserve is kept, give or take the second of ring recorded between two of the guard's checks.
    assert least_free[0] > reserve - (2 << 20), (least_free[0], reserve)

    # Something else fills the disk and keeps it full: the guard purges all it may, the camera cannot write its
    # ring, and the node serves on.
    filler = disk / "filler"
    stop = asyncio.Event()

    async def keep_full() -> None:
        while not stop.is_set():
            await asyncio.to_thread(fill, filler)
            await asyncio.sleep(0.1)
    filling = asyncio.create_task(keep_full())
    try:
        async def full() -> bool:
            body = await look()
            return body["storage"]["disk_full"] and list(listed) == [held["uid"]]
        await wait_until(full, timeout=30, interval=0.5)

        async def camera_says_why() -> bool:
            reason = (await look())["cameras"][0]["state"]["reason"] or ""
            return os.strerror(errno.ENOSPC) in reason
        await wait_until(camera_says_why, timeout=20, interval=0.2)
        async with session.get(node.url + "/healthz") as resp:
            assert resp.status == 200
        async with session.get(node.url + f"/api/clips/{held['uid']}/video", headers={"Range": "bytes=0-7"}) as resp:
            assert resp.status == 206 and (await resp.read())[4:8] == b"ftyp"
    finally:
        stop.set()
        await filling
    before = set(seen)
    filler.unlink()

    # Space is back: the camera records again and new clips are saved; the held clip is still there.
    async def recovered() -> bool:
        body = await look()
        state = body["cameras"][0]["state"]
        return not body["storage"]["disk_full"] and state["status"] == "streaming" and bool(set(listed) - before)
    await wait_until(recovered, timeout=40, interval=0.5)
    assert held["uid"] in listed
    for clip in listed.values():
        path = node.config.node.data_dir / "clips" / "yard" / f"{clip['uid']}.mp4"
        assert path.stat().st_size == clip["size"]


def test_a_segment_that_meets_a_full_disk_leaves_no_file_open(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "RECONNECT_MIN", 0.2)
    with tmpfs(tmp_path / "disk", 1) as disk:
        fill(disk / "filler")
        recorder = Recorder("yard", source_for("sim:?width=320&height=240&fps=15"), disk / "ring", ring_seconds=10)
        with recorder:
            deadline = time.monotonic() + 20
            while recorder.state.reconnects < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert recorder.state.reconnects >= 2 and os.strerror(errno.ENOSPC) in recorder.state.reason
        assert open_files_under(disk) == []
