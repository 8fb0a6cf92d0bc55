"""The signed event envelope of DESIGN section 4: header, content address, signature and detachable body."""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, replace
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from ._canonical import MAX_SAFE_INT, canonical, canonical_checked, decode
from ._errors import (
    BadSignature,
    BodyHashMismatch,
    EventRejected,
    Expired,
    FutureTimestamp,
    InvalidBody,
    MalformedEvent,
    OversizedEvent,
)
from ._kinds import KIND_PATTERN, TOMBSTONE, KindRegistry

VERSION = 1
MAX_EVENT_BYTES = 64 * 1024
MAX_FUTURE_SKEW = 900
SIGNATURE_DOMAIN = b"nnode-event-v1:"
HEADER_FIELDS = ("v", "kind", "author", "seq", "ts", "expires", "body_hash")
_EVENT_FIELDS = frozenset(HEADER_FIELDS) | {"id", "sig"}
_INT_FIELDS = ("v", "seq", "ts", "expires")
_HEX_FIELDS = {"author": 64, "body_hash": 64, "id": 64, "sig": 128}
_BODY_START = len(b'{"author":"') + 64 + len(b'","body":')
_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}\\Z") for n in (64, 128)}
# A line whose envelope is already canonical: members in JCS order, hex and integers in canonical form (no leading
# zero, no "-0", at most 16 digits), a KIND_PATTERN kind. The body, if any, lies between '{"author":"<64 hex>",
# "body":' and the last ',"body_hash":"' (no later member's value can hold that sequence). Such a line is canonical
# exactly when its body is, so only the body is parsed and re-encoded; any other line takes the full path.
_INT = rb"(0|-?[1-9][0-9]{0,15})"
_AUTHOR = re.compile(rb'\{"author":"([0-9a-f]{64})",')
_TAIL = re.compile(rb',?"body_hash":"([0-9a-f]{64})","expires":' + _INT + rb',"id":"([0-9a-f]{64})","kind":'
                   rb'"([a-z][a-z0-9_.-]{0,63})","seq":' + _INT + rb',"sig":"([0-9a-f]{128})","ts":' + _INT
                   + rb',"v":' + _INT + rb"\}")
_BODY_KEY = len(b'"body":')


