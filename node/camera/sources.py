"""Camera sources: RTSP, HTTP MJPEG, V4L2 devices and local files behind one interface.

A `Source` says where video comes from; `Source.open()` connects and returns a `Feed`, which yields the camera's
compressed packets (H.264 ones are recorded by stream copy, see record.py) and decodes a packet on demand (for
motion). Everything from a camera is untrusted: every open and read is bounded in time, every packet and picture in
size, so a dead or hostile camera costs one reconnect, never a hung thread. Errors from PyAV and the network are
translated here into `CameraError`.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import av
import av.error
import av.video.codeccontext

from node.camera.feed import CameraError, Feed, Source, check_size, translate

log = logging.getLogger("nnode.camera")

OPEN_TIMEOUT = 10.0
"""Seconds to connect to a camera and read its stream header."""
READ_TIMEOUT = 5.0
"""Seconds without a packet before a stream counts as lost."""
MAX_PACKET_BYTES = 8 << 20
"""Largest compressed picture accepted (bytes)."""
HARDWARE_DECODERS = {"h264": "h264_v4l2m2m"}
"""Hardware decoders to try first, by codec: V4L2 memory-to-memory, as on a Raspberry Pi (absent: software)."""
HARDWARE_PATIENCE = 30
"""Packets in a row, from the first keyframe on, that a hardware decoder may fail on or yield no picture for before
the feed falls back to software (it opened, but cannot decode this stream: a profile or size it does not support)."""
MJPEG_MAX_HEADER_LINES = 32
MJPEG_MAX_LINE = 1024


class _ContainerFeed(Feed):
    """A feed read by PyAV's demuxer (RTSP, V4L2, files)."""

    def __init__(self, what: str, container: av.container.InputContainer) -> None:
        self.what = what
        self.container = container
        try:
            stream = container.streams.video[0]
        except IndexError:
            container.close()
            raise CameraError(f"{what}: no video stream") from None
        if stream.codec_context is None:
            container.close()
            raise CameraError(f"{what}: no decoder for its video")
        if stream.time_base is None:
            container.close()
            raise CameraError(f"{what}: no time base for its video")
        self.stream = stream
        self.codec = stream.codec_context.name
        self.width, self.height = stream.codec_context.width, stream.codec_context.height
        self.time_base = stream.time_base
        self.template = stream if self.codec == "h264" else None
        self._decoder = stream.codec_context
        self._skip: Literal["NONREF"] | None = None
        self._deblock = True
        self._failing = 0
        self._closed = threading.Event()
        try:
            check_size(what, self.width, self.height)
        except CameraError:
            container.close()
            raise

    def economise(self, fps: float, *, hardware: bool = True, deblock: bool = True) -> None:
        """Use the hardware decoder if there is one; in software, skip non-reference pictures when the stream has at
        least twice the pictures `fps` needs (nothing refers to them, so dropping them costs nothing else), and the
        deblocking filter if not `deblock`.

        Without deblocking, software decoding costs about a tenth less (bench/camera.py). The pictures keep faint
        block edges, which drift a little until the next keyframe: at most a few grey levels once shrunk and blurred
        to motion's working size, under its lowest threshold (docs/motion.md). Call it before the first decode.
        """
        rate = self.stream.average_rate or self.stream.guessed_rate
        self._skip = "NONREF" if fps > 0 and rate and float(rate) >= 2 * fps else None
        self._deblock = deblock
        if hardware and not self.hardware:
            decoder = hardware_decoder(self.what, self.stream)
            if decoder is not None:
                self._decoder, self.hardware, self._failing = decoder, True, 0
                return
        self._economise(self._decoder)

    def _economise(self, decoder: av.video.codeccontext.VideoCodecContext) -> None:
        """Apply economise()'s software settings to a decoder that has not decoded yet."""
        if self._skip:
            decoder.skip_frame = self._skip
        if not self._deblock:
            decoder.options = {**decoder.options, "skip_loop_filter": "all"}

    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        """Decoded pictures of `packet`; a hardware decoder that keeps giving none is replaced by software."""
        if not self.hardware:
            return super().decode(packet)
        try:
            frames: list[av.VideoFrame] = self._decoder.decode(packet)
        except av.error.FFmpegError:
            frames = []
        if frames:
            self._failing = 0
        elif self._failing or packet.is_keyframe:  # nothing decodes before a keyframe, in hardware or not
            self._failing += 1
        if self._failing >= HARDWARE_PATIENCE:
            log.warning("%s: the hardware decoder gave no picture for %d packets; decoding in software", self.what,
                        self._failing)
            self._decoder, self.hardware = self.stream.codec_context, False
            self._economise(self._decoder)  # pictures come again from the next keyframe on
        return frames

    def packets(self) -> Iterator[av.Packet[Any]]:
        try:
            for packet in self.container.demux(self.stream):
                size = packet.size
                if size > MAX_PACKET_BYTES:
                    raise CameraError(f"{self.what}: packet of {size} bytes is too large")
                if size:  # not the demuxer's empty flush packet at the end of the stream
                    yield packet
        except (av.error.FFmpegError, OSError) as exc:
            if not self._closed.is_set():
                raise translate(f"{self.what}: read", exc) from exc

    def interrupt(self) -> None:
        self._closed.set()

    def close(self) -> None:
        self._closed.set()
        self.container.close()


