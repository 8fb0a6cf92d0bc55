"""Motion detection on small grayscale frames: running background, masks, zones, light-change guard, hysteresis.

A `MotionDetector` is fed decoded frames (BGR, BGRA or gray uint8 arrays of any size) with their timestamps. Each
frame it processes is made gray, shrunk to `MotionSettings.width`, blurred and compared with a running average of
past frames (`cv2.accumulateWeighted`). Pixels that differ by more than `threshold` grey levels are cleaned with
morphology; contours of at least `min_area` inside the counted area (the zones, less the masks) that also changed
since the previous frame are motion. A frame where a large part of the picture changes at once, or whose median
brightness jumps, is a light change: the background is re-seeded from it instead of reporting motion. Motion starts
after `start_frames` active frames in a row and ends after `end_frames` quiet ones. Pure and synchronous (run it in an
executor); how to tune it: docs/motion.md. The settings (`MotionSettings`, polygons) live in node/camera/settings.py,
which loads without OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import cv2
import numpy as np
from cv2.typing import MatLike
from numpy.typing import NDArray

from node.camera.settings import MotionConfigError as MotionConfigError
from node.camera.settings import MotionSettings as MotionSettings
from node.camera.settings import Polygon as Polygon
from node.errors import NodeError

DUE_TOLERANCE = 0.9
"""A frame counts as due once this share of the `1 / fps` period has passed (absorbs timestamp jitter)."""
OPENCV_THREADS: int | None = 1
"""OpenCV's worker threads, set for the whole process (cv2.setNumThreads has no other scope) when a detector is made;
None leaves OpenCV's default (one per core). On 320-pixel-wide pictures its pool only adds wake-ups, about 0.15 CPU s
a minute per camera (bench/camera.py), and each camera has a thread of its own already."""


class MotionFrameError(NodeError, ValueError):
    """A frame given to the motion detector is not an image it can use."""


@dataclass(frozen=True)
class MotionResult:
    """What the detector saw in one processed frame."""

    timestamp: float
    motion: bool
    """Motion is under way (after hysteresis): true from `started` until `ended`."""
    active: bool = False
    """This frame alone shows motion (before hysteresis)."""
    started: bool = False
    """Motion started with this frame."""
    ended: bool = False
    """Motion ended with this frame."""
    score: float = 0.0
    """Fraction of counted pixels (zones less masks) inside motion contours."""
    boxes: tuple[tuple[int, int, int, int], ...] = ()
    """(x, y, width, height) of each motion contour, in pixels of the source frame."""
    zones: tuple[str, ...] = ()
    """Names of the zones this frame's motion touched."""
    reseeded: bool = False
    """The background was re-seeded from this frame (first frame, light change or after a gap): nothing measured."""


