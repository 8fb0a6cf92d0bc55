"""Uploaded videos: real files made by ffmpeg, stored as clips or refused with a clear reason and nothing left behind.

A stored clip is browser-playable H.264 (copied when it already is), has no sound and none of the upload's metadata,
its index comes first, and its thumbnail and checksum are right.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from node.camera.upload import UploadedClip, UploadError, UploadStoreError, UploadTooLarge, ingest_upload
from tests.firmware.tools import need

SECONDS = 3
PATTERN = f"testsrc2=size=320x240:rate=15:duration={SECONDS}"
LOCATION = "+40.7128-074.0060/"


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; fail the test with its message if it fails."""
    run = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                         check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """A folder of uploads, good and bad, made once for the module."""
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("uploads")
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
           "-metadata", f"location={LOCATION}", "-metadata", "creation_time=2026-11-20T10:00:00Z",
           folder / "phone.mp4")
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", folder / "faststart.mp4")
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv444p",
           "-metadata", "creation_time=1999-12-31T23:00:00Z", folder / "yuv444.mp4")
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           folder / "b-frames.mkv")
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
           "-b:v", "300k", folder / "doorbell.webm")
    ffmpeg("-f", "lavfi", "-i", PATTERN.replace("320x240", "321x241"), "-c:v", "mjpeg", "-q:v", "5",
           folder / "doorbell.avi")  # odd sides, which H.264 in 4:2:0 cannot have
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-frames:v", "1", folder / "still.jpg")
    ffmpeg("-f", "lavfi", "-i", PATTERN, "-frames:v", "1", folder / "still.png")
    ffmpeg("-f", "lavfi", "-i", f"sine=duration={SECONDS}", "-c:a", "aac", folder / "voice.m4a")
    (folder / "still-named.mp4").write_bytes((folder / "still.jpg").read_bytes())
    (folder / "random.mp4").write_bytes(random.Random(1).randbytes(100_000))
    (folder / "text.mp4").write_text("This is not a video, just a letter to the neighbours.\n" * 200)
    (folder / "empty.mp4").write_bytes(b"")
    for name in ("phone.mp4", "faststart.mp4"):
        data = (folder / name).read_bytes()
        (folder / f"half-{name}").write_bytes(data[:len(data) // 2])
    # A playlist that would make FFmpeg read another file: only video container formats may be opened.
    (folder / "playlist.m3u8").write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
                                          f"#EXTINF:10,\nfile://{folder / 'phone.mp4'}\n#EXT-X-ENDLIST\n")
    return folder


def upright_phone_video(path: Path, pix_fmt: str) -> None:
    """A video recorded by a phone held upright: landscape pictures with a rotation flag (Debian's ffmpeg 5.1
    cannot set one)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 320, 240, pix_fmt
        stream.set_display_rotation(90)
        for i in range(SECONDS * 15):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 5, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def decode_all(path: Path) -> tuple[str, int, float]:
    """(codec, pictures, seconds) of a file decoded to the end; raises on a decoding error."""
    with av.open(str(path)) as c:
        frames = sum(1 for _ in c.decode(video=0))
        return c.streams.video[0].codec_context.name, frames, c.duration / av.time_base


def ingest(src: Path, out: Path, **limits) -> UploadedClip:
    return ingest_upload(src, out / "clip.mp4", out / "clip.jpg", **limits)


def check_stored(clip: UploadedClip, out: Path) -> None:
    """The clip and thumbnail are where they should be, alone, with the right checksum and a 320-wide JPEG."""
    assert sorted(p.name for p in out.iterdir()) == ["clip.jpg", "clip.mp4"]
    data = clip.path.read_bytes()
    assert clip.size == len(data) and clip.sha256 == hashlib.sha256(data).hexdigest()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: playable while it downloads
    image = cv2.imdecode(np.frombuffer(clip.thumbnail.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (240, 320, 3)
    # It shows the middle of the video (the test pattern moves: the closest picture is the one shown).
    with av.open(str(clip.path)) as c:
        pictures = [f.to_ndarray(format="bgr24").astype(np.int16) for f in c.decode(video=0)]
    nearest = min(range(len(pictures)), key=lambda i: np.abs(pictures[i] - image).mean())
    assert abs(nearest - len(pictures) / 2) <= 2
    assert (clip.width, clip.height) == (320, 240)


def test_phone_video_is_copied_without_sound_or_location(media, tmp_path):
    clip = ingest(media / "phone.mp4", tmp_path)
    check_stored(clip, tmp_path)
    assert clip.codec == "h264" and not clip.transcoded
    assert clip.recorded_utc == 1795168800.0  # 2026-11-20T10:00:00Z
    assert abs(clip.duration - SECONDS) < 0.2
    with av.open(str(clip.path)) as c:
        assert [s.type for s in c.streams] == ["video"]
        tags = set(c.metadata) | set(c.streams.video[0].metadata)
        assert not {"location", "location-eng", "creation_time"} & tags
    assert b"+40.7128" not in clip.path.read_bytes()
    # Stream copy: the same pictures, bit for bit.
    with av.open(str(media / "phone.mp4")) as a, av.open(str(clip.path)) as b:
        assert [bytes(p) for p in a.demux(video=0) if p.size] == [bytes(p) for p in b.demux(video=0) if p.size]
    assert decode_all(clip.path) == ("h264", SECONDS * 15, pytest.approx(SECONDS, abs=0.2))


@pytest.mark.parametrize("name, codec", [
    ("doorbell.webm", "vp8"),
    ("doorbell.avi", "mjpeg"),
    ("yuv444.mp4", "h264"),  # H.264 that not every browser plays
    ("b-frames.mkv", "h264"),  # H.264 whose first packets have no decoding time: copying it is given up
])
def test_other_videos_are_encoded_to_h264(media, tmp_path, name, codec):
    clip = ingest(media / name, tmp_path)
    check_stored(clip, tmp_path)
    assert clip.codec == codec and clip.transcoded
    assert abs(clip.duration - SECONDS) < 0.2
    assert decode_all(clip.path) == ("h264", SECONDS * 15, pytest.approx(SECONDS, abs=0.2))
    with av.open(str(clip.path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert clip.recorded_utc is None  # none, or in yuv444.mp4 one from before 2000: a clock never set


@pytest.mark.parametrize("name, kind, message", [
    ("still.jpg", UploadError, "upload: a still picture, not a video"),
    ("still.png", UploadError, "upload: a still picture, not a video"),
    ("still-named.mp4", UploadError, "upload: a still picture, not a video"),
    ("voice.m4a", UploadError, "upload: no video stream (sound only)"),
    ("random.mp4", UploadError, "upload: not a video file"),
    ("text.mp4", UploadError, "upload: not a video file"),
    ("empty.mp4", UploadError, "upload: the file is empty"),
    ("half-phone.mp4", UploadError, "upload: not a video file"),
    ("half-faststart.mp4", UploadError, "upload: damaged video"),
    ("playlist.m3u8", UploadError, "upload: not a video file (unsupported format)"),
])
def test_not_a_video_is_refused(media, tmp_path, name, kind, message):
    with pytest.raises(kind) as refused:
        ingest(media / name, tmp_path)
    assert str(refused.value).startswith(message)
    assert refused.value.status == 415
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, limits, message", [
    ("phone.mp4", {"max_seconds": 1}, "upload: video longer than 1 s"),  # as its header says
    ("doorbell.webm", {"max_seconds": 1}, "upload: video longer than 1 s"),  # found by decoding
    ("doorbell.webm", {"max_pixels": 320 * 240 - 1}, "upload: pictures of 320x240 are over the limit"),
])
def test_too_large_is_refused(media, tmp_path, name, limits, message):
    with pytest.raises(UploadTooLarge) as refused:
        ingest(media / name, tmp_path, **limits)
    assert str(refused.value).startswith(message)
    assert refused.value.status == 413
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pix_fmt, transcoded", [("yuv420p", False), ("yuv444p", True)])
def test_upright_phone_video_stays_upright(tmp_path, pix_fmt, transcoded):
    upright_phone_video(tmp_path / "upright.mp4", pix_fmt)
    out = tmp_path / "out"
    out.mkdir()
    clip = ingest(tmp_path / "upright.mp4", out)
    assert clip.transcoded == transcoded
    with av.open(str(clip.path)) as c:
        assert next(c.decode(video=0)).rotation == 90


def test_storing_failure_is_the_nodes_fault(media, tmp_path):
    with pytest.raises(UploadStoreError) as failed:
        ingest(media / "phone.mp4", tmp_path / "missing")
    assert failed.value.status == 500 and str(failed.value).startswith("upload: storing the clip failed")
    assert list(tmp_path.iterdir()) == []
