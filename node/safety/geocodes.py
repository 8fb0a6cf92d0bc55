"""Where an official alert applies: by its shape (CAP polygon, circle) or by its codes (CAP <geocode> pairs) against
the node's own codes (`alerts.geocodes`: SAME/FIPS county, UGC zone or county, ZIP, and named local codes).

The rule (docs/residents.md): an area with a shape decides by its shape when the node has a location; otherwise its
codes decide when the node has codes; an area the node cannot place either way counts as covering it, because a node
that cannot tell errs on the side of warning. An alert applies when one of its areas does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from node.safety.cap import area_covers

# The CAP <valueName>s publishers use for each kind of code, compared upper-case with spaces, "-" and "_" removed.
COUNTY_NAMES = frozenset({"SAME", "FIPS", "FIPS6", "FIPS5"})
ZONE_NAMES = frozenset({"UGC"})
ZIP_NAMES = frozenset({"ZIP", "ZIPCODE", "POSTALCODE"})
NAME = re.compile(r"[A-Za-z][A-Za-z0-9 ._-]{0,39}\Z")
MAX_VALUE = 100

# USPS abbreviations of the FIPS state codes (public domain, FIPS PUB 5-2), so a SAME county also matches the NWS's
# county-type UGC code for it (036047 is NYC047).
STATES = dict(zip(
    "01 02 04 05 06 08 09 10 11 12 13 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 "
    "41 42 44 45 46 47 48 49 50 51 53 54 55 56 60 66 69 72 78".split(),
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH OK "
    "OR PA RI SC SD TN TX UT VT VA WA WV WI WY AS GU MP PR VI".split(), strict=True))


def _name(text: str) -> str:
    return re.sub(r"[\s_-]", "", text).upper()


def _value(text: str) -> str:
    return " ".join(text.split()).upper()


def check_entry(entry: str) -> str | None:
    """Why a configured `NAME=value` geocode is invalid, or None if it is fine."""
    name, sep, value = entry.partition("=")
    if not sep or not NAME.match(name.strip()) or not value.strip() or len(value) > MAX_VALUE:
        return (f"{entry[:60]!r}: expected NAME=value (a name of at most 40 letters, digits, spaces, '.', '-' or "
                f"'_', a value of 1 to {MAX_VALUE} characters), like \"SAME=036047\"")
    kind, value = _name(name), _value(value)
    if kind in COUNTY_NAMES and not re.fullmatch(r"\d{5,6}", value):
        return f"{entry!r}: a SAME/FIPS county is 6 digits (PSSCCC, like 036047) or 5 (SSCCC)"
    if kind in ZONE_NAMES and not re.fullmatch(r"[A-Z]{2}[CZ]\d{3}", value):
        return f"{entry!r}: a UGC code is two letters, C or Z and three digits, like NYZ075"
    if kind in ZIP_NAMES and not re.fullmatch(r"\d{5}", value):
        return f"{entry!r}: a ZIP code is 5 digits, like 11201"
    return None


def _county(value: str) -> str | None:
    """SSCCC of a SAME (PSSCCC) or FIPS (SSCCC) code, or None if it is neither."""
    if re.fullmatch(r"\d{6}", value):
        return value[1:]          # the leading digit names a part of the county; this node is in all of them
    return value if re.fullmatch(r"\d{5}", value) else None


@dataclass(frozen=True)
class Geocodes:
    """The node's own codes, normalised for matching."""

    counties: frozenset[str] = frozenset()        # SSCCC
    zones: frozenset[str] = frozenset()           # UGC, zones and counties
    zips: frozenset[str] = frozenset()
    local: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> Geocodes:
        """From the config's `NAME=value` entries (already checked by check_entry)."""
        counties, zones, zips, local = set(), set(), set(), set()
        for entry in entries:
            name, _, value = entry.partition("=")
            kind, value = _name(name), _value(value)
            if kind in COUNTY_NAMES and (county := _county(value)):
                counties.add(county)
                if county[:2] in STATES:
                    zones.add(f"{STATES[county[:2]]}C{county[2:]}")
            elif kind in ZONE_NAMES:
                zones.add(value)
            elif kind in ZIP_NAMES:
                zips.add(value)
            else:
                local.add((kind, value))
        return cls(frozenset(counties), frozenset(zones), frozenset(zips), frozenset(local))

    def __bool__(self) -> bool:
        return bool(self.counties or self.zones or self.zips or self.local)

    def matches(self, geocode: dict[str, str]) -> bool:
        """Whether one CAP <geocode> pair names this node."""
        kind, value = _name(geocode["valueName"]), _value(geocode["value"])
        if kind in COUNTY_NAMES:
            county = _county(value)
            return county is not None and any(county == mine or (county[2:] == "000" and county[:2] == mine[:2])
                                              for mine in self.counties)
        if kind in ZONE_NAMES:
            return value in self.zones
        if kind in ZIP_NAMES:
            return value[:5] in self.zips
        return (kind, value) in self.local


def area_applies(area: dict[str, Any], location: tuple[float, float] | None, codes: Geocodes) -> bool | None:
    """Whether a CAP area covers this node: by its shape if it has one and the node a location, else by its codes if
    it has some and the node too; None if the node cannot tell."""
    if location is not None and (area.get("polygon") or area.get("circle")):
        return area_covers(area, *location)
    if codes and area.get("geocode"):
        return any(codes.matches(g) for g in area["geocode"])
    return None


def alert_applies(alert: dict[str, Any], location: tuple[float, float] | None, codes: Geocodes) -> bool:
    """Whether an alert is for this node: one of its areas covers it, or one cannot be placed; no area: everywhere."""
    areas = [area for info in alert["info"] for area in info["area"]]
    if not areas:
        return True
    return any(area_applies(area, location, codes) is not False for area in areas)
