"""Areas on the map for city-scale sync: circles in integer micro-degrees and metres, and whether two touch.

A city-scale node keeps and forwards only events whose area touches its area of interest (DESIGN section 9).
This module only measures; which part of an event's body is its area is the business of the kind that defines it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8   # mean radius (IUGG)
_RAD_PER_E6 = math.pi / 180e6


@dataclass(frozen=True, slots=True)
class Circle:
    """A circle on the map: centre in integer micro-degrees, radius in whole metres (0 for a point)."""

    lat_e6: int
    lon_e6: int
    radius_m: int

    def __post_init__(self) -> None:
        for name, value, limit in (("lat_e6", self.lat_e6, 90_000_000), ("lon_e6", self.lon_e6, 180_000_000)):
            if type(value) is not int or not -limit <= value <= limit:
                raise ValueError(f"field {name!r} must be an integer from {-limit} to {limit}, got {value!r}")
        if type(self.radius_m) is not int or not 0 <= self.radius_m <= 20_037_509:
            raise ValueError(f"field 'radius_m' must be a whole number of metres from 0, got {self.radius_m!r}")


def distance_m(a: Circle, b: Circle) -> float:
    """Great-circle distance between two centres in metres (haversine)."""
    lat1, lat2 = a.lat_e6 * _RAD_PER_E6, b.lat_e6 * _RAD_PER_E6
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((b.lon_e6 - a.lon_e6) * _RAD_PER_E6 / 2) ** 2)
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def touches(a: Circle, b: Circle) -> bool:
    """True if the two circles overlap or touch."""
    return distance_m(a, b) <= a.radius_m + b.radius_m


def touches_any(areas: Iterable[Circle], interest: Circle) -> bool:
    """True if any of an event's areas touches an area of interest."""
    return any(touches(area, interest) for area in areas)


__all__ = ["EARTH_RADIUS_M", "Circle", "distance_m", "touches", "touches_any"]
