"""Per-peer token buckets for the sync endpoints."""

from __future__ import annotations

import time
from collections import OrderedDict

from ._errors import RateLimited


class RateLimiter:
    """Each key may make `burst` requests at once and `rate` per second after that."""

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str, *, now: float | None = None) -> None:
        """Take one token for `key` or raise RateLimited with the seconds to wait."""
        clock = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), clock))
        tokens = min(float(self.burst), tokens + (clock - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, clock)
            wait = (1.0 - tokens) / self.rate
            raise RateLimited(f"too many sync requests from {key[:16]}: limit is {self.rate:g}/s "
                              f"with bursts of {self.burst}; retry in {wait:.1f} s", retry_after=wait)
        self._buckets[key] = (tokens - 1.0, clock)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
