"""The building's cameras at run time: a recorder and a motion detector per camera, event clips, retention, the
free-space guard and who may see what.

Threads and the loop: each recorder runs in its own thread and feeds its motion detector there (a few
milliseconds per frame at 5 fps); only motion starts and ends cross into the event loop
(`call_soon_threadsafe`). Promotion, hashing and unlinking run in the default executor. The loop only decides.

An event clip covers [motion start - pre_capture, motion end + post_capture], cut at max_clip; motion that
starts again during the post-capture extends the same clip. The recorder's ring keeps the segments an event in
progress needs (`Recorder.keep_since`), and at least `pre_capture` and the SOS hold window otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Coroutine

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.camera.clips import BUILDING, ClipIndex, ClipRow, free_bytes_needed
from node.camera.feed import CameraError, Feed, Source
from node.camera.settings import CameraConfig
from node.camera.sources import source_for
from node.errors import NotFound, Unavailable

if TYPE_CHECKING:
    import numpy as np

    from node.camera.motion import MotionDetector, MotionResult
    from node.camera.record import Recorder

log = logging.getLogger("nnode.camera")

SEGMENT_SECONDS = 3.0
"""node.camera.record's segment length (a test checks they agree): the recorder, motion detection and promotion
are imported when a camera starts, not with this module, as they load OpenCV and NumPy (a third of the node's
start-up, bench/startup.py)."""
SEGMENT_WAIT = 3 * SEGMENT_SECONDS + 5
"""Seconds past an event's end to wait for the segment that covers it before promoting what there is."""
RING_MARGIN = 30.0
"""Seconds of ring kept beyond the longest pre-capture anything needs."""

Publish = Callable[[str, dict[str, Any], str], Awaitable[Any]]


class CameraNotFound(NotFound):
    """No such camera, or not one the caller may see (the two are not told apart)."""



@dataclass(eq=False)
class _Event:
    """Footage to promote: motion, or a window held for an SOS."""

    kind: str
    start: float
    end: float | None = None
    """None while motion is still under way."""
    score: float = 0.0
    task: asyncio.Task[None] | None = None
    note: str = ""


@dataclass
class Camera:
    """One configured camera at run time."""

    config: CameraConfig
    recorder: Recorder
    detector: MotionDetector | None
    motion: _Event | None = None
    windows: list[_Event] = field(default_factory=list)
    pending: set[_Event] = field(default_factory=set)
    """Events whose clip is being saved: their segments must stay in the ring until it is."""
    last_end: float = 0.0
    """End of the newest motion clip, so the next one starts after it (clips never overlap)."""
    peak: float = 0.0
    clips: int = 0
    last_clip: float | None = None
    note: str | None = None
    """Why the last clip was not saved (disk full, no footage), for the API."""
    next_picture: asyncio.Future[None] | None = None
    """Resolved when the next live-view picture is made (then replaced): every viewer waits on the same one."""
    viewers: int = 0

    @property
    def id(self) -> str:
        return self.config.id


