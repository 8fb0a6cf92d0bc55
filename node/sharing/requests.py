"""Agency footage requests: their signed form (declared as msgspec Structs), their validation and the policy limits.

A request is a JSON object signed by the agency's ed25519 key over its canonical form (RFC 8785, sync.canonical):

    {"v": 1, "id": "<32 hex>", "agency": "<agency key, 64 hex>", "case_number": "2026-004512",
     "reason": "burglary at 12 Elm St", "window": {"start": "2026-11-20T21:00:00Z", "end": "2026-11-20T21:40:00Z"},
     "area": {"circle": {"lat": "40.7128", "lon": "-74.0060", "radius_m": 300}}
          or {"polygon": [["40.7128", "-74.0060"], ...]},
     "urgency": "normal" | "emergency", "contact": "Det. R. Diaz, +1 212 555 0100", "expires": "2026-12-20T00:00:00Z",
     "created": "2026-11-21T09:00:00Z", "encryption_key": "<the agency's X25519 key, 64 hex>"}

plus "sig": the ed25519 signature (hex) of the canonical bytes of everything else. Degrees are decimal strings and
the radius an integer in metres, because signed JSON carries no floats (docs/events.md). "encryption_key" is the
agency's X25519 public key, separate from its signing key: the bundles made for the request are sealed to it. A
request arriving now must name one; a request stored before keys were separated lacks it, and its bundles are
sealed to the conversion of the agency's signing key, as they were then. The Structs below declare
that form; the document itself is kept as received, so what is stored and forwarded is what the agency signed.

The policy limits default to Ring's former rules for police requests (window 15 minutes to 12 hours, area at most
half a square mile, a case number), and are configurable; an out-of-policy request is refused with the reason.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

import msgspec
import nacl.exceptions
import nacl.signing

from node.sharing._decode import MISSING, FieldError, Mismatch, Problem, decode, full, short, words
from node.sharing.agency_keys import AgencyKey, is_box_point
from node.sharing.errors import RequestError
from node.sharing.geometry import SQUARE_MILE_M2, Area
from sync import canonical

__all__ = ["Area", "FootageRequest", "Policy", "RequestDocument", "RequestError", "format_time", "parse_area",
           "parse_request", "parse_time", "sign_request", "signing_bytes", "stored_request"]

FORMAT_VERSION = 1
MAX_POLYGON_POINTS = 64
MAX_TEXT = {"case_number": 64, "reason": 500, "contact": 200}
_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z"
_DEGREES = r"-?\d{1,3}(\.\d{1,7})?"
_TIME_RE = re.compile(full(_TIME))
_AREA = 'expected {"circle": {lat, lon, radius_m}} or {"polygon": [[lat, lon], ...]}'


def _hex(n: int) -> msgspec.Meta:
    return words(f"expected {n} lowercase hex digits", pattern=full(f"[0-9a-f]{{{n}}}"))


def _text(limit: int) -> msgspec.Meta:
    return words(f"expected text of at most {limit} characters without control characters", max_length=limit,
                 pattern=full("[^\x00-\x1f]*"))


def _degrees(limit: int) -> msgspec.Meta:
    return words(f"expected degrees as a decimal string within ±{limit} (at most 7 decimals)", pattern=full(_DEGREES))


Hex32 = Annotated[str, _hex(32)]
Hex64 = Annotated[str, _hex(64)]
Hex128 = Annotated[str, _hex(128)]
CaseNumber = Annotated[str, _text(MAX_TEXT["case_number"])]
Reason = Annotated[str, _text(MAX_TEXT["reason"])]
Contact = Annotated[str, _text(MAX_TEXT["contact"])]
Time = Annotated[str, words("expected a UTC time like 2026-11-20T21:00:00Z", pattern=full(_TIME))]
Lat = Annotated[str, _degrees(90)]
Lon = Annotated[str, _degrees(180)]
Point = Annotated[tuple[Lat, Lon], words("expected [lat, lon]")]


class Window(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The time the footage is asked for."""

    start: Time
    end: Time


