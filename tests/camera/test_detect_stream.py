"""A camera with a detect stream: ffmpeg publishes a 720p main stream and a 320x180 substream to rtsp-server-perl.

The main stream is recorded by stream copy and never decoded for motion; motion frames come from the substream, at
its own size. A detect stream that cannot be reached leaves the recording alone. On the main stream alone, the
decoder skips non-reference pictures when motion needs fewer than the stream has, and falls back to software where
there is no hardware decoder (this machine and CI have none).
"""

from __future__ import annotations

import glob
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from node.camera import sources
from node.camera.motion import MotionSettings, shrink
from node.camera.record import Recorder, luma
from node.camera.sources import FileSource, RtspSource
from tests.camera.streams import Publisher, RtspServer
from tests.camera.test_record import Segments, decode_all, short_timings, wait_for  # noqa: F401  (a fixture)
from tests.conftest import free_port


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """An RTSP server offering a camera's two streams: /main (1280x720, 15 fps) and /sub (320x180, 5 fps)."""
    server = RtspServer(tmp_path_factory.mktemp("rtsp"))
    publishers: list[Publisher] = []
    try:
        server.start()
        publishers.append(Publisher(server, "main", size="1280x720", rate=15).start())
        publishers.append(Publisher(server, "sub", size="320x180", rate=5, gop=10).start())
        yield server
    finally:
        for publisher in publishers:
            publisher.stop()
        server.stop()


class Pictures:
    """Collects on_frame calls (from the detect thread): copies, since the picture is the decoder's buffer."""

    def __init__(self) -> None:
        self.items: list[tuple[np.ndarray, float]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, gray: np.ndarray, utc: float) -> None:
        with self.lock:
            self.items.append((gray.copy(), utc))
            self.threads.add(threading.current_thread().name)

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


def test_motion_comes_from_the_substream_while_the_main_stream_is_copied(camera, tmp_path):
    segments, pictures = Segments(), Pictures()
    recorder = Recorder("porch", RtspSource(camera.url("main"), transport="udp"), tmp_path / "porch",
                        on_segment=segments, on_frame=pictures, frame_width=0, frame_fps=5,
                        detect_source=RtspSource(camera.url("sub"), transport="udp"), segment_seconds=2)
    with recorder:
        wait_for(lambda: len(segments) >= 2 and len(pictures) >= 10, 60, "two segments and ten motion frames")
        state = recorder.state
    assert state.status == "streaming"
    assert state.detect == "streaming 320x180" and (state.width, state.height) == (1280, 720)
    with pictures.lock:
        items = list(pictures.items)
        threads = set(pictures.threads)
    assert {gray.shape for gray, _ in items} == {(180, 320)}  # the substream's pictures, as decoded
    assert threads == {"nnode-detect-porch"}  # never from the main stream's thread
    assert all(abs(utc - time.time()) < 60 for _, utc in items)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(items, items[1:])), "the substream's pictures froze"
    for path in segments.paths()[:-1]:
        codec, frames, _, width, height = decode_all(path)
        assert (codec, width, height) == ("h264", 1280, 720) and frames >= 15


def test_an_unreachable_detect_stream_leaves_the_recording_alone(camera, tmp_path):
    segments, pictures = Segments(), Pictures()
    dead = RtspSource(f"rtsp://127.0.0.1:{free_port()}/sub", transport="tcp")
    recorder = Recorder("back", RtspSource(camera.url("main"), transport="udp"), tmp_path / "back",
                        on_segment=segments, on_frame=pictures, detect_source=dead, segment_seconds=2)
    with recorder:
        wait_for(lambda: len(segments) >= 2 and (recorder.state.detect or "").startswith("reconnecting"), 60,
                 "two segments and the detect stream's failure")
        state = recorder.state
    assert state.status == "streaming" and state.reason is None
    assert "rtsp" in (state.detect or "") and len(pictures) == 0