class Cameras:
    """Every camera of the building, from the config's [cameras] section."""

    def __init__(self, cameras: tuple[CameraConfig, ...], index: ClipIndex, data_dir: Path, *,
                 min_free_mb: int = 512, min_free_percent: int = 5, hold_before: float = 0.0,
                 publish: Publish | None = None) -> None:
        self.index = index
        self.data_dir = Path(data_dir)
        self.min_free_mb = min_free_mb
        self.min_free_percent = min_free_percent
        self.hold_before = hold_before
        self.publish = publish
        self.configs = {c.id: c for c in cameras}
        self.cameras: dict[str, Camera] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.disk_full = False
        self.purged_bytes = 0
        self.uploading = asyncio.Semaphore(1)
        self.receiving = asyncio.Semaphore(2)
        """Uploads received at once (each may reserve `upload_max_mb` twice)."""
        self.reserved = 0
        """Bytes promised to promotions and uploads under way (the guard counts them as used)."""
        self.closing = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    # -- life cycle

    def start(self) -> None:
        """Start every camera's recorder thread (returns at once; cameras connect in the background)."""
        loop = self.loop = asyncio.get_running_loop()
        for config in self.configs.values():
            ring = self.data_dir / "cameras" / config.id / "ring"
            if ring.exists():  # segments of a previous run: their time is gone, and nothing indexes them
                shutil.rmtree(ring, ignore_errors=True)
            try:
                source: Source = source_for(config.url, config.transport)
            except CameraError as exc:
                log.error("camera not started: %s", exc, extra={"camera": config.id})
                source = _Broken(config.url, str(exc))
            detect: Source | None = None
            if config.detect_url and config.detect_motion:
                try:
                    detect = source_for(config.detect_url, config.transport)
                except CameraError as exc:
                    log.error("camera detect stream not used: %s", exc, extra={"camera": config.id})
                    detect = _Broken(config.detect_url, str(exc))
            from node.camera.motion import MotionDetector
            detector = MotionDetector(config.motion) if config.detect_motion else None
            ring_seconds = max(config.pre_capture, self.hold_before) + RING_MARGIN
            camera = self._camera(loop, config, source, detector, ring, ring_seconds, detect)
            self.cameras[config.id] = camera
            camera.recorder.start()

    def _camera(self, loop: asyncio.AbstractEventLoop, config: CameraConfig, source: Source,
                detector: MotionDetector | None, ring: Path, ring_seconds: float, detect: Source | None) -> Camera:
        """A camera whose recorder (not started yet) calls back into this manager."""
        # The callbacks run in the recorder's thread, only once it starts: `camera` is bound by then.
        # frame_width=0: the detector gets the decoded picture's Y plane as is, and shrinks it once, itself.
        def on_frame(gray: np.ndarray, utc: float) -> None:
            self._frame(camera, gray, utc)

        def on_preview(seq: int) -> None:
            loop.call_soon_threadsafe(self._picture_made, camera)

        from node.camera.record import Recorder
        recorder = Recorder(config.id, source, ring, ring_seconds=ring_seconds, frame_fps=config.motion.fps or 5.0,
                            on_frame=on_frame if detector else None, privacy_masks=config.privacy_masks,
                            on_preview=on_preview, frame_width=0, detect_source=detect,
                            hardware_decoder=config.hardware_decoder)
        camera = Camera(config, recorder, detector)
        return camera

    def shutdown(self) -> None:
        """End live views (the app is shutting down)."""
        self.closing.set()
        for camera in self.cameras.values():
            self._picture_made(camera)

    def _task(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        """Stop the recorders (each finishes its segment), save what there is of the SOS windows under way, then
        stop every task. Motion clips not yet saved are dropped."""
        self.shutdown()
        windows = []
        for camera in self.cameras.values():
            for event in list(camera.windows):
                if event.task is not None:
                    event.task.cancel()
                event.end = time.time() if event.end is None else min(event.end, time.time())
                windows.append((camera, event))
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, c.recorder.stop) for c in self.cameras.values()))
        for camera, event in windows:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.promote(camera, event), 60)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def rescue(self) -> int:
        """Before recording starts: save ring segments that unreleased SOS holds cover (the node stopped or
        crashed during an SOS window). Returns the clips saved."""
        saved = 0
        rows = await self.index.db.reader.execute_fetchall(
            "SELECT start, end, ref FROM holds WHERE released IS NULL AND clip_id IS NULL AND end > ?",
            (time.time() - 86400,))
        if not rows:
            return 0
        for config in self.configs.values():
            ring = self.data_dir / "cameras" / config.id / "ring"
            files = sorted(p for p in ring.glob("*.mp4") if not p.name.startswith(".")) if ring.exists() else []
            starts: list[float | None] = []
            for path in files:
                try:
                    stamp = path.stem.split("-")[0]
                    starts.append(datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(
                        tzinfo=timezone.utc).timestamp())
                except ValueError:
                    starts.append(None)
            spans = [(p, t, starts[i + 1] if i + 1 < len(starts) and starts[i + 1] else t + 2 * SEGMENT_SECONDS)
                     for i, (p, t) in enumerate(zip(files, starts)) if t is not None]
            for start, end, ref in rows:
                covered = [p for p, a, b in spans if b > start and a < end]
                if not covered:
                    continue
                row = await self.index.begin(camera=config.id, owner=BUILDING, kind="sos", start=start, end=end,
                                             note=f"SOS {ref} (saved after a restart)")
                try:
                    from node.camera.record import promote
                    clip = await asyncio.get_running_loop().run_in_executor(
                        None, promote, covered, *self.index.reserved_paths(row), config.privacy_masks)
                except Exception as exc:
                    await self.index.abandon(row.id)
                    log.error("SOS footage could not be saved after a restart: %s", exc, extra={"camera": config.id})
                    continue
                first = next(a for p, a, b in spans if p == covered[0])
                await self.index.finish(row.id, start=first, end=first + clip.duration, duration=clip.duration,
                                        size=clip.size, sha256=clip.sha256)
                saved += 1
        return saved

    def _picture_made(self, camera: Camera) -> None:
        waiting, camera.next_picture = camera.next_picture, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def picture(self, camera: Camera, newer_than: int = 0, timeout: float = 5.0) -> tuple[int, bytes, float]:
        """The newest live-view picture with a sequence number above `newer_than`, waiting up to `timeout` for
        one (Unavailable if none comes: the camera is down)."""
        camera.recorder.want_preview(10.0)
        deadline = time.monotonic() + timeout
        while True:
            picture = camera.recorder.preview()
            if picture is not None and picture[0] > newer_than:
                return picture
            left = deadline - time.monotonic()
            if left <= 0:
                state = camera.recorder.state
                raise Unavailable(f"camera {camera.id} has no picture ({state.status}"
                                  f"{': ' + state.reason if state.reason else ''})")
            if camera.next_picture is None:
                camera.next_picture = asyncio.get_running_loop().create_future()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(camera.next_picture), left)

    def camera(self, camera_id: str) -> Camera:
        try:
            return self.cameras[camera_id]
        except KeyError:
            raise CameraNotFound(f"camera {camera_id!r} not found") from None

    # -- motion (recorder thread, then the loop)

    def _frame(self, camera: Camera, gray: np.ndarray, utc: float) -> None:
        """Called in the recorder's thread for each small grayscale frame."""
        detector, loop = camera.detector, self.loop
        if detector is None or loop is None:  # the recorder is given this callback only with a detector, once started
            return
        result = detector.feed(gray, utc)
        if result is None:
            return
        if result.motion:
            camera.peak = max(camera.peak, result.score)
        if result.started or result.ended:
            peak = camera.peak
            if result.ended:
                camera.peak = 0.0
            loop.call_soon_threadsafe(self._motion, camera, result, peak)

    def _motion(self, camera: Camera, result: MotionResult, peak: float) -> None:
        config = camera.config
        event = camera.motion
        if result.started:
            if event is not None and event.end is not None and result.timestamp <= event.end:
                event.end = None  # motion again within the post-capture: the same clip goes on
                if event.task is not None:
                    event.task.cancel()
                    event.task = None
            elif event is None or event.end is not None:
                start = max(result.timestamp - config.pre_capture, camera.last_end)  # never overlap the last clip
                if event is not None and event.end is not None:  # the previous clip is still being finished:
                    start = max(start, event.end)                    # do not overlap it
                event = camera.motion = _Event("motion", start)
            self._keep(camera)
            self._schedule_cut(camera, event)
        elif result.ended and event is not None:
            event.end = result.timestamp + config.post_capture
            event.score = max(event.score, peak)
            self._finish_later(camera, event, event.end)

    def _schedule_cut(self, camera: Camera, event: _Event) -> None:
        """Cut motion that goes on past max_clip into several clips."""
        async def cut() -> None:
            await asyncio.sleep(max(0.0, event.start + camera.config.max_clip - time.time()))
            if camera.motion is event and event.end is None:
                cut_at = event.start + camera.config.max_clip
                event.end = cut_at
                camera.last_end = cut_at
                camera.pending.add(event)
                follow = camera.motion = _Event("motion", cut_at, score=event.score)
                self._schedule_cut(camera, follow)
                await self._promote_when_ready(camera, event)
        if event.task is None or event.task.done():
            event.task = self._task(cut(), f"nnode-camera-cut-{camera.id}")

    def _finish_later(self, camera: Camera, event: _Event, end: float) -> None:
        """Promote `event`, which ends at `end`, once that has passed (motion again before then cancels it)."""
        if event.task is not None:
            event.task.cancel()

        async def finish() -> None:
            await asyncio.sleep(max(0.0, end - time.time()))
            camera.pending.add(event)
            if camera.motion is event:
                camera.motion = None
            camera.last_end = max(camera.last_end, end)
            await self._promote_when_ready(camera, event)
        event.task = self._task(finish(), f"nnode-camera-clip-{camera.id}")

    def hold_window(self, start: float, end: float, kind: str = "sos", note: str = "") -> None:
        """Promote every camera's footage of [start, end] into a clip once `end` has passed (an SOS)."""
        for camera in self.cameras.values():
            event = _Event(kind, start, end, note=note)
            camera.windows.append(event)
            self._keep(camera)

            async def finish(camera: Camera = camera, event: _Event = event) -> None:
                await asyncio.sleep(max(0.0, end - time.time()))
                await self._promote_when_ready(camera, event)
            event.task = self._task(finish(), f"nnode-camera-window-{camera.id}")

    def _keep(self, camera: Camera) -> None:
        starts = [e.start for e in [camera.motion, *camera.windows, *camera.pending] if e is not None]
        camera.recorder.keep_since(min(starts) if starts else None)

    async def _promote_when_ready(self, camera: Camera, event: _Event) -> ClipRow | None:
        """Wait for the segment that covers the event's end, then promote; never raises."""
        try:
            end = event.end
            if end is None:
                raise ValueError(f"a {event.kind} event still under way cannot be promoted")
            deadline = time.monotonic() + SEGMENT_WAIT
            while time.monotonic() < deadline:
                segments = camera.recorder.segments(event.start, end)
                if segments and segments[-1].end_utc >= end - 0.5:
                    break
                if camera.recorder.state.status != "streaming" and segments:
                    break  # the camera dropped: promote what there is
                await asyncio.sleep(0.5)
            return await self.promote(camera, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("clip promotion failed", extra={"camera": camera.id})
            return None
        finally:
            if event in camera.windows:
                camera.windows.remove(event)
            camera.pending.discard(event)
            self._keep(camera)

    async def promote(self, camera: Camera, event: _Event) -> ClipRow | None:
        """Turn the ring's segments of `event` into an indexed clip (None if there is no footage or no room)."""
        segments = camera.recorder.segments(event.start, event.end)
        if not segments:
            camera.note = f"no footage for {event.kind} at {time.strftime('%H:%M:%S', time.gmtime(event.start))}Z"
            log.warning("no footage to promote", extra={"camera": camera.id, "kind": event.kind})
            return None
        need = sum(s.size for s in segments) + (1 << 20)
        if not await self.ensure_space(need):
            camera.note = "disk full: a clip could not be saved (everything left is held)"
            log.error("disk full: clip not saved", extra={"camera": camera.id, "bytes": need})
            return None
        self.reserved += need  # promised until written, so an upload or another promotion cannot take it
        try:
            row = await self.index.begin(camera=camera.id, owner=BUILDING, kind=event.kind,
                                         start=segments[0].start_utc, end=segments[-1].end_utc,
                                         motion_score=round(event.score, 4), note=event.note)
            loop = asyncio.get_running_loop()
            from node.camera.record import promote
            try:
                clip = await loop.run_in_executor(None, promote, [s.path for s in segments],
                                                  *self.index.reserved_paths(row), camera.config.privacy_masks)
            except Exception as exc:  # not only CameraError: a row left `writing` would wait for the next start
                await self.index.abandon(row.id)
                camera.note = f"clip not saved: {exc}"
                if isinstance(exc, (CameraError, OSError)):
                    log.error("clip not saved: %s", exc, extra={"camera": camera.id})
                else:
                    log.exception("clip not saved", extra={"camera": camera.id})
                return None
            state = camera.recorder.state
            row = await self.index.finish(row.id, start=segments[0].start_utc,
                                          end=segments[0].start_utc + clip.duration, duration=clip.duration,
                                          size=clip.size, sha256=clip.sha256, width=state.width,
                                          height=state.height)
        finally:
            self.reserved -= need
        camera.clips += 1
        camera.last_clip = row.end
        camera.note = None
        log.info("clip saved", extra={"camera": camera.id, "clip": row.uid, "kind": row.kind,
                                      "seconds": round(row.duration, 1), "bytes": row.size})
        if self.publish is not None:
            await self.announce(row)
        return row

    # -- who may see what

    async def access(self, camera_id: str) -> dict[str, bool]:
        """Who besides the manager may see the camera: the manager's choice, else the config's `viewers`."""
        config = self.configs[camera_id]
        rows = list(await self.index.db.reader.execute_fetchall(
            "SELECT residents, responders FROM camera_access WHERE camera = ?", (camera_id,)))
        if rows:
            return {"residents": bool(rows[0][0]), "responders": bool(rows[0][1])}
        return {"residents": "resident" in config.viewers, "responders": "responder" in config.viewers}

    async def set_access(self, camera_id: str, *, residents: bool, responders: bool) -> dict[str, bool]:
        self.camera(camera_id)
        async with self.index.db.write() as conn:
            await conn.execute(
                "INSERT INTO camera_access (camera, residents, responders, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(camera) DO UPDATE SET residents = excluded.residents, "
                "responders = excluded.responders, updated = excluded.updated",
                (camera_id, residents, responders, int(time.time())))
        return await self.access(camera_id)

    async def visible(self, roles: set[str]) -> list[str]:
        """Ids of the cameras a caller with these roles may see."""
        if "manager" in roles:
            return list(self.configs)
        out = []
        for camera_id in self.configs:
            allowed = await self.access(camera_id)
            if (allowed["residents"] and "resident" in roles) or (allowed["responders"] and "responder" in roles):
                out.append(camera_id)
        return out

    async def announce(self, row: ClipRow) -> None:
        """Tell the open pages allowed to see the camera that a clip was saved."""
        if self.publish is None:
            return
        allowed = await self.access(row.camera)
        data = {"uid": row.uid, "camera": row.camera, "kind": row.kind, "start": row.start, "end": row.end}
        audiences = ["all"] if allowed["residents"] else ["managers"] + (["responders"] if allowed["responders"]
                                                                           else [])
        for audience in audiences:
            await self.publish("clip", data, audience)

    # -- retention and the free-space guard

    async def ensure_space(self, need: int = 0, *, for_upload: bool = False) -> bool:
        """Purge the oldest unheld footage until `need` bytes (plus what promotions and uploads under way were
        promised, plus the configured reserve) are free.

        A promotion or an upload (`need` > 0) purges only if that frees enough, and an upload only other uploads:
        a resident's upload never pushes out the building's footage. The periodic check (`need` 0) frees what it
        can, so that recording goes on.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self.index.root.mkdir(parents=True, exist_ok=True))
        free, reserve = await loop.run_in_executor(None, free_bytes_needed, self.index.root, self.min_free_mb,
                                                   self.min_free_percent)
        short = reserve + need + self.reserved - free
        if short <= 0:
            self.disk_full = False
            return True
        freed = await self.index.purge_oldest(short, uploads_only=for_upload, all_or_nothing=need > 0)
        self.purged_bytes += freed
        if freed:
            log.warning("free-space guard purged footage", extra={"bytes": freed, "short": short})
        free, reserve = await loop.run_in_executor(None, free_bytes_needed, self.index.root, self.min_free_mb,
                                                   self.min_free_percent)
        ok = free >= reserve + need + self.reserved
        if not for_upload:
            self.disk_full = not ok
        return ok

    @contextlib.asynccontextmanager
    async def reserve(self, need: int, *, for_upload: bool = False) -> AsyncIterator[None]:
        """Hold `need` bytes of free space for a write under way (Unavailable if they cannot be found)."""
        if not await self.ensure_space(need, for_upload=for_upload):
            raise Unavailable("the node's disk is too full (everything left is held)" if not for_upload else
                              "the node's disk is too full to take an upload now")
        self.reserved += need
        try:
            yield
        finally:
            self.reserved -= need

    async def check(self, upload_days: float) -> None:
        """Retention per camera, then the free-space guard (the scheduler's job)."""
        retention = {c.id: float(c.retention_days) for c in self.configs.values()}
        self.purged_bytes += await self.index.purge_expired(retention, upload_days)
        await self.ensure_space()

    # -- state

    def metric_families(self) -> list[Metric]:
        """Prometheus families: each camera's state, segments, bytes, reconnects and clips; the disk guard."""
        up = GaugeMetricFamily("nnode_camera_up", "1 while the camera streams, by camera and status (streaming, "
                               "reconnecting, error, starting, stopped).", labels=["camera", "status"])
        segments = CounterMetricFamily("nnode_camera_segments", "Segments recorded since start.", labels=["camera"])
        recorded = CounterMetricFamily("nnode_camera_recorded_bytes", "Bytes recorded since start.",
                                       labels=["camera"])
        reconnects = CounterMetricFamily("nnode_camera_reconnects", "Lost connections since start.",
                                         labels=["camera"])
        clips = CounterMetricFamily("nnode_camera_clips", "Clips saved since start.", labels=["camera"])
        for camera in self.cameras.values():
            state = camera.recorder.state
            up.add_metric([camera.id, state.status], 1 if state.status == "streaming" else 0)
            segments.add_metric([camera.id], state.segments)
            recorded.add_metric([camera.id], state.bytes)
            reconnects.add_metric([camera.id], state.reconnects)
            clips.add_metric([camera.id], camera.clips)
        return [up, segments, recorded, reconnects, clips,
                GaugeMetricFamily("nnode_disk_full", "1 when the free-space guard cannot free enough space "
                                  "(everything left is held).", value=int(self.disk_full)),
                CounterMetricFamily("nnode_footage_purged_bytes", "Bytes of footage purged since start "
                                    "(retention and the free-space guard).", value=self.purged_bytes)]

    def states(self) -> dict[str, dict[str, Any]]:
        """Each camera's recorder state and clip counts, by id."""
        out = {}
        for camera in self.cameras.values():
            state = camera.recorder.state.as_dict()
            state.pop("source", None)  # may hold a password; managers see the redacted URL in `source`
            state.update(clips=camera.clips, last_clip=camera.last_clip, note=camera.note,
                         motion=camera.motion is not None and camera.motion.end is None, viewers=camera.viewers)
            out[camera.id] = state
        return out


class _Broken(Source):
    """A camera whose URL cannot be used: reported as an error, never opened."""

    kind = "broken"

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason

    def open(self) -> Feed:
        raise CameraError(self.reason)

    def describe(self) -> str:
        return "(invalid URL)"
