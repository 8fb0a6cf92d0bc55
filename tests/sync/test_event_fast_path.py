"""parse_event's fast path (an envelope already canonical: only the body is parsed and re-encoded) decides every line
exactly as the full path (the whole line parsed and re-encoded) does: the same event, or a refusal of the same kind."""

import time

import nacl.signing
import pytest

from sync import EventRejected, create_event, parse_event
from sync._canonical import MAX_DEPTH
from sync._event import _parse_full, _split_canonical
from tests.sync.kinds import build_test_registry

KEY = nacl.signing.SigningKey.generate()
REG = build_test_registry()
NOW = int(time.time())


def line_with(body, seq=1):
    return create_event(KEY, REG, kind="notice", seq=seq, body=body, ttl=3600, now=NOW).to_line()


VALID = line_with({"text": "hi"})
HEADER_ONLY = create_event(KEY, REG, kind="notice", seq=2, body={"text": "x"}, ttl=3600, now=NOW) \
    .without_body().to_line()
TRICKY = line_with({"text": 'a ,"body_hash":"' + "0" * 64 + '" b'}, seq=3)   # the separator inside the body
UNICODE = line_with({"text": "caf\u00e9 \u2603 \U0001f600"}, seq=4)


def deep(levels):
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


def mutations():
    """Lines a peer might send: valid ones, and each with one thing wrong (in the envelope or the body)."""
    yield VALID
    yield HEADER_ONLY
    yield TRICKY
    yield UNICODE
    for old, new in [(b'"seq":1,', b'"seq":01,'), (b'"seq":1,', b'"seq":-0,'), (b'"seq":1,', b'"seq": 1,'),
                     (b'"v":1}', b'"v":1.0}'), (b'"v":1}', b'"v":1 }'), (b'"v":1}', b'"v":1,"v":1}'),
                     (b'"v":1}', b'"v":1,"x":1}'), (b'"kind":"notice"', b'"kind":"Notice"'),
                     (b'"kind":"notice"', b'"kind":"notic\\u0065"'), (b'{"author":"', b'{ "author":"'),
                     (b'"body":{"text":"hi"}', b'"body":{"text": "hi"}'),
                     (b'"body":{"text":"hi"}', b'"body":{"text":"h\\u0069"}'),
                     (b'"body":{"text":"hi"}', b'"body":{"text":"hi","text":"hi"}'),
                     (b'"body":{"text":"hi"}', b'"body":{"text":1.5}'),
                     (b'"body":{"text":"hi"}', b'"body":{"text":"\xff"}'),
                     (b'"body":{"text":"hi"}', b'"body":'),
                     (b'"body":{"text":"hi"}', b'"body":{"text":"hi"},"body":{"text":"hi"}'),
                     (b'"body":{"text":"hi"},', b''),
                     (b'"ts":', b'"ts":9007199254740993'),
                     (b'"expires":', b'"expires":00')]:
        yield VALID.replace(old, new, 1)
    hexed = VALID.split(b'"author":"')[1][:64]
    yield VALID.replace(hexed, hexed.upper(), 1)
    yield VALID.replace(b'"body_hash":"', b'"body_hash":"0', 1)
    yield VALID[:-1]
    yield VALID + b" "
    for levels in (MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1):
        body = b'{"text":"hi","x":' + b"[" * levels + b'"x"' + b"]" * levels + b"}"
        yield VALID.replace(b'{"text":"hi"}', body, 1)


def outcome(parse, line):
    try:
        return parse(line, REG, now=NOW)
    except EventRejected as exc:
        return type(exc)


@pytest.mark.parametrize("line", list(mutations()))
def test_the_fast_path_decides_as_the_full_path(line):
    assert outcome(parse_event, line) == outcome(_parse_full, line)


def test_valid_lines_take_the_fast_path_and_non_canonical_envelopes_do_not():
    for line in (VALID, HEADER_ONLY, TRICKY, UNICODE):
        assert _split_canonical(line) is not None
    assert _split_canonical(TRICKY)[1] == b'{"text":"a ,\\"body_hash\\":\\"' + b"0" * 64 + b'\\" b"}'
    assert _split_canonical(VALID.replace(b'"seq":1,', b'"seq":01,', 1)) is None
    assert _split_canonical(VALID.replace(b'{"author":"', b'{ "author":"', 1)) is None
