"""What the sync engine reports: the outcome of one ingested batch, and the counters exported as metrics."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._errors import EventRejected
from ._event import Event


@dataclass
class IngestResult:
    """What became of a batch: counts, and the rejections by input position."""

    stored: list[Event] = field(default_factory=list)
    duplicates: int = 0
    out_of_area: int = 0     # readable events that do not touch this node's area of interest: not kept
    rejected: list[tuple[int, EventRejected]] = field(default_factory=list)
    seen: dict[str, int] = field(default_factory=dict)  # highest seq per author among readable events

    def as_json(self) -> dict[str, Any]:
        """The per-batch report a push caller receives."""
        return {"accepted": len(self.stored), "duplicates": self.duplicates, "out_of_area": self.out_of_area,
                "rejected": [{"index": i, "reason": e.reason, "status": e.status, "error": str(e)}
                             for i, e in self.rejected]}


@dataclass
class Stats:
    """Counters the node exports as metrics."""

    rejected: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicates: int = 0
    push_dropped: int = 0
    pull_requests: int = 0
    out_of_area: int = 0       # events received and not kept, or not pushed to a peer, for their area
    false_claims: int = 0      # syncs after which a peer claimed more of our own events than we hold
    sync_failed: Counter[str] = field(default_factory=Counter)   # failed syncs with a peer, by reason
