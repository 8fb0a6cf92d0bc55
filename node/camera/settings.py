"""Camera settings: the `[[cameras.devices]]` tables and their motion settings, as strict Structs (no OpenCV here).

A camera table (every key but `id` and `url` is optional):

    [[cameras.devices]]
    id = "lobby"                      # a-z, 0-9 and "-", up to 32 characters; names its folder and URLs
    name = "Lobby"                    # shown to people; defaults to the id
    url = "rtsp://user:pass@10.0.0.20/stream1"   # rtsp(s)://, http(s):// MJPEG, /dev/videoN, a file, or sim:
    transport = "tcp"                 # RTSP only: "tcp" or "udp"
    detect_url = "rtsp://user:pass@10.0.0.20/stream2"   # optional low-resolution substream, used only for motion
    hardware_decoder = true           # decode H.264 with the platform's V4L2 decoder where there is one (a Pi)
    latitude = "40.7128"              # where it looks; defaults to [node] latitude/longitude
    longitude = "-74.0060"
    retention_days = 7                # clips older than this are purged unless held
    pre_capture = 5                   # seconds kept before motion starts
    post_capture = 5                  # seconds kept after it ends
    max_clip = 300                    # longer motion is cut into clips of at most this many seconds
    viewers = ["manager"]             # who may see it at first: any of "manager", "responder", "resident"
    privacy_masks = [[[0.7, 0], [1, 0], [1, 0.4], [0.7, 0.4]]]   # blacked out in live view and re-encodes
    detect_motion = true              # false: record the ring only (no motion clips)
    [cameras.devices.motion]          # MotionSettings below: masks, zones, threshold, ...
    threshold = 25

node.config decodes these tables with the rest of the file; `parse_camera` decodes one on its own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from node.errors import ConfigError
from node.structs import FieldError, Latitude, Longitude, Strict, check_numbers, convert, degrees_ok, setting

Point = tuple[float, float]
Polygon = tuple[Point, ...]
Zones = tuple[tuple[str, Polygon], ...]

ID_RE = r"[a-z0-9][a-z0-9-]{0,31}"
RESERVED_IDS = ("upload",)
VIEWER_ROLES = ("manager", "responder", "resident")
URL_RE = r"(rtsps?|https?)://\S+|/dev/video\d+|v4l2:/dev/video\d+|sim:\S*|file:/\S+|/\S+"
POLYGONS = "a list of polygons, each a list of at least 3 [x, y] points"


class MotionConfigError(ConfigError, ValueError):
    """A motion mask, zone or setting is invalid."""


class MotionSettings(Strict, frozen=True):
    """Every tunable of motion detection, with defaults for a 360p to 1080p camera fed at 5 fps."""

    fps: Annotated[float, Meta(ge=0, le=120)] = 5.0
    """Frames per second to process; `feed` skips frames that come sooner (0: process every frame)."""
    width: Annotated[int, Meta(ge=16, le=4096)] = 320
    """Working width in pixels; frames are shrunk to it (aspect kept), never enlarged."""
    blur: Annotated[int, Meta(ge=0, le=31)] = 5
    """Gaussian blur kernel size at working size (odd; 0 or 1 disables): hides sensor noise and compression blocks."""
    alpha: Annotated[float, Meta(ge=0.001, le=1)] = 0.05
    """Background learning rate per processed frame: 0.05 at 5 fps forgets the past with a ~4 s time constant."""
    threshold: Annotated[int, Meta(ge=1, le=254)] = 20
    """Grey levels (0..255) by which a pixel must differ from the background to count as changed, in a scene of
    full contrast; with `adaptive` it falls with the scene's contrast, down to `min_threshold`."""
    adaptive: bool = True
    """Follow the scene's contrast (the spread of its grey levels, averaged over seconds, not one frame): at night
    or in fog a person differs from the background by a few grey levels, and the threshold comes down with it."""
    min_threshold: Annotated[int, Meta(ge=1, le=254)] = 7
    """The lowest the adaptive threshold goes (sensor noise after the blur stays under it)."""
    full_contrast: Annotated[float, Meta(ge=1, le=255)] = 80.0
    """The contrast (grey levels between the 10th and 90th percentiles) at which `threshold` applies as given."""
    open_size: Annotated[int, Meta(ge=0, le=15)] = 3
    """Morphological opening kernel (pixels) that removes isolated changed pixels (0 disables)."""
    dilate: Annotated[int, Meta(ge=0, le=10)] = 2
    """Dilation passes (3x3) that join the fragments of one object into one contour (0 disables)."""
    min_area: Annotated[float, Meta(ge=0, le=0.5)] = 0.0
    """Smallest contour that counts as motion, as a fraction of the working frame, on top of `min_size`."""
    min_size: Annotated[int, Meta(ge=1, le=100000)] = 115
    """Smallest contour that counts as motion, in pixels of the working frame (115 px at 320x180 is 0.2% of it: a
    person a fifth of the picture high). Set it from how large what matters looks in this camera's view: a camera
    over a wide yard, where a person is a tenth of the picture high, wants about 40."""
    hold_alpha: Annotated[float, Meta(ge=0, le=1)] = 0.005
    """Background learning rate under what moves (and what stopped there): a person who pauses stays out of the
    background for about a minute at 5 fps, instead of fading into it in seconds."""
    min_score: Annotated[float, Meta(ge=0, le=1)] = 0.0
    """Smallest score (fraction of counted pixels in motion) for a frame to be active, on top of `min_area`."""
    fresh_share: Annotated[float, Meta(ge=0, le=1)] = 0.25
    """A contour counts only if this share of `min_area` in it changed since the previous frame, so the ghost an
    object leaves in the background, or an object that stopped, is not motion (0 disables)."""
    light_fraction: Annotated[float, Meta(ge=0.01, le=1)] = 0.4
    """A frame where more than this fraction of unmasked pixels changed at once is a light change, not motion."""
    brightness_jump: Annotated[float, Meta(ge=1, le=255)] = 10.0
    """A jump of median brightness (grey levels) between processed frames larger than this is a light change."""
    normalise: bool = True
    """Scale each frame's brightness to the background's before comparing, so slow light ramps are not motion."""
    settle_frames: Annotated[int, Meta(ge=0, le=100)] = 2
    """Frames after a light change that also re-seed the background while auto-exposure settles."""
    relearn_frames: Annotated[int, Meta(ge=0, le=1000)] = 10
    """Frames after any re-seed during which the background learns at `relearn_alpha`: whatever was in view when it
    was seeded (a person at a light switch) fades from it in seconds, not tens of seconds."""
    relearn_alpha: Annotated[float, Meta(ge=0.001, le=1)] = 0.25
    """Background learning rate during `relearn_frames`."""
    start_frames: Annotated[int, Meta(ge=1, le=100)] = 3
    """Active frames in a row before motion starts."""
    end_frames: Annotated[int, Meta(ge=1, le=1000)] = 10
    """Quiet frames in a row before motion ends (keeps one event from splitting in two)."""
    gap: Annotated[float, Meta(ge=0.1, le=86400)] = 10.0
    """Seconds without a frame after which the background is re-seeded and any motion ends (stream outage)."""
    masks: Annotated[tuple[Polygon, ...], setting(expected=POLYGONS)] = ()
    """Polygons never counted (trees, a TV, a timestamp overlay); see `parse_polygon` for the units."""
    if TYPE_CHECKING:
        zones: Zones = ()
    else:  # a TOML table {name = polygon} or (name, polygon) pairs; stored as pairs
        zones: Annotated[dict[str, Polygon] | Zones, setting(expected="a table of named polygons, like "
                                                             "{door = [[0, 0], [0.5, 0], [0.5, 1]]}")] = ()
    """Named polygons; when there are any, motion only counts inside at least one of them."""

    def __post_init__(self) -> None:
        """Validate every value (a constructor call is not checked by msgspec), store masks and zones as tuples."""
        check_numbers(self, "motion", MotionConfigError)
        if self.blur > 1 and self.blur % 2 == 0:
            raise MotionConfigError(f"motion.blur must be odd, got {self.blur}")
        masks = tuple(parse_polygon(f"motion mask {i + 1}", p) for i, p in enumerate(self.masks))
        pairs = self.zones.items() if isinstance(self.zones, Mapping) else self.zones
        zones: list[tuple[str, Polygon]] = []
        for entry in pairs:
            if not (isinstance(entry, Sequence) and len(entry) == 2 and isinstance(entry[0], str) and entry[0]):
                raise MotionConfigError(f"a motion zone must be a (name, polygon) pair, got {entry!r}")
            if any(entry[0] == name for name, _ in zones):
                raise MotionConfigError(f"motion zone {entry[0]!r} is defined twice")
            zones.append((entry[0], parse_polygon(f"motion zone {entry[0]!r}", entry[1])))
        msgspec.structs.force_setattr(self, "masks", masks)
        msgspec.structs.force_setattr(self, "zones", tuple(zones))


