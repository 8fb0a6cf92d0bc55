"""Per-agency rate limits: every signed call, and tighter ones for the calls that publish or write (footage
requests, official alerts, bundle downloads), each set in `[agencies]` and refused with 429 and Retry-After."""

from __future__ import annotations

from node.config import AgenciesSection
from sync import RateLimiter

REQUESTS = ("POST", "/api/agency/requests")
ALERTS = ("POST", "/api/agency/alerts")
CAP = ("POST", "/api/agency/cap")       # official alerts too: the same allowance as ALERTS
DOWNLOADS = ("GET", "/api/agency/bundles/{id}")


class AgencyLimits:
    """Token buckets per agency key: `calls` for every signed call, one per write route on top."""

    def __init__(self, config: AgenciesSection) -> None:
        def hourly(per_hour: int, burst: int, what: str, name: str) -> RateLimiter:
            return RateLimiter(per_hour / 3600, burst, what=what,
                               limit=f"agencies.{name}_per_hour, agencies.{name}_burst")

        self.calls = RateLimiter(config.calls_per_minute / 60, config.calls_burst, what="agency calls",
                                 limit="agencies.calls_per_minute, agencies.calls_burst")
        alerts = hourly(config.alerts_per_hour, config.alerts_burst, "official alerts", "alerts")
        self.routes = {
            REQUESTS: hourly(config.requests_per_hour, config.requests_burst, "footage requests", "requests"),
            ALERTS: alerts,
            CAP: alerts,
            DOWNLOADS: hourly(config.downloads_per_hour, config.downloads_burst, "bundle downloads", "downloads"),
        }

    def check_call(self, key: str) -> None:
        """Count one signed call of `key`; raise RateLimited past the limit."""
        self.calls.check(key)

    def check_route(self, method: str, path: str, key: str) -> None:
        """Count one call of `key` to a limited route (`path` as the route table spells it); others pass."""
        limiter = self.routes.get((method, path))
        if limiter is not None:
            limiter.check(key)
