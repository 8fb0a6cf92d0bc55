"""Benchmark: motion detection frames per second on one core.

Feeds pre-generated BGR frames (textured background, sensor noise, a person-sized object walking across) to one
`MotionDetector` with OpenCV limited to one thread and the rate limiter off, so every frame is processed. Rates are
frames per CPU second of this process (robust to other load on the machine). Prints each run, the median for each
input size, and last `motion_fps_640x360=<median frames per CPU second at 640x360>`.

    python bench/motion.py [--seconds 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.camera.motion import MotionDetector, MotionSettings  # noqa: E402

SIZES = [(640, 360), (1280, 720), (1920, 1080)]


def frames(size: tuple[int, int], count: int = 60, seed: int = 1) -> list[np.ndarray]:
    """BGR frames of a textured scene with noise and a walking ellipse."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(40, 200, (9, 16)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    base += cv2.resize(rng.normal(0, 12, (h // 4, w // 4)).astype(np.float32), (w, h))
    out = []
    for i in range(count):
        img = base + rng.standard_normal((h, w), np.float32) * 5
        cx = int((i / count) * (w + w // 8)) - w // 16
        cv2.ellipse(img, (cx, h // 2), (w // 32, h // 7), 0, 0, 360, 40.0, -1)
        out.append(cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR))
    return out


def rate(batch: list[np.ndarray], seconds: float) -> float:
    """Frames per CPU second through one detector, over about `seconds` of CPU time."""
    detector = MotionDetector(MotionSettings(fps=0))
    detector.feed(batch[0], 0.0)
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for frame in batch:
            detector.feed(frame, done / 5)
            done += 1
    return done / (time.process_time() - start)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    print(f"OpenCV {cv2.__version__}, numpy {np.__version__}, one thread, default MotionSettings (width 320)")
    medians = {}
    for size in SIZES:
        batch = frames(size)
        runs = [rate(batch, args.seconds) for _ in range(args.runs)]
        medians[size] = statistics.median(runs)
        print(f"{size[0]}x{size[1]}: " + ", ".join(f"{r:.0f}" for r in runs)
              + f" frames/CPU-s, median {medians[size]:.0f} ({1000 / medians[size]:.2f} ms a frame)")
    print(f"motion_fps_640x360={medians[(640, 360)]:.0f}")


if __name__ == "__main__":
    main()
