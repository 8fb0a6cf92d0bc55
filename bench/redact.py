"""Benchmark: redaction speed and face recall at 720p on one core, against deface (the field's tool) in the same run.

Makes 1280x720 H.264 clips at 15 pictures a second, one per face size (face boxes 64, 96, 144 and 216 pixels tall):
real faces shipped inside scikit-image's wheel (the astronaut, and faces of its LFW subset, each pasted with the
picture around it) moving across a panning photograph. Then, on the same clips, in this process, pinned to one CPU
with OpenCV on one thread:

- ours: `redact_clip` with the default settings (faces and plates searched, boxes tracked between searches);
- deface 1.5.0 as its command line runs by default (CenterFace on every picture at full size, score 0.2, boxes
  grown 1.3 times, an elliptic blur), through its own functions, with OpenCV's DNN (deface's backend when
  onnxruntime is not installed), decoding and encoding with the same PyAV and libx264 settings as ours.

Speed is CPU time (`time.process_time`, every thread of the process). A face counts as redacted in a picture when
the fine detail inside its ground-truth box (variance of the Laplacian) is at most REDACTED of the original's in
the output file: both tools' outputs are measured the same way. Prints the figures, then
`redact_recall_ratio=<our recall / deface's>` and last `redact_speed_ratio=<seconds of video per CPU second>`.

    python bench/redact.py [--seconds 6] [--cpu N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.camera.h264 import add_h264_stream  # noqa: E402
from node.sharing.redact import DEFAULT, redact_clip  # noqa: E402

FPS = 15
SIZE = (1280, 720)
FACE_HEIGHTS = (64, 96, 144, 216)
REDACTED = 0.25
"""Largest share of a face box's fine detail left for the face to count as redacted."""
ASTRONAUT_FACE = (180, 80, 92, 98)
"""x, y, w, h of the astronaut's face in skimage.data.astronaut(), hairline to chin (tests/sharing/test_redact.py)."""
DETAIL_SIZE = 32
Label = tuple[int, int, int, int]


