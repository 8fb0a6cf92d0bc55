"""Recording: one thread per camera writes its video into short MP4 segments, which are promoted into event clips.

H.264 is stream-copied, never re-encoded (DESIGN.md section 7); a camera without H.264 (MJPEG, raw USB) is encoded
once with libx264. Segments start at a keyframe and last about SEGMENT_SECONDS; each is written under a temporary
name and renamed, so a file with a final name is always complete (segments.py). The newest segments form a ring
buffer (the pre-capture of an event); `promote()` concatenates segments into one browser-playable clip, again by
stream copy (promote.py). This module is the recorder: its thread, reconnection with backoff, motion frames and
live-view pictures. All PyAV work runs in the recorder's thread or in the caller's executor, never on the event
loop; callbacks are called from the recorder's thread (use `loop.call_soon_threadsafe` to reach asyncio).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from node.camera import sources
from node.camera.feed import CameraError, Feed, Source
from node.camera.motion import shrink
from node.camera.privacy import black_out
from node.camera.promote import THUMBNAIL_WIDTH, Clip, promote, thumbnail_jpeg
from node.camera.segments import PART, LiveEncoder, MakeStream, Segment, SegmentWriter, StreamClock
from node.camera.settings import Polygon

__all__ = [
    "PART", "SEGMENT_SECONDS", "THUMBNAIL_WIDTH", "CameraState", "Clip", "Recorder", "Segment", "promote",
    "thumbnail_jpeg",
]

log = logging.getLogger("nnode.camera")

SEGMENT_SECONDS = 3.0
"""Target length of a segment; it is cut at the first keyframe after this."""
RECONNECT_MIN = 1.0
"""First wait before reconnecting a lost camera (seconds); doubles on each failure."""
RECONNECT_MAX = 30.0
"""Longest wait between reconnection attempts (seconds)."""
ERROR_AFTER = 3
"""Failed attempts in a row after which a reconnecting camera is reported as in error."""
READ_PAUSE = 0.2
"""Seconds to let a network camera's packets queue up (in the socket buffer) once we have caught up with it.

Reading in bursts means one wake-up per burst instead of one per network packet, with the code hot: about a quarter
less CPU (bench/camera.py). Over RTP/UDP the kernel buffer bounds it: with Linux defaults (rmem_max 208 KiB) about
10 Mbit/s fit in 0.2 s; over TCP nothing can be lost. 0 turns it off."""
CAUGHT_UP = 0.005
"""A read that blocked longer than this (seconds) means the queue was empty."""
RING_INDEX_MAX = 1000
PREVIEW_QUALITY = 80
"""JPEG quality of live-view pictures."""

OnSegment = Callable[[Path, str, float, float, int], None]
OnFrame = Callable[[np.ndarray, float], None]
"""Called with a gray picture and its UTC time: at most `frame_width` wide, or with `frame_width=0` a view of the
decoded picture's Y plane, valid only during the call (the decoder reuses it)."""


