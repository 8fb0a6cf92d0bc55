"""bench/fanout.py's figures: each system's latencies and percentiles, and where the node's time went (py-spy)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


@dataclass
class Result:
    """One system's figures."""

    name: str
    payload_bytes: int = 0
    latencies: list[float] = field(default_factory=list)    # ms, measured rounds, every subscriber, sorted
    burst: list[float] = field(default_factory=list)        # ms, the bursts' alerts, every subscriber, sorted
    round_p99: list[float] = field(default_factory=list)
    round_first: list[float] = field(default_factory=list)  # ms to the first subscriber: the time before the fan-out
    publish_ms: list[float] = field(default_factory=list)   # how long the publishing call took
    missed: int = 0
    warmup_missed: int = 0
    extra: int = 0
    lost: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) if self.latencies else math.nan

    def summarise(self, sent: list[int], times: list[list[int | None]], warmup: int, singles: int) -> None:
        """The figures from the publish times and each connection's receive times (numbers from `singles` on are
        the bursts')."""
        for number, t0 in enumerate(sent):
            row = [t[number] for t in times]
            missing = sum(1 for t in row if t is None)
            if number < warmup:
                self.warmup_missed += missing
                continue
            self.missed += missing
            latencies = sorted((t - t0) / 1e6 for t in row if t is not None)
            if number >= singles:
                self.burst += latencies
            elif latencies:
                self.round_p99.append(percentile(latencies, 99))
                self.round_first.append(latencies[0])
                self.latencies += latencies
        self.latencies.sort()
        self.burst.sort()


def py_spy_summary(path: Path, top: int = 30) -> str:
    """Where the node's main thread was while not waiting for events: by own and total samples."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r" \(/.*?/(site-packages|lib/python3\.\d+|main)/", " (", frame) for frame in stack.split(";")]
        # Other threads (aiosqlite's, executors') wait on locks that py-spy does not always see as idle.
        if not frames[0].startswith("_run_module_as_main") or frames[-1].startswith("EpollSelector.select"):
            continue
        n = int(count)
        samples += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + n
    lines = [f"{samples} samples of the main thread at work (sending included)"]
    for title, table in (("own", own), ("total (callees included)", total)):
        lines.append(f"by {title}:")
        for frame, n in sorted(table.items(), key=lambda item: -item[1])[:top]:
            lines.append(f"  {100 * n / samples:5.1f}%  {frame}")
    return "\n".join(lines)
