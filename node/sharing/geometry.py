"""The ground an agency request covers: circles and polygons in degrees, their size and who stands inside them.

Distances use a local flat (equirectangular) projection around the area, exact enough below a few kilometres, the
size of any request a policy lets through; the distance from a circle's centre is a great-circle one.
"""

from __future__ import annotations

import math
from typing import Sequence

import msgspec

EARTH_RADIUS_M = 6_371_008.8
SQUARE_MILE_M2 = 2_589_988.110336

Point = tuple[float, float]


class Area(msgspec.Struct, frozen=True):
    """A circle (centre, radius in metres) or a polygon of (lat, lon) points, in degrees."""

    circle: tuple[float, float, float] | None = None
    polygon: tuple[Point, ...] | None = None

    def _points(self) -> tuple[Point, ...]:
        if self.polygon is None:
            raise ValueError("an area is a circle or a polygon")
        return self.polygon

    def square_metres(self) -> float:
        """The area's size on the ground."""
        if self.circle is not None:
            return math.pi * self.circle[2] ** 2
        points = project(self._points(), self.origin())
        return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))) / 2

    def origin(self) -> Point:
        """The point the flat projection is centred on: a circle's centre, the middle of a polygon's extent."""
        if self.circle is not None:
            return self.circle[0], self.circle[1]
        lats = [p[0] for p in self._points()]
        lons = [p[1] for p in self._points()]
        return (min(lats) + max(lats)) / 2, (min(lons) + max(lons)) / 2

    def distance_m(self, lat: float, lon: float) -> float:
        """Metres from the point to the area (0 inside it)."""
        if self.circle is not None:
            return max(0.0, haversine_m(self.circle[0], self.circle[1], lat, lon) - self.circle[2])
        origin = self.origin()
        polygon = project(self._points(), origin)
        (x, y), = project(((lat, lon),), origin)
        if _inside(polygon, x, y):
            return 0.0
        return min(_segment_distance(x, y, a, b) for a, b in zip(polygon, polygon[1:] + polygon[:1]))

    def contains(self, lat: float, lon: float, margin_m: float = 0.0) -> bool:
        """Whether the point lies inside the area, or within `margin_m` of it."""
        return self.distance_m(lat, lon) <= margin_m

    def crossing_edges(self) -> tuple[int, int] | None:
        """The first two edges (numbered from 1) of a polygon's outline that cross each other, or None."""
        flat = project(self._points(), self.origin())
        edges = list(zip(flat, flat[1:] + flat[:1]))
        for i, (a, b) in enumerate(edges):
            for j in range(i + 2, len(edges)):
                if i == 0 and j == len(edges) - 1:
                    continue  # neighbours through the closing point
                if _segments_cross(a, b, *edges[j]):
                    return i + 1, j + 1
        return None


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def project(points: Sequence[Point], origin: Point) -> list[Point]:
    """(x east, y north) metres from `origin` (equirectangular)."""
    lat0, lon0 = origin
    scale = math.cos(math.radians(lat0))
    return [(math.radians(lon - lon0) * scale * EARTH_RADIUS_M, math.radians(lat - lat0) * EARTH_RADIUS_M)
            for lat, lon in points]


def _inside(polygon: list[Point], x: float, y: float) -> bool:
    inside = False
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1]):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def _segment_distance(x: float, y: float, a: Point, b: Point) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    length = dx * dx + dy * dy
    t = 0.0 if length == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length))
    return math.hypot(x - ax - t * dx, y - ay - t * dy)


def _orient(a: Point, b: Point, c: Point) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _segments_cross(p1: Point, p2: Point, p3: Point, p4: Point) -> bool:
    d1, d2 = _orient(p3, p4, p1), _orient(p3, p4, p2)
    d3, d4 = _orient(p1, p2, p3), _orient(p1, p2, p4)
    return (d1 > 0) != (d2 > 0) and (d3 > 0) != (d4 > 0)
