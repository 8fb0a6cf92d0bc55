"""Where events apply, and this node's area of interest (DESIGN section 9: in a city of thousands of nodes, a node
keeps and forwards only events whose area touches its area of interest). See docs/scale.md.

An alert applies to its CAP circles and to a circle around each polygon; an `sos` to its building's rounded
location; an agency request to its area; every other kind (notices, shared reports, disclosures, audit heads)
everywhere. An alert with an area given only by codes (SAME, UGC, ZIP, local codes) or by name has no shape an area of
interest (a circle) can be tested against, so it travels to every peer, as if global: each node then decides by its
own `alerts.geocodes` whether to show it (node/safety/geocodes.py), and a node in a city of thousands holds every
code-only alert of the federation until it expires. docs/scale.md says so too.
No floats travel: CAP's decimal strings are read exactly into integer micro-degrees and whole metres.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from node.config import Config
from sync import Circle, distance_m

# An SOS names the building's location rounded to 0.01 degree, so the building is within about 790 m of it (half
# the diagonal of a 0.01-degree cell at the equator); so is a node's announced centre, rounded the same way.
ROUNDING_M = 790


def _e6(text: str) -> int:
    return int((Decimal(text) * 1_000_000).to_integral_value(ROUND_HALF_EVEN))


def _point(text: str) -> tuple[int, int]:
    lat, lon = text.split(",")
    return _e6(lat), _e6(lon)


def alert_areas(body: Any) -> tuple[Circle, ...] | None:
    """The circles of a (valid) `alert` body's CAP areas; None (everywhere) if an area has neither circle nor
    polygon, or if the alert has no area at all."""
    circles: list[Circle] = []
    try:
        for info in body["cap"]["info"]:
            for area in info.get("area", []):
                found = False
                for circle in area.get("circle", []):
                    centre, km = circle.split()
                    lat, lon = _point(centre)
                    circles.append(Circle(lat, lon, int((Decimal(km) * 1000).to_integral_value(ROUND_CEILING))))
                    found = True
                for polygon in area.get("polygon", []):
                    circles.append(_around([_point(p) for p in polygon.split()]))
                    found = True
                if not found:
                    return None   # a place given by name or geocode only: no shape to filter by, so everywhere
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return None               # validated already; anything unreadable here is safest sent everywhere
    return tuple(circles) or None


def _around(points: list[tuple[int, int]]) -> Circle:
    """A circle holding every vertex of a polygon (so the polygon, a small one on the sphere, too)."""
    lats, lons = [p[0] for p in points], [p[1] for p in points]
    lat, lon = (min(lats) + max(lats)) // 2, (min(lons) + max(lons)) // 2   # the middle of its bounding box
    centre = Circle(lat, lon, 0)
    return Circle(lat, lon, int(max(distance_m(centre, Circle(p[0], p[1], 0)) for p in points)) + 1)


def sos_areas(body: Any) -> tuple[Circle, ...] | None:
    """An escalated SOS applies around its building's rounded location (everywhere if it gives none)."""
    location = body.get("location") if isinstance(body, dict) else None
    if not location:
        return None
    try:
        return (Circle(location["lat_e6"], location["lon_e6"], ROUNDING_M),)
    except (KeyError, ValueError):
        return None


def request_areas(body: Any) -> tuple[Circle, ...] | None:
    """A relayed agency request applies to the area it asks about (decimal-string degrees, whole metres)."""
    try:
        area = body["request"]["area"]
        if "circle" in area:
            c = area["circle"]
            return (Circle(_e6(str(c["lat"])), _e6(str(c["lon"])), c["radius_m"]),)
        return (_around([(_e6(str(lat)), _e6(str(lon))) for lat, lon in area["polygon"]]),)
    except (KeyError, TypeError, ValueError, InvalidOperation):
        return None


def interest(location: dict[str, int] | None, radius_m: int) -> Circle | None:
    """This node's area of interest as announced to its peers: `radius_m` around its building, centred on the
    coarse location the node already publishes and grown by the rounding so that it holds the real one. None
    (keep everything) when the radius is 0 or the node has no location."""
    if not radius_m or location is None:
        return None
    return Circle(location["lat_e6"], location["lon_e6"], radius_m + ROUNDING_M)


def peer_location(text: str | None) -> tuple[float, float] | None:
    """A peer's stored coarse location ("lat_e6,lon_e6") in degrees, or None."""
    if not text:
        return None
    lat, lon = text.split(",")
    return int(lat) / 1e6, int(lon) / 1e6


def node_location(config: Config) -> tuple[float, float] | None:
    """The building's configured location in degrees, or None."""
    node = config.node
    return (float(node.latitude), float(node.longitude)) if node.latitude else None


def coarse_location(config: Config) -> dict[str, int] | None:
    """The building's location rounded to 0.01 degree (about 1 km), in integer micro-degrees."""
    if not config.node.latitude:
        return None
    return {"lat_e6": _coarse(config.node.latitude), "lon_e6": _coarse(config.node.longitude)}


def _coarse(value: str) -> int:
    return int(round(Decimal(value), 2) * 1_000_000)
