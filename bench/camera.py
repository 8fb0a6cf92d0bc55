"""Benchmark: CPU cost of recording a camera, with and without motion detection, versus `ffmpeg -c copy`.

ffmpeg publishes a 720p15 H.264 test pattern (libx264 veryfast, a keyframe every 2 s) to rtsp-server-perl on
loopback, and a 640x360 5 fps substream of it. Four readers record the main stream at the same time, each in its own
process: the node's Recorder (stream copy into MP4 segments); `ffmpeg -rtsp_transport udp -i URL -c copy -f
segment`; the Recorder with motion detection on the main stream (its decoder skips the non-reference pictures 5 fps
does not need); and the Recorder with motion on the substream, which never decodes the main stream. They are wired
as node/camera/manager.py wires a camera. From the moment each has written its first segment, the CPU time each
process runs (every thread, user and system) over --seconds is measured and scaled to a minute.
Prints each run, the medians, then `record_motion_cpu_ratio_main=<motion on the main stream / ffmpeg copy>` (target:
at most 6), `record_motion_cpu_ratio=<motion on the substream / ffmpeg copy>` (target: at most 3) and last
`record_cpu_ratio=<node / ffmpeg copy>` (target: at most 1.5).

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


def cpu_seconds(pid: int) -> tuple[float, frozenset[str]]:
    """CPU seconds a process has run, all its threads, and the ids of those threads.

    The sum of each thread's run time in nanoseconds (/proc/<pid>/task/*/schedstat) where the kernel has it:
    /proc/<pid>/stat counts in clock ticks (10 ms), and ffmpeg's copy uses a few tens of them a minute. A thread that
    ends takes its time with it, so the caller checks that the same threads ran from start to end.
    """
    tasks = Path(f"/proc/{pid}/task")
    try:
        ids = frozenset(t.name for t in tasks.iterdir())
        return sum(int((tasks / t / "schedstat").read_text().split()[0]) for t in ids) / 1e9, ids
    except FileNotFoundError:  # no schedstat (or a thread ended while we read): the process's own count
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), frozenset()


def child(url: str, folder: str, profile: str | None, motion: bool = False, detect: str | None = None) -> None:
    """Run a Recorder on `url` until SIGTERM (the measured process), with motion detection if asked (on the
    `detect` stream if given), wired as node/camera/manager.py does."""
    from node.camera.motion import MotionDetector
    from node.camera.record import Recorder
    from node.camera.sources import RtspSource

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    detector = MotionDetector()
    recorder = Recorder("bench", RtspSource(url, transport="udp"), folder, ring_seconds=None,
                        on_frame=detector.feed if motion else None, frame_width=0,
                        detect_source=RtspSource(detect, transport="udp") if detect else None)
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


def one_run(url: str, sub: str, work: Path, seconds: float,
            profile: str | None) -> tuple[dict[str, float], dict[str, str]]:
    """CPU s/min and what was recorded, by reader (node, motion, detect, ffmpeg), for one run of the four readers."""
    node_dir, ffmpeg_dir, motion_dir, detect_dir = work / "node", work / "ffmpeg", work / "motion", work / "detect"
    for folder in (node_dir, ffmpeg_dir, motion_dir, detect_dir):
        folder.mkdir()
    args = [sys.executable, __file__, "--child", url, str(node_dir)] + (["--profile-to", profile] if profile else [])
    node = subprocess.Popen(args)
    motion = subprocess.Popen([sys.executable, __file__, "--child", url, str(motion_dir), "--motion"])
    detect = subprocess.Popen([sys.executable, __file__, "--child", url, str(detect_dir), "--motion",
                               "--detect", sub])
    ffmpeg = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-rtsp_transport", "udp", "-i", url,
         "-c", "copy", "-f", "segment", "-segment_time", "3", "-segment_format", "mp4", "-reset_timestamps", "1",
         str(ffmpeg_dir / "%06d.mp4")])
    try:
        results = {}

        def measure(name: str, proc: subprocess.Popen, folder: Path) -> None:
            first_segment(folder, proc)
            start, threads = cpu_seconds(proc.pid)
            time.sleep(seconds)
            end, still = cpu_seconds(proc.pid)
            if threads != still:
                print(f"{name}: threads came and went while measured; this run undercounts it", flush=True)
            results[name] = (end - start) * 60 / seconds

        threads = [threading.Thread(target=measure, args=a) for a in
                   (("node", node, node_dir), ("ffmpeg", ffmpeg, ffmpeg_dir), ("motion", motion, motion_dir),
                    ("detect", detect, detect_dir))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if len(results) != 4:
            raise SystemExit("a recorder failed")
    finally:
        for proc in (node, ffmpeg, motion, detect):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is ffmpeg else signal.SIGTERM)
        for proc in (node, ffmpeg, motion, detect):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def describe(folder: Path) -> str:
        return "{} segments, {} pictures".format(*pictures(folder))

    return results, {name: describe(work / name) for name in ("node", "ffmpeg", "motion", "detect")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds per run (default 60)")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are reported (default 3)")
    parser.add_argument("--profile", action="store_true", help="profile the node's recorder with cProfile")
    parser.add_argument("--child", nargs=2, metavar=("URL", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    parser.add_argument("--motion", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--detect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.profile_to, args.motion, args.detect)
        return

    from tests.camera.streams import Publisher, RtspServer

    work = Path(tempfile.mkdtemp(prefix="nnode-bench-camera-"))
    server = RtspServer(work).start()
    publisher = Publisher(server, size="1280x720", rate=15).start()
    substream = Publisher(server, "sub", size="640x360", rate=5, gop=10).start()
    node_runs, ffmpeg_runs, motion_runs, detect_runs = [], [], [], []
    try:
        print(f"stream: 1280x720 15 fps H.264 (ffmpeg libx264 -g 30) -> rtsp-server-perl -> RTP/UDP, "
              f"{args.seconds:g} s per run")
        for i in range(args.runs):
            run_dir = work / f"run{i}"
            run_dir.mkdir()
            profile = str(work / "node.prof") if args.profile else None
            cpu, files = one_run(server.url(), server.url("sub"), run_dir, args.seconds, profile)
            node_runs.append(cpu["node"])
            ffmpeg_runs.append(cpu["ffmpeg"])
            motion_runs.append(cpu["motion"])
            detect_runs.append(cpu["detect"])
            print(f"run {i + 1}: node Recorder {cpu['node']:.3f} CPU s/min ({files['node']}), "
                  f"ffmpeg -c copy {cpu['ffmpeg']:.3f} CPU s/min ({files['ffmpeg']}), "
                  f"node Recorder + motion on the main stream {cpu['motion']:.3f} CPU s/min ({files['motion']}), "
                  f"+ motion on the substream {cpu['detect']:.3f} CPU s/min ({files['detect']})", flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
            if profile:
                import pstats
                pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    finally:
        substream.stop()
        publisher.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    node_median, ffmpeg_median = statistics.median(node_runs), statistics.median(ffmpeg_runs)
    motion_median, detect_median = statistics.median(motion_runs), statistics.median(detect_runs)
    print(f"median: node {node_median:.3f} CPU s/min, ffmpeg copy {ffmpeg_median:.3f} CPU s/min, "
          f"node with motion on the main stream {motion_median:.3f} CPU s/min ({motion_median / 60:.1%} of a core), "
          f"with motion on a 640x360 5 fps substream {detect_median:.3f} CPU s/min ({detect_median / 60:.1%})")
    print(f"record_motion_cpu_ratio_main={motion_median / ffmpeg_median:.2f}")
    print(f"record_motion_cpu_ratio={detect_median / ffmpeg_median:.2f}")
    print(f"record_cpu_ratio={node_median / ffmpeg_median:.2f}")


if __name__ == "__main__":
    main()