def test_the_main_stream_decodes_only_reference_pictures_in_software_without_a_hardware_decoder(tmp_path):
    if glob.glob("/dev/video*"):
        pytest.skip("this machine may have a V4L2 decoder: the software fallback is not what runs")
    # A camera that sends B pictures: two non-reference ones after each reference picture (a fixed pattern).
    path = tmp_path / "main.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=15", "-t", "8", "-c:v", "libx264", "-preset", "veryfast", "-g", "30",
                    "-bf", "2", "-x264-params", "b-adapt=0:b-pyramid=none", "-pix_fmt", "yuv420p", str(path)],
                   check=True, timeout=120)
    plain, lean = FileSource(str(path)).open(), FileSource(str(path)).open()
    try:
        assert sources.hardware_decoder("main", lean.stream) is None  # type: ignore[attr-defined]
        lean.economise(5, hardware=True)  # 15 fps stream, 5 wanted: non-reference pictures are skipped
        assert not lean.hardware
        packets = []
        for packet in plain.packets():  # the same packets through both decoders
            packets.append(packet)
            if len(packets) == 90:
                break
        every = sum(len(plain.decode(p)) for p in packets)
        reference = sum(len(lean.decode(p)) for p in packets)
    finally:
        plain.close()
        lean.close()
    assert every >= 85  # all but the decoder's delay
    assert 25 <= reference <= 35  # the I and P pictures: one in three


def encode(path, size: str, rate: int, gop: int, seconds: int = 4) -> None:
    """An H.264 test pattern file as the camera tests' publisher encodes it."""
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
                    "-g", str(gop), "-pix_fmt", "yuv420p", str(path)], check=True, timeout=120)


def test_detect_pictures_skip_the_deblocking_filter_without_changing_what_motion_sees(tmp_path):
    path = tmp_path / "sub.mp4"
    encode(path, "640x360", 5, 10)
    filtered, lean = FileSource(str(path), loop=False).open(), FileSource(str(path), loop=False).open()
    try:
        filtered.economise(5, hardware=False)
        lean.economise(5, hardware=False, deblock=False)
        pairs = []
        for packet in filtered.packets():  # the same packets through both decoders (4 s, played in real time)
            pairs += zip(filtered.decode(packet), lean.decode(packet))
    finally:
        filtered.close()
        lean.close()
    assert len(pairs) >= 15
    lumas = [(luma(a).astype(np.int16), luma(b).astype(np.int16)) for a, b in pairs]
    assert any(not np.array_equal(a, b) for a, b in lumas), "the deblocking filter still ran"
    settings = MotionSettings()
    worst = 0
    for a, b in lumas:  # as the detector sees them: shrunk to its working width and blurred
        small = [cv2.GaussianBlur(shrink(x.astype(np.uint8), settings.width), (settings.blur,) * 2, 0) for x in (a, b)]
        worst = max(worst, int(np.abs(small[0].astype(np.int16) - small[1]).max()))
    assert worst < settings.min_threshold  # under the lowest threshold motion ever uses


def test_a_hardware_decoder_that_gives_no_pictures_falls_back_to_software(tmp_path, monkeypatch, caplog):
    # A real decoder that opens but cannot decode H.264 stands in for a V4L2 one that cannot take this stream.
    monkeypatch.setitem(sources.HARDWARE_DECODERS, "h264", "mjpeg")
    monkeypatch.setattr(sources, "HARDWARE_PATIENCE", 10)
    path = tmp_path / "main.mp4"
    encode(path, "1280x720", 15, 15, seconds=30)
    pictures = Pictures()
    recorder = Recorder("garage", FileSource(str(path)), tmp_path / "garage", on_frame=pictures, frame_width=0,
                        frame_fps=5, ring_seconds=None)
    with caplog.at_level("WARNING", logger="nnode.camera"), recorder:
        wait_for(lambda: recorder.state.codec is not None, 30, "the file to open")
        wait_for(lambda: len(pictures) >= 5, 30, "motion frames from the software decoder")
        state = recorder.state
    assert not state.hardware and state.status == "streaming"
    assert any("decoding in software" in r.getMessage() for r in caplog.records)
    with pictures.lock:
        assert {gray.shape for gray, _ in pictures.items} == {(720, 1280)}