def parse_polygon(what: str, points: Any) -> Polygon:
    """Check a polygon: at least 3 [x, y] points, all within 0..1 (fractions of the frame) or else source pixels."""
    try:
        pts = tuple((x, y) for x, y in points)
    except (TypeError, ValueError) as e:
        raise MotionConfigError(f"{what}: expected a list of [x, y] points, got {points!r}") from e
    if len(pts) < 3:
        raise MotionConfigError(f"{what}: a polygon needs at least 3 points, got {len(pts)}")
    values = [v for p in pts for v in p]
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise MotionConfigError(f"{what}: coordinates must be finite numbers, got {points!r}")
    if min(values) < 0:
        raise MotionConfigError(f"{what}: coordinates must not be negative (outside the frame), got {points!r}")
    pts = tuple((float(x), float(y)) for x, y in pts)
    area = abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))) / 2
    if area == 0:
        raise MotionConfigError(f"{what}: the polygon encloses no area (its points lie on one line)")
    if max(values) > 1 and area < 4:
        raise MotionConfigError(f"{what}: the polygon encloses under 4 square pixels; for fractions of the frame "
                                "keep every coordinate within 0..1")
    return pts


Role = Literal["manager", "responder", "resident"]


class CameraConfig(Strict, frozen=True):
    """One configured camera."""

    LABEL: ClassVar[str | None] = "id"

    id: Annotated[str, setting(pattern=ID_RE, expected="1-32 characters a-z, 0-9 or '-' (not starting with '-')")]
    url: Annotated[str, setting(pattern=URL_RE, expected="rtsp://, rtsps://, http(s):// (MJPEG), /dev/videoN, a "
                                "file path or sim:")]
    name: Annotated[str, Meta(max_length=80)] = ""
    detect_url: Annotated[str, setting(pattern=f"({URL_RE})?", expected="empty, or a second stream of the camera "
                                       "(rtsp://, http(s)://, /dev/videoN, a file or sim:) to detect motion on")] = ""
    hardware_decoder: bool = True
    transport: Literal["tcp", "udp"] = "tcp"
    latitude: Latitude = ""
    longitude: Longitude = ""
    retention_days: Annotated[int, Meta(ge=1, le=3650)] = 7
    pre_capture: Annotated[float, Meta(ge=0, le=120)] = 5.0
    post_capture: Annotated[float, Meta(ge=0, le=300)] = 5.0
    max_clip: Annotated[float, Meta(ge=10, le=3600)] = 300.0
    viewers: Annotated[tuple[Role, ...], setting(expected="a list of " + ", ".join(map(repr, VIEWER_ROLES)))] = (
        "manager",)
    privacy_masks: Annotated[tuple[Polygon, ...], setting(expected=POLYGONS)] = ()
    detect_motion: bool = True
    motion: MotionSettings = msgspec.field(default_factory=MotionSettings)

    def __post_init__(self) -> None:
        """Checks beyond the types: reserved ids, degrees, both coordinates or none, polygons; managers always view."""
        if self.id in RESERVED_IDS:
            raise FieldError("id", f"{self.id!r} is reserved (residents' uploads are filed under it); choose another")
        for key, limit in (("latitude", 90), ("longitude", 180)):
            if not degrees_ok(getattr(self, key), limit):
                raise FieldError(key)
        if bool(self.latitude) != bool(self.longitude):
            raise FieldError("latitude", "expected latitude and longitude both set or both empty")
        try:
            masks = tuple(parse_polygon(f"privacy mask {i + 1}", p) for i, p in enumerate(self.privacy_masks))
        except MotionConfigError as exc:
            raise FieldError("privacy_masks", str(exc)) from None
        msgspec.structs.force_setattr(self, "privacy_masks", masks)
        msgspec.structs.force_setattr(self, "viewers", tuple(sorted(set(self.viewers) | {"manager"})))

    def public(self) -> dict[str, Any]:
        """What the API shows about the camera's setup (never its URL: it may hold a password)."""
        return {"id": self.id, "name": self.name or self.id, "latitude": self.latitude or None,
                "longitude": self.longitude or None, "retention_days": self.retention_days,
                "pre_capture": self.pre_capture, "post_capture": self.post_capture,
                "detect_motion": self.detect_motion, "privacy_masks": len(self.privacy_masks)}


def with_location(tables: Any, latitude: Any, longitude: Any) -> Any:
    """Camera tables (copies) where a table without latitude and longitude takes the building's."""
    if not isinstance(tables, list | tuple) or not isinstance(latitude, str) or not isinstance(longitude, str):
        return tables
    return [{"latitude": latitude, "longitude": longitude} | t if isinstance(t, dict) else t for t in tables]


def parse_camera(where: str, table: Any, *, latitude: str = "", longitude: str = "") -> CameraConfig:
    """One camera table; `where` names it in errors ("demo camera")."""
    return convert(with_location([table], latitude, longitude)[0], CameraConfig, where=where, error=ConfigError)
