"""Polling official feeds: fetch each configured source within bounds (size, time, count; conditional GETs), follow
an index feed's links to its CAP files (only on the feed's own host or its `link_hosts`), publish the alerts this node
does not hold yet, and keep each feed's last outcome for the console, `nnode feeds` and /metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from yarl import URL

from node.config import AlertsSection, FeedConfig
from node.errors import NodeError
from node.safety.alerts import held_keys
from node.safety.cap import CapError, _parse_xml, alert_from_element
from node.safety.feed_documents import read_feed
from node.safety.intake import publish_decided, triage
from node.safety.signatures import load_certificate, signatures
from sync import SyncEngine, SyncError

log = logging.getLogger("nnode.alerts")

ACCEPT = ("application/atom+xml, application/rss+xml, application/cap+xml, application/xml, text/xml;q=0.9, "
          "*/*;q=0.1")
# A linked file is asked for as CAP first: api.weather.gov serves one alert as GeoJSON unless CAP is preferred.
ACCEPT_CAP = "application/cap+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
MAX_REDIRECTS = 3


class FeedError(NodeError):
    """A CAP feed could not be fetched: unreachable, too slow, too large, or an HTTP error status."""

    reason = "feed"

    def __init__(self, message: str, http_status: int | None = None) -> None:
        """`http_status`: the status the server answered with, if it answered."""
        super().__init__(message)
        self.http_status = http_status


@dataclass
class PollResult:
    """What one poll of a feed did: its shape, alerts found (inline and linked), published, already held, skipped
    (with why), or nothing changed."""

    http_status: int | None = None
    shape: str | None = None
    entries: int = 0
    found: int = 0
    linked: int = 0
    published: int = 0
    known: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    not_modified: bool = False


@dataclass
class Fetched:
    """One answer: its status, its body (None when unchanged: 304) and its validators."""

    status: int
    body: bytes | None
    validators: dict[str, str]


async def _fetch(session: aiohttp.ClientSession, url: str, *, max_bytes: int, timeout: float,
                 state: dict[str, str], allowed: Any = None) -> Fetched:
    """GET `url` conditionally on `state`'s validators, bounded in size and time. With `allowed` (a URL -> bool),
    redirects are followed only to URLs it allows, and CAP is asked for first."""
    headers = {"Accept": ACCEPT if allowed is None else ACCEPT_CAP}
    if "etag" in state:
        headers["If-None-Match"] = state["etag"]
    if "last_modified" in state:
        headers["If-Modified-Since"] = state["last_modified"]
    try:
        async with asyncio.timeout(timeout):
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(url, headers=headers, allow_redirects=allowed is None,
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    if allowed is not None and resp.status in (301, 302, 303, 307, 308):
                        target = URL(url).join(URL(resp.headers.get("Location", "")))
                        if not allowed(target):
                            raise FeedError(f"{url}: redirected to {str(target)[:200]}, which is not the feed's host "
                                            "nor one of its link_hosts", resp.status)
                        url = str(target)
                        continue
                    return await _answer(resp, url, max_bytes)
            raise FeedError(f"{url}: more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        raise FeedError(f"{url}: no complete answer within {timeout} s (alerts.fetch_timeout)") from None
    except aiohttp.ClientError as exc:
        raise FeedError(f"{url}: {exc.__class__.__name__}: {exc}") from exc


async def _answer(resp: aiohttp.ClientResponse, url: str, max_bytes: int) -> Fetched:
    if resp.status == 304:
        return Fetched(304, None, {})
    if resp.status != 200:
        raise FeedError(f"{url}: HTTP {resp.status} {resp.reason or ''}".rstrip(), resp.status)
    if resp.content_length is not None and resp.content_length > max_bytes:
        raise FeedError(f"{url}: feed is {resp.content_length} bytes, the limit is {max_bytes} "
                        "(alerts.max_feed_bytes)", resp.status)
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise FeedError(f"{url}: feed is larger than the limit of {max_bytes} bytes (alerts.max_feed_bytes)",
                            resp.status)
    validators = {name: resp.headers[header] for name, header in
                  (("etag", "ETag"), ("last_modified", "Last-Modified")) if header in resp.headers}
    return Fetched(200, bytes(body), validators)


def link_allowed(link: URL, feed: URL, hosts: Iterable[str]) -> bool:
    """Whether a linked CAP file may be fetched: http(s), on the feed's own host and port, or a configured host
    (`host` for any port, `host:port` for that one)."""
    if link.scheme not in ("http", "https") or not link.host:
        return False
    host = link.host.lower()
    if host == (feed.host or "").lower() and link.port == feed.port:
        return True
    for allowed in hosts:
        named = URL(f"http://{allowed}")
        if (named.host or "").lower() == host and named.explicit_port in (None, link.port):
            return True
    return False


async def _linked(session: aiohttp.ClientSession, source: FeedConfig, links: list[tuple[str, str]], *,
                  settings: AlertsSection, state: dict[str, Any], result: PollResult, certificate: bytes | None,
                  outcomes: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """The alerts of the CAP files an index feed links to (each fetched with the feed's bounds), their signatures'
    outcomes added to `outcomes`; `state["links"]` holds each file's validators, so an unchanged file costs a 304."""
    feed = URL(source.url)
    before: dict[str, dict[str, str]] = state.get("links", {})
    after: dict[str, dict[str, str]] = {}
    alerts = []
    for entry, href in links:
        link = feed.join(URL(href))
        if not link_allowed(link, feed, source.link_hosts):
            result.skipped.append({"entry": entry, "reason": f"link {str(link)[:200]} is not on the feed's host nor "
                                   "one of its link_hosts: not fetched"})
            continue
        if result.linked >= settings.max_linked:
            result.skipped.append({"entry": entry, "reason": f"over the limit of {settings.max_linked} linked CAP "
                                   "files per poll (alerts.max_linked): fetched at a later poll"})
            continue
        url = str(link)
        result.linked += 1
        try:
            fetched = await _fetch(session, url, max_bytes=settings.max_feed_bytes, timeout=settings.fetch_timeout,
                                   state=before.get(url, {}), allowed=lambda u: link_allowed(u, feed,
                                                                                           source.link_hosts))
            if fetched.body is None:
                after[url] = before.get(url, {})
                result.known += 1
                continue
            root = _parse_xml(fetched.body)
            alerts.append(alert_from_element(root, f"{entry} -> {url[:200]}"))
            outcomes.update(await asyncio.to_thread(signatures, fetched.body, certificate))
            after[url] = fetched.validators
        except (FeedError, CapError) as exc:
            result.skipped.append({"entry": entry, "reason": str(exc) if str(exc).startswith(url) else
                                   f"{url[:200]}: {exc}"})
    state["links"] = after
    return alerts


async def _certificate(source: FeedConfig) -> bytes | None:
    """The feed's configured certificate, read for this poll (a file that cannot be read fails the poll, visibly)."""
    if source.certificate is None:
        return None
    path = source.certificate
    try:
        pem = await asyncio.to_thread(path.read_bytes)
        return load_certificate(pem, str(path))
    except OSError as exc:
        raise FeedError(f"{source.url}: its certificate {path} cannot be read: {exc.strerror}") from exc
    except CapError as exc:
        raise FeedError(f"{source.url}: {exc}") from exc


async def poll_feed(engine: SyncEngine, session: aiohttp.ClientSession, source: FeedConfig | str, *,
                    settings: AlertsSection, state: dict[str, Any]) -> PollResult:
    """Fetch a feed (or single alert) and publish the alerts this node does not hold yet.

    `state` keeps the feed's and its linked files' validators between polls, so an unchanged feed costs a 304.
    Expired, invalid or unauthorised alerts are skipped and listed in the result; a feed that cannot be fetched
    raises FeedError, one that cannot be read raises CapError, and in both cases nothing is published.
    """
    source = FeedConfig(url=source) if isinstance(source, str) else source
    fetched = await _fetch(session, source.url, max_bytes=settings.max_feed_bytes, timeout=settings.fetch_timeout,
                           state=state)
    result = PollResult(http_status=fetched.status)
    if fetched.body is None:
        result.not_modified = True
        return result
    reading = read_feed(fetched.body)
    result.shape, result.entries, result.skipped = reading.shape, reading.entries, reading.skipped
    certificate = await _certificate(source)
    outcomes = await asyncio.to_thread(signatures, fetched.body, certificate)
    links_state: dict[str, Any] = {"links": state.get("links", {})}
    alerts = reading.alerts + await _linked(session, source, reading.links, settings=settings, state=links_state,
                                            result=result, certificate=certificate, outcomes=outcomes)
    result.found = len(alerts)
    decisions = triage(alerts, held=await held_keys(engine.store), outcomes=outcomes, senders=source.senders,
                       certificate=str(source.certificate))
    for decision in decisions:
        if decision.outcome == "known":
            result.known += 1
        elif decision.outcome == "skipped":
            result.skipped.append({"alert": decision.alert["identifier"], "reason": str(decision.reason)})
    result.published = len(await publish_decided(engine, decisions))
    # Remembered only now: a poll that failed part-way (publishing held, say) fetches the whole feed next time.
    state.clear()
    state.update(fetched.validators, links=links_state["links"])
    return result


def _shown(url: str) -> str:
    """A feed's URL without its query (IPAWS-OPEN puts the subscriber's PIN there), for public metrics."""
    return str(URL(url).with_query(None).with_fragment(None))


class FeedPoller:
    """Polls every configured feed in turn (an apscheduler job); keeps each feed's last outcome for status."""

    def __init__(self, engine: SyncEngine, session: aiohttp.ClientSession, settings: AlertsSection) -> None:
        """`settings`: the [alerts] section, whose feeds it polls."""
        self.engine = engine
        self.session = session
        self.settings = settings
        self.status: dict[str, dict[str, Any]] = {
            source.url: {"url": source.url, "last_poll": None, "ok": None, "error": None, "http_status": None,
                         "failures": 0, "published": 0, "last": None} for source in settings.sources}
        self._state: dict[str, dict[str, Any]] = {source.url: {} for source in settings.sources}
        self._running = asyncio.Lock()

    async def poll_all(self) -> None:
        """Poll each feed once; a failure is logged and counted, and never stops the other feeds or the job."""
        async with self._running:
            for source in self.settings.sources:
                await self._poll(source)

    async def _poll(self, source: FeedConfig) -> None:
        url = source.url
        status = self.status[url]
        status["last_poll"] = int(time.time())
        try:
            result = await poll_feed(self.engine, self.session, source, settings=self.settings,
                                     state=self._state[url])
        except (NodeError, SyncError) as exc:
            error = str(exc)
            status["http_status"] = getattr(exc, "http_status", None)
            log.warning("alert feed poll failed", extra={"url": url, "reason": error})
        except Exception as exc:  # a bug must not end polling for good
            error = f"{exc.__class__.__name__}: {exc}"
            status["http_status"] = None
            log.exception("alert feed poll failed", extra={"url": url, "reason": error})
        else:
            status.update(ok=True, error=None, http_status=result.http_status,
                          published=status["published"] + result.published, last=asdict(result))
            _log_poll(url, result)
            return
        status.update(ok=False, error=error, failures=status["failures"] + 1, last=None)

    async def idle(self) -> None:
        """Return once no poll is running (one cancelled at shutdown has unwound)."""
        async with self._running:
            pass

    def listing(self) -> list[dict[str, Any]]:
        """Every feed's status, in the config's order (for the console and `nnode feeds`)."""
        return [dict(self.status[source.url]) for source in self.settings.sources]

    def metric_families(self) -> list[Metric]:
        """Per-feed gauges and counters for /metrics, labelled by the feed's URL without its query."""
        last = GaugeMetricFamily("nnode_feed_last_poll_timestamp_seconds", "Unix time of the feed's last poll.",
                                 labels=["feed"])
        ok = GaugeMetricFamily("nnode_feed_ok", "1 if the feed's last poll succeeded, 0 if it failed.",
                               labels=["feed"])
        found = GaugeMetricFamily("nnode_feed_alerts_found", "Alerts the feed's last changed poll yielded (inline "
                                  "and linked).", labels=["feed"])
        skipped = GaugeMetricFamily("nnode_feed_skipped", "Entries or alerts the feed's last poll skipped.",
                                    labels=["feed"])
        failures = CounterMetricFamily("nnode_feed_failures", "Failed polls of the feed since start.",
                                       labels=["feed"])
        published = CounterMetricFamily("nnode_feed_published", "Alerts published from the feed since start.",
                                        labels=["feed"])
        for item in self.listing():
            if item["last_poll"] is None:
                continue
            label = [_shown(item["url"])]
            last.add_metric(label, item["last_poll"])
            ok.add_metric(label, 1 if item["ok"] else 0)
            if item["last"] is not None and not item["last"]["not_modified"]:
                found.add_metric(label, item["last"]["found"])
                skipped.add_metric(label, len(item["last"]["skipped"]))
            failures.add_metric(label, item["failures"])
            published.add_metric(label, item["published"])
        return [last, ok, found, skipped, failures, published]


def _log_poll(url: str, result: PollResult) -> None:
    """A poll that found nothing is said, as loudly as a wrong one: an empty feed quietly, a feed whose entries gave
    no alert as a warning, with what was skipped."""
    if result.not_modified:
        return
    if result.published:
        log.info("alerts published from feed", extra={"url": url, "count": result.published})
    for item in result.skipped:
        log.warning("feed entry skipped", extra={"url": url, "alert": item.get("alert") or item.get("entry"),
                                                  "reason": item["reason"]})
    if result.found == 0 and result.entries:
        log.warning("alert feed poll found no alerts", extra={"url": url, "shape": result.shape,
                                                              "entries": result.entries,
                                                              "skipped": len(result.skipped)})
    elif result.found == 0:
        log.info("alert feed is empty", extra={"url": url, "shape": result.shape})

