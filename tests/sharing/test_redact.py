"""Redaction of clips for agencies, measured on real photographs with faces (those shipped inside scikit-image's
wheel), on rendered licence plates and on real H.264 clips made by ffmpeg.

A face or plate counts as found when at least COVERED of its hand-labelled box lies inside blurred boxes; the
measured recall is printed (`pytest -s`) and docs/redaction.md quotes it. Blurred means beyond recognition: the
detector no longer finds the face, and the detail inside the box is gone. The clip must stay a browser-playable
twin of the original (same pictures, same timing) with the privacy masks black, and a damaged input leaves nothing.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from node.sharing.redact import Box, RedactionError, Settings, detect, redact_clip, redact_image
from tests.firmware.tools import need

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


@pytest.mark.parametrize("name, face", [("astronaut", ASTRONAUT_FACE), ("camera", CAMERAMAN_FACE)])
def test_face_in_photograph_is_blurred_beyond_recognition(name, face):
    original = photo(name)
    redacted, boxes = redact_image(original.copy())
    share = covered(face, boxes)
    print(f"\n{name}: {share:.0%} of the labelled face blurred")
    assert share >= COVERED
    # The detector no longer sees a face there, and nearly all detail inside the face is gone.
    assert not recognised(face, detect(redacted))
    assert blurred(redacted, original, face)
    # Only the face was touched: the rest of the photograph is as it was.
    untouched = np.ones(original.shape[:2], bool)
    for b in boxes:
        untouched[b.y:b.y + b.h, b.x:b.x + b.w] = False
    assert untouched.mean() > 0.8 and np.array_equal(redacted[untouched], original[untouched])


def test_recall_on_a_hundred_real_faces():
    """The 100 faces of the LFW subset in scikit-image, shown as a crowd in 720p pictures: at 64 pixels (a face a
    few metres from a doorbell) and at 44 (near the smallest the search looks for in a 1280-wide picture)."""
    tiles = skimage.data.lfw_subset()
    faces, others = tiles[:100], tiles[100:]
    recall = {}
    for size in (64, 44):
        found = total = 0
        for picture, labels in crowd(faces, size):
            redacted, boxes = redact_image(picture.copy(), settings=Settings(plates=False))
            found += sum(covered(label, boxes) >= COVERED for label in labels)
            total += len(labels)
            still = detect(redacted, settings=Settings(plates=False))
            assert not any(recognised(label, still) for label in labels)  # none is seen as a face any more
        recall[size] = found / total
    false = 0
    for picture, _ in crowd(others, 64):  # the 100 background crops of the subset
        false += len(detect(picture, settings=Settings(plates=False)))
    print(f"\nLFW faces at 64 px: recall {recall[64]:.0%}; at 44 px: {recall[44]:.0%}; "
          f"false faces among {len(others)} background crops: {false}")
    assert recall[64] >= 0.9
    assert recall[44] >= 0.8
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
    assert "profile both ways" in result.method and "privacy masks: 1" in result.method
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
        assert np.abs(redacted[300:, 440:].astype(int) - original[300:, 440:]).mean() < 8  # the rest is intact
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
