"""Encoding pictures once with libx264 into browser-playable H.264: the settings resident uploads and redacted
exports share (the recorder's live encoder, tuned for latency, is in segments.py)."""

from __future__ import annotations

from fractions import Fraction
from typing import Final

import av
import av.error

ENCODER: Final = "libx264"
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23"}
KEYFRAME_SECONDS = 2.0
"""Keyframe interval of an encoded clip, so that a browser can seek in it."""
DEFAULT_RATE = 30
"""Pictures per second assumed when a video does not say."""


def av_reason(exc: BaseException) -> str:
    """What PyAV or the system said, without a file name (paths are ours, not the user's)."""
    if isinstance(exc, av.error.FFmpegError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def frame_rate(video: av.video.stream.VideoStream, highest: float = 240) -> Fraction:
    """The video's frame rate if it has a plausible one (at most `highest`), else DEFAULT_RATE."""
    for rate in (video.average_rate, video.guessed_rate, video.base_rate):
        if rate and 0 < rate <= highest:
            return Fraction(rate)
    return Fraction(DEFAULT_RATE)


def add_h264_stream(out: av.container.OutputContainer, width: int, height: int, time_base: Fraction,
                    rate: Fraction) -> av.video.stream.VideoStream:
    """An H.264 output stream in 4:2:0 with even sides and a keyframe every KEYFRAME_SECONDS.

    Raises av.error.FFmpegError or ValueError when the encoder is unavailable (callers say which clip).
    """
    stream = out.add_stream(ENCODER)
    ctx = stream.codec_context
    ctx.width, ctx.height = width & ~1, height & ~1
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = stream.time_base = time_base
    ctx.framerate = rate
    ctx.gop_size = max(1, round(KEYFRAME_SECONDS * rate))
    ctx.options = dict(ENCODER_OPTIONS)
    return stream