def _split_canonical(line: bytes) -> tuple[bytes, bytes | None, tuple[bytes, ...]] | None:
    """(author, body bytes or None, the tail's fields) of a line whose envelope is canonical, else None."""
    head = _AUTHOR.match(line)
    if head is None:
        return None
    end = line.rfind(b',"body_hash":"')
    if end < 0:
        return None
    if end + 1 == _BODY_START - _BODY_KEY:     # no body: '"body_hash"' follows the author directly
        tail = _TAIL.fullmatch(line, end + 1)
        body = None
    elif line.startswith(b'"body":', _BODY_START - _BODY_KEY) and end > _BODY_START:
        tail = _TAIL.fullmatch(line, end)
        body = line[_BODY_START:end]
    else:
        return None
    return None if tail is None else (head[1], body, tail.groups())


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its header fields, id, signature and (unless dropped) its canonical body bytes."""

    kind: str
    author: str
    seq: int
    ts: int
    expires: int
    body_hash: str
    id: str
    sig: str
    body: bytes | None
    v: int = VERSION

    def header(self) -> dict[str, Any]:
        """The signed header as a dict."""
        return {"v": self.v, "kind": self.kind, "author": self.author, "seq": self.seq, "ts": self.ts,
                "expires": self.expires, "body_hash": self.body_hash}

    def body_value(self) -> Any:
        """The decoded body, or None once it was dropped."""
        return None if self.body is None else decode(self.body)

    def without_body(self) -> Event:
        """The same event with its body dropped (still verifiable by its header)."""
        return self if self.body is None else replace(self, body=None)

    def to_line(self) -> bytes:
        """The canonical wire form: JCS of {header..., body, id, sig}, body omitted once dropped."""
        return encode_line(self)

    def signed_message(self) -> bytes:
        """The bytes the author signed."""
        return SIGNATURE_DOMAIN + self.id.encode("ascii")


def encode_line(event: Event) -> bytes:
    """Assemble the canonical line from stored parts without re-encoding the body.

    Member order is fixed and ASCII (author, body, body_hash, expires, id, kind, seq, sig, ts, v); the kind matches
    KIND_PATTERN and every other string is hex, so none of them needs escaping.
    """
    body = b'"body":' + event.body + b"," if event.body is not None else b""
    return b"".join((
        b'{"author":"', event.author.encode(), b'",', body,
        b'"body_hash":"', event.body_hash.encode(), b'","expires":', str(event.expires).encode(),
        b',"id":"', event.id.encode(), b'","kind":"', event.kind.encode(), b'","seq":', str(event.seq).encode(),
        b',"sig":"', event.sig.encode(), b'","ts":', str(event.ts).encode(), b',"v":', str(event.v).encode(), b"}",
    ))


def header_id(header: dict[str, Any]) -> str:
    """The content address: sha256 of the canonical header.

    Callers pass headers whose fields were type-checked (integers, hex and a KIND_PATTERN kind: ASCII only),
    so the fast encoder is exact.
    """
    return sha256_hex(canonical_checked(header))


def _event_id(event: Event) -> str:
    """header_id of a type-checked event, assembled directly (member order: author, body_hash, expires, kind,
    seq, ts, v); tests check it equals header_id."""
    return sha256_hex(b'{"author":"%s","body_hash":"%s","expires":%d,"kind":"%s","seq":%d,"ts":%d,"v":%d}' % (
        event.author.encode(), event.body_hash.encode(), event.expires, event.kind.encode(), event.seq, event.ts,
        event.v))


def create_event(key: nacl.signing.SigningKey, registry: KindRegistry, *, kind: str, seq: int, body: Any,
                 ttl: int, now: int | None = None) -> Event:
    """Build and sign a new event by `key`'s owner, validating it as any receiver would."""
    ts = int(time.time()) if now is None else now
    if type(seq) is not int or not 1 <= seq <= MAX_SAFE_INT:
        raise MalformedEvent(f"seq {seq!r} is outside the event format's range 1..{MAX_SAFE_INT}: "
                             "no event can be signed with it")
    registry.check_body(kind, body)
    body_bytes = canonical(body, path="body")
    author, body_hash = key.verify_key.encode().hex(), sha256_hex(body_bytes)
    event_id = header_id({"v": VERSION, "kind": kind, "author": author, "seq": seq, "ts": ts, "expires": ts + ttl,
                          "body_hash": body_hash})
    sig = key.sign(SIGNATURE_DOMAIN + event_id.encode("ascii")).signature.hex()
    event = Event(kind=kind, author=author, seq=seq, ts=ts, expires=ts + ttl, body_hash=body_hash, id=event_id,
                  sig=sig, body=body_bytes, v=VERSION)
    check_header(event, registry, now=ts)
    if len(event.to_line()) > MAX_EVENT_BYTES:
        raise OversizedEvent(f"event is {len(event.to_line())} bytes, the limit is {MAX_EVENT_BYTES}")
    return event


def _field_error(name: str, expected: str, value: Any) -> MalformedEvent:
    return MalformedEvent(f"field {name!r} must be {expected}, got {type(value).__name__} {str(value)[:40]!r}")


def parse_event(line: bytes, registry: KindRegistry, *, now: int) -> Event:
    """Check everything about one wire event except its signature (see verify_signature); return it."""
    if len(line) > MAX_EVENT_BYTES:
        raise OversizedEvent(f"event is {len(line)} bytes, the limit is {MAX_EVENT_BYTES}")
    parts = _split_canonical(line)
    if parts is None:
        return _parse_full(line, registry, now=now)
    author, body_bytes, (body_hash, expires, event_id, kind, seq, sig, ts, v) = parts
    event = Event(v=int(v), kind=kind.decode(), author=author.decode(), seq=int(seq), ts=int(ts),
                  expires=int(expires), body_hash=body_hash.decode(), id=event_id.decode(), sig=sig.decode(),
                  body=body_bytes)
    try:
        body_value = None if body_bytes is None else decode(body_bytes, outer=1)
    except EventRejected:   # rare: refused by the full path, whose error names what is wrong in the whole line
        return _parse_full(line, registry, now=now)
    check_header(event, registry, now=now)
    if body_bytes is not None:
        check_body(event, registry, now=now, value=body_value)
    return event


