"""Promotion: finished segments concatenated into one browser-playable event clip, by stream copy, with a thumbnail.

Blocking, like everything PyAV does here: callers run it in an executor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error
import cv2

from node.camera.feed import CameraError
from node.camera.privacy import black_out
from node.camera.segments import PART
from node.camera.settings import Polygon
from node.durable import fsync_file, publish, sha256_file, write_synced

THUMBNAIL_WIDTH = 320


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


def _params(stream: av.video.stream.VideoStream) -> tuple[Any, ...]:
    ctx = stream.codec_context
    return ctx.name, ctx.width, ctx.height, ctx.extradata


def _concatenate(segments: Sequence[Path], out: av.container.OutputContainer) -> tuple[float, list[Path]]:
    """Mux `segments` one after the other into `out`; (seconds written, segments skipped for other parameters)."""
    skipped: list[Path] = []
    params = None
    stream = None
    offset = 0.0  # seconds of clip already written
    for name in segments:
        with av.open(str(name)) as src:
            video = src.streams.video[0]
            if params is None:
                params = _params(video)
                stream = out.add_stream_from_template(video)
            elif _params(video) != params:
                skipped.append(name)
                continue
            tb = video.time_base
            assert tb is not None and stream is not None  # a demuxed stream always has a time base
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
    return offset, skipped


def promote(segments: Sequence[str | Path], clip: str | Path, thumbnail: str | Path | None = None,
            privacy_masks: tuple[Polygon, ...] = ()) -> Clip:
    """Concatenate segment files (oldest first) into one MP4 clip by stream copy, moov first (faststart), and make
    a JPEG thumbnail of its middle segment.

    Blocking: run it in an executor. All or nothing: both files are written under temporary names, synced, and
    renamed only when both are complete.
    """
    if not segments:
        raise CameraError("no segments to promote")
    clip = Path(clip)
    thumbnail = Path(thumbnail) if thumbnail is not None else None
    tmp = clip.with_name("." + clip.name + PART)
    thumb_tmp = None
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            offset, skipped = _concatenate([Path(s) for s in segments], out)
        fsync_file(tmp)
        renames: list[tuple[Path, Path]] = []
        if thumbnail is not None:
            usable = [Path(s) for s in segments if Path(s) not in skipped]
            thumb_tmp = thumbnail.with_name("." + thumbnail.name + PART)
            write_synced(thumb_tmp, thumbnail_jpeg(usable[len(usable) // 2], privacy_masks))
            renames.append((thumb_tmp, thumbnail))
        size, digest = sha256_file(tmp)
        publish(*renames, (tmp, clip))
    except (av.error.FFmpegError, OSError, IndexError) as exc:
        raise CameraError(f"promoting {len(segments)} segments into {clip.name}: {exc}") from exc
    finally:
        for leftover in (tmp, thumb_tmp):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
    return Clip(clip, thumbnail, offset, size, digest, tuple(skipped))


def thumbnail_jpeg(video: str | Path, privacy_masks: tuple[Polygon, ...] = ()) -> bytes:
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
