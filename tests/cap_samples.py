"""Real-shaped CAP documents for tests (tests/data/cap), moved in time so that they are in force now."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

DATA = Path(__file__).parent / "data/cap"
_STAMP = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}")


def sample(name: str) -> bytes:
    """A file of tests/data/cap as published."""
    return (DATA / name).read_bytes()


def current(document: bytes, *, ago: timedelta = timedelta(minutes=1)) -> bytes:
    """The document with every CAP dateTime shifted by one amount, so that its first (<sent>) was `ago` ago."""
    stamps = _STAMP.findall(document)
    first = datetime.fromisoformat(stamps[0].decode())
    shift = datetime.now(timezone.utc).replace(microsecond=0) - ago - first

    def moved(match: re.Match[bytes]) -> bytes:
        return (datetime.fromisoformat(match.group().decode()) + shift).isoformat().encode()
    return _STAMP.sub(moved, document)
