"""The `[[cameras.devices]]` tables of the config: one per camera, validated strictly with the key path in errors.

A camera table (every key but `id` and `url` is optional):

    [[cameras.devices]]
    id = "lobby"                      # a-z, 0-9 and "-", up to 32 characters; names its folder and URLs
    name = "Lobby"                    # shown to people; defaults to the id
    url = "rtsp://user:pass@10.0.0.20/stream1"   # rtsp(s)://, http(s):// MJPEG, /dev/videoN, a file, or sim:
    transport = "tcp"                 # RTSP only: "tcp" or "udp"
    latitude = "40.7128"              # where it looks; defaults to [node] latitude/longitude
    longitude = "-74.0060"
    retention_days = 7                # clips older than this are purged unless held
    pre_capture = 5                   # seconds kept before motion starts
    post_capture = 5                  # seconds kept after it ends
    max_clip = 300                    # longer motion is cut into clips of at most this many seconds
    viewers = ["manager"]             # who may see it at first: any of "manager", "responder", "resident"
    privacy_masks = [[[0.7, 0], [1, 0], [1, 0.4], [0.7, 0.4]]]   # blacked out in live view and re-encodes
    detect_motion = true              # false: record the ring only (no motion clips)
    [cameras.devices.motion]          # node/camera/motion.py MotionSettings: masks, zones, threshold, ...
    threshold = 25
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from node.camera.motion import MotionSettings, Polygon, parse_polygon
from node.errors import ConfigError

ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
RESERVED_IDS = ("upload",)
VIEWER_ROLES = ("manager", "responder", "resident")
URL_RE = re.compile(r"(rtsps?|https?)://\S+|/dev/video\d+|v4l2:/dev/video\d+|sim:\S*|file:/\S+|/\S+")


@dataclass(frozen=True)
class CameraConfig:
    """One configured camera."""

    id: str
    url: str
    name: str = ""
    transport: str = "tcp"
    latitude: str = ""
    longitude: str = ""
    retention_days: int = 7
    pre_capture: float = 5.0
    post_capture: float = 5.0
    max_clip: float = 300.0
    viewers: tuple[str, ...] = ("manager",)
    privacy_masks: tuple[Polygon, ...] = ()
    detect_motion: bool = True
    motion: MotionSettings = dataclasses.field(default_factory=MotionSettings)

    def public(self) -> dict[str, Any]:
        """What the API shows about the camera's setup (never its URL: it may hold a password)."""
        return {"id": self.id, "name": self.name or self.id, "latitude": self.latitude or None,
                "longitude": self.longitude or None, "retention_days": self.retention_days,
                "pre_capture": self.pre_capture, "post_capture": self.post_capture,
                "detect_motion": self.detect_motion, "privacy_masks": len(self.privacy_masks)}


_NUMBERS = {"retention_days": (1, 3650, True), "pre_capture": (0, 120, False), "post_capture": (0, 300, False),
            "max_clip": (10, 3600, False)}


