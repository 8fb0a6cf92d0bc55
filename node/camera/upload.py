"""Uploads: a video a resident recorded themselves (doorbell camera, phone), checked and stored as a clip.

Everything about an upload is untrusted, its name and extension included. Only a few container formats are opened
(FORMATS; anything else, a playlist or concat file in particular, is refused before FFmpeg reads its header), and
the file counts as a video only once every picture has decoded, within bounds on length, picture count and
picture size. Pictures are dropped as they are decoded, so memory does not grow with the length of the video.

The stored clip is an MP4 with its index first (faststart) and VIDEO ONLY: the sound is dropped on purpose, since a
doorbell or phone also records the conversations of neighbours and passers-by. No metadata of the upload is copied
either (GPS location, camera make and model, dates); its creation time is read, and returned, but not stored in the
clip. H.264 in 4:2:0 is stream-copied, anything else is encoded once with libx264. A rotation flag (a phone held
upright) is kept as a flag, not applied to the pictures: browsers honour it; mirroring flags are lost when encoding.

Like `record.promote()`, it is all or nothing: the clip and its thumbnail are written under temporary names, synced,
and renamed (thumbnail first) only when both are complete. Blocking: run it in an executor.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from node.camera.h264 import ENCODER, add_h264_stream, frame_rate
from node.camera.h264 import av_reason as _why
from node.camera.segments import PART
from node.durable import fsync_file, publish, sha256_file, write_synced
from node.errors import NodeError

FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts"
"""Demuxers (libavformat names) an upload may use: phones write MP4 or MOV, cameras also MKV, AVI or MPEG-TS."""
CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg", "mpeg2video"})
"""Video codecs accepted from an upload."""
COPY_PIX_FMTS = frozenset({"yuv420p", "yuvj420p"})
"""Picture formats of H.264 that every browser plays, so it is stored as it is."""
MAX_RATE = 120
"""Pictures per second of video allowed on average: max_seconds * MAX_RATE bounds the decoding work."""
MIN_SIDE = 16
"""Narrowest picture accepted (pixels)."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
"""A creation time before this is a camera whose clock was never set."""
FUTURE = 86400.0
"""How far (seconds) a creation time may lie in the future (clock skew) before it is ignored."""
STILL_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\0", b"MM\0*")
"""First bytes of picture formats: JPEG, PNG, GIF, TIFF (BMP, WebP and HEIF/AVIF are checked in _refuse_still)."""
BMP_HEADERS = frozenset(n.to_bytes(4, "little") for n in (12, 40, 52, 56, 64, 108, 124))
STILL_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis"})


class UploadError(NodeError):
    """An uploaded file is not a usable video: not a video at all, damaged, or in an unsupported codec (415)."""

    status = 415
    reason = "upload"


class UploadTooLarge(UploadError):
    """An uploaded video is longer, or has more or larger pictures, than allowed (413)."""

    status = 413


class UploadStoreError(UploadError):
    """A good upload could not be stored (disk full, folder missing...) (500)."""

    status = 500


@dataclass(frozen=True)
class UploadedClip:
    """A stored upload: the clip and its thumbnail, and what was learnt about the video."""

    path: Path
    thumbnail: Path
    duration: float
    width: int
    height: int
    """Of the stored clip: even when encoded."""
    size: int
    sha256: str
    codec: str
    """Codec of the uploaded video, e.g. "h264", "hevc", "vp9"."""
    transcoded: bool
    """False when the uploaded H.264 was stream-copied."""
    recorded_utc: float | None
    """The upload's creation time (UTC POSIX seconds), when it has a plausible one."""


class _NotCopyable(Exception):
    """The H.264 cannot be stream-copied after all (timestamps, picture size or format): encode it instead."""


