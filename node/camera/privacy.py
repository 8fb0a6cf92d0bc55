"""Privacy masks: polygons of a camera's picture (a neighbour's window) blacked out wherever the node makes pictures.

They apply to the live view, snapshots, thumbnails and every video the node encodes itself (cameras without H.264,
and redacted exports). H.264 recorded by stream copy is the camera's own picture, bit for bit (DESIGN.md section 7):
a camera that must never see an area needs the mask set in the camera itself too (docs/cameras.md).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from node.camera.motion import Polygon


@functools.lru_cache(maxsize=64)
def _mask(polygons: tuple[Polygon, ...], width: int, height: int) -> np.ndarray:
    """A boolean map of the masked pixels; points within 0..1 are fractions of the frame, others pixels of it."""
    out = np.zeros((height, width), np.uint8)
    for polygon in polygons:
        if max(v for p in polygon for v in p) <= 1:
            pts = [(x * width, y * height) for x, y in polygon]
        else:
            pts = list(polygon)
        cv2.fillPoly(out, [np.round(np.array(pts)).astype(np.int32)], 1)
    out.flags.writeable = False
    return out.astype(bool)


def black_out(image: np.ndarray, polygons: tuple[Polygon, ...], source_size: tuple[int, int] | None = None) -> np.ndarray:
    """Black out `polygons` in `image` (in place; returned for convenience).

    Pixel coordinates refer to the camera's full picture (`source_size`, width x height) and are scaled to the image,
    which may be a smaller copy of it.
    """
    if not polygons:
        return image
    height, width = image.shape[:2]
    if source_size is not None and source_size != (width, height):
        sx, sy = width / source_size[0], height / source_size[1]
        polygons = tuple(p if max(v for q in p for v in q) <= 1 else tuple((x * sx, y * sy) for x, y in p)
                         for p in polygons)
    image[_mask(polygons, width, height)] = 0
    return image
