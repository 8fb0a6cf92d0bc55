"""Segment files: a camera's H.264 packets cut at keyframes into complete MP4 files, and the one-time encoder for a
camera without H.264.

A segment is written under a temporary name (PART) and renamed once it is closed and synced, so a file with a final
name is always complete. Everything here blocks: it runs in the recorder's thread (record.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import av
import av.error

from node.camera.feed import CameraError

MAX_GAP = 5.0
"""A timestamp jump longer than this (seconds) ends the segment: the camera restarted or lost pictures."""
MAX_DRIFT = 2.0
"""How far (seconds) a camera's clock may drift from ours before its timestamps are re-anchored to UTC."""
BATCH_PACKETS = 16
"""Packets handed to the muxer in one call (fewer trips through PyAV; they reach the file when it is closed anyway)."""
BATCH_BYTES = 4 << 20
ENCODER: Final = "libx264"
ENCODER_OPTIONS = {"preset": "veryfast", "tune": "zerolatency", "crf": "23"}
PART = ".part"
"""Suffix of a file still being written (segments, clips, thumbnails); a crash leaves only these behind."""

MakeStream = Callable[[av.container.OutputContainer], av.stream.Stream]


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


class StreamClock:
    """Maps a stream's timestamps to UTC: anchored at its first packet, re-anchored if they drift apart.

    Contiguous segments thus share their boundaries exactly; a camera whose clock runs fast or slow shows a step of
    up to MAX_DRIFT when it is re-anchored. `late` is how long a packet may wait before it is read (the recorder's
    READ_PAUSE).
    """

    def __init__(self, time_base: Fraction, late: float) -> None:
        self.time_base = time_base
        self.late = late
        self.anchor: int | None = None
        self.anchor_utc = 0.0

    def utc(self, ts: int, now: float) -> float:
        """The UTC time of timestamp `ts`, for a packet read at `now` (possibly up to `late` seconds late)."""
        if self.anchor is not None:
            utc = self.anchor_utc + float((ts - self.anchor) * self.time_base)
            if -MAX_DRIFT < now - utc < MAX_DRIFT + self.late:
                return utc
        self.anchor, self.anchor_utc = ts, now
        return now


class SegmentWriter:
    """Cuts one stream of H.264 packets into MP4 segment files at keyframes; `on_done` gets each finished one."""

    def __init__(self, camera: str, folder: Path, segment_seconds: float, make_stream: MakeStream,
                 time_base: Fraction, on_done: Callable[[Segment], None], *, late: float) -> None:
        self.camera = camera
        self.folder = folder
        self.make_stream = make_stream
        self.time_base = time_base
        self.on_done = on_done
        self.cut_ticks = int(segment_seconds / time_base)
        self.gap_ticks = int(MAX_GAP / time_base)
        self.out: av.container.OutputContainer | None = None
        self.stream: av.stream.Stream | None = None
        self.pending: list[av.Packet[Any]] = []
        self.pending_bytes = 0
        self.file: Any = None  # our own handle: PyAV leaves its own open when a write fails (ENOSPC)
        self.tmp: Path | None = None
        self.path: Path | None = None
        self.first = self.last = self.end = 0
        self.step = max(1, int(Fraction(1, 15) / time_base))  # ticks per picture, until measured
        self.start_utc = 0.0
        self.clock = StreamClock(time_base, late)

    def write(self, packet: av.Packet[Any], now_utc: float) -> None:
        """Add one packet (pts/dts in this writer's time base); opens and closes files as needed."""
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
        assert self.out is not None
        try:
            self.out.mux(self.pending)
        except av.error.FFmpegError as exc:
            self.discard()
            raise CameraError(f"camera {self.camera}: writing segment: {exc}") from exc
        finally:
            self.pending.clear()
            self.pending_bytes = 0

    def _open(self, dts: int, start: float) -> None:
        name = time.strftime("%Y%m%dT%H%M%S", time.gmtime(start)) + f".{int(start * 1000) % 1000:03d}Z"
        path = self.folder / f"{name}.mp4"
        n = 1
        while path.exists():
            path = self.folder / f"{name}-{n}.mp4"
            n += 1
        self.path, self.tmp = path, path.with_name("." + path.name + PART)
        try:
            self.file = open(self.tmp, "wb", buffering=0)
            self.out = av.open(self.file, "w", format="mp4")
            self.stream = self.make_stream(self.out)
        except (av.error.FFmpegError, OSError) as exc:
            self.discard()
            raise CameraError(f"camera {self.camera}: opening segment: {exc}") from exc
        self.first = self.last = self.end = dts
        self.start_utc = start

    def close(self) -> None:
        """Finish the current segment: close, sync, rename, then hand it to `on_done`."""
        if self.out is None:
            return
        if self.pending:
            self._flush()
        out, self.out = self.out, None
        assert self.tmp is not None and self.path is not None
        try:
            out.close()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except (av.error.FFmpegError, OSError) as exc:
            self._close_file()
            self.tmp.unlink(missing_ok=True)
            raise CameraError(f"camera {self.camera}: finishing segment: {exc}") from exc
        end_utc = self.start_utc + float((self.end - self.first) * self.time_base)
        self.on_done(Segment(self.path, self.camera, self.start_utc, end_utc, self.path.stat().st_size))

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


class LiveEncoder:
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

    def encode(self, frame: av.VideoFrame, ms: int) -> list[av.Packet[Any]]:
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
