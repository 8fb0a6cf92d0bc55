"""Benchmark: motion detection quality (F1 per scene) and frames per CPU second at three sizes, on one core.

Scenes written for this benchmark (not the tests' generator): real photographs from scikit-image's data module as
backgrounds, a walking silhouette (head, body, swinging legs), sensor noise, at 5 fps:

- walker: a person crosses a street scene;
- noise: the same with heavy sensor noise;
- light: the lights switch off and on and a cloud passes, then a person crosses;
- foliage: the top of the picture sways (grass in the wind) while a person crosses below;
- night: a dark, low-contrast yard, the person a few grey levels brighter than it;
- small: a distant person, a tenth of the picture high, walking slowly.

Each frame's truth is whether the person is in view; the detector's `motion` flag (after hysteresis) is scored,
leaving out the `start_frames - 1` frames after the person appears and `end_frames + 2` after they leave (no
detector with hysteresis can be right there). Frames are fed as 8-bit gray, as the recorder hands the decoded
picture's Y plane. Rates are frames per CPU second (time.process_time) with OpenCV on one thread and the rate limiter
off, medians of --runs runs. Prints a line per scene and size, then `motion_fps_720_vs_360=<fps 1280x720 / fps
640x360>` and last `motion_min_f1=<lowest F1 across scenes>`.

    python bench/motion.py [--seconds 1] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.camera.motion import MotionDetector, MotionSettings  # noqa: E402

SIZES = [(640, 360), (1280, 720), (1920, 1080)]
FPS = 5.0


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A scikit-image photograph as a float32 gray picture of `size`."""
    image = getattr(data, name)()
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def silhouette(height: int, step: int) -> np.ndarray:
    """A walking person's 0/1 mask `height` pixels high; `step` swings the legs."""
    w = max(4, height * 2 // 5)
    mask = np.zeros((height, w), np.uint8)
    head = max(1, height // 14)
    cv2.circle(mask, (w // 2, head + 1), head, 1, -1)
    body_top, hips = head * 2 + 1, int(height * 0.55)
    cv2.rectangle(mask, (w // 2 - w // 5, body_top), (w // 2 + w // 5, hips), 1, -1)
    swing = int(w * 0.35 * np.sin(step * 1.3))
    thick = max(1, w // 8)
    cv2.line(mask, (w // 2, hips), (w // 2 + swing, height - 1), 1, thick)
    cv2.line(mask, (w // 2, hips), (w // 2 - swing, height - 1), 1, thick)
    return mask


@dataclass
class Scene:
    """A benchmark scene: gray frames and, per frame, whether the person is in view."""

    name: str
    frames: list[np.ndarray]
    truth: list[bool]


def walk(base: Callable[[int], np.ndarray], count: int, *, start: int, end: int, height: float, y: float,
         shade: float, noise: float, seed: int, x0: float = -0.1, x1: float = 1.05) -> tuple[list, list]:
    """Frames of `base(i)` with a person crossing from x0 to x1 (fractions) between frames start and end."""
    rng = np.random.default_rng(seed)
    frames, truth = [], []
    for i in range(count):
        img = base(i).copy()
        h, w = img.shape
        present = False
        if start <= i < end:
            person = silhouette(int(height * h), i)
            ph, pw = person.shape
            x = int((x0 + (x1 - x0) * (i - start) / (end - start)) * w)
            top = int(y * h)
            xa, xb = max(0, x), min(w, x + pw)
            if xb > xa:
                region = img[top:top + ph, xa:xb]
                cut = person[:region.shape[0], xa - x:xb - x].astype(bool)
                region[cut] = region[cut] * 0.3 + shade * 0.7
                present = bool(cut.any())
        img += rng.normal(0, noise, img.shape).astype(np.float32)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        truth.append(present)
    return frames, truth


def scenes(size: tuple[int, int]) -> list[Scene]:
    """The six scenes at `size`."""
    w, h = size
    out = []
    street = photo("rocket", size)
    out.append(Scene("walker", *walk(lambda i: street, 70, start=10, end=55, height=0.4, y=0.5, shade=30,
                                      noise=3, seed=1)))
    room = photo("camera", size)
    out.append(Scene("noise", *walk(lambda i: room, 70, start=10, end=55, height=0.4, y=0.45, shade=220,
                                     noise=10, seed=2)))
    kitchen = photo("coffee", size)

    def lights(i: int) -> np.ndarray:
        gain = 0.55 if 12 <= i < 24 else 1.0  # off, then on again
        if 30 <= i < 50:  # a cloud: a slow dip and back
            gain = 1 - 0.25 * np.sin(np.pi * (i - 30) / 20)
        return kitchen * gain

    out.append(Scene("light", *walk(lights, 90, start=55, end=85, height=0.45, y=0.4, shade=20, noise=3, seed=3)))
    grass = photo("grass", size)

    def wind(i: int) -> np.ndarray:
        img = grass.copy()
        top = int(h * 0.35)
        shift = 2.0 * np.sin(i * 0.9) * w / 640
        m = np.float32([[1, 0, shift], [0, 1, 0]])
        img[:top] = cv2.warpAffine(grass[:top], m, (w, top), borderMode=cv2.BORDER_REFLECT)
        return img

    out.append(Scene("foliage", *walk(wind, 70, start=10, end=55, height=0.4, y=0.55, shade=10, noise=3, seed=4)))
    yard = photo("brick", size) * 0.2 + 8  # about 10..60 grey levels: a dark, flat picture

    out.append(Scene("night", *walk(lambda i: yard, 70, start=10, end=55, height=0.4, y=0.45, shade=55, noise=2,
                                     seed=5)))
    far = photo("gravel", size)
    out.append(Scene("small", *walk(lambda i: far, 90, start=10, end=80, height=0.12, y=0.6, shade=20, noise=4,
                                     seed=6, x0=0.2, x1=0.55)))
    return out


def score(scene: Scene, settings: MotionSettings) -> tuple[float, float, float]:
    """(precision, recall, F1) of the detector's motion flag on a scene, hysteresis edges left out."""
    detector = MotionDetector(settings)
    flags = []
    for i, frame in enumerate(scene.frames):
        result = detector.feed(frame, i / FPS)
        flags.append(bool(result and result.motion))
    skip = set()
    for i in range(1, len(scene.truth)):
        if scene.truth[i] and not scene.truth[i - 1]:
            skip.update(range(i, i + settings.start_frames - 1))
        if scene.truth[i - 1] and not scene.truth[i]:
            skip.update(range(i, i + settings.end_frames + 2))
    tp = fp = fn = 0
    for i, (truth, flag) in enumerate(zip(scene.truth, flags)):
        if i in skip or i == 0:
            continue
        tp += truth and flag
        fp += flag and not truth
        fn += truth and not flag
    precision, recall = tp / max(1, tp + fp), tp / max(1, tp + fn)
    return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)


def rate(frames: list[np.ndarray], seconds: float) -> float:
    """Frames per CPU second through one detector, over about `seconds` of CPU time."""
    detector = MotionDetector(MotionSettings(fps=0))
    detector.feed(frames[0], 0.0)
    done, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for frame in frames:
            detector.feed(frame, done / FPS)
            done += 1
    return done / (time.process_time() - start)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per speed run")
    parser.add_argument("--runs", type=int, default=3, help="speed runs per size; the median is reported")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    settings = MotionSettings()
    f1s = {}
    for scene in scenes((640, 360)):
        precision, recall, f1 = score(scene, settings)
        f1s[scene.name] = f1
        print(f"{scene.name:8} 640x360 precision {precision:.3f} recall {recall:.3f} F1 {f1:.3f}", flush=True)
    fps = {}
    for size in SIZES:
        frames = scenes_walker(size)
        runs = [rate(frames, args.seconds) for _ in range(args.runs)]
        fps[size] = statistics.median(runs)
        print(f"speed    {size[0]}x{size[1]}: {', '.join(f'{r:.0f}' for r in runs)} frames per CPU second, "
              f"median {fps[size]:.0f}", flush=True)
    print(f"motion_fps_720_vs_360={fps[(1280, 720)] / fps[(640, 360)]:.2f}")
    print(f"motion_min_f1={min(f1s.values()):.2f}")


def scenes_walker(size: tuple[int, int]) -> list[np.ndarray]:
    """The walker scene's frames at `size` (the speed runs)."""
    street = photo("rocket", size)
    return walk(lambda i: street, 40, start=5, end=35, height=0.4, y=0.5, shade=30, noise=3, seed=1)[0]


if __name__ == "__main__":
    main()
