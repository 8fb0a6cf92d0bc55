"""RFC 8785 (JCS) canonical JSON, restricted to what events may carry.

Events carry integers only (|n| <= 2**53 - 1, the I-JSON range that every JSON parser reads exactly), strings in
Unicode NFC, booleans, null, arrays and objects. Within that subset the canonical form is: no whitespace, object
members sorted by the UTF-16 code units of their names, strings escaped as ECMAScript's JSON.stringify does, and the
whole encoded as UTF-8.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from ._errors import FloatNotAllowed, MalformedEvent, NonCanonical

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 32  # nesting of arrays and objects an event may use

# CPython's C encoder already escapes exactly as JCS asks (\b \t \n \f \r \" \\ and \u00xx lowercase for the other
# control characters, everything else raw UTF-8); only its key order differs, and only for names holding characters
# outside the Basic Multilingual Plane, which the slow path below handles.
_fast = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode
_scalar = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be", "surrogatepass")


def _walk(value: Any, path: str, nfc: bool, depth: int = 0) -> bool:
    """Validate `value` for encoding; return True if some object name needs UTF-16 ordering."""
    if depth > MAX_DEPTH:
        raise MalformedEvent(f"{path or 'value'}: nested deeper than {MAX_DEPTH} levels")
    if value is None or value is True or value is False:
        return False
    kind = type(value)
    if kind is str:
        if nfc and not value.isascii() and not unicodedata.is_normalized("NFC", value):
            raise NonCanonical(f"{path or 'value'}: string is not in Unicode NFC")
        return False
    if kind is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return False
        raise MalformedEvent(f"{path or 'value'}: integer {value} outside +/-(2**53-1)")
    if kind is float:
        raise FloatNotAllowed(f"{path or 'value'}: floats are not allowed, use integers or decimal strings")
    if kind is list:
        astral = False
        for i, item in enumerate(value):
            astral |= _walk(item, f"{path}[{i}]", nfc, depth + 1)
        return astral
    if kind is dict:
        astral = False
        for key, item in value.items():
            if type(key) is not str:
                raise MalformedEvent(f"{path or 'value'}: object names must be strings")
            if not key.isascii():
                if nfc and not unicodedata.is_normalized("NFC", key):
                    raise NonCanonical(f"{path or 'value'}: member name {key!r} is not in Unicode NFC")
                astral |= any(ord(c) > 0xFFFF for c in key)
            astral |= _walk(item, f"{path}.{key}" if path else key, nfc, depth + 1)
        return astral
    raise MalformedEvent(f"{path or 'value'}: {kind.__name__} cannot be encoded as event JSON")


def _exact(value: Any) -> str:
    if type(value) is dict:
        members = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(_scalar(k) + ":" + _exact(v) for k, v in members) + "}"
    if type(value) is list:
        return "[" + ",".join(_exact(v) for v in value) + "]"
    return _scalar(value)


def _to_utf8(text: str, path: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedEvent(f"{path or 'value'}: string holds a lone surrogate") from exc


def canonical(value: Any, *, nfc: bool = True, path: str = "") -> bytes:
    """Encode `value` as RFC 8785 canonical JSON bytes; raise EventRejected if it holds what events may not."""
    astral = _walk(value, path, nfc)
    return _to_utf8(_exact(value) if astral else _fast(value), path)


def canonical_checked(value: Any) -> bytes:
    """Encode a value already known to be valid event JSON with BMP-only member names (the fast path)."""
    return _fast(value).encode("utf-8")


def _reject_float(text: str) -> Any:
    raise FloatNotAllowed(f"number {text} is not an integer: floats are not allowed, use integers or decimal strings")


def _reject_constant(text: str) -> Any:
    raise FloatNotAllowed(f"{text} is not allowed in event JSON")


def _parse_int(text: str) -> int:
    if len(text) > 17:  # longer than -(2**53 - 1): refuse before int() does quadratic work
        raise MalformedEvent(f"integer {text[:20]}... outside +/-(2**53-1)")
    value = int(text)
    if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        return value
    raise MalformedEvent(f"integer {text} outside +/-(2**53-1)")


# One decoder for every call (json.loads with hooks builds a decoder and its scanner each time).
_decoder = json.JSONDecoder(parse_float=_reject_float, parse_constant=_reject_constant, parse_int=_parse_int)
_BRACKETS = re.compile(r'[\[\]{}]|"(?:[^"\\]|\\.)*"')


def _depth_exceeds(text: str, outer: int = 0) -> bool:
    """True if brackets outside strings nest deeper than MAX_DEPTH (checked before parsing recursively), with
    `outer` levels already around the text (1 for an event's body, inside the event object)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH - outer:
        return False
    depth = outer
    for token in _BRACKETS.findall(text):
        if token in "[{":
            depth += 1
            if depth > MAX_DEPTH + 1:  # the event object itself is one level
                return True
        elif token in "]}":
            depth -= 1
    return False


def decode(data: bytes, *, outer: int = 0) -> Any:
    """Parse `data`, which must be exactly the canonical encoding of what it holds; raise EventRejected if not.

    `outer` is how many levels of nesting already enclose `data` (1 for an event's body), counted in MAX_DEPTH."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvent(f"not UTF-8 at byte {exc.start}") from exc
    if _depth_exceeds(text, outer):
        raise MalformedEvent(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        value = _decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"malformed JSON: {exc.msg} at column {exc.colno}") from exc
    except (ValueError, RecursionError) as exc:
        raise MalformedEvent(f"malformed JSON: {exc.__class__.__name__}") from exc
    if text.isascii():
        # ASCII text has only NFC strings and BMP names, so the C encoder is exact.
        encoded = _to_utf8(_fast(value), "")
    else:
        encoded = canonical(value)
    if encoded != data:
        raise NonCanonical("bytes are not the RFC 8785 canonical encoding of their content "
                           "(whitespace, member order, escapes, duplicate names or number form)")
    return value
