"""Joining a range's clips into one video by stream copy (PyAV remux, no re-encoding), played back to back.

The parts of a range bundle are whole clips of one camera (redacted by one encoder, or the camera's originals), so
their video streams share codec, picture size and codec setup; the packets of each part are copied in time order,
their timestamps shifted so each part starts where the one before it ended. The time between the clips (a gap) is
not in the joined video: the manifest states it, and `nnode verify` prints where each part starts in the video.
Audio and other streams are left out. Blocking: callers run it in an executor or a CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av

from node.sharing.errors import SharingError


class JoinError(SharingError):
    """The parts cannot be joined by stream copy (no video, or streams that differ)."""


@dataclass(frozen=True)
class Joined:
    """A joined video: its path, packets (pictures) per part, and each part's start and length in it (seconds)."""

    path: Path
    frames: int
    duration: float
    offsets: tuple[float, ...]
    lengths: tuple[float, ...]


def _setup(stream: av.video.stream.VideoStream) -> tuple[object, ...]:
    codec = stream.codec_context
    return codec.name, codec.width, codec.height, codec.pix_fmt, bytes(codec.extradata or b"")


def join_videos(parts: Sequence[Path | str], out: Path | str) -> Joined:
    """Write the first video stream of every part into `out` (MP4), part after part; JoinError if they differ."""
    out = Path(out)
    if not parts:
        raise JoinError("there is nothing to join")
    tmp = out.with_name(f".{out.name}.part")
    try:
        joined = _join([Path(p) for p in parts], tmp)
        os.replace(tmp, out)
    except (av.FFmpegError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise JoinError(f"joining {len(parts)} parts into {out.name}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Joined(out, joined.frames, joined.duration, joined.offsets, joined.lengths)


def _join(parts: list[Path], tmp: Path) -> Joined:
    offsets: list[float] = []
    lengths: list[float] = []
    frames = 0
    with av.open(str(tmp), "w", format="mp4") as output:
        target: av.video.stream.VideoStream | None = None
        setup: tuple[object, ...] = ()
        shift = 0   # in the output stream's time base: where the next part starts
        base = Fraction(1, 90_000)
        for number, part in enumerate(parts, 1):
            with av.open(str(part)) as source:
                if not source.streams.video:
                    raise JoinError(f"part {number} ({part.name}) has no video stream")
                stream = source.streams.video[0]
                if target is None:
                    target = output.add_stream_from_template(stream)
                    target.time_base = base
                    setup = _setup(stream)
                elif _setup(stream) != setup:
                    raise JoinError(f"part {number} ({part.name}) was encoded differently from part 1 "
                                    f"({_setup(stream)[:4]} against {setup[:4]}); it cannot be stream-copied")
                count, length = _copy(output, source, stream, target, shift)
                frames += count
                offsets.append(float(shift * base))
                lengths.append(float(length * base))
                shift += length
    return Joined(tmp, frames, float(shift * base), tuple(offsets), tuple(lengths))


def _copy(output: av.container.OutputContainer, source: av.container.InputContainer,
          stream: av.video.stream.VideoStream, target: av.video.stream.VideoStream,
          shift: int) -> tuple[int, int]:
    """Copy one part's packets, shifted; (packets, the part's length in the output time base)."""
    assert stream.time_base is not None and target.time_base is not None
    scale = Fraction(stream.time_base) / Fraction(target.time_base)
    start: int | None = None
    end = 0
    count = 0
    for packet in source.demux(stream):
        if packet.dts is None:   # the demuxer's end-of-stream marker
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        if start is None:
            start = pts   # the first picture shown starts the part (its dts may come earlier, with B-frames)
        step = packet.duration or 0
        packet.pts = round((pts - start) * scale) + shift
        packet.dts = round((packet.dts - start) * scale) + shift
        packet.duration = round(step * scale)
        packet.time_base = target.time_base
        end = max(end, round((pts - start + step) * scale))
        packet.stream = target
        output.mux(packet)
        count += 1
    if start is None:
        raise JoinError(f"{Path(str(source.name)).name} holds no pictures")
    return count, end