def _degrees(where: str, key: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a decimal string in degrees, got {value!r}")
    if value == "":
        return value
    try:
        number = Decimal(value)
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or abs(number) > limit or not re.fullmatch(r"-?\d+(\.\d+)?", value):
        raise ConfigError(f'{where}.{key}: expected a decimal string between -{limit} and {limit}, like "40.7128", '
                          f"got {value!r}")
    return value


def parse_camera(where: str, table: Any, *, latitude: str = "", longitude: str = "") -> CameraConfig:
    """One camera table; `where` names it in errors ("config.toml: cameras.devices[2]")."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table (use [[cameras.devices]]), got {type(table).__name__}")
    values: dict[str, Any] = {}
    if "id" not in table:
        raise ConfigError(f"{where}: missing required key 'id'")
    ident = table["id"]
    if not isinstance(ident, str) or not ID_RE.fullmatch(ident):
        raise ConfigError(f"{where}.id: expected 1-32 characters a-z, 0-9 or '-' (not starting with '-'), "
                          f"got {ident!r}")
    if ident in RESERVED_IDS:
        raise ConfigError(f"{where}.id: {ident!r} is reserved (residents' uploads are filed under it); choose another")
    values["id"] = ident
    where = f"{where} ({ident})"
    fields = {f.name for f in dataclasses.fields(CameraConfig)}
    for key in table:
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key (expected one of: {', '.join(sorted(fields))})")
    if "url" not in table:
        raise ConfigError(f"{where}: missing required key 'url'")
    url = table["url"]
    if not isinstance(url, str) or not URL_RE.fullmatch(url):
        raise ConfigError(f"{where}.url: expected rtsp://, rtsps://, http(s):// (MJPEG), /dev/videoN, a file path "
                          f"or sim:, got {url!r}")
    values["url"] = url
    for key in ("name", "transport"):
        if key in table:
            if not isinstance(table[key], str) or len(table[key]) > 80:
                raise ConfigError(f"{where}.{key}: expected a string of at most 80 characters, got {table[key]!r}")
            values[key] = table[key]
    if values.get("transport", "tcp") not in ("tcp", "udp"):
        raise ConfigError(f"{where}.transport: expected 'tcp' or 'udp', got {values['transport']!r}")
    values["latitude"] = _degrees(where, "latitude", table.get("latitude", latitude), 90)
    values["longitude"] = _degrees(where, "longitude", table.get("longitude", longitude), 180)
    if bool(values["latitude"]) != bool(values["longitude"]):
        raise ConfigError(f"{where}.latitude: expected latitude and longitude both set or both empty")
    for key, (low, high, integer) in _NUMBERS.items():
        if key in table:
            value = table[key]
            ok = isinstance(value, int) if integer else isinstance(value, (int, float))
            if not ok or isinstance(value, bool) or not low <= value <= high:
                kind = "an integer" if integer else "a number"
                raise ConfigError(f"{where}.{key}: expected {kind} within {low}..{high}, got {value!r}")
            values[key] = value
    if "viewers" in table:
        viewers = table["viewers"]
        if not isinstance(viewers, list) or not all(v in VIEWER_ROLES for v in viewers):
            raise ConfigError(f"{where}.viewers: expected a list of {', '.join(map(repr, VIEWER_ROLES))}, "
                              f"got {viewers!r}")
        values["viewers"] = tuple(sorted(set(viewers) | {"manager"}))
    if "privacy_masks" in table:
        masks = table["privacy_masks"]
        if not isinstance(masks, list):
            raise ConfigError(f"{where}.privacy_masks: expected a list of polygons, got {masks!r}")
        try:
            values["privacy_masks"] = tuple(parse_polygon(f"privacy mask {i + 1}", p) for i, p in enumerate(masks))
        except ConfigError as exc:
            raise ConfigError(f"{where}.privacy_masks: {exc}") from None
    if "detect_motion" in table:
        if not isinstance(table["detect_motion"], bool):
            raise ConfigError(f"{where}.detect_motion: expected true or false, got {table['detect_motion']!r}")
        values["detect_motion"] = table["detect_motion"]
    if "motion" in table:
        motion = table["motion"]
        known = {f.name for f in dataclasses.fields(MotionSettings)}
        if not isinstance(motion, dict):
            raise ConfigError(f"{where}.motion: expected a table of motion settings, got {motion!r}")
        for key in motion:
            if key not in known:
                raise ConfigError(f"{where}.motion.{key}: unknown key (expected one of: {', '.join(sorted(known))})")
        try:
            values["motion"] = MotionSettings(**motion)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return CameraConfig(**values)


def parse_devices(source: str, devices: Any, *, latitude: str = "", longitude: str = "") -> tuple[CameraConfig, ...]:
    """Every `[[cameras.devices]]` table; ids must be unique."""
    if not isinstance(devices, list):
        raise ConfigError(f"{source}: cameras.devices: expected a list of tables, got {devices!r}")
    cameras: list[CameraConfig] = []
    for index, table in enumerate(devices):
        camera = parse_camera(f"{source}: cameras.devices[{index}]", table, latitude=latitude, longitude=longitude)
        if any(c.id == camera.id for c in cameras):
            raise ConfigError(f"{source}: cameras.devices[{index}].id: camera {camera.id!r} is defined twice")
        cameras.append(camera)
    return tuple(cameras)