@dataclass
class CameraState:
    """What a camera is doing, for the API and metrics (a snapshot: `Recorder.state` returns a copy)."""

    camera: str
    source: str
    status: str = "starting"
    """starting, streaming, reconnecting, error (still retrying, see reason) or stopped."""
    reason: str | None = None
    codec: str | None = None
    encoding: bool = False
    """True when the camera's video is encoded here (it has no H.264)."""
    width: int = 0
    height: int = 0
    last_frame_utc: float | None = None
    segments: int = 0
    bytes: int = 0
    reconnects: int = 0
    hardware: bool = False
    """True when the camera's pictures are decoded by a hardware decoder."""
    detect: str | None = None
    """The detect stream's state ("streaming 640x360", "reconnecting: why"), None without one."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


class Recorder:
    """Records one camera in its own thread: segments, reconnection with backoff, state, motion frames."""

    def __init__(self, camera: str, source: Source, folder: str | Path, *, on_segment: OnSegment | None = None,
                 on_frame: OnFrame | None = None, frame_fps: float = 5.0, frame_width: int = 640,
                 segment_seconds: float | None = None, ring_seconds: float | None = 120.0,
                 on_evict: Callable[[Segment], None] | None = None, privacy_masks: tuple[Polygon, ...] = (),
                 preview_fps: float = 5.0, preview_width: int = 1280,
                 on_preview: Callable[[int], None] | None = None, detect_source: Source | None = None,
                 hardware_decoder: bool = True) -> None:
        self.camera = camera
        self.source = source
        self.folder = Path(folder)
        self.on_segment = on_segment
        self.on_frame = on_frame
        self.frame_interval = 1.0 / frame_fps if frame_fps > 0 else 0.0
        self.frame_width = frame_width
        self.segment_seconds = segment_seconds or SEGMENT_SECONDS
        self.ring_seconds = ring_seconds
        self.on_evict = on_evict
        self.privacy_masks = tuple(privacy_masks)
        self.preview_interval = 1.0 / preview_fps
        self.preview_width = preview_width
        self.on_preview = on_preview
        self._preview_until = 0.0  # time.monotonic() until which live-view pictures are made
        self._next_preview = 0.0
        self._preview: tuple[int, bytes, float] | None = None
        self._preview_seq = 0
        # Without a ring the app owns the files; the index still remembers only the newest RING_INDEX_MAX.
        self._ring: collections.deque[Segment] = collections.deque(maxlen=None if ring_seconds else RING_INDEX_MAX)
        self._keep_since: float | None = None
        self._state = CameraState(camera, source.describe(), detect=None if detect_source is None else "starting")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._feed: Feed | None = None
        self._thread: threading.Thread | None = None
        self._next_frame = 0.0
        self.detect_source = detect_source
        """A second, low-resolution stream of the camera that motion frames come from (never recorded)."""
        self.hardware_decoder = hardware_decoder
        self._detect_feed: Feed | None = None
        self._detect_thread: threading.Thread | None = None

    # -- public API, called from any thread

    def start(self) -> Recorder:
        """Start recording in a thread named nnode-camera-<camera>."""
        if self._thread is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob("." + "*" + PART):  # left by a crash mid-segment
                stale.unlink(missing_ok=True)
            self._thread = threading.Thread(target=self._run, name=f"nnode-camera-{self.camera}", daemon=True)
            self._thread.start()
            if self.detect_source is not None and self.on_frame is not None:
                self._detect_thread = threading.Thread(target=self._run_detect, name=f"nnode-detect-{self.camera}",
                                                       daemon=True)
                self._detect_thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop recording, finish the current segment and close the camera (idempotent).

        Returns as soon as the thread ends: at once while streaming or waiting to reconnect, at worst after
        sources.OPEN_TIMEOUT or READ_TIMEOUT when PyAV is blocked on a dead camera (MJPEG reads are interrupted).
        """
        self._stop.set()
        for feed in (self._feed, self._detect_feed):
            if feed is not None:
                feed.interrupt()
        for thread in (self._thread, self._detect_thread):
            if thread is not None:
                thread.join(sources.OPEN_TIMEOUT + 2 if timeout is None else timeout)
                if thread.is_alive():
                    log.warning("%s did not stop in time", thread.name, extra={"camera": self.camera})
        self._set(status="stopped")

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> CameraState:
        """A snapshot of the camera's state."""
        with self._lock:
            return dataclasses.replace(self._state)

    def segments(self, start_utc: float | None = None, end_utc: float | None = None) -> list[Segment]:
        """Segments in the ring that overlap [start_utc, end_utc], oldest first."""
        with self._lock:
            return [s for s in self._ring if (start_utc is None or s.end_utc > start_utc)
                    and (end_utc is None or s.start_utc < end_utc)]

    def want_preview(self, seconds: float = 10.0) -> None:
        """Make live-view pictures (JPEG, privacy masks blacked out) for the next `seconds`; see `preview()`."""
        self._preview_until = max(self._preview_until, time.monotonic() + seconds)

    def preview(self) -> tuple[int, bytes, float] | None:
        """The newest live-view picture as (sequence number, JPEG, UTC time), or None before the first."""
        return self._preview

    def keep_since(self, utc: float | None) -> None:
        """Keep segments ending after `utc` out of the ring's eviction (an event in progress); None releases."""
        with self._lock:
            self._keep_since = utc

    # -- the recorder thread

    def _set(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            streamed = False
            try:
                feed = self.source.open()
            except CameraError as exc:
                reason = str(exc)
            except Exception as exc:  # a bug must not end the camera's recording for good
                log.exception("camera open failed", extra={"camera": self.camera})
                reason = f"internal error: {exc!r}"
            else:
                self._feed = feed
                try:
                    if not self._stop.is_set():  # stop() may have come while the camera was opening
                        streamed = self._record(feed)
                    reason = "stream ended"
                except CameraError as exc:
                    reason = str(exc)
                except Exception as exc:  # a bug must not end the camera's recording for good
                    log.exception("camera recorder failed", extra={"camera": self.camera})
                    reason = f"internal error: {exc!r}"
                finally:
                    self._feed = None
                    feed.close()
            if self._stop.is_set():
                break
            failures = 1 if streamed else failures + 1
            status = "error" if failures >= ERROR_AFTER else "reconnecting"
            with self._lock:
                self._state.status, self._state.reason = status, reason
                self._state.reconnects += 1
            log.warning("camera %s: %s (%s)", self.camera, reason, status,
                        extra={"camera": self.camera, "reason": reason, "status": status})
            self._stop.wait(min(RECONNECT_MAX, RECONNECT_MIN * 2 ** (failures - 1)))

    def _record(self, feed: Feed) -> bool:
        """Record one connection until it ends; True if any picture arrived."""
        template = feed.template
        encoder: LiveEncoder | None = None
        if template is not None:
            writer = self._writer(lambda out: out.add_stream_from_template(template), feed.time_base)
        else:
            encoder = LiveEncoder(feed.width, feed.height, self.segment_seconds)
            writer = self._writer(encoder.add_stream, encoder.time_base)
        motion = self.on_frame is not None and self.detect_source is None
        # The decoder serves the live view too; 0 (every picture of the stream) turns skipping off.
        wanted = (1 / self.frame_interval if self.frame_interval else 0) if motion else 1 / self.preview_interval
        if encoder is None:  # pictures that are encoded here must all be decoded
            feed.economise(wanted and max(wanted, 1 / self.preview_interval), hardware=self.hardware_decoder)
        self._set(codec=feed.codec, encoding=encoder is not None, width=feed.width, height=feed.height,
                  hardware=feed.hardware)
        input_clock = StreamClock(feed.time_base, READ_PAUSE)
        pause = READ_PAUSE if feed.bursty else 0.0
        # This loop runs for every packet: locals instead of attribute lookups, and no lock for a float store.
        state, write, wall, mono = self._state, writer.write, time.time, time.monotonic
        wait, stopped = self._stop.wait, self._stop.is_set
        streamed = False
        idle = mono()
        try:
            for packet in feed.packets():
                arrived = mono()
                now = wall()
                state.last_frame_utc = now
                if not streamed:
                    streamed = True
                    self._set(status="streaming", reason=None)
                if encoder is None:
                    if motion or arrived < self._preview_until:
                        self._frames(feed.decode(packet), packet, input_clock, now, motion)
                        if state.hardware and not feed.hardware:  # it gave up: the feed decodes in software
                            self._set(hardware=False)
                    write(packet, now)
                else:
                    self._encode(feed, packet, encoder, writer, input_clock, now)
                # Caught up with the camera (the read blocked): let packets queue, then take them in a burst.
                if pause and arrived - idle > CAUGHT_UP:
                    if wait(pause):
                        break
                elif stopped():
                    break
                idle = mono()
        except CameraError:
            if not self._stop.is_set():
                raise
        finally:
            writer.close()
        return streamed

    def _writer(self, make_stream: MakeStream, time_base: Fraction) -> SegmentWriter:
        return SegmentWriter(self.camera, self.folder, self.segment_seconds, make_stream, time_base,
                             self._segment_done, late=READ_PAUSE)

    def _encode(self, feed: Feed, packet: av.Packet[Any], encoder: LiveEncoder, writer: SegmentWriter,
                clock: StreamClock, now: float) -> None:
        """Decode a packet of a camera without H.264, mask its pictures and encode them into the segment."""
        frames = feed.decode(packet)
        self._frames(frames, packet, clock, now, self.on_frame is not None and self.detect_source is None)
        ms = int(packet.pts * packet.time_base * 1000) if packet.pts is not None else int(now * 1000)
        for frame in frames:
            if self.privacy_masks:  # the only copy of this video is the one made here: mask it
                picture = black_out(frame.to_ndarray(format="bgr24"), self.privacy_masks)
                frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
            for out in encoder.encode(frame, ms):
                writer.write(out, now)

    def _frames(self, frames: Iterable[av.VideoFrame], packet: av.Packet[Any], clock: StreamClock,
                now: float, motion: bool) -> None:
        """Make live-view pictures while someone watches, and motion frames (`_motion_frame`) if `motion`."""
        previewing = time.monotonic() < self._preview_until
        if not motion and not previewing:
            return
        for frame in frames:
            ts = frame.pts if frame.pts is not None else packet.pts
            utc = now if ts is None else clock.utc(ts, now)
            if previewing and not utc < self._next_preview < utc + 2:
                self._next_preview = utc + self.preview_interval
                self._make_preview(frame, utc)
            if motion:
                self._motion_frame(frame, utc)

    def _motion_frame(self, frame: av.VideoFrame, utc: float) -> None:
        """Hand a small grayscale picture and its UTC time to on_frame, at most frame_fps per second of video."""
        if self.on_frame is None:
            return
        if self._next_frame - utc > 2 * self.frame_interval:  # the clock was re-anchored backwards
            self._next_frame = utc
        if utc + 0.001 < self._next_frame:
            return
        self._next_frame = max(self._next_frame + self.frame_interval, utc)
        try:
            gray = luma(frame)
            self.on_frame(shrink(gray, self.frame_width) if self.frame_width else gray, utc)
        except Exception:
            log.exception("on_frame callback failed", extra={"camera": self.camera})

    def _make_preview(self, frame: av.VideoFrame, utc: float) -> None:
        width = min(self.preview_width, frame.width) & ~1
        height = max(2, round(frame.height * width / frame.width)) & ~1
        picture = frame.reformat(width=width, height=height, format="bgr24").to_ndarray()
        black_out(picture, self.privacy_masks, (frame.width, frame.height))
        ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_QUALITY])
        if not ok:
            return
        self._preview_seq += 1
        self._preview = (self._preview_seq, jpeg.tobytes(), utc)
        if self.on_preview is not None:
            try:
                self.on_preview(self._preview_seq)
            except Exception:
                log.exception("on_preview callback failed", extra={"camera": self.camera})

    def _run_detect(self) -> None:
        """The detect stream's thread: decode it for motion frames, reconnecting with backoff like `_run`."""
        assert self.detect_source is not None  # started only with one
        failures = 0
        while not self._stop.is_set():
            try:
                feed = self._detect_feed = self.detect_source.open()
            except CameraError as exc:
                reason = str(exc)
            else:
                try:
                    failures = 0 if self._detect(feed) else failures
                    reason = "stream ended"
                except CameraError as exc:
                    reason = str(exc)
                except Exception as exc:  # a bug must not end motion detection for good
                    log.exception("detect stream failed", extra={"camera": self.camera})
                    reason = f"internal error: {exc!r}"
                finally:
                    self._detect_feed = None
                    feed.close()
            if self._stop.is_set():
                break
            failures += 1
            self._set(detect=f"reconnecting: {reason}")
            log.warning("camera %s detect stream: %s", self.camera, reason, extra={"camera": self.camera})
            self._stop.wait(min(RECONNECT_MAX, RECONNECT_MIN * 2 ** (failures - 1)))

    def _detect(self, feed: Feed) -> bool:
        """Motion frames from one connection of the detect stream until it ends; True if any picture arrived."""
        feed.economise(1 / self.frame_interval if self.frame_interval else 0, hardware=self.hardware_decoder,
                       deblock=False)  # only motion sees these pictures
        clock = StreamClock(feed.time_base, READ_PAUSE)
        pause = READ_PAUSE if feed.bursty else 0.0
        streamed = False
        idle = time.monotonic()
        try:
            for packet in feed.packets():
                arrived, now = time.monotonic(), time.time()
                for frame in feed.decode(packet):
                    if not streamed:
                        streamed = True
                        self._set(detect=f"streaming {frame.width}x{frame.height}")
                    ts = frame.pts if frame.pts is not None else packet.pts
                    self._motion_frame(frame, now if ts is None else clock.utc(ts, now))
                if pause and arrived - idle > CAUGHT_UP:  # read in bursts, as _record does
                    if self._stop.wait(pause):
                        break
                elif self._stop.is_set():
                    break
                idle = time.monotonic()
        except CameraError:
            if not self._stop.is_set():
                raise
        return streamed

    def _segment_done(self, segment: Segment) -> None:
        evicted = []
        with self._lock:
            self._state.segments += 1
            self._state.bytes += segment.size
            self._ring.append(segment)
            if self.ring_seconds is not None:
                horizon = segment.end_utc - self.ring_seconds
                if self._keep_since is not None:
                    horizon = min(horizon, self._keep_since)
                while self._ring and self._ring[0].end_utc < horizon:
                    evicted.append(self._ring.popleft())
        if self.on_segment is not None:
            try:
                self.on_segment(segment.path, segment.camera, segment.start_utc, segment.end_utc, segment.size)
            except Exception:
                log.exception("on_segment callback failed", extra={"camera": self.camera})
        for old in evicted:
            old.path.unlink(missing_ok=True)
            if self.on_evict is not None:
                try:
                    self.on_evict(old)
                except Exception:
                    log.exception("on_evict callback failed", extra={"camera": self.camera})


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The picture's brightness as a gray array: a view of the decoder's Y plane when it has one (no conversion)."""
    if frame.format.name.startswith(("yuv", "yuvj", "nv", "gray")) and frame.planes:
        plane = frame.planes[0]
        rows: np.ndarray = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        return rows[:frame.height, :frame.width]
    gray: np.ndarray = frame.to_ndarray(format="gray")
    return gray