def _parse_full(line: bytes, registry: KindRegistry, *, now: int) -> Event:
    """parse_event for a line whose envelope is not canonical as it stands: parsed whole, so that what is wrong
    with it is named (a missing or unknown field, a wrong type, non-canonical bytes)."""
    value = decode(line)
    if type(value) is not dict:
        raise MalformedEvent("an event must be a JSON object")
    names = set(value)
    missing = _EVENT_FIELDS - names
    extra = names - _EVENT_FIELDS - {"body"}
    if missing or extra:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(sorted(missing)))
        if extra:
            parts.append("unknown " + ", ".join(sorted(extra)))
        raise MalformedEvent("event fields: " + "; ".join(parts))
    for name in _INT_FIELDS:
        if type(value[name]) is not int:
            raise _field_error(name, "an integer", value[name])
    for name, length in _HEX_FIELDS.items():
        field = value[name]
        if type(field) is not str or not _HEX[length].match(field):
            raise _field_error(name, f"{length} lowercase hex digits", field)
    if type(value["kind"]) is not str or not KIND_PATTERN.match(value["kind"]):
        raise _field_error("kind", f"a string matching {KIND_PATTERN.pattern}", value["kind"])
    body_bytes = None
    if "body" in value:
        # The line is canonical, so the body's canonical bytes are the slice between '{"author":"<64 hex>",
        # "body":' and the last ',"body_hash":"' (no later member's value can hold that sequence).
        body_bytes = line[_BODY_START:line.rfind(b',"body_hash":"')]
    event = Event(v=value["v"], kind=value["kind"], author=value["author"], seq=value["seq"], ts=value["ts"],
                  expires=value["expires"], body_hash=value["body_hash"], id=value["id"], sig=value["sig"],
                  body=body_bytes)
    check_header(event, registry, now=now)
    if event.body is not None:
        check_body(event, registry, now=now, value=value["body"])
    return event


def check_header(event: Event, registry: KindRegistry, *, now: int) -> None:
    """Validate header semantics: version, kind, seq, times and the content address."""
    if event.v != VERSION:
        raise MalformedEvent(f"field 'v' is {event.v}, this node speaks version {VERSION}")
    spec = registry.get(event.kind)
    for name in _INT_FIELDS:    # parse_event checked these; create_event's caller may not have
        value = getattr(event, name)
        if type(value) is not int or not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise _field_error(name, f"an integer within +/-{MAX_SAFE_INT} (the event format's range)", value)
    if event.seq < 1:
        raise MalformedEvent(f"field 'seq' must be at least 1, got {event.seq}")
    if event.ts < 0:
        raise MalformedEvent(f"field 'ts' must be a Unix time in seconds, got {event.ts}")
    if event.ts > now + MAX_FUTURE_SKEW:
        raise FutureTimestamp(f"ts {event.ts} is {event.ts - now} s in the future, the limit is {MAX_FUTURE_SKEW} s")
    if event.expires <= event.ts:
        raise MalformedEvent(f"field 'expires' ({event.expires}) must be after 'ts' ({event.ts})")
    if event.expires - event.ts > spec.max_ttl:
        raise MalformedEvent(f"lifetime {event.expires - event.ts} s exceeds {spec.max_ttl} s for kind {event.kind!r}")
    if _event_id(event) != event.id:
        raise BadSignature("id is not sha256 of the canonical header: the header was altered")


def check_body(event: Event, registry: KindRegistry, *, now: int, value: Any = None) -> None:
    """Validate a carried body: its hash, its kind's rules and that it has not expired."""
    assert event.body is not None
    if sha256_hex(event.body) != event.body_hash:
        raise BodyHashMismatch("sha256 of the canonical body does not match body_hash")
    registry.check_body(event.kind, decode(event.body) if value is None else value)
    if event.expires <= now:
        raise Expired(f"event expired {now - event.expires} s ago and still carries its body")


def signature_valid(event: Event) -> bool:
    """True if the author's ed25519 signature over the domain-separated id verifies."""
    try:
        nacl.bindings.crypto_sign_open(bytes.fromhex(event.sig) + event.signed_message(), bytes.fromhex(event.author))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


def verify_signature(event: Event) -> None:
    """Raise BadSignature unless the event's signature verifies."""
    if not signature_valid(event):
        raise BadSignature(f"signature of event {event.id[:16]} does not verify against author {event.author[:16]}")


def tombstone_target(event: Event) -> str | None:
    """The id a tombstone deletes, or None for any other event (or a tombstone whose body was dropped)."""
    if event.kind != TOMBSTONE or event.body is None:
        return None
    target = decode(event.body)["target"]
    return target if isinstance(target, str) else None   # always a str: the tombstone validator checked it


__all__ = ["MAX_EVENT_BYTES", "MAX_FUTURE_SKEW", "SIGNATURE_DOMAIN", "Event", "InvalidBody", "create_event",
           "encode_line", "parse_event", "sha256_hex", "signature_valid", "tombstone_target", "verify_signature"]