class MotionDetector:
    """Motion in the frames of one camera; keep one per stream and feed it from one worker thread."""

    # Set by _seed, which runs on the first frame after every reset, before anything reads them.
    _previous: NDArray[np.uint8]
    _relearn: int

    def __init__(self, settings: MotionSettings | None = None, frame_size: tuple[int, int] | None = None) -> None:
        """Create a detector; give `frame_size` (width, height) to check pixel masks and zones right away."""
        self.settings = settings or MotionSettings()
        if OPENCV_THREADS is not None and cv2.getNumThreads() != OPENCV_THREADS:
            cv2.setNumThreads(OPENCV_THREADS)
        self._source: tuple[int, int] | None = None
        self.reset()
        if frame_size is not None:
            self._prepare(frame_size)

    def reset(self) -> None:
        """Forget the background and any motion under way (the next frame seeds a new background)."""
        self._background: NDArray[np.float32] | None = None
        self._median = 0.0
        self._contrast = 0.0
        self._last: float | None = None
        self._settle = 0
        self._above = self._below = 0
        self._motion = False

    @property
    def motion(self) -> bool:
        """Whether motion is under way."""
        return self._motion

    def due(self, timestamp: float) -> bool:
        """Whether a frame with this timestamp would be processed (callers may skip decoding it otherwise)."""
        fps = self.settings.fps
        if self._last is None or fps <= 0 or timestamp < self._last:
            return True
        return timestamp - self._last >= DUE_TOLERANCE / fps

    def feed(self, frame: np.ndarray, timestamp: float) -> MotionResult | None:
        """Process one frame (seconds timestamp); None if it came sooner than `1 / fps` after the last one."""
        if not self.due(timestamp):
            return None
        try:
            return self._process(frame, timestamp)
        except cv2.error as e:
            raise MotionFrameError(f"OpenCV could not process a {_describe(frame)} frame: {e}") from e

    def _prepare(self, size: tuple[int, int]) -> None:
        """Compute the working size and the counted/unmasked pixel maps for source frames of this size."""
        s = self.settings
        src_w, src_h = size
        w = min(src_w, s.width)
        h = max(1, round(src_h * w / src_w))
        self._size = (w, h)
        self._scale = (src_w / w, src_h / h)

        def fill(what: str, polygon: Polygon) -> NDArray[np.uint8]:
            """A 0/255 map of one polygon at working size."""
            if max(v for p in polygon for v in p) <= 1:  # fractions of the frame
                pts = [(x * w, y * h) for x, y in polygon]
            elif max(x for x, _ in polygon) > src_w or max(y for _, y in polygon) > src_h:
                raise MotionConfigError(f"{what}: points {polygon!r} fall outside the {src_w}x{src_h} frame")
            else:
                pts = [(x / self._scale[0], y / self._scale[1]) for x, y in polygon]
            out = np.zeros((h, w), np.uint8)
            cv2.fillPoly(out, [np.round(np.array(pts)).astype(np.int32)], 255)
            return out

        masked = np.zeros((h, w), np.uint8)
        for i, polygon in enumerate(s.masks):
            masked |= fill(f"motion mask {i + 1}", polygon)
        self._unmasked = _u8(cv2.bitwise_not(masked))
        self._zones = [(name, fill(f"motion zone {name!r}", p) & self._unmasked) for name, p in s.zones]
        if self._zones:
            self._counted = np.bitwise_or.reduce([z for _, z in self._zones]) & self._unmasked
        else:
            self._counted = self._unmasked
        self._unmasked_px = cv2.countNonZero(self._unmasked)
        # A histogram under a mask costs about twice one without: no mask when nothing is masked (and no masking).
        self._histogram_mask = None if self._unmasked_px == w * h else self._unmasked
        self._counted_px = cv2.countNonZero(self._counted)
        if self._counted_px == 0:
            raise MotionConfigError("the motion masks cover every zone (or the whole frame): nothing is left to watch")
        self._min_px = max(float(s.min_size), s.min_area * w * h)
        self._source = size

    def _small(self, frame: np.ndarray) -> NDArray[np.uint8]:
        """The frame as a blurred grayscale image at working size."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise MotionFrameError(f"a frame must be a uint8 numpy array, got {_describe(frame)}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if not (frame.ndim == 2 or frame.ndim == 3 and frame.shape[2] in (3, 4)):
            raise MotionFrameError(f"a frame must be gray, BGR or BGRA, got {_describe(frame)}")
        if frame.shape[0] < 8 or frame.shape[1] < 8:
            raise MotionFrameError(f"a frame must be at least 8x8 pixels, got {_describe(frame)}")
        size = (frame.shape[1], frame.shape[0])
        if size != self._source:
            self._prepare(size)
            self._background = None
        frame = decimate(frame, self._size[0])  # before the colour conversion, which then costs a fraction
        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        if self.settings.blur > 1:
            frame = cv2.GaussianBlur(frame, (self.settings.blur, self.settings.blur), 0)
        elif not frame.flags.owndata:  # the caller's buffer (a decoder's, reused): the background must not share it
            frame = frame.copy()
        return _u8(frame)  # checked uint8 above, and OpenCV keeps the depth through each step

    def _process(self, frame: np.ndarray, timestamp: float) -> MotionResult:
        """Compare one frame with the background, update it, and apply hysteresis."""
        s = self.settings
        gray = self._small(frame)
        median, contrast = _levels(gray, self._histogram_mask, self._unmasked_px)
        outage = self._last is not None and timestamp - self._last > s.gap
        self._last = timestamp
        if self._background is None or outage:
            ended = self._motion
            self._motion, self._above, self._below, self._settle = False, 0, 0, 0
            self._seed(gray, median)
            self._contrast = contrast
            return MotionResult(timestamp, False, ended=ended, reseeded=True)

        jump = abs(median - self._median) > s.brightness_jump
        self._median = median
        background = cv2.convertScaleAbs(self._background)
        gain = 1.0
        if s.normalise:
            # Medians, not means: a flickering TV or a large object must not pass for a change of light.
            gain = min(2.0, max(0.5, _median(background, self._histogram_mask, self._unmasked_px) / max(median, 1.0)))
        current = cv2.convertScaleAbs(gray, alpha=gain) if abs(gain - 1) > 0.005 else gray
        diff = cv2.absdiff(current, background)
        # The scene's contrast moves at the background's pace: one dark frame (a passing headlight gone) must not
        # make the next one hypersensitive.
        self._contrast += s.alpha * (contrast - self._contrast)
        threshold = s.threshold
        if s.adaptive:
            threshold = round(min(s.threshold, max(s.min_threshold, s.threshold * self._contrast / s.full_contrast)))
        changed = _u8(cv2.threshold(diff, threshold, 255, cv2.THRESH_BINARY)[1])
        unmasked = changed if self._histogram_mask is None else changed & self._unmasked
        flooded = cv2.countNonZero(unmasked) > s.light_fraction * self._unmasked_px
        if jump or flooded or self._settle:
            self._settle = s.settle_frames if jump or flooded else self._settle - 1
            self._seed(gray, median)
            return MotionResult(timestamp, self._motion, reseeded=True)
        alpha = s.relearn_alpha if self._relearn else s.alpha
        self._relearn = max(0, self._relearn - 1)
        previous, self._previous = self._previous, gray

        if self._histogram_mask is not None or self._zones:
            changed &= self._counted
        if s.open_size > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (s.open_size, s.open_size))
            changed = _u8(cv2.morphologyEx(changed, cv2.MORPH_OPEN, kernel))
        if s.dilate:
            # The stubs want a kernel; None is OpenCV's documented default (an empty Mat: a 3x3 square).
            dilated = cv2.dilate(changed, None, iterations=s.dilate)  # type: ignore[call-overload]
            changed = _u8(dilated) & self._counted
        contours = cv2.findContours(changed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        big = [c for c in contours if cv2.contourArea(c) >= self._min_px]
        self._learn(gray, alpha, changed, big)
        if big and s.fresh_share:
            fresh = cv2.threshold(cv2.absdiff(gray, previous), threshold, 255, cv2.THRESH_BINARY)[1]
            big = [c for c in big if _count_in_box(fresh, c) >= s.fresh_share * self._min_px]
        moving = np.zeros_like(changed)
        cv2.drawContours(moving, big, -1, 255, cv2.FILLED)
        moving &= changed
        score = cv2.countNonZero(moving) / self._counted_px
        active = bool(big) and score >= s.min_score
        zones: tuple[str, ...] = ()
        if active and self._zones:
            counts = [cv2.countNonZero(moving & z) for _, z in self._zones]
            zones = tuple(n for (n, _), c in zip(self._zones, counts) if c >= self._min_px / 4)
            zones = zones or (self._zones[int(np.argmax(counts))][0],)
        return self._hysteresis(timestamp, active, score, tuple(self._box(c) for c in big), zones)

    def _learn(self, gray: NDArray[np.uint8], alpha: float, changed: NDArray[np.uint8], big: list[MatLike]) -> None:
        """Update the background: at `alpha` where nothing moves, at `hold_alpha` under the objects seen."""
        assert self._background is not None  # seeded before any frame is compared
        hold = self.settings.hold_alpha
        if not big or hold >= alpha:
            cv2.accumulateWeighted(gray, self._background, alpha)
            return
        objects = np.zeros_like(changed)
        cv2.drawContours(objects, big, -1, 255, cv2.FILLED)
        cv2.accumulateWeighted(gray, self._background, alpha, mask=cv2.bitwise_not(objects))
        if hold > 0:
            cv2.accumulateWeighted(gray, self._background, hold, mask=objects)

    def _seed(self, gray: NDArray[np.uint8], median: float) -> None:
        """Start the background afresh from this frame."""
        self._background = gray.astype(np.float32)
        self._previous = gray
        self._relearn = self.settings.relearn_frames
        self._median = median

    def _box(self, contour: np.ndarray) -> tuple[int, int, int, int]:
        """A contour's bounding box in source-frame pixels."""
        x, y, w, h = cv2.boundingRect(contour)
        assert self._source is not None  # set by _prepare, which ran for the frame these contours come from
        (sx, sy), (src_w, src_h) = self._scale, self._source
        x0, y0 = int(x * sx), int(y * sy)
        return (x0, y0, min(math.ceil(w * sx), src_w - x0), min(math.ceil(h * sy), src_h - y0))

    def _hysteresis(self, timestamp: float, active: bool, score: float,
                    boxes: tuple[tuple[int, int, int, int], ...], zones: tuple[str, ...]) -> MotionResult:
        """Start motion after `start_frames` active frames in a row, end it after `end_frames` quiet ones."""
        self._above, self._below = (self._above + 1, 0) if active else (0, self._below + 1)
        started = not self._motion and self._above >= self.settings.start_frames
        ended = self._motion and self._below >= self.settings.end_frames
        self._motion = (self._motion or started) and not ended
        return MotionResult(timestamp, self._motion, active, started, ended, score, boxes, zones)


