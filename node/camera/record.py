"""Recording: one thread per camera writes its video into short MP4 segments, which are promoted into event clips.

H.264 is stream-copied, never re-encoded (DESIGN.md section 7); a camera without H.264 (MJPEG, raw USB) is encoded
once with libx264. Segments start at a keyframe and last about SEGMENT_SECONDS; each is written under a temporary
name and renamed, so a file with a final name is always complete. The newest segments form a ring buffer (the
pre-capture of an event); `promote()` concatenates segments into one browser-playable clip, again by stream copy.
All PyAV work runs in the recorder's thread or in the caller's executor, never on the event loop; callbacks are
called from the recorder's thread (use `loop.call_soon_threadsafe` to reach asyncio).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import cv2
import numpy as np

from node.camera import sources
from node.camera.privacy import black_out
from node.durable import fsync_file, publish, sha256_file, write_synced
from node.camera.sources import CameraError, Feed, Source

log = logging.getLogger("nnode.camera")

SEGMENT_SECONDS = 3.0
"""Target length of a segment; it is cut at the first keyframe after this."""
RECONNECT_MIN = 1.0
"""First wait before reconnecting a lost camera (seconds); doubles on each failure."""
RECONNECT_MAX = 30.0
"""Longest wait between reconnection attempts (seconds)."""
ERROR_AFTER = 3
"""Failed attempts in a row after which a reconnecting camera is reported as in error."""
MAX_GAP = 5.0
"""A timestamp jump longer than this (seconds) ends the segment: the camera restarted or lost pictures."""
MAX_DRIFT = 2.0
"""How far (seconds) a camera's clock may drift from ours before its timestamps are re-anchored to UTC."""
READ_PAUSE = 0.2
"""Seconds to let a network camera's packets queue up (in the socket buffer) once we have caught up with it.

Reading in bursts means one wake-up per burst instead of one per network packet, with the code hot: about a quarter
less CPU (bench/camera.py). Over RTP/UDP the kernel buffer bounds it: with Linux defaults (rmem_max 208 KiB) about
10 Mbit/s fit in 0.2 s; over TCP nothing can be lost. 0 turns it off."""
CAUGHT_UP = 0.005
"""A read that blocked longer than this (seconds) means the queue was empty."""
BATCH_PACKETS = 16
"""Packets handed to the muxer in one call (fewer trips through PyAV; they reach the file when it is closed anyway)."""
BATCH_BYTES = 4 << 20
ENCODER = "libx264"
ENCODER_OPTIONS = {"preset": "veryfast", "tune": "zerolatency", "crf": "23"}
RING_INDEX_MAX = 1000
PREVIEW_QUALITY = 80
"""JPEG quality of live-view pictures."""
THUMBNAIL_WIDTH = 320
PART = ".part"

OnSegment = Callable[[Path, str, float, float, int], None]
OnFrame = Callable[[np.ndarray, float], None]


@dataclass(frozen=True)
class Segment:
    """A finished segment file; times are UTC POSIX seconds."""

    path: Path
    camera: str
    start_utc: float
    end_utc: float
    size: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.end_utc - self.start_utc


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

    def as_dict(self) -> dict:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


class _Clock:
    """Maps a stream's timestamps to UTC: anchored at its first packet, re-anchored if they drift apart.

    Contiguous segments thus share their boundaries exactly; a camera whose clock runs fast or slow shows a step of
    up to MAX_DRIFT when it is re-anchored.
    """

    def __init__(self, time_base: Fraction) -> None:
        self.time_base = time_base
        self.anchor: int | None = None
        self.anchor_utc = 0.0

    def utc(self, ts: int, now: float) -> float:
        """The UTC time of timestamp `ts`, for a packet read at `now` (possibly late, see READ_PAUSE)."""
        if self.anchor is not None:
            utc = self.anchor_utc + float((ts - self.anchor) * self.time_base)
            if -MAX_DRIFT < now - utc < MAX_DRIFT + READ_PAUSE:
                return utc
        self.anchor, self.anchor_utc = ts, now
        return now


