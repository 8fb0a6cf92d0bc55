"""A bundle's signed manifest and the consent receipt inside it: their fields (msgspec Structs), checks and signing.

The manifest (format 1) says what was shared, with whom and why; the consent receipt, signed by the node key, says
who chose to share which clip for which request. Both travel as canonical JSON (sync.canonical) and are checked
field by field when a bundle is built and again when `verify_bundle` opens it; a mistake is worded
`field <path> must be <what>, not <value>` (docs/bundles.md lists the fields).
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import msgspec
import nacl.exceptions
import nacl.signing

from node.sharing._decode import FieldError, Mismatch, Problem, decode, full, short, words
from node.sharing.errors import ConsentError, SharingError
from sync import EventRejected, canonical

VERSION = 1
"""Format of bundles, their manifests and consent receipts."""
MANIFEST_CONTEXT = b"nnode-bundle-manifest-v1:"
"""Prefix of the signed manifest bytes, so a manifest signature can never pass for another signed object's."""
CONSENT_CONTEXT = b"nnode-consent-v1:"
"""Prefix of the signed consent receipt bytes."""
RANGE_CONTEXT = b"nnode-range-v1:"
"""Prefix of the bytes hashed into a range's digest (the `clip_sha256` its consent receipt names)."""
MAX_PARTS = 500
"""Most clips one range bundle may join (the node's own cap, ranges.MAX_CLIPS, is lower)."""
REDACTED, ORIGINAL = "redacted", "original"
ROLES = ("manager", "resident")
MEDIA_FILES = {"video/mp4": "clip.mp4", "video/webm": "clip.webm"}
"""Media types a bundle may deliver, and the name `verify_bundle` gives the clip."""

_MAX_TEXT = 200
_MAX_SAFE_INT = 2**53 - 1
_ISO = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"
_DECIMAL = r"-?\d{1,3}(\.\d{1,12})?"
_ISO_RE = re.compile(full(_ISO))


def _hex(n: int) -> msgspec.Meta:
    return words(f"{n} lowercase hex digits", pattern=full(f"[0-9a-f]{{{n}}}"))


def _degrees(limit: int, example: str) -> msgspec.Meta:
    return words(f'a decimal string from -{limit} to {limit}, like "{example}"', pattern=full(_DECIMAL))


def _one_of(values: Any) -> str:
    return " or ".join(f'"{v}"' for v in values)


Text = Annotated[str, words(f"a non-empty string of at most {_MAX_TEXT} characters", min_length=1,
                            max_length=_MAX_TEXT)]
MaybeText = Annotated[Text | None, words(f"null or a non-empty string of at most {_MAX_TEXT} characters")]
Hex32 = Annotated[str, _hex(32)]
Hex64 = Annotated[str, _hex(64)]
Hex128 = Annotated[str, _hex(128)]
Iso = Annotated[str, words("a UTC time like 2025-05-01T12:00:00.000Z", pattern=full(_ISO))]
Size = Annotated[int, words("a positive integer", gt=0, le=_MAX_SAFE_INT)]
Format = Annotated[int, words(f"{VERSION}", ge=VERSION, le=VERSION)]
Choice = Annotated[Literal["redacted", "original"], words(_one_of((REDACTED, ORIGINAL)))]
Role = Annotated[Literal["manager", "resident"], words(_one_of(ROLES))]
MediaType = Annotated[Literal["video/mp4", "video/webm"], words(_one_of(MEDIA_FILES))]


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Immutable, and no key beyond the declared ones."""


class Subject(_Strict, frozen=True):
    """Who consented: a role and an opaque id."""

    role: Role
    id: Text


class ConsentReceipt(_Strict, frozen=True):
    """A consent receipt, signed by the node key (sig over CONSENT_CONTEXT + the canonical rest)."""

    v: Format
    request_id: Text
    clip_sha256: Hex64
    by: Subject
    choice: Choice
    at: Iso
    node_key: Hex64
    sig: Hex128


class RequestRef(_Strict, frozen=True):
    """The request a bundle answers."""

    id: Text
    case_number: Text


class Camera(_Strict, frozen=True):
    """The camera that recorded the clip, and where it stands."""

    id: Text
    name: Text
    latitude: Annotated[str, _degrees(90, "40.7128")]
    longitude: Annotated[str, _degrees(180, "-74.0060")]

    def __post_init__(self) -> None:
        """Degrees within range (the pattern says only how they are written)."""
        for name, value, limit in (("latitude", self.latitude, 90), ("longitude", self.longitude, 180)):
            try:
                within = abs(Decimal(value)) <= limit
            except InvalidOperation:
                within = False
            if not within:
                raise FieldError(name)


class Original(_Strict, frozen=True):
    """The original clip, by digest and size (delivered or not)."""

    sha256: Hex64
    size: Size


class Clip(_Strict, frozen=True):
    """When the clip was recorded, and the original."""

    start: Iso
    end: Iso
    original: Original


class Delivered(_Strict, frozen=True):
    """The video the bundle carries."""

    kind: Choice
    sha256: Hex64
    size: Size
    media_type: MediaType
    redaction: MaybeText


class Span(_Strict, frozen=True):
    """A stretch of time (a gap in a range: no clip recorded from start to end)."""

    start: Iso
    end: Iso


class PartDelivered(_Strict, frozen=True):
    """One part as the bundle carries it (the redacted clip, or the original)."""

    sha256: Hex64
    size: Size


class Part(_Strict, frozen=True):
    """One clip of a range: when it was recorded, the original, and the part delivered."""

    start: Iso
    end: Iso
    original: Original
    delivered: PartDelivered


class Range(_Strict, frozen=True):
    """A range bundle's footage: the range the owner chose, its clips in time order and the gaps between them."""

    start: Iso
    end: Iso
    parts: Annotated[list[Part], words(f"a list of 1 to {MAX_PARTS} parts", min_length=1, max_length=MAX_PARTS)]
    gaps: Annotated[list[Span], words(f"a list of at most {MAX_PARTS + 1} gaps", max_length=MAX_PARTS + 1)]


