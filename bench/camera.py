"""Benchmark: CPU cost of recording a camera, the node's Recorder versus `ffmpeg -c copy`.

ffmpeg publishes a 720p15 H.264 test pattern to rtsp-server-perl on loopback. Two readers record that same stream
at the same time, each in its own process: the node's Recorder (stream copy into MP4 segments) and
`ffmpeg -rtsp_transport udp -i URL -c copy -f segment`. From the moment each has written its first segment, the CPU
time (user + system, from /proc/<pid>/stat) each process uses over --seconds is measured and scaled to a minute.
Prints each run, the medians, and last `record_cpu_ratio=<node / ffmpeg copy>` (target: at most 1.5).

    python bench/camera.py [--seconds 60] [--runs 3] [--profile]

--profile runs the node's recorder under cProfile and prints its top functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(url: str, folder: str, profile: str | None) -> None:
    """Run a Recorder on `url` until SIGTERM (the measured process)."""
    from node.camera.record import Recorder
    from node.camera.sources import RtspSource

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    recorder = Recorder("bench", RtspSource(url, transport="udp"), folder, ring_seconds=None)
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        # The work happens in the recorder's thread: profile that thread's function.
        run = recorder._run
        recorder._run = lambda: profiler.runcall(run)
    recorder.start()
    while not stop.wait(0.5):
        pass
    recorder.stop()
    if profile:
        profiler.dump_stats(profile)
    state = recorder.state
    if state.reconnects:
        print(f"node recorder reconnected {state.reconnects} times: {state.reason}", flush=True)


def first_segment(folder: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Wait (bounded) until a finished .mp4 appears in `folder`."""
    deadline = time.monotonic() + timeout
    while not any(p.suffix == ".mp4" and not p.name.startswith(".") for p in folder.iterdir()):
        if proc.poll() is not None:
            raise SystemExit(f"recorder exited early with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no segment in {folder} within {timeout} s")
        time.sleep(0.1)


def pictures(folder: Path) -> tuple[int, int]:
    """(segments, pictures) recorded in `folder`: both readers must keep every picture."""
    import av

    files = sorted(p for p in folder.glob("*.mp4") if not p.name.startswith("."))
    count = 0
    for path in files:
        with av.open(str(path)) as container:
            count += sum(1 for packet in container.demux(video=0) if packet.size)
    return len(files), count


def one_run(url: str, work: Path, seconds: float, profile: str | None) -> tuple[float, float, str, str]:
    """(node CPU s/min, ffmpeg CPU s/min, node files, ffmpeg files) for one run of both readers."""
    node_dir, ffmpeg_dir = work / "node", work / "ffmpeg"
    node_dir.mkdir()
    ffmpeg_dir.mkdir()
    args = [sys.executable, __file__, "--child", url, str(node_dir)] + (["--profile-to", profile] if profile else [])
    node = subprocess.Popen(args)
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "udp", "-i", url,
         "-c", "copy", "-f", "segment", "-segment_time", "3", "-segment_format", "mp4", "-reset_timestamps", "1",
         str(ffmpeg_dir / "%06d.mp4")])
    try:
        results = {}

        def measure(name: str, proc: subprocess.Popen, folder: Path) -> None:
            first_segment(folder, proc)
            start = cpu_seconds(proc.pid)
            time.sleep(seconds)
            results[name] = (cpu_seconds(proc.pid) - start) * 60 / seconds

        threads = [threading.Thread(target=measure, args=a) for a in
                   (("node", node, node_dir), ("ffmpeg", ffmpeg, ffmpeg_dir))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(results) != 2:
            raise SystemExit("a recorder failed")
    finally:
        for proc in (node, ffmpeg):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc is node else signal.SIGINT)
        for proc in (node, ffmpeg):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    describe = lambda d: "{} segments, {} pictures".format(*pictures(d))
    return results["node"], results["ffmpeg"], describe(node_dir), describe(ffmpeg_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per run (default 60)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--profile", action="store_true", help="profile the node's recorder with cProfile")
    parser.add_argument("--child", nargs=2, metavar=("URL", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.profile_to)
        return

    from tests.camera.streams import Publisher, RtspServer

    work = Path(tempfile.mkdtemp(prefix="nnode-bench-camera-"))
    server = RtspServer(work).start()
    publisher = Publisher(server, size="1280x720", rate=15).start()
    node_runs, ffmpeg_runs = [], []
    try:
        print(f"stream: 1280x720 15 fps H.264 (ffmpeg libx264 -g 30) -> rtsp-server-perl -> RTP/UDP, "
              f"{args.seconds:g} s per run")
        for i in range(args.runs):
            run_dir = work / f"run{i}"
            run_dir.mkdir()
            profile = str(work / "node.prof") if args.profile else None
            node_cpu, ffmpeg_cpu, node_files, ffmpeg_files = one_run(server.url(), run_dir, args.seconds, profile)
            node_runs.append(node_cpu)
            ffmpeg_runs.append(ffmpeg_cpu)
            print(f"run {i + 1}: node Recorder {node_cpu:.3f} CPU s/min ({node_files}), "
                  f"ffmpeg -c copy {ffmpeg_cpu:.3f} CPU s/min ({ffmpeg_files})", flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            if profile:
                import pstats
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    finally:
        publisher.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    node_median, ffmpeg_median = statistics.median(node_runs), statistics.median(ffmpeg_runs)
    print(f"median: node {node_median:.3f} CPU s/min, ffmpeg copy {ffmpeg_median:.3f} CPU s/min")
    print(f"record_cpu_ratio={node_median / ffmpeg_median:.2f}")


if __name__ == "__main__":
    main()