def hardware_decoder(what: str, stream: av.video.stream.VideoStream) -> av.video.codeccontext.VideoCodecContext | None:
    """An open hardware decoder for the stream (HARDWARE_DECODERS), or None where the platform has none."""
    name = HARDWARE_DECODERS.get(stream.codec_context.name)
    if name is None or name not in av.codecs_available:
        return None
    try:
        decoder = av.CodecContext.create(name, "r")
        assert isinstance(decoder, av.video.codeccontext.VideoCodecContext)  # a video codec's context
        decoder.extradata = stream.codec_context.extradata
        decoder.width, decoder.height = stream.codec_context.width, stream.codec_context.height
        decoder.open()
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.debug("%s: no hardware decoder %s (%s); decoding in software", what, name, exc)
        return None
    log.info("%s: decoding with %s", what, name)
    return decoder


def _open_container(what: str, url: str, **kwargs: Any) -> av.container.InputContainer:
    try:
        container: av.container.InputContainer = av.open(url, mode="r", timeout=(OPEN_TIMEOUT, READ_TIMEOUT),
                                                         **kwargs)
        return container
    except (av.error.FFmpegError, OSError) as exc:
        raise translate(f"{what}: open", exc) from exc



def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host).geturl()


class RtspSource(Source):
    """An RTSP camera (H.264); `transport` is "udp" or "tcp" (interleaved)."""

    kind = "rtsp"

    def __init__(self, url: str, transport: str = "tcp") -> None:
        if transport not in ("udp", "tcp"):
            raise CameraError(f"rtsp transport must be udp or tcp, not {transport!r}")
        self.url = url
        self.transport = transport

    def describe(self) -> str:
        return _redact(self.url)

    def open(self) -> Feed:
        options = {
            "rtsp_transport": self.transport,
            "allowed_media_types": "video",
            "timeout": str(int(READ_TIMEOUT * 1_000_000)),
            "buffer_size": str(1 << 20),
            "analyzeduration": "2000000",
        }
        what = f"rtsp {self.describe()}"
        feed = _ContainerFeed(what, _open_container(what, self.url, options=options))
        feed.bursty = True
        return feed


class V4L2Source(Source):
    """A V4L2 video device such as a USB webcam; `input_format` may ask it for "h264" or "mjpeg"."""

    kind = "v4l2"

    def __init__(self, device: str, size: str | None = None, fps: int | None = None,
                 input_format: str | None = None) -> None:
        self.device, self.size, self.fps, self.input_format = device, size, fps, input_format

    def describe(self) -> str:
        return self.device

    def open(self) -> Feed:
        options = {k: str(v) for k, v in (("video_size", self.size), ("framerate", self.fps),
                                          ("input_format", self.input_format)) if v}
        what = f"v4l2 {self.device}"
        return _ContainerFeed(what, _open_container(what, self.device, format="v4l2", options=options))


