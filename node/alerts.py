"""Alerts: CAP 1.2 alerts travel as signed `alert` events; Update and Cancel replace or withdraw what they name."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from sync import Event, EventStore, SyncEngine, require_fields

from .cap import ATOM, CapError, alert_to_element, area_covers, check_alert_dict, parse_document

ALERT = "alert"
MAX_TTL = 30 * 86_400
DEFAULT_TTL = 86_400


def validate_alert(body: Any) -> None:
    """An alert event's body: {"cap": <alert in JSON form>}, valid CAP 1.2."""
    require_fields(body, {"cap": dict})
    try:
        check_alert_dict(body["cap"])
    except CapError as exc:
        raise ValueError(str(exc)) from exc


def _key(sender: str, identifier: str, sent: str) -> str:
    return f"{sender},{identifier},{sent}"


def alert_expiry(alert: dict[str, Any], now: int) -> int:
    """When the alert's last info block expires (Unix seconds), or a day from now if none says."""
    stamps = [int(datetime.fromisoformat(i["expires"]).timestamp()) for i in alert["info"] if "expires" in i]
    return max(stamps) if stamps else now + DEFAULT_TTL


async def import_alerts(engine: SyncEngine, document: bytes) -> list[Event]:
    """Publish every alert in a CAP document (alert or feed) as a signed event; expired ones are refused."""
    now = int(time.time())
    alerts = parse_document(document)
    published = []
    for alert in alerts:
        expires = alert_expiry(alert, now)
        if expires <= now:
            raise CapError(f"alert {alert['identifier']}: already expired ({datetime.utcfromtimestamp(expires)} UTC)")
        published.append(await engine.publish(ALERT, {"cap": alert}, ttl=min(expires - now, MAX_TTL)))
    return published


async def current_alerts(store: EventStore, *, location: tuple[float, float] | None, now: int | None = None,
                         include_tests: bool = False) -> list[dict[str, Any]]:
    """Alerts in force: not expired, not replaced by an Update nor withdrawn by a Cancel, covering `location`."""
    now = int(time.time()) if now is None else now
    events = [e for e in await store.recent(100_000, ALERT) if e.body is not None]
    alerts = [(e, e.body_value()["cap"]) for e in events]
    replaced = {_key(r["sender"], r["identifier"], r["sent"]) for _, a in alerts
                if a["msgType"] in ("Update", "Cancel") for r in a["references"]}
    current = []
    for event, alert in alerts:
        if alert["msgType"] not in ("Alert", "Update") or _key(alert["sender"], alert["identifier"],
                                                               alert["sent"]) in replaced:
            continue
        if alert["status"] != "Actual" and not include_tests:
            continue
        if alert_expiry(alert, now) <= now:
            continue
        areas = [area for info in alert["info"] for area in info["area"]]
        if location is not None and areas and not any(area_covers(a, *location) for a in areas):
            continue
        current.append({"event": event.id, "received": event.ts, "cap": alert})
    return sorted(current, key=lambda a: a["cap"]["sent"], reverse=True)


def atom_feed(alerts: list[dict[str, Any]], *, title: str, feed_id: str) -> bytes:
    """An Atom feed with each alert's CAP XML as the entry content."""
    feed = Element(f"{{{ATOM}}}feed")
    SubElement(feed, f"{{{ATOM}}}title").text = title
    SubElement(feed, f"{{{ATOM}}}id").text = feed_id
    SubElement(feed, f"{{{ATOM}}}updated").text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for item in alerts:
        cap = item["cap"]
        entry = SubElement(feed, f"{{{ATOM}}}entry")
        SubElement(entry, f"{{{ATOM}}}id").text = f"urn:nnode:event:{item['event']}"
        SubElement(entry, f"{{{ATOM}}}title").text = (cap["info"][0].get("headline") or cap["info"][0]["event"]
                                                      if cap["info"] else cap["identifier"])
        SubElement(entry, f"{{{ATOM}}}updated").text = datetime.fromisoformat(cap["sent"]).strftime(
            "%Y-%m-%dT%H:%M:%S%z")
        content = SubElement(entry, f"{{{ATOM}}}content", {"type": "application/cap+xml"})
        content.append(alert_to_element(cap))
    return tostring(feed, encoding="utf-8", xml_declaration=True)
