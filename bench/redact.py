"""Benchmark: redaction speed on a 720p clip, and plate recall on harder rendered plates than the tests use.

Makes a 1280x720 H.264 clip (15 pictures a second) panning across scikit-image's astronaut photograph with ffmpeg,
then times `redact_clip` on it with the default settings, with a search in every picture, and with nothing searched
(decoding, masking and encoding alone). Rates are pictures per wall-clock second with OpenCV's default threads.
Then renders plates in styles the tests do not (other fonts, yellow ground, dim light, blur, perspective) and prints
the share found by the Russian plate cascade alone and by the full plate search. Prints last
`redact_fps_1280x720=<pictures per second with the defaults>`.

    python bench/redact.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.sharing import redact  # noqa: E402
from node.sharing.redact import Settings, redact_clip  # noqa: E402

FONTS = {"duplex": cv2.FONT_HERSHEY_DUPLEX, "complex": cv2.FONT_HERSHEY_COMPLEX, "plain": cv2.FONT_HERSHEY_PLAIN,
         "simplex": cv2.FONT_HERSHEY_SIMPLEX}
TEXTS = ("KX61 ZPW", "A123BC77", "7ABC123", "B 482 TM", "HH AB 1234", "ND 4471 K")


def make_clip(path: Path, seconds: float) -> None:
    """A 1280x720 clip panning across the astronaut photograph enlarged to 1600 pixels."""
    image = path.with_suffix(".png")
    cv2.imwrite(str(image), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "15",
                    "-i", str(image), "-t", str(seconds), "-vf",
                    "scale=1600:1600,crop=1280:720:x='mod(n*4,320)':y=60,format=yuv420p", "-c:v", "libx264",
                    "-preset", "veryfast", str(path)], check=True)


def plate_scene(text: str, width: int, style: str, seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 1280x720 picture with one plate in `style`; returns it and the plate's box (before perspective)."""
    rng = random.Random(seed)
    picture = np.full((720, 1280, 3), (90, 100, 95), np.uint8)
    picture += np.random.default_rng(seed).integers(0, 25, picture.shape, dtype=np.uint8)
    height = round(width / 4.7)
    cx, cy = rng.randint(400, 880), rng.randint(300, 450)
    body = tuple(rng.randint(20, 230) for _ in range(3))
    cv2.rectangle(picture, (cx - 2 * width, cy - 3 * height), (cx + 2 * width, cy + 3 * height), body, -1)
    ground = (40, 200, 230) if style == "yellow" else (232, 232, 232)
    plate = np.full((height, width, 3), ground, np.uint8)
    font = FONTS.get(style, cv2.FONT_HERSHEY_SIMPLEX)
    thick = max(1, width // 45)
    scale = cv2.getFontScaleFromHeight(font, int(height * 0.6), thick)
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    if tw > 0.9 * width:
        scale *= 0.9 * width / tw
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    cv2.putText(plate, text, ((width - tw) // 2, (height + th) // 2), font, scale, (20, 20, 20), thick, cv2.LINE_AA)
    x, y = cx - width // 2, cy - height // 2
    picture[y:y + height, x:x + width] = plate
    if style == "dim":
        picture = (picture * 0.55).astype(np.uint8)
    if style == "perspective":  # seen from the side: the far end shorter
        src = np.float32([[x, y], [x + width, y], [x + width, y + height], [x, y + height]])
        dst = np.float32([[x, y], [x + width, y + height * 0.15], [x + width, y + height * 0.85], [x, y + height]])
        picture = cv2.warpPerspective(picture, cv2.getPerspectiveTransform(src, dst), (1280, 720),
                                      borderMode=cv2.BORDER_REPLICATE)
    sigma = 1.5 if style == "blurred" else 0.8
    return cv2.GaussianBlur(picture, (0, 0), sigma), (x, y, width, height)


def covered(label: tuple[int, int, int, int], boxes) -> float:
    x, y, w, h = label
    inside = np.zeros((y + h, x + w), bool)
    for b in boxes:
        inside[b.y:b.y + b.h, b.x:b.x + b.w] = True
    return float(inside[y:y + h, x:x + w].mean())


def plates() -> None:
    """Print plate recall per style, for the cascade alone and for the full search."""
    styles = ("simplex", "duplex", "complex", "plain", "yellow", "dim", "blurred", "perspective")
    for style in styles:
        cascade = full = total = 0
        for n, width in enumerate((80, 100, 130, 160, 220, 320) * 3):
            picture, box = plate_scene(TEXTS[n % len(TEXTS)], width, style, 100 + n)
            gray = cv2.cvtColor(cv2.resize(picture, (640, 360), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
            found = redact._rects(redact._cascade(redact.PLATE_CASCADE).detectMultiScale(gray, redact.SCALE_STEP,
                                                                                          redact.MIN_NEIGHBORS))
            alone = [redact.Box(2 * int(x - 0.15 * w), 2 * int(y - 0.15 * h), int(2.6 * w), int(2.6 * h), "plate")
                     for x, y, w, h in found]
            cascade += covered(box, alone) >= 0.8
            full += covered(box, [b for b in redact.detect(picture) if b.kind == "plate"]) >= 0.8
            total += 1
        print(f"plates {style:12s} cascade alone {cascade / total:4.0%}   full search {full / total:4.0%}  "
              f"({total} plates, 80-320 px wide in 1280)")


def search_ms(runs: int = 9) -> float:
    """Median milliseconds `detect` takes on one 1280x720 picture (the astronaut, enlarged, in a street-grey frame)."""
    picture = np.full((720, 1280, 3), 110, np.uint8)
    picture[60:660, 340:940] = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (600, 600))
    redact.detect(picture)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        redact.detect(picture)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test clip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.seconds)
        rates = {}
        for name, settings in (("nothing searched", Settings(faces=False, plates=False)),
                               ("every picture searched", Settings(detect_every=1)),
                               ("defaults", Settings())):
            start = time.perf_counter()
            result = redact_clip(clip, Path(folder) / "out.mp4", settings=settings)
            rates[name] = result.frames / (time.perf_counter() - start)
            print(f"1280x720 {name:24s} {rates[name]:6.1f} pictures/s  ({result.frames} pictures, "
                  f"{result.faces_blurred} face detections)")
    print(f"search of one 1280x720 picture: {search_ms():.0f} ms (median)")
    plates()
    print(f"redact_fps_1280x720={rates['defaults']:.1f}")


if __name__ == "__main__":
    main()
