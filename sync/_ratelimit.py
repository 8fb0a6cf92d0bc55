"""Per-key token buckets: the sync endpoints per peer, and whatever else the node limits per caller."""

from __future__ import annotations

import time
from collections import OrderedDict

from ._errors import RateLimited


def _per(rate: float) -> str:
    """A rate in the unit that reads best: 50/s, 5/min, 30/h."""
    for scale, unit in ((1, "s"), (60, "min")):
        if rate * scale >= 1:
            return f"{rate * scale:g}/{unit}"
    return f"{rate * 3600:.3g}/h"


class RateLimiter:
    """Each key may make `burst` requests at once and `rate` per second after that.

    `what` names the calls in the refusal ("too many sync requests from ..."), `limit` the setting(s) that set it,
    which a refusal carries (RateLimited.limit) so an HTTP answer can name it.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10_000, what: str = "sync requests",
                 limit: str = "") -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs a positive rate and a burst of at least 1 (got {rate}, {burst})")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.what = what
        self.limit = limit
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def check(self, key: str, *, now: float | None = None) -> None:
        """Take one token for `key` or raise RateLimited with the seconds to wait."""
        clock = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), clock))
        tokens = min(float(self.burst), tokens + (clock - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, clock)
            wait = (1.0 - tokens) / self.rate
            setting = f" ({self.limit})" if self.limit else ""
            raise RateLimited(f"too many {self.what} from {key[:16]}: limit is {_per(self.rate)} with bursts of "
                              f"{self.burst}{setting}; retry in {wait:.1f} s", retry_after=wait, limit=self.limit)
        self._buckets[key] = (tokens - 1.0, clock)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