class Manifest(_Strict, frozen=True):
    """A bundle's manifest (format 1), signed by the node key (over MANIFEST_CONTEXT + its canonical bytes)."""

    format: Format
    bundle_id: Hex32
    created: Iso
    software: Text
    node_key: Hex64
    agency_key: Hex64
    request: RequestRef
    camera: Camera
    clip: Clip
    delivered: Delivered
    consent: Annotated[dict[str, Any], words("an object")]
    """The consent receipt, checked as a ConsentReceipt on its own."""
    encryption_key: Hex64 | None = None
    """The X25519 key the content key is sealed to, as the request named it (absent from bundles made before keys
    were separated, which are sealed to the conversion of agency_key)."""
    range: Range | None = None
    """A range bundle's parts and gaps (absent from a one-clip bundle); the video is the parts, one after another."""


def utc_iso(value: float | datetime | str) -> str:
    """A UTC time as ISO 8601 with milliseconds and Z, like 2025-05-01T12:00:00.000Z (POSIX seconds, aware datetime
    or such a string)."""
    if isinstance(value, str):
        if _ISO_RE.search(value):
            return value
        raise SharingError(f"time {value!r} is not ISO 8601 UTC like 2025-05-01T12:00:00.000Z")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SharingError("a naive datetime has no time zone: give an aware datetime or POSIX seconds")
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SharingError(f"time {value!r} is neither POSIX seconds, a datetime nor an ISO 8601 string")
    ms = round(value * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def describe(problem: Problem) -> str:
    """A decoding problem in the manifest's words: `field <path> must be <what>, not <value>`."""
    if problem.kind == "missing":
        return f"field {problem.key()} is missing"
    if problem.kind == "unknown":
        return f"unknown field {problem.key()}"
    if problem.is_object:
        return f"{problem.path or 'value'} is not an object"
    return f"field {problem.path or 'value'} must be {problem.expected or 'valid'}, not {short(problem.value)}"


def read_manifest(manifest: Any) -> tuple[Manifest | None, str | None]:
    """The manifest's fields decoded, or the first thing wrong with them: (manifest, None) or (None, problem)."""
    try:
        m = decode(manifest, Manifest)
    except Mismatch as exc:
        return None, describe(exc.problem)
    if m.clip.end < m.clip.start:
        return None, f"the clip ends ({m.clip.end}) before it starts ({m.clip.start})"
    if m.delivered.kind == REDACTED and m.delivered.redaction is None:
        return None, "a redacted clip must name its redaction method (delivered.redaction)"
    if m.delivered.kind == ORIGINAL and m.delivered.redaction is not None:
        return None, "the original clip is not redacted: delivered.redaction must be null"
    if m.range is not None:
        problem = range_problem(m)
        if problem:
            return None, problem
    return m, None


def gaps_between(start: str, end: str, spans: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The stretches of [start, end] that no span covers, in order (ISO times compare as text: one format)."""
    gaps, reached = [], start
    for span_start, span_end in sorted(spans):
        if span_start > reached and reached < end:
            gaps.append((reached, min(span_start, end)))
        reached = max(reached, span_end)
    if reached < end:
        gaps.append((reached, end))
    return gaps


def range_digest(camera_id: str, start: str, end: str, originals: list[tuple[str, str, str, int]]) -> str:
    """The digest a range's consent receipt names as its clip: sha256 of RANGE_CONTEXT and the canonical camera,
    range and (start, end, sha256, size) of every original clip, in time order."""
    body = {"camera": camera_id, "start": start, "end": end,
            "parts": [{"start": s, "end": e, "sha256": h, "size": n} for s, e, h, n in originals]}
    return hashlib.sha256(RANGE_CONTEXT + canonical(body)).hexdigest()


def range_problem(m: Manifest) -> str | None:
    """The first thing wrong with a range manifest's parts, gaps and digests, or None."""
    r = m.range
    assert r is not None
    if r.end <= r.start:
        return f"the range ends ({r.end}) before it starts ({r.start})"
    previous = ""
    for n, part in enumerate(r.parts):
        if part.end < part.start:
            return f"range part {n + 1} ends ({part.end}) before it starts ({part.start})"
        if part.start < previous:
            return f"range part {n + 1} starts ({part.start}) before part {n} ({previous}): not in time order"
        if part.end <= r.start or part.start >= r.end:
            return f"range part {n + 1} ({part.start} to {part.end}) lies outside the range"
        if m.delivered.kind == ORIGINAL and (part.delivered.sha256, part.delivered.size) != \
                (part.original.sha256, part.original.size):
            return f"range part {n + 1}: the original was chosen, but the part delivered is not the original clip"
        previous = part.start
    stated = [(g.start, g.end) for g in r.gaps]
    gaps = gaps_between(r.start, r.end, [(p.start, p.end) for p in r.parts])
    if stated != gaps:
        return f"the range's gaps {stated} are not the stretches its parts leave uncovered, {gaps}"
    digest = range_digest(m.camera.id, r.start, r.end,
                          [(p.start, p.end, p.original.sha256, p.original.size) for p in r.parts])
    if m.clip.original.sha256 != digest:
        return f"clip.original.sha256 must be the range's digest {digest}, not {m.clip.original.sha256}"
    if (m.clip.start, m.clip.end) != (r.start, r.end):
        return "clip.start and clip.end must be the range's start and end"
    if m.clip.original.size != sum(p.original.size for p in r.parts):
        return "clip.original.size must be the sum of the parts' original sizes"
    if m.delivered.size != sum(p.delivered.size for p in r.parts):
        return "delivered.size must be the sum of the parts' delivered sizes"
    return None


def sign_consent(node_signing_key: nacl.signing.SigningKey, *, request_id: str, clip_sha256: str, role: str,
                 subject: str, choice: str = REDACTED, at: float | datetime | str | None = None) -> dict[str, Any]:
    """A consent receipt signed by the node key: who (role and opaque id) chose what, for which request and clip
    (the original's sha256), and when (default now)."""
    receipt = {"v": VERSION, "request_id": request_id, "clip_sha256": clip_sha256,
               "by": {"role": role, "id": subject}, "choice": choice,
               "at": utc_iso(time.time() if at is None else at),
               "node_key": node_signing_key.verify_key.encode().hex()}
    try:
        decode(receipt | {"sig": "0" * 128}, ConsentReceipt)
    except Mismatch as exc:
        raise ConsentError(f"cannot make a consent receipt: {describe(exc.problem)}") from None
    signature = node_signing_key.sign(CONSENT_CONTEXT + canonical(receipt)).signature
    return receipt | {"sig": signature.hex()}


def consent_problem(receipt: Any, *, node_key: str, request_id: Any, clip_sha256: Any) -> str | None:
    """The first reason `receipt` does not record consent for this node, request and clip, or None."""
    if receipt is None:
        return "there is no consent record"
    try:
        fields = decode(receipt, ConsentReceipt)
    except Mismatch as exc:
        return f"consent receipt {describe(exc.problem)}"
    if fields.node_key != node_key:
        return f"the consent receipt is from node key {fields.node_key}, not {node_key}"
    body = {name: value for name, value in receipt.items() if name != "sig"}
    try:
        nacl.signing.VerifyKey(bytes.fromhex(node_key)).verify(CONSENT_CONTEXT + canonical(body),
                                                               bytes.fromhex(fields.sig))
    except (nacl.exceptions.BadSignatureError, EventRejected):
        return "the consent receipt's signature does not verify with the node key (forged or altered)"
    if fields.request_id != request_id:
        return f"the consent is for request {fields.request_id!r}, not {request_id!r}"
    if fields.clip_sha256 != clip_sha256:
        return f"the consent is for clip sha256 {fields.clip_sha256}, not {clip_sha256}"
    return None


def check_consent(receipt: Any, *, node_key: str, request_id: str, clip_sha256: str) -> None:
    """Raise ConsentError unless `receipt` is this node's signed consent for this request and original clip."""
    problem = consent_problem(receipt, node_key=node_key, request_id=request_id, clip_sha256=clip_sha256)
    if problem:
        raise ConsentError(problem)
