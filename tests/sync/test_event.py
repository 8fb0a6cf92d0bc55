"""The event envelope: content address, detachable body, domain-separated signature, limits, kinds."""

import time

import nacl.signing
import pytest

from sync import (
    MAX_EVENT_BYTES,
    BadSignature,
    Expired,
    FutureTimestamp,
    InvalidBody,
    KindRegistry,
    MalformedEvent,
    OversizedEvent,
    UnknownKind,
    canonical,
    create_event,
    parse_event,
    sha256_hex,
    verify_signature,
)
from sync._event import SIGNATURE_DOMAIN, _event_id
from tests.sync.kinds import build_test_registry

KEY = nacl.signing.SigningKey.generate()
REG = build_test_registry()


def make(seq=1, body=None, ttl=3600, kind="notice", now=None):
    return create_event(KEY, REG, kind=kind, seq=seq, body=body or {"text": "hi"}, ttl=ttl, now=now)


def test_round_trip_and_content_address():
    event = make()
    line = event.to_line()
    assert line == canonical(event.header() | {"body": {"text": "hi"}, "id": event.id, "sig": event.sig})
    parsed = parse_event(line, REG, now=int(time.time()))
    assert parsed == event
    assert event.id == sha256_hex(canonical(event.header())) == _event_id(parsed)
    assert parsed.body == canonical({"text": "hi"})
    assert event.body_hash == sha256_hex(canonical({"text": "hi"}))
    verify_signature(parsed)


def test_signature_is_over_the_domain_separated_id():
    event = make()
    assert KEY.verify_key.verify(SIGNATURE_DOMAIN + event.id.encode(), bytes.fromhex(event.sig))
    with pytest.raises(nacl.exceptions.BadSignatureError):
        KEY.verify_key.verify(event.id.encode(), bytes.fromhex(event.sig))


def test_a_dropped_body_still_verifies_by_its_header():
    event = make()
    header_only = event.without_body()
    line = header_only.to_line()
    assert b'"body"' not in line
    parsed = parse_event(line, REG, now=int(time.time()))
    verify_signature(parsed)
    assert parsed.body is None and parsed.id == event.id


def test_expired_header_is_accepted_but_expired_body_is_not():
    event = make(ttl=10, now=int(time.time()) - 100)
    parse_event(event.without_body().to_line(), REG, now=int(time.time()))
    with pytest.raises(Expired):
        parse_event(event.to_line(), REG, now=int(time.time()))


def test_limits_and_rules():
    now = int(time.time())
    with pytest.raises(FutureTimestamp):
        parse_event(make(now=now + 901).to_line(), REG, now=now)
    parse_event(make(now=now + 900).to_line(), REG, now=now)
    loose = KindRegistry()
    loose.register("blob", lambda body: None)
    create_event(KEY, loose, kind="blob", seq=1, body={"b": "x" * (MAX_EVENT_BYTES - 1000)}, ttl=60)
    with pytest.raises(OversizedEvent, match="limit is 65536"):
        create_event(KEY, loose, kind="blob", seq=1, body={"b": "x" * MAX_EVENT_BYTES}, ttl=60)
    with pytest.raises(MalformedEvent, match="lifetime"):
        make(ttl=91 * 86_400)
    with pytest.raises(MalformedEvent, match="after 'ts'"):
        make(ttl=0)
    with pytest.raises(MalformedEvent, match="seq"):
        make(seq=0)
    with pytest.raises(UnknownKind):
        make(kind="bogus.kind")
    with pytest.raises(InvalidBody, match="text"):
        make(body={"title": "no text"})


def test_kinds_are_registered_not_hard_coded():
    registry = KindRegistry()
    assert registry.names() == ["tombstone"]
    registry.register("test.kind", lambda body: None)
    with pytest.raises(ValueError):
        registry.register("test.kind", lambda body: None)
    with pytest.raises(ValueError):
        registry.register("Bad Kind", lambda body: None)
    with pytest.raises(InvalidBody, match="target"):
        registry.check_body("tombstone", {"target": "not-an-id"})


def test_sync_never_imports_node():
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[2]
    for path in [*root.joinpath("sync").rglob("*.py"), *root.joinpath("tests", "sync").rglob("*.py")]:
        assert not re.search(r"^\s*(from|import)\s+node\b", path.read_text(), re.M), path


def test_bad_signature_detected():
    event = make()
    other = nacl.signing.SigningKey.generate()
    forged = event.__class__(**{**{f: getattr(event, f) for f in event.__slots__},
                                "sig": other.sign(SIGNATURE_DOMAIN + event.id.encode()).signature.hex()})
    with pytest.raises(BadSignature):
        verify_signature(forged)
