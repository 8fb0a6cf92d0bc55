"""Real camera streams on loopback for the camera tests: an RTSP server fed by ffmpeg, and an MJPEG HTTP server.

The RTSP server is Debian's rtsp-server-perl: ffmpeg publishes to its source port (ANNOUNCE/RECORD), the recorder
reads from its client port (PLAY), over RTP/UDP only. Its TCP ports and first RTP port are options, but whenever it
has no stream mounted it resets the RTP port counter to the package global $RTSP::Server::RTP_START_PORT (20000), so
two servers would collide; the server is therefore started as the package's /usr/bin/rtsp-server-perl script is
written, with that global set too. Each server then uses free ports of its own.
"""

from __future__ import annotations

import http.server
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import free_port
from tests.firmware.tools import need


def _udp_range_free(start: int, count: int) -> bool:
    sockets = []
    try:
        for port in range(start, start + count):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sockets.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in sockets:
            s.close()


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


SERVER_SCRIPT = """
my ($port) = grep { $ARGV[$_] eq '--rtp_start_port' } 0..$#ARGV;
$RTSP::Server::RTP_START_PORT = $ARGV[$port + 1];
my $srv = RTSP::Server->new_with_options();
$srv->listen;
my $cv = AnyEvent->condvar;
$SIG{INT} = $SIG{TERM} = sub { $cv->send };
$cv->recv;
"""
"""/usr/bin/rtsp-server-perl, plus the RTP port reset fix (see the module docstring)."""


class RtspServer:
    """rtsp-server-perl on 127.0.0.1 with free ports: `publish_url(path)` for ffmpeg, `url(path)` for readers."""

    def __init__(self, log_dir: Path) -> None:
        need("rtsp-server-perl")
        self.log_path = log_dir / "rtsp-server.log"
        self.client_port = free_port()
        self.source_port = free_port()
        self.rtp_port = 20000
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        """Start the server and wait (bounded) until it accepts connections."""
        # It hands out two RTP/RTCP ports per stream and per reader from rtp_start_port on.
        for _ in range(50):
            self.rtp_port = random.randrange(20000, 60000, 2)
            if _udp_range_free(self.rtp_port, 64):
                break
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["perl", "-MAnyEvent", "-MRTSP::Server", "-e", SERVER_SCRIPT, "--",
                 "--clientport", str(self.client_port), "--serverport", str(self.source_port),
                 "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                 "--rtp_start_port", str(self.rtp_port), "--loglevel", "2"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rtsp-server-perl exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.client_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", self.source_port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("rtsp-server-perl did not listen within 15 s")

    def url(self, path: str = "cam1") -> str:
        """The URL a camera reader plays."""
        return f"rtsp://127.0.0.1:{self.client_port}/{path}"

    def publish_url(self, path: str = "cam1") -> str:
        """The URL ffmpeg publishes to."""
        return f"rtsp://127.0.0.1:{self.source_port}/{path}"

    def has_stream(self, path: str = "cam1") -> bool:
        """True when a publisher has announced `path` (an RTSP DESCRIBE answers 200)."""
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=2) as s:
                s.sendall(f"DESCRIBE {self.url(path)} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
                return s.recv(64).startswith(b"RTSP/1.0 200")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        _stop(self.proc)


class Publisher:
    """ffmpeg encoding a test pattern to H.264 and publishing it to an RTSP server in real time (-re)."""

    def __init__(self, server: RtspServer, path: str = "cam1", size: str = "1280x720", rate: int = 15,
                 gop: int = 30) -> None:
        need("ffmpeg")
        self.server, self.path = server, path
        self.args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi",
                     "-i", f"testsrc2=size={size}:rate={rate}", "-c:v", "libx264", "-preset", "veryfast",
                     "-g", str(gop), "-pix_fmt", "yuv420p", "-f", "rtsp", server.publish_url(path)]
        self.log_path = server.log_path.with_name(f"ffmpeg-{path}.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Publisher:
        """Start publishing and wait (bounded) until the server offers the stream."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ffmpeg exited: {self.log_path.read_text()[-2000:]}")
            if self.server.has_stream(self.path):
                return self
            time.sleep(0.1)
        raise AssertionError("the RTSP server did not offer the published stream within 20 s")

    def stop(self) -> None:
        """Stop publishing (idempotent)."""
        _stop(self.proc)


def picture(i: int, width: int = 640, height: int = 360) -> np.ndarray:
    """A BGR picture with a moving square and a frame counter."""
    image = np.full((height, width, 3), (40, 90, 30), np.uint8)
    x = (i * 8) % (width - 80)
    cv2.rectangle(image, (x, height // 3), (x + 80, height // 3 + 80), (240, 240, 240), -1)
    cv2.putText(image, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return image


class MjpegServer:
    """An HTTP camera serving multipart/x-mixed-replace JPEG pictures at `fps`, on a free loopback port."""

    def __init__(self, fps: float = 10.0, width: int = 640, height: int = 360, content_length: bool = True) -> None:
        self.fps, self.width, self.height, self.content_length = fps, width, height, content_length
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.stopping = threading.Event()
        self.httpd: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> MjpegServer:
        """Serve in a background thread."""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while not owner.stopping.is_set():
                    _, jpeg = cv2.imencode(".jpg", picture(i, owner.width, owner.height))
                    head = b"--frame\r\nContent-Type: image/jpeg\r\n"
                    if owner.content_length:
                        head += b"Content-Length: %d\r\n" % len(jpeg)
                    try:
                        self.wfile.write(head + b"\r\n" + jpeg.tobytes() + b"\r\n")
                        self.wfile.flush()
                    except OSError:
                        return
                    i += 1
                    owner.stopping.wait(1 / owner.fps)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="mjpeg-server")
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and end open streams (idempotent)."""
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(5)
            self.httpd = None