class _LoopedFileFeed(_ContainerFeed):
    """A file played at its own pace, from the start again at its end, with timestamps that keep increasing."""

    def __init__(self, what: str, container: av.container.InputContainer, loop: bool) -> None:
        super().__init__(what, container)
        self.loop = loop

    def packets(self) -> Iterator[av.Packet[Any]]:
        offset = 0
        started = time.monotonic()
        first: int | None = None
        while not self._closed.is_set():
            end = offset
            for packet in super().packets():
                if packet.dts is None:
                    continue
                if first is None:
                    first = packet.dts
                packet.dts += offset - first
                packet.pts = packet.dts if packet.pts is None else packet.pts + offset - first
                due = started + float(packet.dts * self.time_base)
                if self._closed.wait(max(0.0, due - time.monotonic())):
                    return
                end = max(end, packet.dts + (packet.duration or 1))
                yield packet
            if not self.loop or end == offset:
                return
            offset = end
            try:
                self.container.seek(0, stream=self.stream)
            except av.error.FFmpegError as exc:
                raise translate(f"{self.what}: seek", exc) from exc
            self._decoder.flush_buffers()


class FileSource(Source):
    """A local video file played in real time, looped by default (the demo camera)."""

    kind = "file"

    def __init__(self, path: str | Path, loop: bool = True) -> None:
        self.path = Path(path)
        self.loop = loop

    def describe(self) -> str:
        return str(self.path)

    def open(self) -> Feed:
        what = f"file {self.path}"
        return _LoopedFileFeed(what, _open_container(what, str(self.path)), self.loop)


