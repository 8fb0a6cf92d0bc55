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

import numpy as np
import pytest

from node.camera import sources
from node.camera.record import Recorder
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
