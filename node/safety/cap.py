"""CAP 1.2 (OASIS Common Alerting Protocol): parse, validate and serialise alerts.

XML is parsed with defusedxml (no entities, no external references). Every required element and every enumerated
value of CAP 1.2 is checked; an error names the element path and what was expected. An alert becomes a plain JSON
dict (strings and lists only, so it can travel in a signed event: coordinates stay CAP's own decimal strings).
"""

from __future__ import annotations

import binascii
import hashlib
import math
import re
from datetime import datetime
from typing import Any, Literal, overload
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from node.errors import BadRequest

NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM = "http://www.w3.org/2005/Atom"
MAX_XML_BYTES = 8 * 1024 * 1024   # a large agency feed; entity tricks are refused regardless

STATUS = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPE = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPE = ("Public", "Restricted", "Private")
CATEGORY = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra", "CBRNE",
            "Other")
RESPONSE_TYPE = ("Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None")
URGENCY = ("Immediate", "Expected", "Future", "Past", "Unknown")
SEVERITY = ("Extreme", "Severe", "Moderate", "Minor", "Unknown")
CERTAINTY = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
# CAP dateTime: 2002-05-24T16:49:00-07:00, always with a numeric offset ("Z" is not allowed by the spec).
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}\Z")
_POINT = re.compile(r"(-?\d{1,2}(?:\.\d+)?),(-?\d{1,3}(?:\.\d+)?)\Z")
_FORBIDDEN_ID_CHARS = re.compile(r"[\s,<&]")
_DECIMAL = re.compile(r"-?\d{1,9}(?:\.\d{1,9})?\Z")
_INTEGER = re.compile(r"\d{1,12}\Z")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}\Z")
# A resource carried inline (derefUri, base64) rides in a signed event, whose limit is 64 KiB: a bigger one is refused
# (the publisher's uri still names it).
MAX_DEREF_CHARS = 32 * 1024
DSIG = "http://www.w3.org/2000/09/xmldsig#"


class CapError(BadRequest):
    """A CAP document is malformed or breaks a CAP 1.2 rule; the message names the element."""

    reason = "cap"


def _tag(name: str) -> str:
    return f"{{{NS}}}{name}"


@overload
def _text(parent: Element, name: str, path: str, *, required: Literal[True]) -> str: ...
@overload
def _text(parent: Element, name: str, path: str, *, required: bool = False) -> str | None: ...


def _text(parent: Element, name: str, path: str, *, required: bool = False) -> str | None:
    found = parent.findall(_tag(name))
    if len(found) > 1:
        raise CapError(f"{path}/{name}: appears {len(found)} times, at most once allowed")
    if not found or found[0].text is None or not found[0].text.strip():
        if required:
            raise CapError(f"{path}/{name}: required element is missing or empty")
        return None
    return found[0].text.strip()


def _texts(parent: Element, name: str) -> list[str]:
    return [e.text.strip() for e in parent.findall(_tag(name)) if e.text and e.text.strip()]


def _enum(value: str | None, choices: tuple[str, ...], where: str) -> str | None:
    if value is not None and value not in choices:
        raise CapError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return value


