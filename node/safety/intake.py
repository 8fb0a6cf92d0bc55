"""Taking official alerts in: the one set of per-alert rules a feed poll and `nnode alerts import` share, and the
import of a file. Each alert is published, already held (nothing changes: importing or polling twice is a no-op),
or skipped with the reason; what is published from one document is stored in one transaction, so a crash leaves
all of it or none.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from node.safety.alerts import ALERT, MAX_TTL, alert_expiry, alert_key, held_keys, refusal
from node.safety.feed_documents import read_feed
from node.safety.signatures import INVALID, UNSIGNED, signatures
from sync import Event, SyncEngine


@dataclass
class Decision:
    """What to do with one alert: "publish" (with its signature outcome and time to live), "known", "skipped"."""

    alert: dict[str, Any]
    outcome: str
    reason: str | None = None
    signature: str = UNSIGNED
    ttl: int = 0


def triage(alerts: list[dict[str, Any]], *, held: set[str], outcomes: dict[str, tuple[str, str | None]],
           senders: tuple[str, ...] = (), certificate: str | None = None, now: int | None = None
           ) -> list[Decision]:
    """Each alert's fate, in order: already held (or a copy earlier in the same document), not from one of the
    feed's `senders`, refused (scope, another sender's Update or Cancel), its XML signature invalid with the feed's
    `certificate`, expired, or published."""
    now = int(time.time()) if now is None else now
    held = set(held)
    decisions = []
    for alert in alerts:
        key = alert_key(alert)
        signature, why = outcomes.get(key, (UNSIGNED, None))
        if key in held:
            decisions.append(Decision(alert, "known"))
            continue
        if senders and alert["sender"] not in senders:
            reason: str | None = f"sender {alert['sender']!r} is not one this feed publishes as (alerts.feeds senders)"
        elif (reason := refusal(alert)) is not None:
            pass
        elif signature == INVALID:
            reason = f"XML signature does not verify with the feed's certificate ({certificate}): {why}"
        elif (expires := alert_expiry(alert, now)) <= now:
            reason = time.strftime("expired %Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
        if reason is not None:
            decisions.append(Decision(alert, "skipped", reason))
            continue
        held.add(key)
        decisions.append(Decision(alert, "publish", signature=signature, ttl=min(expires - now, MAX_TTL)))
    return decisions


async def publish_decided(engine: SyncEngine, decisions: list[Decision]) -> list[Event]:
    """Publish every alert decided "publish", in one transaction."""
    return await engine.publish_many([(ALERT, {"cap": d.alert, "signature": d.signature}, d.ttl)
                                      for d in decisions if d.outcome == "publish"])


@dataclass
class Imported:
    """What importing one file did: the events published, and each entry's outcome (the alerts read, in the file's
    order, then the entries that gave none)."""

    shape: str
    events: list[Event] = field(default_factory=list)
    entries: list[dict[str, str]] = field(default_factory=list)   # {"alert" or "entry", "outcome", ["reason"]}


async def import_alerts(engine: SyncEngine, document: bytes) -> Imported:
    """Import a CAP document (an alert, a feed, an IPAWS wrapper) by the poller's per-alert rules, with no sender
    restriction and no certificate (a signature is kept as not checked). A document that cannot be read at all
    raises CapError and stores nothing; an index feed's links are not followed (each is reported)."""
    reading = read_feed(document)
    outcomes = await asyncio.to_thread(signatures, document, None)
    decisions = triage(reading.alerts, held=await held_keys(engine.store), outcomes=outcomes)
    imported = Imported(reading.shape, await publish_decided(engine, decisions))
    events = iter(imported.events)
    for decision in decisions:
        entry = {"alert": decision.alert["identifier"], "outcome": {"publish": "published", "known": "already held",
                                                                    "skipped": "skipped"}[decision.outcome]}
        if decision.outcome == "publish":
            entry["event"] = next(events).id
        elif decision.reason is not None:
            entry["reason"] = decision.reason
        imported.entries.append(entry)
    imported.entries += [{**s, "outcome": "skipped"} for s in reading.skipped]
    imported.entries += [{"entry": entry, "outcome": "skipped", "reason": f"links to {link[:200]}: `nnode alerts "
                          "import` reads only the file it is given (import the linked file, or poll the feed)"}
                         for entry, link in reading.links]
    return imported

