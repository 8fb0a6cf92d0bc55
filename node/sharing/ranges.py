"""Sharing a time range: which of an owner's clips of one camera a range covers, the gaps between them, and the
bounds that keep one bundle sane (DESIGN section 6, docs/agencies.md).

A range lies within the request's window (the whole window unless the owner narrows it); its clips are the owner's
matching clips of that camera that overlap it, whole, in time order. It is shared as one bundle with one consent
receipt, whose clip digest (manifest.range_digest) names every one of those clips, so the receipt cannot be
stretched to cover a clip recorded later. The caps are module attributes, so tests can shrink them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

from node.camera.clips import ClipRow
from node.errors import Conflict, TooLarge
from node.sharing.errors import RequestError
from node.sharing.manifest import range_digest, utc_iso
from node.sharing.requests import FootageRequest, format_time

RANGE_PREFIX = "range-"
"""How a range consent's clip uid starts (the rest: 16 hex digits of its request, camera and range)."""
MAX_CLIPS = 240
"""Most clips one range bundle joins."""
MAX_FOOTAGE_SECONDS = 4 * 3600
"""Most recorded seconds one range bundle carries."""
MAX_BYTES = 2 * 1024**3
"""Most bytes of original clips one range bundle carries."""


def is_range(uid: str) -> bool:
    """Whether a consent's clip uid is a range's."""
    return uid.startswith(RANGE_PREFIX)


@dataclass(frozen=True)
class RangePlan:
    """The clips a range covers, in time order, and what the owner is shown before confirming."""

    request_id: str
    camera: str
    start: float
    end: float
    clips: tuple[ClipRow, ...]

    @property
    def uid(self) -> str:
        """The consent's clip uid: the same range of the same camera for the same request is one consent."""
        key = f"{self.request_id}|{self.camera}|{utc_iso(self.start)}|{utc_iso(self.end)}".encode()
        return RANGE_PREFIX + hashlib.sha256(key).hexdigest()[:16]

    @property
    def digest(self) -> str:
        """The digest the consent receipt names (as build_range_bundle computes it from the parts)."""
        return range_digest(self.camera, utc_iso(self.start), utc_iso(self.end),
                            [(utc_iso(c.start), utc_iso(c.end), c.sha256, c.size) for c in self.clips])

    def gaps(self) -> list[tuple[float, float]]:
        """The stretches of the range no clip covers, in order."""
        gaps, reached = [], self.start
        for clip in self.clips:
            if clip.start > reached and reached < self.end:
                gaps.append((reached, min(clip.start, self.end)))
            reached = max(reached, clip.end)
        if reached < self.end:
            gaps.append((reached, self.end))
        return gaps

    def view(self, camera_name: str) -> dict[str, Any]:
        """The range as the owner's page shows it before and after confirming."""
        return {"uid": self.uid, "camera": self.camera, "camera_name": camera_name, "start": self.start,
                "end": self.end, "clips": len(self.clips),
                "footage_seconds": round(sum(c.duration for c in self.clips), 3),
                "size": sum(c.size for c in self.clips),
                "gaps": [{"start": a, "end": b} for a, b in self.gaps()],
                "parts": [{"uid": c.uid, "start": c.start, "end": c.end, "duration": c.duration}
                          for c in self.clips]}

    def detail(self) -> dict[str, Any]:
        """What the consent's audit entry says of the range (canonical JSON: no floats)."""
        return {"camera": self.camera, "start": utc_iso(self.start), "end": utc_iso(self.end),
                "clips": len(self.clips), "gaps": len(self.gaps())}


def plan_range(request: FootageRequest, candidates: Sequence[ClipRow], *, camera: str, start: float | None,
               end: float | None) -> RangePlan:
    """The owner's clips of `camera` among `candidates` (their matching clips) that overlap [start, end], which
    defaults to the request's window and must lie within it; RequestError, Conflict or TooLarge say what is wrong."""
    start = request.start if start is None else start
    end = request.end if end is None else end
    window = f"{format_time(request.start)} to {format_time(request.end)}"
    if not start < end:
        raise RequestError("end: the range must end after it starts")
    if start < request.start or end > request.end:
        raise RequestError(f"start, end: the range ({format_time(start)} to {format_time(end)}) must lie within the "
                           f"request's window, {window}")
    clips = sorted((c for c in candidates if c.camera == camera and c.start < end and c.end > start),
                   key=lambda c: (utc_iso(c.start), utc_iso(c.end), c.uid))
    if not clips:
        raise Conflict(f"camera: none of your matching clips of camera {camera!r} lies in {format_time(start)} to "
                       f"{format_time(end)}")
    footage, size = sum(c.duration for c in clips), sum(c.size for c in clips)
    shorter = "choose a shorter range, or share it in pieces"
    if len(clips) > MAX_CLIPS:
        raise TooLarge(f"the range holds {len(clips)} clips; one bundle joins at most {MAX_CLIPS}: {shorter}")
    if footage > MAX_FOOTAGE_SECONDS:
        raise TooLarge(f"the range holds {footage / 3600:.1f} hours of footage; one bundle carries at most "
                       f"{MAX_FOOTAGE_SECONDS / 3600:g}: {shorter}")
    if size > MAX_BYTES:
        raise TooLarge(f"the range's clips take {size / 1024**2:.0f} MiB; one bundle carries at most "
                       f"{MAX_BYTES / 1024**2:.0f} MiB: {shorter}")
    return RangePlan(request.id, camera, float(start), float(end), tuple(clips))