class _MjpegFeed(Feed):
    """multipart/x-mixed-replace JPEG pictures over HTTP, parsed here with bounded buffers."""

    codec = "mjpeg"
    time_base = Fraction(1, 1000)
    bursty = True

    def __init__(self, what: str, sock: socket.socket, response: http.client.HTTPResponse, boundary: bytes) -> None:
        self.what = what
        self._sock = sock
        self._response = response
        self._boundary = b"--" + boundary.removeprefix(b"--")
        self._buffer = bytearray()
        self._closed = threading.Event()
        self._started = time.monotonic()
        self._decoder = av.CodecContext.create("mjpeg", "r")
        self._first = self._next_picture()
        if self._first is None:
            raise CameraError(f"{what}: stream ended before the first picture")
        frames = self.decode(self._packet(self._first))
        if not frames:
            raise CameraError(f"{what}: the first picture is not a JPEG")
        self.width, self.height = frames[0].width, frames[0].height
        check_size(what, self.width, self.height)

    def _packet(self, data: bytes) -> av.Packet[Any]:
        packet = av.Packet(data)
        packet.pts = packet.dts = int((time.monotonic() - self._started) * 1000)
        packet.time_base = self.time_base
        return packet

    def packets(self) -> Iterator[av.Packet[Any]]:
        data, self._first = self._first, None
        while data is not None:
            yield self._packet(data)
            data = self._next_picture()

    def _fill(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise CameraError(f"{self.what}: picture not received within {2 * READ_TIMEOUT:g} s")
        try:
            chunk = self._response.read1(65536)
        except (OSError, http.client.HTTPException) as exc:
            if self._closed.is_set():
                raise CameraError(f"{self.what}: closed") from None
            raise translate(f"{self.what}: read", exc) from exc
        if not chunk:
            raise EOFError
        self._buffer += chunk

    def _line(self, deadline: float) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MJPEG_MAX_LINE:
                raise CameraError(f"{self.what}: multipart header line too long")
            self._fill(deadline)
        line = bytes(self._buffer[:end + 1])
        del self._buffer[:end + 1]
        return line.strip()

    def _next_picture(self) -> bytes | None:
        """The next JPEG, or None at the end of the stream."""
        deadline = time.monotonic() + 2 * READ_TIMEOUT
        try:
            for _ in range(MJPEG_MAX_HEADER_LINES):
                line = self._line(deadline)
                if line.startswith(self._boundary):
                    break
                if line:
                    raise CameraError(f"{self.what}: expected a multipart boundary")
            else:
                raise CameraError(f"{self.what}: no multipart boundary")
            if line.endswith(b"--"):
                return None
            length = None
            for _ in range(MJPEG_MAX_HEADER_LINES):
                line = self._line(deadline)
                if not line:
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        raise CameraError(f"{self.what}: bad Content-Length") from None
            else:
                raise CameraError(f"{self.what}: too many part headers")
            if length is not None:
                if not 0 < length <= MAX_PACKET_BYTES:
                    raise CameraError(f"{self.what}: picture of {length} bytes is out of bounds")
                while len(self._buffer) < length:
                    self._fill(deadline)
                data = bytes(self._buffer[:length])
                del self._buffer[:length]
                return data
            # No Content-Length: the picture ends where the next boundary starts.
            marker = b"\r\n" + self._boundary
            while (end := self._buffer.find(marker)) < 0:
                if len(self._buffer) > MAX_PACKET_BYTES:
                    raise CameraError(f"{self.what}: picture larger than {MAX_PACKET_BYTES} bytes")
                self._fill(deadline)
            data = bytes(self._buffer[:end])
            del self._buffer[:end + 2]
            return data
        except EOFError:
            return None

    def interrupt(self) -> None:
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        self._response.close()
        self._sock.close()


class MjpegSource(Source):
    """An HTTP MJPEG camera (multipart/x-mixed-replace); user:password in the URL is sent as Basic auth."""

    kind = "mjpeg"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CameraError(f"not an http(s) URL: {_redact(url)}")
        self.url = url
        self.host = parts.hostname

    def describe(self) -> str:
        return _redact(self.url)

    def open(self) -> Feed:
        parts = urlsplit(self.url)
        what = f"mjpeg {self.describe()}"
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, parts.port, timeout=OPEN_TIMEOUT)
        headers = {"User-Agent": "nnode", "Accept": "multipart/x-mixed-replace, */*"}
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        sock = None
        try:
            conn.request("GET", parts.path + ("?" + parts.query if parts.query else "") or "/", headers=headers)
            sock = conn.sock  # the response takes it over from the connection
            response = conn.getresponse()
            if response.status != 200:
                raise CameraError(f"{what}: HTTP {response.status} {response.reason}")
            content_type = response.getheader("Content-Type", "")
            match = re.search(r'boundary="?([^";,]+)"?', content_type)
            if not content_type.lower().startswith("multipart/") or not match:
                raise CameraError(f"{what}: not an MJPEG stream ({content_type or 'no Content-Type'})")
            sock.settimeout(READ_TIMEOUT)
            return _MjpegFeed(what, sock, response, match.group(1).strip().encode("latin-1"))
        except BaseException as exc:
            conn.close()
            if sock is not None:
                sock.close()
            if isinstance(exc, (OSError, http.client.HTTPException)):
                raise translate(f"{what}: open", exc) from exc
            raise


