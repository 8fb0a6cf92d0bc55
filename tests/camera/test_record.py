"""Recording from real cameras on loopback: ffmpeg -> rtsp-server-perl -> Recorder, and an MJPEG HTTP camera.

Segments must be the camera's own H.264 (stream copy, bit for bit), cameras without H.264 are encoded, a lost
stream is reconnected, and promoted clips play to the end with their index (moov) first.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from node.camera import record, sources
from node.camera.feed import CameraError
from node.camera.record import Recorder, promote
from node.camera.sources import MjpegSource, RtspSource
from tests.camera.streams import MjpegServer, Publisher, RtspServer


@pytest.fixture(autouse=True)
def short_timings(monkeypatch):
    """Reconnect and time out quickly so tests stay short."""
    monkeypatch.setattr(record, "RECONNECT_MIN", 0.2)
    monkeypatch.setattr(record, "RECONNECT_MAX", 1.0)
    monkeypatch.setattr(sources, "OPEN_TIMEOUT", 5.0)
    monkeypatch.setattr(sources, "READ_TIMEOUT", 2.0)


@pytest.fixture(scope="module")
def rtsp(tmp_path_factory):
    """A running RTSP server with a 720p15 H.264 test pattern published at /cam1."""
    server = RtspServer(tmp_path_factory.mktemp("rtsp"))
    publisher = None
    try:
        server.start()
        publisher = Publisher(server).start()
        yield server
    finally:
        if publisher is not None:
            publisher.stop()
        server.stop()


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll until `predicate()` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


class Segments:
    """Collects on_segment calls (they come from the recorder's thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def __call__(self, path, camera, start_utc, end_utc, size) -> None:
        with self.lock:
            self.calls.append((path, camera, start_utc, end_utc, size))

    def __len__(self) -> int:
        with self.lock:
            return len(self.calls)

    def paths(self) -> list[Path]:
        with self.lock:
            return [c[0] for c in self.calls]


def annexb_nals(data: bytes) -> list[bytes]:
    """NAL units of an Annex B packet (start codes), as RTSP delivers them."""
    return [n.rstrip(b"\0") for n in data.split(b"\0\0\1") if n.rstrip(b"\0")]


def avcc_nals(data: bytes) -> list[bytes]:
    """NAL units of an MP4 packet (4-byte lengths)."""
    nals, i = [], 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        nals.append(data[i + 4:i + 4 + n])
        i += 4 + n
    return nals


def slice_hashes(nals: list[bytes]) -> set[bytes]:
    """Hashes of the coded picture slices (NAL types 1 and 5)."""
    return {hashlib.sha256(n).digest() for n in nals if n and n[0] & 0x1F in (1, 5)}


def decode_all(path: Path) -> tuple[str, int, float, int, int]:
    """(codec, pictures, seconds, width, height) of a file decoded to the end; raises on a decoding error."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        frames = 0
        last = first = None
        for frame in c.decode(stream):
            frames += 1
            first = frame.time if first is None else first
            last = frame.time
        seconds = float(c.duration / av.time_base) if c.duration else (last - first)
        return stream.codec_context.name, frames, seconds, stream.codec_context.width, stream.codec_context.height


def top_level_boxes(path: Path) -> list[str]:
    """Names of an MP4 file's top-level boxes, in order."""
    names, data, i = [], path.read_bytes(), 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[i + 8:i + 16])
        names.append(kind.decode("latin-1"))
        if size < 8:
            break
        i += size
    return names


def test_rtsp_is_recorded_by_stream_copy(rtsp, tmp_path):
    segments = Segments()
    recorder = Recorder("front", RtspSource(rtsp.url(), transport="udp"), tmp_path / "front",
                        on_segment=segments)
    reference: set[bytes] = set()
    with recorder:
        # An independent reader of the same stream, meanwhile: its pictures must be in the segments bit for bit.
        with av.open(rtsp.url(), options={"rtsp_transport": "udp"}, timeout=(10, 5)) as reader:
            keyframe_seen = False
            deadline = time.monotonic() + 5
            for packet in reader.demux(video=0):
                if packet.size == 0:
                    continue
                # Like the recorder, start at a keyframe with a timestamp (RTSP's very first one may lack it).
                keyframe_seen = keyframe_seen or (packet.is_keyframe and packet.dts is not None)
                if keyframe_seen:
                    reference |= slice_hashes(annexb_nals(bytes(packet)))
                if time.monotonic() > deadline:
                    break
        wait_for(lambda: len(segments) >= 3, 40, "three segments")
        state = recorder.state
    assert state.status == "streaming" or recorder.state.status == "stopped"
    assert state.codec == "h264" and not state.encoding
    assert (state.width, state.height) == (1280, 720)

    recorded: set[bytes] = set()
    for path in segments.paths():
        assert path.exists() and path.parent == tmp_path / "front"
        codec, frames, _, width, height = decode_all(path)
        assert codec == "h264" and (width, height) == (1280, 720)
        assert frames > 0
        with av.open(str(path)) as c:
            for packet in c.demux(video=0):
                if packet.size:
                    recorded |= slice_hashes(avcc_nals(bytes(packet)))
    assert len(reference) > 40
    # All of them, bar the odd datagram lost on the way (RTP over UDP).
    assert len(reference - recorded) <= len(reference) // 50, "segment pictures are not the camera's own bytes"
    assert not list((tmp_path / "front").glob(".*")), "temporary files left behind"

    starts = [c[2] for c in segments.calls]
    assert starts == sorted(starts)
    for i, (path, camera, start_utc, end_utc, size) in enumerate(segments.calls):
        assert camera == "front" and size == path.stat().st_size
        last = i == len(segments) - 1  # the one stop() finished may be short
        assert 0 < end_utc - start_utc < 10 and (last or end_utc - start_utc > 2)
        assert abs(start_utc - time.time()) < 120
    final = recorder.state
    assert final.status == "stopped"
    assert final.segments == len(segments) and final.bytes == sum(c[4] for c in segments.calls)
    assert [s.path for s in recorder.segments()] == segments.paths()


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "boundary-only"])
def test_mjpeg_camera_is_recorded_as_h264(tmp_path, content_length):
    camera = MjpegServer(fps=10, content_length=content_length).start()
    segments = Segments()
    pictures: list[tuple[np.ndarray, float]] = []
    recorder = Recorder("door", MjpegSource(camera.url), tmp_path, on_segment=segments,
                        on_frame=lambda gray, ts: pictures.append((gray, ts)), frame_width=320,
                        segment_seconds=2)
    try:
        with recorder:
            wait_for(lambda: len(segments) >= 2, 30, "two segments")
            state = recorder.state
    finally:
        camera.stop()
    assert state.codec == "mjpeg" and state.encoding
    for i, path in enumerate(segments.paths()):
        codec, frames, _, width, height = decode_all(path)
        assert codec == "h264" and (width, height) == (640, 360)
        assert frames >= (1 if i == len(segments) - 1 else 10)
    assert pictures, "no motion frames delivered"
    gray, ts = pictures[0]
    assert gray.dtype == np.uint8 and gray.shape == (180, 320)
    assert abs(ts - time.time()) < 60