def ingest_upload(src: str | Path, clip: str | Path, thumbnail: str | Path, *, max_seconds: float = 600,
                  max_pixels: int = 4096 * 2304) -> UploadedClip:
    """Check that `src` is a video by decoding all of it, and store it as an MP4 clip with a JPEG thumbnail.

    Raises UploadError (415) for a file that is not a usable video, UploadTooLarge (413) for one over max_seconds
    or max_pixels, UploadStoreError (500) when the clip cannot be written; nothing is left behind then.
    """
    src, clip, thumbnail = Path(src), Path(clip), Path(thumbnail)
    _refuse_still(src)
    tmp = clip.with_name("." + clip.name + PART)
    thumb_tmp = thumbnail.with_name("." + thumbnail.name + PART)
    try:
        try:
            codec, recorded_utc, copied = _convert(src, tmp, max_seconds, max_pixels, copy=True)
        except _NotCopyable:
            codec, recorded_utc, copied = _convert(src, tmp, max_seconds, max_pixels, copy=False)
        try:
            fsync_file(tmp)
            duration, width, height, jpeg = _inspect(tmp)
            write_synced(thumb_tmp, jpeg)
            size, digest = sha256_file(tmp)
            publish((thumb_tmp, thumbnail), (tmp, clip))
        except (av.error.FFmpegError, OSError, StopIteration) as exc:
            raise UploadStoreError(f"upload: storing the clip failed ({_why(exc)})") from exc
    finally:
        tmp.unlink(missing_ok=True)
        thumb_tmp.unlink(missing_ok=True)
    return UploadedClip(clip, thumbnail, duration, width, height, size, digest, codec, not copied,
                        recorded_utc)


