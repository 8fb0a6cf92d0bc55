"""Agency footage requests: their signed form, their validation, the policy limits, and the geometry of their areas.

A request is a JSON object signed by the agency's ed25519 key over its canonical form (RFC 8785, sync/_canonical):

    {"v": 1, "id": "<32 hex>", "agency": "<agency key, 64 hex>", "case_number": "2026-004512",
     "reason": "burglary at 12 Elm St", "window": {"start": "2026-11-20T21:00:00Z", "end": "2026-11-20T21:40:00Z"},
     "area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 300}}
          or {"polygon": [["40.7128", "-74.0060"], ...]},
     "urgency": "normal" | "emergency", "contact": "Det. R. Diaz, +1 212 555 0100", "expires": "2026-12-20T00:00:00Z",
     "created": "2026-11-21T09:00:00Z"}

plus "sig": the ed25519 signature (hex) of the canonical bytes of everything else. Degrees are decimal strings and
the radius an integer in metres, because signed JSON carries no floats (docs/events.md).

The policy limits default to Ring's former rules for police requests (window 15 minutes to 12 hours, area at most
half a square mile, a case number), and are configurable; an out-of-policy request is refused with the reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import nacl.exceptions
import nacl.signing

from node.errors import BadRequest
from sync import canonical

FORMAT_VERSION = 1
EARTH_RADIUS_M = 6_371_008.8
SQUARE_MILE_M2 = 2_589_988.110336
MAX_POLYGON_POINTS = 64
MAX_TEXT = {"case_number": 64, "reason": 500, "contact": 200}
FIELDS = {"v", "id", "agency", "case_number", "reason", "window", "area", "urgency", "contact", "expires", "created"}
_DEGREES = re.compile(r"-?\d{1,3}(\.\d{1,7})?")
_HEX = re.compile(r"[0-9a-f]+")


class RequestError(BadRequest):
    """A request is malformed, badly signed or outside the policy; the message says which field and why."""

    reason = "request"


@dataclass(frozen=True)
class Policy:
    """Limits every request must keep (config [agencies])."""

    min_window_s: int = 15 * 60
    max_window_s: int = 12 * 3600
    max_area_sq_mi: float = 0.5
    require_case_number: bool = True
    max_expiry_days: int = 90
    max_age_days: int = 365
    """How far in the past a requested window may start."""


@dataclass(frozen=True)
class Area:
    """A circle (centre, radius in metres) or a polygon of (lat, lon) points, in degrees."""

    circle: tuple[float, float, float] | None = None
    polygon: tuple[tuple[float, float], ...] | None = None

    def square_metres(self) -> float:
        """The area's size on the ground (a local flat projection: exact enough below a few kilometres)."""
        if self.circle is not None:
            return math.pi * self.circle[2] ** 2
        points = _project(self.polygon, self._origin())
        return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))) / 2

    def _origin(self) -> tuple[float, float]:
        if self.circle is not None:
            return self.circle[0], self.circle[1]
        lats = [p[0] for p in self.polygon]
        lons = [p[1] for p in self.polygon]
        return (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2

    def distance_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the area (0 inside it)."""
        if self.circle is not None:
            return max(0.0, haversine_m(self.circle[0], self.circle[1], lat, lon) - self.circle[2])
        origin = self._origin()
        polygon = _project(self.polygon, origin)
        (x, y), = _project(((lat, lon),), origin)
        if _inside(polygon, x, y):
            return 0.0
        return min(_segment_distance(x, y, a, b) for a, b in zip(polygon, polygon[1:] + polygon[:1]))

    def contains(self, lat: float, lon: float, margin_m: float = 0.0) -> bool:
        """Whether the point lies inside the area, or within `margin_m` of it."""
        return self.distance_m(lat, lon) <= margin_m


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _project(points: Sequence[tuple[float, float]], origin: tuple[float, float]) -> list[tuple[float, float]]:
    """(x east, y north) metres from `origin` (equirectangular)."""
    lat0, lon0 = origin
    scale = math.cos(math.radians(lat0))
    return [(math.radians(lon - lon0) * scale * EARTH_RADIUS_M, math.radians(lat - lat0) * EARTH_RADIUS_M)
            for lat, lon in points]


def _inside(polygon: list[tuple[float, float]], x: float, y: float) -> bool:
    inside = False
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1]):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _segment_distance(x: float, y: float, a: tuple[float, float], b: tuple[float, float]) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length))
    return math.hypot(x - ax - t * dx, y - ay - t * dy)


def _segments_cross(p1, p2, p3, p4) -> bool:
    def orient(a, b, c) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    d1, d2 = orient(p3, p4, p1), orient(p3, p4, p2)
    d3, d4 = orient(p1, p2, p3), orient(p1, p2, p4)
    return (d1 > 0) != (d2 > 0) and (d3 > 0) != (d4 > 0)


def parse_time(field: str, value: Any) -> float:
    """A UTC ISO 8601 time ending in Z, as POSIX seconds."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z", value):
        raise RequestError(f"{field}: expected a UTC time like 2026-11-20T21:00:00Z, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise RequestError(f"{field}: {exc}") from None


def format_time(seconds: float) -> str:
    """POSIX seconds as a UTC ISO 8601 time ending in Z (whole seconds)."""
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _degrees(field: str, value: Any, limit: int) -> float:
    if not isinstance(value, str) or not _DEGREES.fullmatch(value) or abs(float(value)) > limit:
        raise RequestError(f"{field}: expected degrees as a decimal string within ±{limit} (at most 7 decimals), "
                           f"got {value!r}")
    return float(value)


def parse_area(value: Any) -> Area:
    """Validate an area object into an Area."""
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("circle", "polygon"):
        raise RequestError(f"area: expected {{\"circle\": {{lat, lon, radius_m}}}} or {{\"polygon\": [[lat, lon], "
                           f"...]}}, got {str(value)[:80]!r}")
    if "circle" in value:
        circle = value["circle"]
        if not isinstance(circle, dict) or set(circle) != {"lat", "lon", "radius_m"}:
            raise RequestError("area.circle: expected exactly lat, lon and radius_m")
        radius = circle["radius_m"]
        if not isinstance(radius, int) or isinstance(radius, bool) or not 1 <= radius <= 100_000:
            raise RequestError(f"area.circle.radius_m: expected whole metres from 1 to 100000, got {radius!r}")
        return Area(circle=(_degrees("area.circle.lat", circle["lat"], 90),
                            _degrees("area.circle.lon", circle["lon"], 180), float(radius)))
    points = value["polygon"]
    if not isinstance(points, list) or not 3 <= len(points) <= MAX_POLYGON_POINTS:
        raise RequestError(f"area.polygon: expected 3 to {MAX_POLYGON_POINTS} [lat, lon] points")
    parsed = []
    for i, point in enumerate(points):
        if not isinstance(point, list) or len(point) != 2:
            raise RequestError(f"area.polygon[{i}]: expected [lat, lon], got {str(point)[:60]!r}")
        parsed.append((_degrees(f"area.polygon[{i}][0]", point[0], 90),
                       _degrees(f"area.polygon[{i}][1]", point[1], 180)))
    area = Area(polygon=tuple(parsed))
    flat = _project(parsed, area._origin())
    edges = list(zip(flat, flat[1:] + flat[:1]))
    for i, (a, b) in enumerate(edges):
        for j in range(i + 2, len(edges)):
            if i == 0 and j == len(edges) - 1:
                continue  # neighbours through the closing point
            if _segments_cross(a, b, *edges[j]):
                raise RequestError(f"area.polygon: edges {i + 1} and {j + 1} cross (the outline must not "
                                   "cross itself)")
    if area.square_metres() < 1:
        raise RequestError("area.polygon: the polygon encloses no area")
    return area


@dataclass(frozen=True)
class FootageRequest:
    """A validated, signed request."""

    id: str
    agency: str
    case_number: str
    reason: str
    start: float
    end: float
    area: Area
    urgency: str
    contact: str
    expires: float
    created: float
    document: dict[str, Any]
    """The signed JSON object as received (with "sig"), to store and forward unchanged."""

    def public(self) -> dict[str, Any]:
        """The request's public fields (the transparency page shows every request with these)."""
        doc = self.document
        return {"id": self.id, "agency": self.agency, "case_number": self.case_number, "reason": self.reason,
                "window": doc["window"], "area": doc["area"], "urgency": self.urgency, "expires": doc["expires"],
                "created": doc["created"]}


def signing_bytes(document: dict[str, Any]) -> bytes:
    """The canonical bytes a request's signature covers (everything but "sig")."""
    return canonical({k: v for k, v in document.items() if k != "sig"})


def sign_request(fields: dict[str, Any], key: nacl.signing.SigningKey) -> dict[str, Any]:
    """Sign a request's fields with an agency key (the agency side: its CLI and the tests)."""
    document = dict(fields)
    document.pop("sig", None)
    document["agency"] = key.verify_key.encode().hex()
    document["sig"] = key.sign(signing_bytes(document)).signature.hex()
    return document


def parse_request(document: Any, *, now: float, policy: Policy = Policy()) -> FootageRequest:
    """Check a signed request's form, signature and policy; RequestError names the first problem.

    Checks run in this order: shape and types, signature (by the key in "agency"; whether that agency may ask is
    the registry's business), times, then the policy limits.
    """
    if not isinstance(document, dict):
        raise RequestError("a request must be a JSON object")
    unknown = set(document) - FIELDS - {"sig"}
    if unknown:
        raise RequestError(f"unknown field {sorted(unknown)[0]!r} (expected: {', '.join(sorted(FIELDS))}, sig)")
    missing = FIELDS - set(document) - ({"case_number"} if not policy.require_case_number else set())
    if "sig" not in document:
        missing.add("sig")
    if missing:
        raise RequestError(f"missing field {sorted(missing)[0]!r}")
    if document["v"] != FORMAT_VERSION:
        raise RequestError(f"v: this node reads request format {FORMAT_VERSION}, got {document['v']!r}")
    for field, length in (("id", 32), ("agency", 64), ("sig", 128)):
        value = document[field]
        if not isinstance(value, str) or len(value) != length or not _HEX.fullmatch(value):
            raise RequestError(f"{field}: expected {length} lowercase hex digits")
    for field, limit in MAX_TEXT.items():
        value = document.get(field, "")
        if not isinstance(value, str) or len(value) > limit or any(ord(c) < 32 for c in value):
            raise RequestError(f"{field}: expected text of at most {limit} characters without control characters")
    if document["urgency"] not in ("normal", "emergency"):
        raise RequestError(f"urgency: expected 'normal' or 'emergency', got {document['urgency']!r}")
    window = document["window"]
    if not isinstance(window, dict) or set(window) != {"start", "end"}:
        raise RequestError("window: expected {\"start\": ..., \"end\": ...}")
    area = parse_area(document["area"])
    try:
        signed = signing_bytes(document)
        nacl.signing.VerifyKey(bytes.fromhex(document["agency"])).verify(signed, bytes.fromhex(document["sig"]))
    except nacl.exceptions.BadSignatureError:
        raise RequestError("sig: the signature does not match the request and the agency key "
                           "(altered, or signed by another key)") from None
    except (nacl.exceptions.CryptoError, ValueError) as exc:
        raise RequestError(f"agency: not a usable ed25519 key: {exc}") from None
    except Exception as exc:  # canonical encoding refuses floats, deep nesting...
        raise RequestError(f"the request cannot be encoded canonically: {exc}") from None
    start, end = parse_time("window.start", window["start"]), parse_time("window.end", window["end"])
    expires, created = parse_time("expires", document["expires"]), parse_time("created", document["created"])
    if end <= start:
        raise RequestError("window: the end must come after the start")
    if expires <= now:
        raise RequestError(f"expires: the request expired at {document['expires']}")
    if created > now + 300:
        raise RequestError("created: the request is dated in the future (check the agency's clock)")
    if start > now + 300:
        raise RequestError("window.start: footage cannot be requested for the future")
    # policy
    length = end - start
    if length < policy.min_window_s or length > policy.max_window_s:
        raise RequestError(f"out of policy: the window is {_duration(length)}; it must be from "
                           f"{_duration(policy.min_window_s)} to {_duration(policy.max_window_s)}")
    size = area.square_metres() / SQUARE_MILE_M2
    if size > policy.max_area_sq_mi:
        raise RequestError(f"out of policy: the area is {size:.2f} square miles; at most {policy.max_area_sq_mi:g} "
                           "square miles may be asked for")
    if policy.require_case_number and not document["case_number"].strip():
        raise RequestError("out of policy: a case number is required")
    if not document["reason"].strip():
        raise RequestError("out of policy: a reason is required")
    if expires > now + policy.max_expiry_days * 86400:
        raise RequestError(f"out of policy: the request may stay open at most {policy.max_expiry_days} days")
    if start < now - policy.max_age_days * 86400:
        raise RequestError(f"out of policy: footage older than {policy.max_age_days} days cannot be requested")
    return FootageRequest(id=document["id"], agency=document["agency"], case_number=document.get("case_number", ""),
                          reason=document["reason"], start=start, end=end, area=area, urgency=document["urgency"],
                          contact=document["contact"], expires=expires, created=created, document=dict(document))


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