class _Segmenter:
    """Cuts one stream of H.264 packets into MP4 segment files at keyframes."""

    def __init__(self, recorder: Recorder, make_stream: Callable[[av.container.OutputContainer], av.stream.Stream],
                 time_base: Fraction) -> None:
        self.recorder = recorder
        self.make_stream = make_stream
        self.time_base = time_base
        self.cut_ticks = int(recorder.segment_seconds / time_base)
        self.gap_ticks = int(MAX_GAP / time_base)
        self.out: av.container.OutputContainer | None = None
        self.stream = None
        self.pending: list[av.Packet] = []
        self.pending_bytes = 0
        self.file = None  # our own handle: PyAV leaves its own open when a write fails (ENOSPC)
        self.tmp = self.path = None
        self.first = self.last = self.end = 0
        self.step = max(1, int(Fraction(1, 15) / time_base))  # ticks per picture, until measured
        self.start_utc = 0.0
        self.clock = _Clock(time_base)

    def write(self, packet: av.Packet, now_utc: float) -> None:
        """Add one packet (pts/dts in this segmenter's time base); opens and closes files as needed."""
        dts = packet.dts if packet.dts is not None else packet.pts
        if dts is None:
            return
        if self.out is not None:
            if dts <= self.last:  # the MP4 muxer needs increasing dts; drop a duplicate or late packet
                return
            if dts - self.last > self.gap_ticks:
                self.close()
            else:
                self.step = dts - self.last
                if packet.is_keyframe and dts - self.first >= self.cut_ticks:
                    self.close()
        if self.out is None:
            if not packet.is_keyframe:
                return
            self._open(dts, self.clock.utc(dts, now_utc))
        if not packet.duration:  # encoders and some cameras leave it out; the MP4's last sample needs one
            packet.duration = self.step
        pts = packet.pts if packet.pts is not None else dts
        packet.dts, packet.pts = dts - self.first, pts - self.first
        packet.stream = self.stream
        self.last = dts
        self.end = max(self.end, dts + packet.duration)
        self.pending.append(packet)
        self.pending_bytes += packet.size
        if len(self.pending) >= BATCH_PACKETS or self.pending_bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        try:
            self.out.mux(self.pending)
        except av.error.FFmpegError as exc:
            self.discard()
            raise CameraError(f"camera {self.recorder.camera}: writing segment: {exc}") from exc
        finally:
            self.pending.clear()
            self.pending_bytes = 0

    def _open(self, dts: int, start: float) -> None:
        name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + f".{int(start * 1000) % 1000:03d}Z"
        path = self.recorder.folder / f"{name}.mp4"
        n = 1
        while path.exists():
            path = self.recorder.folder / f"{name}-{n}.mp4"
            n += 1
        self.path, self.tmp = path, path.with_name("." + path.name + PART)
        try:
            self.file = open(self.tmp, "wb", buffering=0)
            self.out = av.open(self.file, "w", format="mp4")
            self.stream = self.make_stream(self.out)
        except (av.error.FFmpegError, OSError) as exc:
            self.discard()
            raise CameraError(f"camera {self.recorder.camera}: opening segment: {exc}") from exc
        self.first = self.last = self.end = dts
        self.start_utc = start

    def close(self) -> None:
        """Finish the current segment: close, sync, rename, then tell the recorder."""
        if self.out is None:
            return
        if self.pending:
            self._flush()
        out, self.out = self.out, None
        try:
            out.close()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except (av.error.FFmpegError, OSError) as exc:
            self._close_file()
            self.tmp.unlink(missing_ok=True)
            raise CameraError(f"camera {self.recorder.camera}: finishing segment: {exc}") from exc
        end_utc = self.start_utc + float((self.end - self.first) * self.time_base)
        self.recorder._segment_done(Segment(self.path, self.recorder.camera, self.start_utc, end_utc,
                                            self.path.stat().st_size))

    def discard(self) -> None:
        """Drop the current segment (after an error)."""
        self.pending.clear()
        out, self.out = self.out, None
        if out is not None:
            try:
                out.close()
            except (av.error.FFmpegError, OSError):
                pass
        self._close_file()
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)

    def _close_file(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


class _Encoder:
    """Encodes decoded pictures once to H.264 (for cameras without it), with a keyframe every segment."""

    time_base = Fraction(1, 1000)

    def __init__(self, width: int, height: int, segment_seconds: float) -> None:
        self.width, self.height = width & ~1, height & ~1
        self.keyframe_ms = int(segment_seconds * 1000)
        try:
            ctx = av.CodecContext.create(ENCODER, "w")
            ctx.width, ctx.height = self.width, self.height
            ctx.pix_fmt = "yuv420p"
            ctx.time_base = self.time_base
            ctx.gop_size = 10 * 60 * 30  # keyframes are forced by time below
            ctx.options = dict(ENCODER_OPTIONS)
            ctx.open()
        except (av.error.FFmpegError, ValueError) as exc:
            raise CameraError(f"{ENCODER} encoder unavailable: {exc}") from exc
        self.ctx = ctx
        self.last_ms = -1
        self.last_key_ms: int | None = None

    def add_stream(self, out: av.container.OutputContainer) -> av.stream.Stream:
        """An output stream for this encoder's packets (the MP4 muxer takes SPS/PPS from the first keyframe)."""
        return out.add_mux_stream("h264", width=self.width, height=self.height, time_base=self.time_base)

    def encode(self, frame: av.VideoFrame, ms: int) -> list[av.Packet]:
        """Packets for one picture taken `ms` milliseconds into the connection."""
        ms = max(ms, self.last_ms + 1)
        self.last_ms = ms
        picture = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        picture.pts = ms
        picture.time_base = self.time_base
        if self.last_key_ms is None or ms - self.last_key_ms >= self.keyframe_ms:
            picture.pict_type = av.video.frame.PictureType.I
            self.last_key_ms = ms
        try:
            return self.ctx.encode(picture)
        except av.error.FFmpegError as exc:
            raise CameraError(f"encoding: {exc}") from exc


class Recorder:
    """Records one camera in its own thread: segments, reconnection with backoff, state, motion frames."""

    def __init__(self, camera: str, source: Source, folder: str | Path, *, on_segment: OnSegment | None = None,
                 on_frame: OnFrame | None = None, frame_fps: float = 5.0, frame_width: int = 640,
                 segment_seconds: float | None = None, ring_seconds: float | None = 120.0,
                 on_evict: Callable[[Segment], None] | None = None, privacy_masks: tuple = (),
                 preview_fps: float = 5.0, preview_width: int = 1280,
                 on_preview: Callable[[int], None] | None = None) -> None:
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
        self._state = CameraState(camera, source.describe())
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._feed: Feed | None = None
        self._thread: threading.Thread | None = None
        self._next_frame = 0.0

    # -- public API, called from any thread

    def start(self) -> Recorder:
        """Start recording in a thread named nnode-camera-<camera>."""
        if self._thread is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for stale in self.folder.glob("." + "*" + PART):  # left by a crash mid-segment
                stale.unlink(missing_ok=True)
            self._thread = threading.Thread(target=self._run, name=f"nnode-camera-{self.camera}", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop recording, finish the current segment and close the camera (idempotent).

        Returns as soon as the thread ends: at once while streaming or waiting to reconnect, at worst after
        sources.OPEN_TIMEOUT or READ_TIMEOUT when PyAV is blocked on a dead camera (MJPEG reads are interrupted).
        """
        self._stop.set()
        feed = self._feed
        if feed is not None:
            feed.interrupt()
        if self._thread is not None:
            self._thread.join(sources.OPEN_TIMEOUT + 2 if timeout is None else timeout)
            if self._thread.is_alive():
                log.warning("camera thread did not stop in time", extra={"camera": self.camera})
        self._set(status="stopped")

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc) -> None:
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

    def _set(self, **changes) -> None:
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
        copy = feed.template is not None
        encoder = None if copy else _Encoder(feed.width, feed.height, self.segment_seconds)
        if copy:
            template = feed.template
            segmenter = _Segmenter(self, lambda out: out.add_stream_from_template(template), feed.time_base)
        else:
            segmenter = _Segmenter(self, encoder.add_stream, encoder.time_base)
        self._set(codec=feed.codec, encoding=not copy, width=feed.width, height=feed.height)
        input_clock = _Clock(feed.time_base)
        pause = READ_PAUSE if feed.bursty else 0.0
        # This loop runs for every packet: locals instead of attribute lookups, and no lock for a float store.
        state, write, wall, mono = self._state, segmenter.write, time.time, time.monotonic
        wait, stopped = self._stop.wait, self._stop.is_set
        motion = self.on_frame is not None
        masks = self.privacy_masks
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
                if copy:
                    if motion or arrived < self._preview_until:
                        self._frames(feed.decode(packet), packet, input_clock, now)
                    write(packet, now)
                else:
                    frames = feed.decode(packet)
                    self._frames(frames, packet, input_clock, now)
                    ms = int(packet.pts * packet.time_base * 1000) if packet.pts is not None else int(now * 1000)
                    for frame in frames:
                        if masks:  # the only copy of this video is the one made here: mask it
                            picture = black_out(frame.to_ndarray(format="bgr24"), masks)
                            frame = av.VideoFrame.from_ndarray(picture, format="bgr24")
                        for out in encoder.encode(frame, ms):
                            write(out, now)
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
            segmenter.close()
        return streamed

    def _frames(self, frames: Iterable[av.VideoFrame], packet: av.Packet, clock: _Clock, now: float) -> None:
        """Hand a small grayscale picture and its UTC time to on_frame, at most frame_fps per second of video, and
        make live-view pictures while someone watches."""
        previewing = time.monotonic() < self._preview_until
        if self.on_frame is None and not previewing:
            return
        for frame in frames:
            ts = frame.pts if frame.pts is not None else packet.pts
            utc = now if ts is None else clock.utc(ts, now)
            if previewing and not utc < self._next_preview < utc + 2:
                self._next_preview = utc + self.preview_interval
                self._make_preview(frame, utc)
            if self.on_frame is None:
                continue
            if self._next_frame - utc > 2 * self.frame_interval:  # the clock was re-anchored backwards
                self._next_frame = utc
            if utc + 0.001 < self._next_frame:
                continue
            self._next_frame = max(self._next_frame + self.frame_interval, utc)
            width = min(self.frame_width, frame.width) & ~1
            height = max(2, round(frame.height * width / frame.width)) & ~1
            gray = frame.reformat(width=width, height=height, format="gray").to_ndarray()
            try:
                self.on_frame(gray, utc)
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


# -- promotion of segments into an event clip


@dataclass(frozen=True)
class Clip:
    """An event clip made from segments."""

    path: Path
    thumbnail: Path | None
    duration: float
    size: int
    sha256: str
    skipped: tuple[Path, ...] = ()
    """Segments left out because their resolution or codec setup differs from the first one."""


def _params(stream: av.video.stream.VideoStream) -> tuple:
    ctx = stream.codec_context
    return ctx.name, ctx.width, ctx.height, ctx.extradata


def promote(segments: Sequence[str | Path], clip: str | Path, thumbnail: str | Path | None = None,
            privacy_masks: tuple = ()) -> Clip:
    """Concatenate segment files (oldest first) into one MP4 clip by stream copy, moov first (faststart), and make
    a JPEG thumbnail of its middle segment.

    Blocking: run it in an executor. All or nothing: both files are written under temporary names, synced, and
    renamed only when both are complete.
    """
    if not segments:
        raise CameraError("no segments to promote")
    clip = Path(clip)
    tmp = clip.with_name("." + clip.name + PART)
    thumb_tmp = None
    skipped: list[Path] = []
    params = None
    offset = 0.0  # seconds of clip already written
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = None
            for name in map(Path, segments):
                with av.open(str(name)) as src:
                    video = src.streams.video[0]
                    if params is None:
                        params = _params(video)
                        stream = out.add_stream_from_template(video)
                    elif _params(video) != params:
                        skipped.append(name)
                        continue
                    tb = video.time_base
                    shift = None
                    end = 0
                    for packet in src.demux(video):
                        if packet.dts is None:  # the demuxer's empty flush packet
                            continue
                        if shift is None:
                            shift = round(offset / tb) - packet.dts
                        end = max(end, packet.dts + shift + (packet.duration or 0))
                        packet.dts += shift
                        packet.pts = packet.dts if packet.pts is None else packet.pts + shift
                        packet.stream = stream
                        out.mux(packet)
                    offset = float(end * tb) if shift is not None else offset
        fsync_file(tmp)
        if thumbnail is not None:
            usable = [Path(s) for s in segments if Path(s) not in skipped]
            thumbnail = Path(thumbnail)
            thumb_tmp = thumbnail.with_name("." + thumbnail.name + PART)
            write_synced(thumb_tmp, thumbnail_jpeg(usable[len(usable) // 2], privacy_masks))
        size, digest = sha256_file(tmp)
        publish(*([(thumb_tmp, thumbnail)] if thumb_tmp else []), (tmp, clip))
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise CameraError(f"promoting {len(segments)} segments into {clip.name}: {exc}") from exc
    finally:
        for leftover in (tmp, thumb_tmp):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return Clip(clip, thumbnail, offset, size, digest, tuple(skipped))


def thumbnail_jpeg(video: str | Path, privacy_masks: tuple = ()) -> bytes:
    """A JPEG (THUMBNAIL_WIDTH wide) of the first picture of `video`, privacy masks blacked out; blocking."""
    try:
        with av.open(str(video)) as src:
            frame = next(src.decode(video=0))
            width = min(THUMBNAIL_WIDTH, frame.width) & ~1
            image = frame.reformat(width=width, height=max(2, round(frame.height * width / frame.width)) & ~1,
                                   format="bgr24").to_ndarray()
            black_out(image, tuple(privacy_masks), (frame.width, frame.height))
    except (av.error.FFmpegError, OSError, StopIteration) as exc:
        raise CameraError(f"thumbnail of {Path(video).name}: {exc or 'no picture'}") from exc
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise CameraError(f"thumbnail of {Path(video).name}: JPEG encoding failed")
    return jpeg.tobytes()