def _refuse_still(src: Path) -> None:
    """Refuse an empty file or a picture format at once, by its first bytes (FFmpeg would open some as 1-frame
    video, but they are not on FORMATS and would get a less helpful message)."""
    try:
        with open(src, "rb") as handle:
            head = handle.read(32)
    except OSError as exc:
        raise UploadError(f"upload: cannot read the file ({_why(exc)})") from exc
    if not head:
        raise UploadError("upload: the file is empty")
    if (head.startswith(STILL_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or (head[:2] == b"BM" and head[14:18] in BMP_HEADERS)
            or (head[4:8] == b"ftyp" and head[8:12] in STILL_BRANDS)):
        raise UploadError("upload: a still picture, not a video")


def _open(src: Path) -> av.container.InputContainer:
    try:
        # An absolute path: a name like "x:y.mp4" must not read as a protocol.
        container = av.open(os.path.abspath(src), metadata_errors="replace",
                            container_options={"format_whitelist": FORMATS, "protocol_whitelist": "file"})
    except av.error.ArgumentError as exc:  # what format_whitelist gives
        raise UploadError("upload: not a video file (unsupported format)") from exc
    except av.error.FFmpegError as exc:
        raise UploadError(f"upload: not a video file ({_why(exc)})") from exc
    name = container.format.name
    if "image" in name or name.endswith("_pipe"):  # only if FORMATS is ever widened
        container.close()
        raise UploadError("upload: a still picture, not a video")
    return container


def _video_stream(container: av.container.InputContainer, max_seconds: float,
                  max_pixels: int) -> av.video.stream.VideoStream:
    """The first video stream, checked against what its header says (the pictures are checked when decoded)."""
    if not container.streams.video:
        raise UploadError("upload: no video stream" + (" (sound only)" if container.streams.audio else ""))
    video = container.streams.video[0]
    codec = _codec(video)
    if codec not in CODECS:
        raise UploadError(f"upload: unsupported video codec {codec}")
    width, height = video.codec_context.width, video.codec_context.height
    _check_size(width, height, max_pixels, declared=True)
    if video.duration and video.time_base and float(video.duration * video.time_base) > max_seconds + 1:
        raise UploadTooLarge(f"upload: video longer than {max_seconds:g} s")
    video.codec_context.thread_type = "AUTO"
    return video


def _codec(video: av.video.stream.VideoStream) -> str:
    """The codec's name ("h264"), whichever decoder implements it ("libdav1d" for "av1")."""
    ctx = video.codec_context
    return ctx.codec.canonical_name if ctx is not None and ctx.codec is not None else "unknown"


def _check_size(width: int, height: int, max_pixels: int, declared: bool = False) -> None:
    if declared and width == 0 and height == 0:  # not in the header: the pictures will tell
        return
    if width * height > max_pixels:
        raise UploadTooLarge(f"upload: pictures of {width}x{height} are over the limit of {max_pixels} pixels")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise UploadError(f"upload: implausible picture size {width}x{height}")


def _convert(src: Path, tmp: Path, max_seconds: float, max_pixels: int,
             copy: bool) -> tuple[str, float | None, bool]:
    """Decode every picture of `src` and write its video into `tmp`, by stream copy if `copy` and it is H.264.

    Returns the upload's video codec, its creation time, and whether it was copied."""
    container = _open(src)
    out: av.container.OutputContainer | None = None
    try:
        video = _video_stream(container, max_seconds, max_pixels)
        codec = _codec(video)
        recorded_utc = _recorded_utc(container.metadata, video.metadata)
        copy = copy and codec == "h264" and video.codec_context.pix_fmt in COPY_PIX_FMTS
        try:
            out = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"})
        except (av.error.FFmpegError, OSError) as exc:
            raise UploadStoreError(f"upload: storing the clip failed ({_why(exc)})") from exc
        writer = _Copier(out, video) if copy else _Encoder(out, video)
        tb = video.time_base or Fraction(1, 90000)
        step = max(1, round(1 / (frame_rate(video, MAX_RATE) * tb)))  # ticks per picture, for pictures without a usable time
        max_frames = int(max_seconds * MAX_RATE)
        frames = packets = 0
        first: int | None = None
        last: int | None = None
        try:
            for packet in container.demux(video):
                packets += packet.size > 0
                if packets > 2 * max_frames + 100:  # packets that make no picture also cost time
                    raise UploadTooLarge(f"upload: video has more than {max_frames} pictures")
                for frame in video.decode(packet):
                    frames += 1
                    if frames > max_frames:
                        raise UploadTooLarge(f"upload: video has more than {max_frames} pictures")
                    # Its time from the first picture, always increasing: what an encoded clip will show.
                    if first is None and frame.pts is not None:
                        first = frame.pts
                    ts = None if frame.pts is None or first is None else frame.pts - first
                    if last is not None and (ts is None or ts <= last):
                        ts = last + step
                    last = ts = ts or 0
                    if ts * tb > max_seconds:
                        raise UploadTooLarge(f"upload: video longer than {max_seconds:g} s")
                    _check_size(frame.width, frame.height, max_pixels)
                    writer.frame(frame, ts)
                if packet.size:
                    if packet.is_corrupt:
                        raise UploadError("upload: damaged video (a picture is corrupt or cut short)")
                    writer.packet(packet)
        except (av.error.FFmpegError, OSError) as exc:  # the input's: writing errors are translated by the writer
            raise UploadError(f"upload: damaged video ({_why(exc)})") from exc
        if frames == 0:
            raise UploadError("upload: no picture could be decoded")
        writer.finish()
        closing, out = out, None  # the finally below must not close it again
        try:
            closing.close()
        except (av.error.FFmpegError, OSError) as exc:
            if copy:
                raise _NotCopyable(str(exc)) from exc
            raise UploadStoreError(f"upload: storing the clip failed ({_why(exc)})") from exc
        return codec, recorded_utc, copy
    finally:
        if out is not None:
            try:
                out.close()
            except (av.error.FFmpegError, OSError):
                pass  # the error that got us here is the one to report
        container.close()


class _Copier:
    """Stream-copies H.264 packets, timestamps from 0; gives up (_NotCopyable) on anything a player would trip on."""

    def __init__(self, out: av.container.OutputContainer, video: av.video.stream.VideoStream) -> None:
        self.out = out
        self.size = (video.codec_context.width, video.codec_context.height)
        try:
            self.stream = out.add_stream_from_template(video)
        except (av.error.FFmpegError, ValueError) as exc:
            raise _NotCopyable(str(exc)) from exc
        self.stream.metadata.clear()
        self.shift: int | None = None
        self.last = 0

    def frame(self, frame: av.VideoFrame, ts: int) -> None:
        """Check a decoded picture: its size and format must stay those of the stream."""
        if (frame.width, frame.height) != self.size or frame.format.name not in COPY_PIX_FMTS:
            raise _NotCopyable("picture size or format changes")

    def packet(self, packet: av.Packet[Any]) -> None:
        """Write a packet (its pictures have decoded)."""
        if packet.dts is None or packet.pts is None:
            raise _NotCopyable("a packet without timestamps")
        if self.shift is None:
            if not packet.is_keyframe:
                raise _NotCopyable("does not start with a keyframe")
            self.shift = -packet.pts  # the first picture shows at 0 (decoding starts earlier with B-frames)
        elif packet.dts + self.shift <= self.last:
            raise _NotCopyable("timestamps do not increase")
        packet.dts += self.shift
        packet.pts += self.shift
        self.last = packet.dts
        packet.stream = self.stream
        try:
            self.out.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise _NotCopyable(str(exc)) from exc

    def finish(self) -> None:
        """Nothing is buffered."""


class _Encoder:
    """Encodes the decoded pictures once with libx264, in 4:2:0 with even sides, keeping their timestamps."""

    def __init__(self, out: av.container.OutputContainer, video: av.video.stream.VideoStream) -> None:
        self.out = out
        self.video = video
        self.time_base = video.time_base or Fraction(1, 90000)
        self.stream: av.video.stream.VideoStream | None = None

    def _open(self, frame: av.VideoFrame) -> av.video.stream.VideoStream:
        try:
            stream = add_h264_stream(self.out, frame.width, frame.height, self.time_base,
                                     frame_rate(self.video, MAX_RATE))
            rotation = getattr(frame, "rotation", 0)  # PyAV 14 and later
            if rotation:  # keep it, as a copied clip does (a phone held upright)
                stream.set_display_rotation(rotation)
        except (av.error.FFmpegError, ValueError) as exc:
            raise UploadStoreError(f"upload: {ENCODER} encoder unavailable ({exc})") from exc
        self.stream = stream
        return stream

    def frame(self, frame: av.VideoFrame, ts: int) -> None:
        """Encode one decoded picture, shown at `ts` (in the upload's time base, increasing)."""
        stream = self._open(frame) if self.stream is None else self.stream
        ctx = stream.codec_context
        try:
            picture = frame.reformat(width=ctx.width, height=ctx.height, format="yuv420p",
                                     src_color_range=frame.color_range or None, dst_color_range="MPEG")
        except (av.error.FFmpegError, ValueError) as exc:
            raise UploadError(f"upload: damaged video ({_why(exc)})") from exc
        picture.pts = ts
        picture.time_base = self.time_base
        picture.pict_type = av.video.frame.PictureType.NONE  # not the upload's: the encoder picks its keyframes
        self._mux(stream, picture)

    def packet(self, packet: av.Packet[Any]) -> None:
        """Pictures, not packets, are what is encoded."""

    def finish(self) -> None:
        """Write the pictures the encoder still holds."""
        if self.stream is not None:
            self._mux(self.stream, None)

    def _mux(self, stream: av.video.stream.VideoStream, picture: av.VideoFrame | None) -> None:
        try:
            self.out.mux(stream.encode(picture))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise UploadStoreError(f"upload: storing the clip failed ({_why(exc)})") from exc


def _recorded_utc(*tags: dict[str, str]) -> float | None:
    """The first plausible ISO 8601 creation_time among metadata dicts, as UTC POSIX seconds."""
    for meta in tags:
        value = meta.get("creation_time")
        if not value:
            continue
        try:
            when = datetime.fromisoformat(value.strip())
            if when.tzinfo is None:  # MP4 times are UTC
                when = when.replace(tzinfo=UTC)
            utc = when.timestamp()
        except (ValueError, OverflowError):
            continue
        if EARLIEST <= utc <= time.time() + FUTURE:
            return utc
    return None


def _inspect(clip: Path) -> tuple[float, int, int, bytes]:
    """The duration, width and height of a clip we wrote, and a JPEG (THUMBNAIL_WIDTH wide) of its picture nearest
    the middle."""
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        size = video.codec_context.width, video.codec_context.height
        if video.time_base is None:
            raise OSError("the clip's video has no time base")
        if container.duration:
            duration = container.duration / av.time_base
        else:
            duration = float((video.duration or 0) * video.time_base)
        middle = duration / 2
        container.seek(int(middle / video.time_base), stream=video, backward=True)
        picture = None
        for frame in container.decode(video):
            picture = frame
            if frame.time is None or frame.time >= middle:
                break
        if picture is None:
            raise StopIteration("no picture in the clip")
    from node.camera.promote import THUMBNAIL_WIDTH
    width = min(THUMBNAIL_WIDTH, picture.width) & ~1
    height = max(2, round(picture.height * width / picture.width)) & ~1
    image = picture.reformat(width=width, height=height, format="bgr24").to_ndarray()
    import cv2  # here, not at the top: OpenCV (and NumPy) load when an upload needs them, not at start-up
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise OSError("JPEG encoding failed")
    return duration, *size, jpeg.tobytes()
