"""The sync protocol's JSON bodies, decoded strictly into types (msgspec): a pull request, a heads answer, an end record.

Everything here comes from another node, so every number is typed and bounded (a bool is not an integer, a seq is
within the event format's range 1..2**53-1) and every key is a 64-hex-digit author key or event id. msgspec decodes
without recursion limits to hit (a body nested 200,000 levels is refused at its first wrong bracket) and names where
a body is wrong: "Expected `int`, got `bool` - at `$.limit`".
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ._area import Circle
from ._canonical import MAX_SAFE_INT
from ._store import MAX_GAP_RANGES

Key = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Seq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INT)]
Head = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]   # 0: "none of this author's events"


class WireError(ValueError):
    """A body from a peer is not what the protocol allows; the message says what and where."""


class Interest(msgspec.Struct, forbid_unknown_fields=True):
    """The caller's area of interest, as a pull request carries it."""

    lat_e6: int
    lon_e6: int
    radius_m: int


class PullRequest(msgspec.Struct, forbid_unknown_fields=True):
    """POST /sync/v1/pull's body."""

    heads: dict[Key, Head] = {}
    gaps: Annotated[list[tuple[Key, Seq, Seq]], msgspec.Meta(max_length=MAX_GAP_RANGES)] = []
    tips: dict[Key, Key] = {}
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_SAFE_INT)] | None = None
    interest: Interest | None = None

    def circle(self) -> Circle | None:
        """The area of interest as a Circle (WireError if out of range), or None for everything."""
        if self.interest is None:
            return None
        try:
            return Circle(self.interest.lat_e6, self.interest.lon_e6, self.interest.radius_m)
        except ValueError as exc:
            raise WireError(f"pull 'interest': {exc}") from None


class EndStats(msgspec.Struct, forbid_unknown_fields=True):
    """What a pull stream's end record says: how many events it held and whether the peer has more."""

    count: Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
    more: bool


class EndRecord(msgspec.Struct, forbid_unknown_fields=True):
    """The last line of a pull stream."""

    end: EndStats


PULL_SHAPE = ("a pull body is {heads: {author: seq}, gaps: [[author, first, last]], tips: {author: event id}, "
              "limit: N, interest: {lat_e6, lon_e6, radius_m} (optional)}, every part optional")
_pull = msgspec.json.Decoder(PullRequest)
_heads = msgspec.json.Decoder(dict[Key, Seq])
_end = msgspec.json.Decoder(EndRecord)


def decode_pull(body: bytes) -> PullRequest:
    """A pull request body, checked: types, ranges, at most MAX_GAP_RANGES gaps each with first <= last, the
    interest on the map."""
    try:
        request = _pull.decode(body)
    except msgspec.DecodeError as exc:    # ValidationError included
        raise WireError(f"pull body: {exc}; {PULL_SHAPE}") from None
    for index, (_, first, last) in enumerate(request.gaps):
        if first > last:
            raise WireError(f"pull body: gap {index} runs from {first} down to {last}: first must not exceed last")
    request.circle()   # its ranges
    return request


def decode_heads(body: bytes) -> dict[str, int]:
    """A heads answer: {author key: highest seq held}, each seq within 1..2**53-1."""
    try:
        return _heads.decode(body)
    except msgspec.DecodeError as exc:
        raise WireError(f"heads: {exc}") from None


def decode_end(line: bytes) -> EndStats:
    """A pull stream's end record."""
    try:
        return _end.decode(line).end
    except msgspec.DecodeError as exc:
        raise WireError(f"end record: {exc}") from None


__all__ = ["EndStats", "PullRequest", "WireError", "decode_end", "decode_heads", "decode_pull"]
