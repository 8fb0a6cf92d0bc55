"""The regions redaction blurs (node/sharing/redact.py finds them, node/sharing/track.py carries them over)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A region to blur, in pixels of the full picture."""

    x: int
    y: int
    w: int
    h: int
    kind: str
    """"face" or "plate"."""

    def area(self) -> int:
        """Pixels covered."""
        return self.w * self.h