def decimate(image: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    """Every k-th pixel of every k-th row, so that the image stays at least twice `width` wide (a view, no copy).

    What is left for the area shrink to `width` is then at most about 4x its output, whatever the source resolution:
    a 1080p picture costs about what a 360p one does, and the 2x area average still halves the sensor noise.
    """
    step = image.shape[1] // (2 * width)
    return image[::step, ::step] if step > 1 else image


def shrink(image: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    """A gray image at most `width` pixels wide (even sizes, aspect kept): decimated, then one area shrink."""
    src_h, src_w = image.shape[:2]
    if src_w <= width:
        return image
    height = max(2, round(src_h * width / src_w)) & ~1
    small = cv2.resize(decimate(image, width), (width & ~1, height), interpolation=cv2.INTER_AREA)
    return _u8(small)


def _count_in_box(image: np.ndarray, contour: np.ndarray) -> int:
    """Non-zero pixels of an image within a contour's bounding box."""
    x, y, w, h = cv2.boundingRect(contour)
    return cv2.countNonZero(image[y:y + h, x:x + w])


def _levels(image: np.ndarray, mask: np.ndarray | None, count: int) -> tuple[float, float]:
    """Median grey level and contrast (10th to 90th percentile) of an 8-bit image under a mask of `count` pixels
    (None: the whole image)."""
    cumulative = np.cumsum(cv2.calcHist([image], [0], mask, [256], [0, 256]).ravel())
    low, median, high = np.searchsorted(cumulative, (count * 0.1, count / 2, count * 0.9))
    return float(median), float(high - low)


def _median(image: np.ndarray, mask: np.ndarray | None, count: int) -> float:
    """Median grey level of the pixels of an 8-bit image under a mask holding `count` pixels (None: all of it)."""
    cumulative = np.cumsum(cv2.calcHist([image], [0], mask, [256], [0, 256]).ravel())
    return float(np.searchsorted(cumulative, count / 2))


def _u8(image: MatLike) -> NDArray[np.uint8]:
    """An OpenCV result that is 8-bit because its input was (the stubs type every image as integer or floating)."""
    return cast("NDArray[np.uint8]", image)


def _describe(frame: Any) -> str:
    """A short description of what was passed as a frame, for error messages."""
    if isinstance(frame, np.ndarray):
        return f"{frame.dtype} array of shape {frame.shape}"
    return type(frame).__name__