def _datetime(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    if not _DATETIME.match(value):
        raise CapError(f"{where}: {value!r} is not a CAP dateTime like 2002-05-24T16:49:00-07:00")
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise CapError(f"{where}: {value!r} is not a valid date and time") from exc
    return value


def _point(text: str, where: str) -> tuple[float, float]:
    match = _POINT.match(text)
    if not match:
        raise CapError(f"{where}: {text!r} is not a WGS 84 point \"lat,lon\"")
    lat, lon = float(match.group(1)), float(match.group(2))
    if abs(lat) > 90 or abs(lon) > 180:
        raise CapError(f"{where}: {text!r} is outside -90..90, -180..180")
    return lat, lon


def _polygon(text: str, where: str) -> str:
    points = text.split()
    if len(points) < 4:
        raise CapError(f"{where}: a polygon needs at least 4 points (the first repeated last), got {len(points)}")
    for point in points:
        _point(point, where)
    if points[0] != points[-1]:
        raise CapError(f"{where}: a polygon must end where it starts")
    return " ".join(points)


def _circle(text: str, where: str) -> str:
    parts = text.split()
    if len(parts) != 2:
        raise CapError(f"{where}: a circle is \"lat,lon radius_km\", got {text!r}")
    _point(parts[0], where)
    try:
        radius = float(parts[1])
    except ValueError:
        radius = -1.0
    if not 0 <= radius <= 20_000:
        raise CapError(f"{where}: radius {parts[1]!r} is not a distance in km")
    return text


def _pairs(parent: Element, name: str, where: str) -> list[dict[str, str]]:
    out = []
    for i, element in enumerate(parent.findall(_tag(name))):
        path = f"{where}/{name}[{i + 1}]"
        out.append({"valueName": _text(element, "valueName", path, required=True),
                    "value": _text(element, "value", path, required=True)})
    return out


def _info(element: Element, path: str) -> dict[str, Any]:
    categories = _texts(element, "category")
    if not categories:
        raise CapError(f"{path}/category: at least one is required")
    for category in categories:
        _enum(category, CATEGORY, f"{path}/category")
    responses = _texts(element, "responseType")
    for response in responses:
        _enum(response, RESPONSE_TYPE, f"{path}/responseType")
    info: dict[str, Any] = {
        "language": _text(element, "language", path) or "en-US",
        "category": categories,
        "event": _text(element, "event", path, required=True),
        "responseType": responses,
        "urgency": _enum(_text(element, "urgency", path, required=True), URGENCY, f"{path}/urgency"),
        "severity": _enum(_text(element, "severity", path, required=True), SEVERITY, f"{path}/severity"),
        "certainty": _enum(_text(element, "certainty", path, required=True), CERTAINTY, f"{path}/certainty"),
    }
    for name in ("audience", "senderName", "headline", "description", "instruction", "web", "contact"):
        if (value := _text(element, name, path)) is not None:
            info[name] = value
    for name in ("effective", "onset", "expires"):
        if (value := _datetime(_text(element, name, path), f"{path}/{name}")) is not None:
            info[name] = value
    info["eventCode"] = _pairs(element, "eventCode", path)
    info["parameter"] = _pairs(element, "parameter", path)
    info["resource"] = [_resource(resource, f"{path}/resource[{i + 1}]")
                        for i, resource in enumerate(element.findall(_tag("resource")))]
    info["area"] = [_area(area, f"{path}/area[{i + 1}]") for i, area in enumerate(element.findall(_tag("area")))]
    return info


def _resource(resource: Element, where: str) -> dict[str, str]:
    """A <resource>: its size an integer, its derefUri base64 within MAX_DEREF_CHARS, its digest a SHA-1 that, with a
    derefUri, must be the SHA-1 of the content (CAP 1.2 section 3.2.3)."""
    item = {"resourceDesc": _text(resource, "resourceDesc", where, required=True),
            "mimeType": _text(resource, "mimeType", where, required=True)}
    for name in ("size", "uri", "derefUri", "digest"):
        if (value := _text(resource, name, where)) is not None:
            item[name] = value
    if "size" in item and not _INTEGER.match(item["size"]):
        raise CapError(f"{where}/size: {item['size']!r} is not a whole number of bytes")
    if "digest" in item and not _SHA1.match(item["digest"]):
        raise CapError(f"{where}/digest: {item['digest']!r} is not a SHA-1 digest (40 hexadecimal digits)")
    if "derefUri" in item:
        encoded = "".join(item["derefUri"].split())
        if len(encoded) > MAX_DEREF_CHARS:
            raise CapError(f"{where}/derefUri: {len(encoded)} characters of base64, the limit is {MAX_DEREF_CHARS}")
        try:
            content = binascii.a2b_base64(encoded, strict_mode=True)
        except binascii.Error as exc:
            raise CapError(f"{where}/derefUri: not base64 ({exc})") from exc
        if "digest" in item and hashlib.sha1(content).hexdigest() != item["digest"].lower():
            raise CapError(f"{where}/digest: {item['digest']} is not the SHA-1 of the derefUri content "
                           f"({hashlib.sha1(content).hexdigest()})")
        item["derefUri"] = encoded
    return item


def _area(area: Element, where: str) -> dict[str, Any]:
    """An <area>: shapes, codes, and altitude and ceiling (decimal feet; a ceiling only with an altitude)."""
    item: dict[str, Any] = {"areaDesc": _text(area, "areaDesc", where, required=True),
                            "polygon": [_polygon(p, f"{where}/polygon") for p in _texts(area, "polygon")],
                            "circle": [_circle(c, f"{where}/circle") for c in _texts(area, "circle")],
                            "geocode": _pairs(area, "geocode", where)}
    for name in ("altitude", "ceiling"):
        if (value := _text(area, name, where)) is not None:
            if not _DECIMAL.match(value):
                raise CapError(f"{where}/{name}: {value!r} is not a number of feet")
            item[name] = value
    if "ceiling" in item and "altitude" not in item:
        raise CapError(f"{where}/ceiling: allowed only with an altitude (CAP 1.2)")
    return item


def alert_from_element(root: Element, path: str = "alert") -> dict[str, Any]:
    """Validate one <alert> element and return it as a JSON-ready dict."""
    if root.tag != _tag("alert"):
        raise CapError(f"{path}: expected a CAP 1.2 <alert> in namespace {NS}, found <{root.tag}>")
    identifier = _text(root, "identifier", path, required=True)
    sender = _text(root, "sender", path, required=True)
    for name, value in (("identifier", identifier), ("sender", sender)):
        if _FORBIDDEN_ID_CHARS.search(value):
            raise CapError(f"{path}/{name}: must not contain spaces, commas or restricted characters")
    alert: dict[str, Any] = {
        "identifier": identifier,
        "sender": sender,
        "sent": _datetime(_text(root, "sent", path, required=True), f"{path}/sent"),
        "status": _enum(_text(root, "status", path, required=True), STATUS, f"{path}/status"),
        "msgType": _enum(_text(root, "msgType", path, required=True), MSG_TYPE, f"{path}/msgType"),
        "scope": _enum(_text(root, "scope", path, required=True), SCOPE, f"{path}/scope"),
    }
    for name in ("source", "restriction", "addresses", "note", "incidents"):
        if (text := _text(root, name, path)) is not None:
            alert[name] = text
    if alert["scope"] == "Restricted" and "restriction" not in alert:
        raise CapError(f"{path}/restriction: required when scope is Restricted")
    if alert["scope"] == "Private" and "addresses" not in alert:
        raise CapError(f"{path}/addresses: required when scope is Private")
    references = _text(root, "references", path)
    alert["references"] = []
    if references:
        for triple in references.split():
            parts = triple.split(",")
            if len(parts) != 3:
                raise CapError(f"{path}/references: {triple!r} is not \"sender,identifier,sent\"")
            _datetime(parts[2], f"{path}/references")
            alert["references"].append({"sender": parts[0], "identifier": parts[1], "sent": parts[2]})
    if alert["msgType"] in ("Update", "Cancel") and not alert["references"]:
        raise CapError(f"{path}/references: an {alert['msgType']} must name the alert(s) it refers to")
    alert["code"] = _texts(root, "code")
    alert["info"] = [_info(info, f"{path}/info[{i + 1}]") for i, info in enumerate(root.findall(_tag("info")))]
    return alert


def _parse_xml(data: bytes) -> Element:
    if len(data) > MAX_XML_BYTES:
        raise CapError(f"document is {len(data)} bytes, the limit is {MAX_XML_BYTES}")
    try:
        root: Element = SafeET.fromstring(data, forbid_dtd=True)
        return root
    except DefusedXmlException as exc:
        raise CapError(f"document refused: {exc.__class__.__name__} (DTDs and entities are not accepted)") from exc
    except SafeET.ParseError as exc:
        raise CapError(f"not well-formed XML: {exc}") from exc


def parse_alert(data: bytes) -> dict[str, Any]:
    """One CAP 1.2 <alert> document (not a feed of them)."""
    root = _parse_xml(data)
    if root.tag != _tag("alert"):
        raise CapError(f"document: expected one CAP 1.2 <alert>, found <{root.tag}>")
    return alert_from_element(root)


def parse_document(data: bytes) -> list[dict[str, Any]]:
    """Alerts from a CAP 1.2 alert, an Atom or RSS feed whose entries carry CAP alerts, or an IPAWS <alerts>."""
    root = _parse_xml(data)
    if root.tag == _tag("alert"):
        return [alert_from_element(root)]
    if root.tag in (f"{{{ATOM}}}feed", "rss", "{http://gov.fema.ipaws.services/feed}alerts"):
        alerts = []
        for i, element in enumerate(root.iter(_tag("alert"))):
            alerts.append(alert_from_element(element, f"feed/alert[{i + 1}]"))
        return alerts
    raise CapError(f"document: expected a CAP 1.2 <alert> or an Atom/RSS feed of them, found <{root.tag}>")


def area_covers(area: dict[str, Any], lat: float, lon: float) -> bool:
    """True if a CAP area's polygons or circles contain the point (WGS 84)."""
    for polygon in area.get("polygon", []):
        if _in_polygon([_point(p, "polygon") for p in polygon.split()], lat, lon):
            return True
    for circle in area.get("circle", []):
        centre, radius = circle.split()
        clat, clon = _point(centre, "circle")
        if _distance_km(lat, lon, clat, clon) <= float(radius):
            return True
    return False


def _in_polygon(points: list[tuple[float, float]], lat: float, lon: float) -> bool:
    inside = False
    for (lat1, lon1), (lat2, lon2) in zip(points, points[1:]):
        if (lat1 > lat) != (lat2 > lat):
            crossing = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing:
                inside = not inside
    return inside


def _distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def _sub(parent: Element, name: str, text: str) -> Element:
    from xml.etree.ElementTree import SubElement
    element = SubElement(parent, _tag(name))
    element.text = text
    return element


def _sub_pairs(parent: Element, name: str, pairs: list[dict[str, str]]) -> None:
    from xml.etree.ElementTree import SubElement
    for pair in pairs:
        element = SubElement(parent, _tag(name))
        _sub(element, "valueName", pair["valueName"])
        _sub(element, "value", pair["value"])


def alert_to_element(alert: dict[str, Any]) -> Element:
    """The <alert> element for a dict made by alert_from_element (CAP 1.2 element order)."""
    from xml.etree.ElementTree import SubElement
    root = Element(_tag("alert"))
    for name in ("identifier", "sender", "sent", "status", "msgType", "source", "scope", "restriction",
                 "addresses"):
        if name in alert:
            _sub(root, name, alert[name])
    for code in alert.get("code", []):
        _sub(root, "code", code)
    if "note" in alert:
        _sub(root, "note", alert["note"])
    if alert.get("references"):
        _sub(root, "references", " ".join(f"{r['sender']},{r['identifier']},{r['sent']}"
                                          for r in alert["references"]))
    if "incidents" in alert:
        _sub(root, "incidents", alert["incidents"])
    for info in alert.get("info", []):
        element = SubElement(root, _tag("info"))
        _sub(element, "language", info["language"])
        for category in info["category"]:
            _sub(element, "category", category)
        _sub(element, "event", info["event"])
        for response in info.get("responseType", []):
            _sub(element, "responseType", response)
        for name in ("urgency", "severity", "certainty", "audience"):
            if name in info:
                _sub(element, name, info[name])
        _sub_pairs(element, "eventCode", info.get("eventCode", []))
        for name in ("effective", "onset", "expires", "senderName", "headline", "description", "instruction",
                     "web", "contact"):
            if name in info:
                _sub(element, name, info[name])
        _sub_pairs(element, "parameter", info.get("parameter", []))
        for resource in info.get("resource", []):
            item = SubElement(element, _tag("resource"))
            for name in ("resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"):
                if name in resource:
                    _sub(item, name, resource[name])
        for area in info.get("area", []):
            item = SubElement(element, _tag("area"))
            _sub(item, "areaDesc", area["areaDesc"])
            for polygon in area.get("polygon", []):
                _sub(item, "polygon", polygon)
            for circle in area.get("circle", []):
                _sub(item, "circle", circle)
            _sub_pairs(item, "geocode", area.get("geocode", []))
            for name in ("altitude", "ceiling"):
                if name in area:
                    _sub(item, name, area[name])
    return root


def check_alert_dict(alert: Any) -> dict[str, Any]:
    """Validate an alert in its JSON form (as it travels in events) by the same rules as XML; return it."""
    from xml.etree.ElementTree import tostring
    if not isinstance(alert, dict):
        raise CapError("alert: must be an object")
    try:
        again = alert_from_element(_parse_xml(tostring(alert_to_element(alert))))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CapError(f"alert: missing or mistyped field ({exc})") from exc
    if again != alert:
        raise CapError("alert: not in the form this node writes CAP alerts in (unknown or misplaced fields)")
    return alert
