"""What every camera source is: a `Source` opens a `Feed`, which yields compressed packets and decodes them on demand;
`CameraError` is what any of them raises (sources.py has the RTSP, MJPEG, V4L2, file and simulated ones)."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import av.error
import av.video.codeccontext

from node.errors import NodeError

MAX_PIXELS = 4096 * 2304
"""Largest picture accepted (width x height)."""


class CameraError(NodeError):
    """A camera cannot be opened or read, or sent something invalid."""

    status = 502
    reason = "camera"


def translate(what: str, exc: BaseException) -> CameraError:
    """A CameraError that says what failed, from a PyAV or socket error."""
    if isinstance(exc, av.error.ExitError):
        return CameraError(f"{what}: timed out")
    if isinstance(exc, av.error.FFmpegError):
        return CameraError(f"{what}: {exc.strerror or exc}")
    return CameraError(f"{what}: {exc}")


def check_size(what: str, width: int, height: int) -> None:
    if width == 0 or height == 0:
        raise CameraError(f"{what}: no picture size (no usable video arrived while opening)")
    if width < 0 or height < 0 or width * height > MAX_PIXELS:
        raise CameraError(f"{what}: unsupported picture size {width}x{height}")


class Feed(abc.ABC):
    """An open camera: its stream's parameters, its packets, and a decoder for them."""

    codec: str
    width: int
    height: int
    time_base: Fraction
    template: av.video.stream.VideoStream | None = None
    """The input stream to copy codec parameters from (stream copy), or None when packets must be re-encoded."""
    bursty = False
    """True when packets queue up safely while nobody reads (a network socket), so they may be read in bursts."""
    hardware = False
    """True when pictures are decoded by a hardware decoder (see `economise`)."""
    _decoder: av.video.codeccontext.VideoCodecContext

    def economise(self, fps: float, *, hardware: bool = True,  # noqa: B027 - optional: see _ContainerFeed
                  deblock: bool = True) -> None:
        """Decode no more than pictures wanted at `fps` need, with the platform's hardware decoder if asked, and
        without the deblocking filter if not `deblock` (pictures only motion detection sees)."""

    @abc.abstractmethod
    def packets(self) -> Iterator[av.Packet[Any]]:
        """Packets in decoding order, with pts/dts in `time_base`; ends when the stream ends."""

    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        """Decoded pictures of `packet` (none for a corrupt one: a lost packet must not stop the recording)."""
        try:
            return self._decoder.decode(packet)
        except av.error.FFmpegError:
            return []

    def interrupt(self) -> None:  # noqa: B027 - an optional hook: a feed with no blocking read has nothing to do
        """Make a blocked read return soon (called from another thread by Recorder.stop)."""

    def close(self) -> None:  # noqa: B027 - an optional hook: a feed that holds nothing has nothing to release
        """Release the connection (idempotent)."""


class Source(abc.ABC):
    """Where a camera's video comes from; `open()` connects and returns a Feed."""

    kind = "?"

    @abc.abstractmethod
    def open(self) -> Feed:
        """Connect (bounded by OPEN_TIMEOUT) and return the live feed."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def describe(self) -> str:
        """Where this source reads from, without credentials (for logs and the API)."""
        return "?"