class Circle(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A circle: its centre in degrees and its radius in whole metres."""

    lat: Lat
    lon: Lon
    radius_m: Annotated[int, words("expected whole metres from 1 to 100000", ge=1, le=100_000)]

    def __post_init__(self) -> None:
        """Degrees within range (the pattern says only how they are written)."""
        for name, value, limit in (("lat", self.lat, 90), ("lon", self.lon, 180)):
            if abs(float(value)) > limit:
                raise FieldError(name)


class AreaDocument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The area a request covers, as signed: exactly one of a circle or a polygon."""

    circle: Annotated[Circle, words("expected exactly lat, lon and radius_m")] | None = None
    polygon: Annotated[list[Point], words(f"expected 3 to {MAX_POLYGON_POINTS} [lat, lon] points", min_length=3,
                                          max_length=MAX_POLYGON_POINTS)] | None = None

    def __post_init__(self) -> None:
        """One shape, and a polygon's corners within range."""
        if (self.circle is None) == (self.polygon is None):
            raise FieldError("")
        for i, (lat, lon) in enumerate(self.polygon or ()):
            for j, (value, limit) in enumerate(((lat, 90), (lon, 180))):
                if abs(float(value)) > limit:
                    raise FieldError(f"polygon[{i}][{j}]")

    def area(self) -> Area:
        """The area in float degrees."""
        if self.circle is not None:
            c = self.circle
            return Area(circle=(float(c.lat), float(c.lon), float(c.radius_m)))
        return Area(polygon=tuple((float(lat), float(lon)) for lat, lon in self.polygon or ()))


class RequestDocument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A signed footage request's fields (format 1), as the agency signed them."""

    v: Annotated[int, words(f"this node reads request format {FORMAT_VERSION}", ge=FORMAT_VERSION,
                            le=FORMAT_VERSION)]
    id: Hex32
    agency: Hex64
    reason: Reason
    window: Annotated[Window, words('expected {"start": ..., "end": ...}')]
    area: Annotated[AreaDocument, words(_AREA)]
    urgency: Annotated[Literal["normal", "emergency"], words("expected 'normal' or 'emergency'")]
    contact: Contact
    expires: Time
    created: Time
    sig: Hex128
    case_number: CaseNumber = ""
    """Optional only where the policy asks for none."""
    encryption_key: Hex64 | None = None
    """The X25519 key the bundles are sealed to; required of requests arriving (absent only from old stored ones)."""


class Policy(msgspec.Struct, frozen=True):
    """Limits every request must keep (config [agencies])."""

    min_window_s: int = 15 * 60
    max_window_s: int = 12 * 3600
    max_area_sq_mi: float = 0.5
    require_case_number: bool = True
    max_expiry_days: int = 90
    max_age_days: int = 365
    """How far in the past a requested window may start."""


DEFAULT_POLICY = Policy()


class FootageRequest(msgspec.Struct, frozen=True):
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
    encryption_key: str | None = None
    """The agency's X25519 key its bundles are sealed to (None: a request stored before keys were separated)."""

    def public(self) -> dict[str, Any]:
        """The request's public fields (the transparency page shows every request with these)."""
        doc = self.document
        return {"id": self.id, "agency": self.agency, "case_number": self.case_number, "reason": self.reason,
                "window": doc["window"], "area": doc["area"], "urgency": self.urgency, "expires": doc["expires"],
                "created": doc["created"]}


def parse_time(field: str, value: Any) -> float:
    """A UTC ISO 8601 time ending in Z, as POSIX seconds."""
    if not isinstance(value, str) or not _TIME_RE.search(value):
        raise RequestError(f"{field}: expected a UTC time like 2026-11-20T21:00:00Z, got {value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise RequestError(f"{field}: {exc}") from None


def format_time(seconds: float) -> str:
    """POSIX seconds as a UTC ISO 8601 time ending in Z (whole seconds)."""
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _refusal(problem: Problem, base: str = "") -> RequestError:
    """The RequestError for a decoding problem, worded as `field: expected ..., got ...`."""
    path = problem.at(base)
    prefix = f"{path}: " if path else ""
    got = "" if problem.value is MISSING else f", got {short(problem.value)}"
    if problem.expected:
        return RequestError(f"{prefix}{problem.expected}{got}")
    if problem.kind == "unknown":
        return RequestError(f"{prefix}unknown field {problem.name!r} (expected: {', '.join(sorted(problem.keys))})")
    if problem.kind == "missing":
        return RequestError(f"{prefix}missing field {problem.name!r}")
    return RequestError(f"{prefix}expected {'a JSON object' if problem.is_object else 'a valid value'}{got}")


def _area(document: AreaDocument) -> Area:
    """The area of a decoded area document, refused if its outline crosses itself or encloses nothing."""
    area = document.area()
    if area.polygon is None:
        return area
    crossing = area.crossing_edges()
    if crossing:
        raise RequestError(f"area.polygon: edges {crossing[0]} and {crossing[1]} cross (the outline must not cross "
                           "itself)")
    if area.square_metres() < 1:
        raise RequestError("area.polygon: the polygon encloses no area")
    return area


def parse_area(value: Any) -> Area:
    """Validate an area object into an Area."""
    try:
        return _area(decode(value, AreaDocument))
    except Mismatch as exc:
        problem = exc.problem
        if problem.path == "" and problem.expected == "":  # the area itself: not one circle or one polygon
            raise RequestError(f"area: {_AREA}, got {short(value)}") from None
        raise _refusal(problem, "area") from None


def signing_bytes(document: dict[str, Any]) -> bytes:
    """The canonical bytes a request's signature covers (everything but "sig")."""
    return canonical({k: v for k, v in document.items() if k != "sig"})


def sign_request(fields: dict[str, Any], key: AgencyKey | nacl.signing.SigningKey) -> dict[str, Any]:
    """Sign a request's fields with an agency key (the agency side: its CLI, portal and the tests), naming its
    encryption key; a bare signing key signs the fields as given (their encryption_key, if any)."""
    document = dict(fields)
    document.pop("sig", None)
    if isinstance(key, AgencyKey):
        if key.legacy:
            raise RequestError("this agency key file holds one key for signing and opening bundles (the old form); "
                               "make a new one with `nnode agency-key new FILE` and have the node's manager "
                               "register its public key")
        document["encryption_key"] = key.encryption_key
        key = key.signing
    document["agency"] = key.verify_key.encode().hex()
    document["sig"] = key.sign(signing_bytes(document)).signature.hex()
    return document


def _decode_request(document: Any) -> tuple[RequestDocument, Area]:
    """The request's fields and area, checked for form and type (not signature, clock or policy)."""
    if not isinstance(document, dict):
        raise RequestError("a request must be a JSON object")
    try:
        fields = decode(document, RequestDocument)
    except Mismatch as exc:
        raise _refusal(exc.problem) from None
    return fields, _area(fields.area)


def _check_signature(document: dict[str, Any]) -> None:
    """The signature by the key in "agency" (whether that agency may ask is the registry's business)."""
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


def _request(fields: RequestDocument, area: Area, document: dict[str, Any]) -> FootageRequest:
    """The FootageRequest of decoded fields (the times read, nothing else checked)."""
    return FootageRequest(
        id=fields.id, agency=fields.agency, case_number=fields.case_number, reason=fields.reason,
        start=parse_time("window.start", fields.window.start), end=parse_time("window.end", fields.window.end),
        area=area, urgency=fields.urgency, contact=fields.contact, expires=parse_time("expires", fields.expires),
        created=parse_time("created", fields.created), document=dict(document), encryption_key=fields.encryption_key)


def _check_times(request: FootageRequest, now: float) -> None:
    if request.end <= request.start:
        raise RequestError("window: the end must come after the start")
    if request.expires <= now:
        raise RequestError(f"expires: the request expired at {request.document['expires']}")
    if request.created > now + 300:
        raise RequestError("created: the request is dated in the future (check the agency's clock)")
    if request.start > now + 300:
        raise RequestError("window.start: footage cannot be requested for the future")


def _check_policy(request: FootageRequest, now: float, policy: Policy) -> None:
    length = request.end - request.start
    if length < policy.min_window_s or length > policy.max_window_s:
        raise RequestError(f"out of policy: the window is {_duration(length)}; it must be from "
                           f"{_duration(policy.min_window_s)} to {_duration(policy.max_window_s)}")
    size = request.area.square_metres() / SQUARE_MILE_M2
    if size > policy.max_area_sq_mi:
        raise RequestError(f"out of policy: the area is {size:.2f} square miles; at most {policy.max_area_sq_mi:g} "
                           "square miles may be asked for")
    if policy.require_case_number and not request.case_number.strip():
        raise RequestError("out of policy: a case number is required")
    if not request.reason.strip():
        raise RequestError("out of policy: a reason is required")
    if request.expires > now + policy.max_expiry_days * 86400:
        raise RequestError(f"out of policy: the request may stay open at most {policy.max_expiry_days} days")
    if request.start < now - policy.max_age_days * 86400:
        raise RequestError(f"out of policy: footage older than {policy.max_age_days} days cannot be requested")


def parse_request(document: Any, *, now: float, policy: Policy = DEFAULT_POLICY) -> FootageRequest:
    """Check a signed request's form, signature and policy; RequestError names the first problem.

    Checks run in this order: form and types, signature (by the key in "agency"; whether that agency may ask is
    the registry's business), times, then the policy limits.
    """
    fields, area = _decode_request(document)
    if policy.require_case_number and "case_number" not in document:
        raise RequestError("missing field 'case_number'")
    if fields.encryption_key is None:
        raise RequestError("missing field 'encryption_key' (the agency's X25519 key its bundles are sealed to; "
                           "an agency key file from `nnode agency-key new` has one)")
    if not is_box_point(bytes.fromhex(fields.encryption_key)):
        raise RequestError(f"encryption_key: {fields.encryption_key} is a low-order point, not an X25519 key")
    _check_signature(document)
    request = _request(fields, area, document)
    _check_times(request, now)
    _check_policy(request, now, policy)
    return request


def stored_request(document: str) -> FootageRequest:
    """A stored request document (checked when it came in) as a FootageRequest, without the clock or policy."""
    raw = json.loads(document)
    fields, area = _decode_request(raw)
    return _request(fields, area, raw)


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min"