class _SimulatedFeed(Feed):
    """Generated pictures of a quiet courtyard that someone crosses every `period` seconds (the demo camera)."""

    codec = "mjpeg"
    time_base = Fraction(1, 1000)

    def __init__(self, what: str, width: int, height: int, fps: float, period: float, walk: float) -> None:
        import cv2
        import numpy as np
        self.what, self.width, self.height = what, width, height
        self.fps, self.period, self.walk = fps, period, walk
        self._cv2, self._np = cv2, np
        rng = np.random.default_rng(7)
        small = rng.integers(60, 200, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
        ground = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        self._background = cv2.cvtColor(cv2.GaussianBlur(ground, (9, 9), 0), cv2.COLOR_GRAY2BGR)
        cv2.rectangle(self._background, (width // 10, height // 6), (width // 3, height // 2), (90, 110, 140), -1)
        self._rng = rng
        self._closed = threading.Event()
        self._decoder = av.CodecContext.create("mjpeg", "r")

    def _picture(self, t: float) -> bytes:
        cv2, np = self._cv2, self._np
        image = self._background.copy()
        phase = t % self.period
        if phase < self.walk:  # a figure walks across from left to right
            x = int(-self.width * 0.1 + phase / self.walk * self.width * 1.2)
            y = int(self.height * 0.45)
            w, h = max(8, self.width // 14), max(16, self.height // 3)
            cv2.rectangle(image, (x, y), (x + w, y + h), (40, 40, 160), -1)
            cv2.circle(image, (x + w // 2, y - w // 2), w // 2, (120, 150, 200), -1)
        noise = self._rng.integers(-3, 4, image.shape, dtype=np.int16)
        image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        cv2.putText(image, "simulated camera  " + stamp, (10, self.height - 12), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, (255, 255, 255), 1, cv2.LINE_AA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise CameraError(f"{self.what}: JPEG encoding failed")
        data: bytes = jpeg.tobytes()
        return data

    def packets(self) -> Iterator[av.Packet[Any]]:
        started = time.monotonic()
        frame = 0
        while not self._closed.is_set():
            due = started + frame / self.fps
            if self._closed.wait(max(0.0, due - time.monotonic())):
                return
            packet = av.Packet(self._picture(time.time()))
            packet.pts = packet.dts = int(frame * 1000 / self.fps)
            packet.time_base = self.time_base
            frame += 1
            yield packet

    def interrupt(self) -> None:
        self._closed.set()

    def close(self) -> None:
        self._closed.set()


class SimulatedSource(Source):
    """`sim:` or `sim:?width=640&height=360&fps=10&period=20&walk=4`: a generated camera with motion."""

    kind = "sim"
    LIMITS = {"width": (64, 1920), "height": (48, 1080), "fps": (1, 30), "period": (2, 3600), "walk": (0.5, 600)}

    def __init__(self, url: str) -> None:
        from urllib.parse import parse_qsl
        self.url = url
        self.params = {"width": 640.0, "height": 360.0, "fps": 10.0, "period": 20.0, "walk": 4.0}
        for key, value in parse_qsl(urlsplit(url).query):
            limits = self.LIMITS.get(key)
            try:
                number = float(value)
            except ValueError:
                number = None
            if limits is None or number is None or not limits[0] <= number <= limits[1]:
                raise CameraError(f"{url}: {key}={value!r} is not one of width, height, fps, period, walk within "
                                  f"their limits {self.LIMITS}")
            self.params[key] = number
        if self.params["walk"] >= self.params["period"]:
            raise CameraError(f"{url}: walk must be shorter than period")

    def describe(self) -> str:
        return self.url

    def open(self) -> Feed:
        p = self.params
        return _SimulatedFeed(f"simulated camera {self.url}", int(p["width"]) & ~1, int(p["height"]) & ~1, p["fps"],
                              p["period"], p["walk"])


def source_for(url: str, transport: str = "tcp") -> Source:
    """The Source for a configured camera URL: rtsp://, http(s):// (MJPEG), /dev/video*, sim: or a file path."""
    scheme = urlsplit(url).scheme
    if scheme == "sim":
        return SimulatedSource(url)
    if url.startswith("v4l2:"):
        return V4L2Source(url.removeprefix("v4l2:"))
    if scheme in ("rtsp", "rtsps"):
        return RtspSource(url, transport)
    if scheme in ("http", "https"):
        return MjpegSource(url)
    if url.startswith("/dev/"):
        return V4L2Source(url)
    if scheme in ("", "file"):
        return FileSource(url.removeprefix("file://"))
    raise CameraError(f"unsupported camera URL scheme {scheme!r}")