def test_lost_stream_reconnects_and_recording_resumes(tmp_path):
    server = RtspServer(tmp_path).start()
    publisher = Publisher(server).start()
    segments = Segments()
    recorder = Recorder("yard", RtspSource(server.url(), transport="udp"), tmp_path / "yard", on_segment=segments)
    try:
        recorder.start()
        wait_for(lambda: len(segments) >= 1, 40, "a first segment")
        publisher.stop()  # the camera drops off the network
        wait_for(lambda: recorder.state.status in ("reconnecting", "error"), 20, "the loss noticed")
        assert recorder.state.reason
        before = len(segments)
        wait_for(lambda: recorder.state.reconnects >= 2, 20, "a reconnection attempt")
        restored = time.time()
        publisher = Publisher(server).start()  # and comes back
        wait_for(lambda: recorder.state.status == "streaming", 40, "streaming again")
        wait_for(lambda: len(segments) >= before + 2, 40, "segments after the restore")
    finally:
        recorder.stop()
        publisher.stop()
        server.stop()
    assert recorder.state.status == "stopped"
    resumed = [c for c in segments.calls if c[2] >= restored - 1]
    assert resumed
    for path, *_ in resumed:
        codec, frames, *_ = decode_all(path)
        assert codec == "h264" and frames > 0


def test_unreachable_camera_reports_why_and_stops(tmp_path):
    from tests.conftest import free_port
    recorder = Recorder("gone", RtspSource(f"rtsp://127.0.0.1:{free_port()}/x", transport="tcp"), tmp_path)
    with recorder:
        wait_for(lambda: recorder.state.status == "error", 20, "the error reported")
        state = recorder.state
    assert state.reason and "rtsp" in state.reason
    assert recorder.state.status == "stopped"
    assert not list(tmp_path.iterdir())
    recorder.stop()  # idempotent


def test_segments_are_promoted_into_a_clip_that_plays(rtsp, tmp_path):
    segments = Segments()
    with Recorder("gate", RtspSource(rtsp.url(), transport="udp"), tmp_path / "gate", on_segment=segments):
        wait_for(lambda: len(segments) >= 4, 40, "four segments")
    chosen = segments.paths()[1:4]
    expected = sum(decode_all(p)[2] for p in chosen)

    clip = promote(chosen, tmp_path / "clip.mp4", tmp_path / "clip.jpg")
    assert clip.path == tmp_path / "clip.mp4" and not clip.skipped
    assert clip.size == clip.path.stat().st_size
    assert clip.sha256 == hashlib.sha256(clip.path.read_bytes()).hexdigest()
    codec, frames, seconds, width, height = decode_all(clip.path)
    assert codec == "h264" and (width, height) == (1280, 720)
    assert seconds == pytest.approx(expected, abs=0.5)
    assert clip.duration == pytest.approx(expected, abs=0.5)
    assert frames == pytest.approx(15 * expected, abs=5)
    boxes = top_level_boxes(clip.path)
    assert "moov" in boxes and "mdat" in boxes and boxes.index("moov") < boxes.index("mdat"), boxes

    thumb = cv2.imdecode(np.frombuffer(clip.thumbnail.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert thumb is not None and thumb.shape == (180, 320, 3)
    assert not list(tmp_path.glob(".*")), "temporary files left behind"

    with pytest.raises(CameraError):
        promote([], tmp_path / "empty.mp4")
    with pytest.raises(CameraError):
        promote([tmp_path / "missing.mp4"], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists()
