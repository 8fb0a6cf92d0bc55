"""Draw the web app's icons (node/web/icon-192.png, icon-512.png): a house with an alert bell on the node's blue.

Run from the repository root: `python scripts/icons.py`. The drawing keeps to the middle 80 % so the icons also
work as maskable icons (Android crops them to a circle or a squircle).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WEB = Path(__file__).resolve().parent.parent / "node" / "web"
BLUE = (121, 78, 31)      # #1f4e79, in OpenCV's BGR order
WHITE = (255, 255, 255)
AMBER = (0, 176, 255)     # #ffb000


def icon(size: int) -> np.ndarray:
    """One icon, `size` pixels square, drawn at 4x and shrunk for smooth edges."""
    big = size * 4
    s = big / 512
    image = np.full((big, big, 3), BLUE, np.uint8)

    def pts(*points: tuple[float, float]) -> np.ndarray:
        return np.array([[int(x * s), int(y * s)] for x, y in points], np.int32)

    cv2.fillPoly(image, [pts((256, 92), (420, 236), (384, 236), (384, 408), (128, 408), (128, 236), (92, 236))],
                 WHITE, cv2.LINE_AA)
    # the bell: a dome, its rim and clapper, in amber on the house
    cv2.ellipse(image, (int(256 * s), int(300 * s)), (int(62 * s), int(70 * s)), 0, 180, 360, AMBER, -1, cv2.LINE_AA)
    cv2.fillPoly(image, [pts((194, 298), (318, 298), (338, 346), (174, 346))], AMBER, cv2.LINE_AA)
    cv2.circle(image, (int(256 * s), int(364 * s)), int(18 * s), AMBER, -1, cv2.LINE_AA)
    cv2.circle(image, (int(256 * s), int(224 * s)), int(12 * s), AMBER, -1, cv2.LINE_AA)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


def main() -> None:
    """Write both icons."""
    for size in (192, 512):
        path = WEB / f"icon-{size}.png"
        if not cv2.imwrite(str(path), icon(size), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise SystemExit(f"could not write {path}")
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