def faces() -> list[tuple[np.ndarray, Label]]:
    """Real faces with the picture around them, as (BGR patch, face box inside it)."""
    out = []
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    x, y, w, h = ASTRONAUT_FACE
    out.append((astronaut[y - h // 4:y + h + h // 4, x - w // 4:x + w + w // 4].copy(), (w // 4, h // 4, w, h)))
    for tile in skimage.data.lfw_subset()[:100:9]:  # 25x25 tight crops: give each some surroundings
        face = cv2.resize((tile * 255).round().astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
        patch = cv2.copyMakeBorder(face, 25, 25, 25, 25, cv2.BORDER_REPLICATE)
        out.append((cv2.cvtColor(patch, cv2.COLOR_GRAY2BGR), (25, 25, 100, 100)))
    return out


def make_clip(path: Path, height: int, seconds: float, seed: int) -> list[list[Label]]:
    """A clip with three faces `height` pixels tall moving over a panning photograph, each in its own third of the
    picture (so none hides another); returns the face boxes of each picture."""
    rng = random.Random(seed)
    scene = cv2.resize(cv2.cvtColor(skimage.data.rocket(), cv2.COLOR_RGB2BGR), (1600, 1070))
    people = rng.sample(faces(), 3)
    phases = [(rng.uniform(0, 6), rng.uniform(0, 6), rng.uniform(9, 15)) for _ in people]
    labels: list[list[Label]] = []
    with av.open(str(path), "w") as out:
        stream = add_h264_stream(out, *SIZE, Fraction(1, FPS), Fraction(FPS))
        stream.codec_context.options = {"preset": "veryfast", "crf": "18"}
        for n in range(round(seconds * FPS)):
            picture = scene[100:100 + SIZE[1], (n * 2) % 300:(n * 2) % 300 + SIZE[0]].copy()
            boxes = []
            for lane, ((patch, (fx, fy, fw, fh)), (px, py, period)) in enumerate(zip(people, phases)):
                scale = height / fh
                p = cv2.resize(patch, (round(patch.shape[1] * scale), round(patch.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
                room_x, room_y = (SIZE[0] // 3 - p.shape[1]) / 2, (SIZE[1] - p.shape[0]) / 2
                x = int(lane * SIZE[0] // 3 + room_x * (1 + 0.95 * np.sin(n / period + px)))
                y = int(room_y * (1 + 0.95 * np.sin(n / (1.3 * period) + py)))
                picture[y:y + p.shape[0], x:x + p.shape[1]] = p
                boxes.append((x + round(fx * scale), y + round(fy * scale), round(fw * scale), round(fh * scale)))
            labels.append(boxes)
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
            frame.pts = n
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return labels


def decoded(path: Path) -> Iterator[np.ndarray]:
    """The BGR pictures of a clip."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="bgr24")


def detail(gray: np.ndarray, box: Label) -> float:
    """Variance of the Laplacian inside `box`, seen at DETAIL_SIZE pixels (the scale of eyes, nose and mouth,
    whatever the face's size, and above the encoder's own fine noise)."""
    x, y, w, h = box
    face = cv2.resize(gray[y:y + h, x:x + w], (DETAIL_SIZE, DETAIL_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(face, cv2.CV_32F).var())


def recall(src: Path, out: Path, labels: list[list[Label]]) -> tuple[int, int]:
    """(faces redacted, faces shown), over every picture of the clip."""
    found = total = 0
    for n, (before, after) in enumerate(zip(decoded(src), decoded(out))):
        b = cv2.cvtColor(before, cv2.COLOR_BGR2GRAY).astype(np.float32)
        a = cv2.cvtColor(after, cv2.COLOR_BGR2GRAY).astype(np.float32)
        for box in labels[n]:
            total += 1
            found += detail(a, box) <= REDACTED * detail(b, box)
    return found, total


def run_deface(src: Path, dst: Path) -> int:
    """deface's default redaction of `src` into `dst`, through its own functions; returns the pictures done."""
    from deface.centerface import CenterFace  # noqa: PLC0415 (the reference is loaded only here)
    from deface.deface import anonymize_frame  # noqa: PLC0415

    centerface = CenterFace(backend="opencv")
    frames = 0
    with av.open(str(src)) as container, av.open(str(dst), "w", format="mp4") as out:
        video = container.streams.video[0]
        stream = add_h264_stream(out, video.width, video.height, video.time_base or Fraction(1, FPS),
                                 Fraction(FPS))
        for frame in container.decode(video):
            rgb = frame.to_ndarray(format="rgb24")  # what deface's reader gives it
            dets, _ = centerface(rgb, threshold=0.2)
            anonymize_frame(dets, rgb, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                            replaceimg=None, mosaicsize=20)
            picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            picture.pts = frame.pts
            picture.time_base = frame.time_base
            out.mux(stream.encode(picture))
            frames += 1
        out.mux(stream.encode(None))
    return frames


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each clip")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU to pin to (default: the last one allowed)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))})
    cv2.setNumThreads(1)
    print(f"one core (CPU {next(iter(os.sched_getaffinity(0)))}), OpenCV {cv2.__version__} on 1 thread; "
          f"{SIZE[0]}x{SIZE[1]} at {FPS} pictures a second, {args.seconds:g} s a clip; ours: {DEFAULT.method()}")
    totals = {"ours": [0.0, 0, 0, 0], "deface": [0.0, 0, 0, 0]}  # CPU seconds, pictures, redacted, shown
    with tempfile.TemporaryDirectory() as folder:
        for n, height in enumerate(FACE_HEIGHTS):
            src = Path(folder) / f"faces{height}.mp4"
            labels = make_clip(src, height, args.seconds, seed=n)
            line = [f"faces {height:3d} px:"]
            for name in ("ours", "deface"):
                dst = Path(folder) / f"{name}{height}.mp4"
                start = time.process_time()
                frames = redact_clip(src, dst).frames if name == "ours" else run_deface(src, dst)
                cpu = time.process_time() - start
                found, shown = recall(src, dst, labels)
                for i, v in enumerate((cpu, frames, found, shown)):
                    totals[name][i] += v
                line.append(f"{name} {frames / cpu:5.1f} pictures/CPU s, recall {found / shown:6.1%}")
            print("   ".join(line))
    rate, ratio = {}, {}
    for name, (cpu, frames, found, shown) in totals.items():
        rate[name], ratio[name] = frames / cpu, found / shown
        print(f"{name:7s} {rate[name]:5.1f} pictures per CPU second = {rate[name] / FPS:.2f} s of video per CPU "
              f"second; recall {ratio[name]:.1%} of {shown} faces shown")
    print(f"redact_recall_ratio={ratio['ours'] / ratio['deface']:.3f}")
    print(f"redact_speed_ratio={rate['ours'] / FPS:.3f}")


if __name__ == "__main__":
    main()
