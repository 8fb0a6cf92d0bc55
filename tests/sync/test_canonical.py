"""RFC 8785 canonical JSON: equal to the reference `rfc8785` package on generated inputs, strict on parse."""

import json
import unicodedata

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import MAX_SAFE_INT, FloatNotAllowed, MalformedEvent, NonCanonical, canonical, decode

# Text without lone surrogates (which neither encoder accepts), NFC-normalised as events require.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20).map(lambda s: unicodedata.normalize("NFC", s))
scalars = st.none() | st.booleans() | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(text, inner, max_size=5), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_encoding_matches_the_reference_implementation(value):
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_bytes_decode_to_themselves(value):
    data = canonical(value)
    assert decode(data) == value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(text, scalars, min_size=2, max_size=6))
def test_any_other_spelling_is_refused(value):
    spaced = json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode()
    if spaced != canonical(value):
        with pytest.raises(NonCanonical):
            decode(spaced)


def test_member_names_sort_by_utf16_code_units():
    # U+1F600 is D83D DE00 in UTF-16, which sorts before U+FB01 (code point order says the opposite).
    value = {"\ufb01": 1, "\U0001f600": 2, "a": 3}
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(value).decode() == '{"a":3,"\U0001f600":2,"\ufb01":1}'
    assert decode(canonical(value)) == value


def test_escapes_are_those_of_ecmascript():
    value = {"s": "\u0000\b\t\n\f\r\u001f\"\\/\u007f\u00e9\u2028"}
    assert canonical(value) == rfc8785.dumps(value)
    assert canonical(value) == b'{"s":"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/\x7f\xc3\xa9\xe2\x80\xa8"}'


@pytest.mark.parametrize("data, error", [
    (b'{"a":1.5}', FloatNotAllowed),
    (b'{"a":1e3}', FloatNotAllowed),
    (b'{"a":1.0}', FloatNotAllowed),
    (b'{"a":NaN}', FloatNotAllowed),
    (b'{"a":-0}', NonCanonical),
    (b'{"a":01}', MalformedEvent),
    (b'{"a":9007199254740992}', MalformedEvent),
    (b'{"a":1,"a":1}', NonCanonical),
    (b'{"b":1,"a":2}', NonCanonical),
    (b'{"a":"\\u0041"}', NonCanonical),
    (b'{"a":"\\ud800"}', MalformedEvent),
    (b'{"a":"e\xcc\x81"}', NonCanonical),        # e + combining acute: not NFC
    (b'{"a":"\xff"}', MalformedEvent),           # not UTF-8
    (b' {"a":1}', NonCanonical),
    (b'{"a":1}\n', NonCanonical),
])
def test_decode_refuses(data, error):
    with pytest.raises(error):
        decode(data)


def test_encode_refuses_what_events_cannot_carry():
    with pytest.raises(FloatNotAllowed, match="body.weight"):
        canonical({"weight": 0.5}, path="body")
    with pytest.raises(MalformedEvent):
        canonical({"n": 2**60})
    with pytest.raises(NonCanonical):
        canonical({"s": "e\u0301"})
    with pytest.raises(MalformedEvent):
        canonical({1: "x"})
