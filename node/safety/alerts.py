"""Alerts: CAP 1.2 alerts travel as signed `alert` events; Update and Cancel replace or withdraw what they name."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from node.safety.cap import (
    ATOM,
    CATEGORY,
    CERTAINTY,
    SEVERITY,
    URGENCY,
    CapError,
    _parse_xml,
    alert_from_element,
    alert_to_element,
    check_alert_dict,
)
from node.safety.geocodes import Geocodes, alert_applies
from node.safety.live import ALL
from node.safety.reports import REPORT, report_message
from node.safety.signatures import STATUSES, UNSIGNED
from sync import Event, EventStore, require_fields

log = logging.getLogger("nnode.alerts")

ALERT = "alert"
MAX_TTL = 30 * 86_400
DEFAULT_TTL = 86_400
# An alert around the building is centred where the descriptor says the building is (rounded to 0.01 degree), not
# at its exact position, which would reach every peer and page with it. Rounding moves the centre by at most
# 0.005 degree each way, under 0.8 km diagonally, so the radius grows by that much and still covers the building.
COARSE_SLACK_KM = 0.8
NO_CODES = Geocodes()



# Decoded alert bodies by event id: an event's body never changes (its hash is signed), and every new alert is
# checked against every alert in force, which decoding them all again made the most of a POST's cost (bench/fanout.py).
# Callers only read them. Bounded: the oldest entries go first.
_BODIES: dict[str, Any] = {}
_MAX_BODIES = 4096


def _body(event: Event) -> Any:
    """event.body_value(), decoded once per event id."""
    value = _BODIES.get(event.id)
    if value is None:
        value = event.body_value()
        if len(_BODIES) >= _MAX_BODIES:
            del _BODIES[next(iter(_BODIES))]
        _BODIES[event.id] = value
    return value

def validate_alert(body: Any) -> None:
    """An alert event's body: {"cap": <alert in JSON form>}, valid CAP 1.2, of Public scope (events are what the
    neighborhood shares: a Restricted or Private alert is for its restriction or addresses, not for every node)."""
    require_fields(body, {"cap": dict}, {"signature": str})
    try:
        check_alert_dict(body["cap"])
    except CapError as exc:
        raise ValueError(str(exc)) from exc
    if body.get("signature", UNSIGNED) not in STATUSES:
        raise ValueError(f"signature: {body['signature']!r} is not one of {', '.join(STATUSES)}")
    if (reason := not_public(body["cap"])) is not None:
        raise ValueError(reason)


def not_public(alert: dict[str, Any]) -> str | None:
    """Why an alert is not published to residents or peers (its scope is not Public), or None."""
    if alert["scope"] != "Public":
        return (f"scope {alert['scope']}: only Public alerts are shown to residents, exported or shared with peers "
                "(a Restricted or Private alert is not published)")
    return None


def refusal(alert: dict[str, Any]) -> str | None:
    """Why this node will not publish an alert (not Public, or an Update or Cancel of another sender's), or None."""
    return not_public(alert) or not_authorised(alert)


def _key(sender: str, identifier: str, sent: str) -> str:
    return f"{sender},{identifier},{sent}"


def alert_key(alert: dict[str, Any]) -> str:
    """The CAP key of an alert, "sender,identifier,sent", as other alerts' <references> name it."""
    return _key(alert["sender"], alert["identifier"], alert["sent"])


def withdraws(alert: dict[str, Any]) -> set[str]:
    """The CAP keys an Update or Cancel replaces or withdraws: those it references from its own sender only (CAP
    consumers honour an Update or Cancel from the original sender alone); nothing for other message types."""
    if alert["msgType"] not in ("Update", "Cancel"):
        return set()
    return {_key(r["sender"], r["identifier"], r["sent"]) for r in alert["references"] if r["sender"] == alert["sender"]}


def not_authorised(alert: dict[str, Any]) -> str | None:
    """Why this node will not publish an alert on its sender's authority (an Update or Cancel of another sender's
    alert), or None."""
    if alert["msgType"] in ("Update", "Cancel"):
        foreign = sorted({r["sender"] for r in alert["references"]} - {alert["sender"]})
        if foreign:
            return (f"a {alert['msgType']} from {alert['sender']!r} references alerts of {', '.join(map(repr, foreign))}"
                    ": only the original sender may update or cancel an alert")
    return None


def alert_expiry(alert: dict[str, Any], now: int) -> int:
    """When the alert's last info block expires (Unix seconds); if none says, a day after it was sent (never later
    than a day from `now`: a <sent> in the future buys no more time), so an old alert without `expires` is over."""
    stamps = [int(datetime.fromisoformat(i["expires"]).timestamp()) for i in alert["info"] if "expires" in i]
    if stamps:
        return max(stamps)
    return min(int(datetime.fromisoformat(alert["sent"]).timestamp()), now) + DEFAULT_TTL


COMPONENT = "alerts"   # its own migration counter (node/schema.py)
MIGRATIONS = [
    # CAP keys of alerts the manager deleted: a feed that still lists one must not bring it back.
    (1, ["CREATE TABLE withdrawn_alerts (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, deleted INTEGER NOT NULL)"]),
    # What an authorised Update or Cancel withdrew, kept until the withdrawn alert's own expiry: the Cancel's body
    # may be purged (its own `expires` is often minutes away) long before the warning it withdrew would end.
    (2, ["CREATE TABLE alert_withdrawals (key TEXT PRIMARY KEY, by_event TEXT NOT NULL, until INTEGER NOT NULL)",
         "CREATE INDEX alert_withdrawals_until ON alert_withdrawals (until)"]),
]


async def record_withdrawals(store: EventStore, events: list[Event]) -> int:
    """Record what the Updates and Cancels among `events` withdraw, each until the withdrawn alert's own end (its
    CAP expiry or its event's, the later; MAX_TTL from now if this node does not hold it). Returns how many."""
    replies = [(event.id, key) for event in events if event.kind == ALERT and event.body is not None
               for key in withdraws(_body(event)["cap"])]
    if not replies:
        return 0
    ends: dict[str, int] = {}
    for event in await store.with_bodies(ALERT):
        cap = _body(event)["cap"]
        key = alert_key(cap)
        ends[key] = max(ends.get(key, 0), alert_expiry(cap, event.ts), event.expires)
    default = int(time.time()) + MAX_TTL
    async with store.db.write() as conn:
        await conn.executemany(
            "INSERT INTO alert_withdrawals (key, by_event, until) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET until = max(until, excluded.until)",
            [(key, by, ends.get(key, default)) for by, key in replies])
    return len(replies)


async def purge_withdrawals(store: EventStore) -> None:
    """Forget withdrawals whose withdrawn alert has ended."""
    async with store.db.write() as conn:
        await conn.execute("DELETE FROM alert_withdrawals WHERE until <= ?", (int(time.time()),))


async def remember_withdrawn(store: EventStore, event_id: str, own: str) -> None:
    """Before deleting one of this node's alert events (`own` is its key): keep its CAP key so feed polling never
    republishes it."""
    event = await store.get(event_id)
    if event is None or event.kind != ALERT or event.body is None or event.author != own:
        return
    cap = _body(event)["cap"]
    async with store.db.write() as conn:
        await conn.execute("INSERT OR IGNORE INTO withdrawn_alerts (key, event_id, deleted) VALUES (?, ?, ?)",
                           (_key(cap["sender"], cap["identifier"], cap["sent"]), event_id, int(time.time())))


async def held_keys(store: EventStore) -> set[str]:
    """The CAP keys (sender,identifier,sent) of every alert this node holds, from any author, or deleted."""
    held = {row[0] for row in await store.db.reader.execute_fetchall("SELECT key FROM withdrawn_alerts")}
    for event in await store.with_bodies(ALERT):
        held.add(alert_key(_body(event)["cap"]))
    return held


@dataclass(frozen=True, slots=True)
class _Facts:
    """What current_alerts asks of one alert event, worked out once per event id (its body never changes)."""

    cap: dict[str, Any]
    key: str
    withdraws: frozenset[str]
    listed: bool               # an Alert or Update of Public scope (one stored before Public was required stays off)
    actual: bool
    expires: int | None        # its last info block's expiry; None: a day after <sent> (alert_expiry)
    sent: int
    signature: str | None
    applies: dict[tuple[tuple[float, float] | None, Geocodes], bool]   # alert_applies by (location, codes)


_FACTS: dict[str, _Facts] = {}   # by event id, bounded like _BODIES


def _facts(event: Event) -> _Facts:
    facts = _FACTS.get(event.id)
    if facts is None:
        cap = _body(event)["cap"]
        stamps = [int(datetime.fromisoformat(i["expires"]).timestamp()) for i in cap["info"] if "expires" in i]
        facts = _Facts(cap, alert_key(cap), frozenset(withdraws(cap)),
                       cap["msgType"] in ("Alert", "Update") and cap["scope"] == "Public", cap["status"] == "Actual",
                       max(stamps) if stamps else None, int(datetime.fromisoformat(cap["sent"]).timestamp()),
                       _signature(event), {})
        if len(_FACTS) >= _MAX_BODIES:
            del _FACTS[next(iter(_FACTS))]
        _FACTS[event.id] = facts
    return facts


async def _live_facts(store: EventStore, now: int) -> tuple[list[tuple[tuple[int, str, int], str, _Facts]], set[str]]:
    """((ts, author, seq), id, facts) of every alert event alive, and the CAP keys withdrawn until after `now`; in
    one trip to the database, and bodies are read only for ids not decoded yet."""
    def read(conn: sqlite3.Connection) -> tuple[list[tuple[str, int, str, int]], set[str]]:
        return (store.live_slots(conn, ALERT, now),
                {row[0] for row in conn.execute("SELECT key FROM alert_withdrawals WHERE until > ?", (now,))})

    slots, withdrawn = await store.db.read(read)
    if sum(1 for slot in slots if slot[0] not in _FACTS) > 8:   # many new ones (a start): one read of them all
        for event in await store.with_bodies(ALERT, now=now):
            _facts(event)
    found = []
    for event_id, ts, author, seq in slots:
        facts = _FACTS.get(event_id)
        if facts is None:
            held = await store.get(event_id)
            if held is None or held.body is None:   # tombstoned or purged since the read
                continue
            facts = _facts(held)
        found.append(((ts, author, seq), event_id, facts))
    return found, withdrawn


async def current_alerts(store: EventStore, *, location: tuple[float, float] | None, codes: Geocodes = NO_CODES,
                         now: int | None = None, include_tests: bool = False) -> list[dict[str, Any]]:
    """Alerts in force: not expired, not replaced by an Update nor withdrawn by a Cancel, for this node (its
    `location` inside a shape, or one of its `codes` named: node/safety/geocodes.py)."""
    now = int(time.time()) if now is None else now
    # Only alerts whose events have not expired: an expired one's body is about to be purged, and reading every
    # alert ever held would make each request cost the store's history. What each one says is decoded once.
    alerts, replaced = await _live_facts(store, now)
    replaced |= {key for _, _, f in alerts for key in f.withdraws}
    current, seen = [], set()
    for (ts, _, _), event_id, f in sorted(alerts, key=lambda found: found[0]):
        if f.key in seen:   # the same CAP alert published by two nodes (both poll the feed): show it once
            continue
        seen.add(f.key)
        if not f.listed or f.key in replaced or (not f.actual and not include_tests):
            continue
        if _live_here(f, location, codes, now):
            current.append({"event": event_id, "received": ts, "cap": f.cap, "signature": f.signature})
    return sorted(current, key=lambda a: a["cap"]["sent"], reverse=True)


def fresh_alert_in_force(event: Event, *, location: tuple[float, float] | None, codes: Geocodes = NO_CODES,
                         now: int | None = None) -> bool:
    """Whether a new Alert this node has just signed, with an identifier it has just made (manager_alert's
    urn:uuid), will be in force here by current_alerts' rules, from the event alone: no other event can hold its
    CAP key (no earlier copy to defer to) nor name it in <references> (nothing replaces it yet)."""
    now = int(time.time()) if now is None else now
    if event.kind != ALERT or event.body is None:
        return False
    f = _facts(event)
    if f.cap["msgType"] != "Alert" or not f.listed or not f.actual or f.withdraws:
        return False
    return _live_here(f, location, codes, now)


def _live_here(f: _Facts, location: tuple[float, float] | None, codes: Geocodes, now: int) -> bool:
    """Not expired at `now`, and for this node's location or codes (worked out once per place)."""
    if (f.expires if f.expires is not None else min(f.sent, now) + DEFAULT_TTL) <= now:
        return False
    applies = f.applies.get((location, codes))
    if applies is None:
        applies = f.applies[(location, codes)] = alert_applies(f.cap, location, codes)
    return applies


def alert_message(event: Event) -> dict[str, Any]:
    """The live "alert" message's data for an alert event in force."""
    return {"event": event.id, "received": event.ts, "cap": _body(event)["cap"], "signature": _signature(event)}


def _signature(event: Event) -> str | None:
    """What the alert's XML signature was found to be when this node's author took it in (signatures.STATUSES);
    None for an alert that came as JSON (a manager's, an agency's), which the event's own signature covers."""
    value = _body(event).get("signature")
    return value if isinstance(value, str) else None


def languages(accept_language: str | None) -> list[str]:
    """The languages of an Accept-Language header (RFC 9110), most wanted first; "*" and q=0 left out."""
    ranked = []
    for index, part in enumerate((accept_language or "")[:1000].split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and tag != "*" and quality > 0:
            ranked.append((-quality, index, tag.strip().lower()))
    return [tag for _, _, tag in sorted(ranked)]


def pick_info(infos: list[dict[str, Any]], wanted: list[str]) -> dict[str, Any] | None:
    """The <info> to show a reader who wants `wanted` languages: an exact match (es-US), then the same primary
    language (es), then the first info (as node/web/alerts-view.js picks)."""
    if not infos:
        return None
    for lang in wanted:
        if (exact := next((i for i in infos if i["language"].lower() == lang), None)) is not None:
            return exact
    for lang in wanted:
        primary = lang.split("-")[0]
        if (close := next((i for i in infos if i["language"].lower().split("-")[0] == primary), None)) is not None:
            return close
    return infos[0]


def _rfc3339(stamp: str) -> str:
    """A CAP dateTime as RFC 3339 (Atom): the same instant and offset; UTC (CAP 1.2 writes it -00:00, which RFC 3339
    reads as "local offset unknown") written Z, the form every Atom reader takes."""
    return stamp[:-6] + "Z" if stamp[-6:] in ("-00:00", "+00:00") else stamp


def atom_feed(alerts: list[dict[str, Any]], *, title: str, feed_id: str, author: str,
              wanted: list[str] | None = None) -> bytes:
    """An RFC 4287 Atom feed with each alert's CAP XML as the entry content: feed and entries with id, title,
    updated (RFC 3339) and author; titles in the reader's language where the alert has an info in it."""
    feed = Element(f"{{{ATOM}}}feed")
    SubElement(feed, f"{{{ATOM}}}title").text = title
    SubElement(feed, f"{{{ATOM}}}id").text = feed_id
    newest = max((datetime.fromisoformat(a["cap"]["sent"]) for a in alerts), default=None)
    SubElement(feed, f"{{{ATOM}}}updated").text = (
        _rfc3339(newest.astimezone(timezone.utc).isoformat()) if newest is not None
        else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    SubElement(SubElement(feed, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = author
    for item in alerts:
        cap = item["cap"]
        info = pick_info(cap["info"], wanted or [])
        entry = SubElement(feed, f"{{{ATOM}}}entry")
        SubElement(entry, f"{{{ATOM}}}id").text = f"urn:nnode:event:{item['event']}"
        SubElement(entry, f"{{{ATOM}}}title").text = (info.get("headline") or info["event"] if info
                                                      else cap["identifier"])
        SubElement(entry, f"{{{ATOM}}}updated").text = _rfc3339(cap["sent"])
        SubElement(SubElement(entry, f"{{{ATOM}}}author"), f"{{{ATOM}}}name").text = (
            (info or {}).get("senderName") or cap["sender"])
        content = SubElement(entry, f"{{{ATOM}}}content", {"type": "application/cap+xml"})
        content.append(alert_to_element(cap))
    document: bytes = tostring(feed, encoding="utf-8", xml_declaration=True)  # typeshed: Any for an encoding
    return document


def _withdrawn_by(alert: dict[str, Any], alerts: list[tuple[Event, dict[str, Any]]]) -> list[str]:
    keys = withdraws(alert)
    return [event.id for event, earlier in alerts if _key(earlier["sender"], earlier["identifier"], earlier["sent"])
            in keys]


async def live_messages(store: EventStore, events: list[Event], location: tuple[float, float] | None,
                        *, codes: Geocodes = NO_CODES, now: int | None = None
                        ) -> list[tuple[str, dict[str, Any], str]]:
    """What open pages must hear about newly stored events: (message type, data, audience) triples.

    A new alert is announced only if it is now in force here by the same rules as /api/alerts (so an alert that
    arrives after its own Update, or a second copy of one CAP alert, stays quiet).
    """
    now = int(time.time()) if now is None else now
    messages: list[tuple[str, dict[str, Any], str]] = []
    in_force: set[str] | None = None
    earlier: list[tuple[Event, dict[str, Any]]] | None = None
    for event in events:
        if event.kind == "tombstone" and event.body is not None:
            target_id = event.body_value()["target"]
            target = await store.get(target_id)
            kind = "report-withdrawn" if target is not None and target.kind == REPORT else "alert-withdrawn"
            messages.append((kind, {"event": target_id}, ALL))
        elif event.kind == REPORT and event.body is not None:
            messages.append(("report", {"report": report_message(event)}, ALL))
        elif event.kind == ALERT and event.body is not None:
            alert = _body(event)["cap"]
            if alert["msgType"] in ("Update", "Cancel"):
                if earlier is None:
                    earlier = [(e, _body(e)["cap"]) for e in await store.with_bodies(ALERT, now=now)]
                for withdrawn in _withdrawn_by(alert, earlier):
                    messages.append(("alert-withdrawn", {"event": withdrawn}, ALL))
            if in_force is None:   # of several copies of one CAP alert, the earliest is the one in force
                for new in events:   # decoded from what is in hand, not read back
                    if new.kind == ALERT and new.body is not None:
                        _facts(new)
                in_force = {a["event"] for a in await current_alerts(store, location=location, codes=codes,
                                                                     now=now)}
            if event.id in in_force:
                messages.append(("alert", alert_message(event), ALL))
    return messages


def manager_alert(fields: Any, *, node_key: str, node_name: str, location: tuple[str, str] | None,
                  now: int | None = None, sender: str | None = None) -> dict[str, Any]:
    """A CAP alert from the console's form, in the node's canonical form (raises CapError naming the field); its
    <sender> is the node's (`<key>@nnode.local`) unless `sender` is given (an agency's own identity)."""
    now = int(time.time()) if now is None else now
    if not isinstance(fields, dict):
        raise CapError("the alert must be a JSON object")

    def text(name: str, limit: int, *, required: bool = False) -> str | None:
        value = fields.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise CapError(f"field '{name}' is required")
            return None
        if not isinstance(value, str) or len(value) > limit:
            raise CapError(f"field '{name}' must be text of at most {limit} characters")
        return value.strip()

    def choice(name: str, choices: tuple[str, ...], default: str) -> str:
        value = fields.get(name, default)
        if not isinstance(value, str) or value not in choices:
            raise CapError(f"field '{name}' must be one of {', '.join(choices)}")
        return value

    hours = fields.get("expires_hours", 12)
    if type(hours) is not int or not 1 <= hours <= 72:
        raise CapError("field 'expires_hours' must be a whole number of hours from 1 to 72")
    radius = fields.get("radius_km", 1)
    if type(radius) not in (int, float) or not 0.1 <= radius <= 50:
        raise CapError("field 'radius_km' must be a number of kilometres from 0.1 to 50")
    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S-00:00")   # CAP 1.2's UTC

    info: dict[str, Any] = {"language": "en-US", "category": [choice("category", CATEGORY, "Safety")],
                            "event": text("event", 100, required=True), "responseType": [],
                            "urgency": choice("urgency", URGENCY, "Expected"),
                            "severity": choice("severity", SEVERITY, "Moderate"),
                            "certainty": choice("certainty", CERTAINTY, "Likely"), "senderName": node_name[:100]}
    for name, limit in (("headline", 160), ("description", 4000), ("instruction", 2000)):
        if (value := text(name, limit)) is not None:
            info[name] = value
    info["expires"] = stamp(now + hours * 3600)
    info.update({"eventCode": [], "parameter": [], "resource": []})
    area: dict[str, Any] = {"areaDesc": text("area_desc", 200) or node_name[:200], "polygon": [], "circle": [],
                            "geocode": []}
    if location is not None:
        lat, lon = (round(Decimal(value), 2) for value in location)
        area["circle"] = [f"{lat},{lon} {round(float(radius) + COARSE_SLACK_KM, 3):g}"]
    info["area"] = [area]
    alert = {"identifier": f"urn:uuid:{uuid.uuid4()}", "sender": sender or f"{node_key[:32]}@nnode.local",
             "sent": stamp(now), "status": "Actual", "msgType": "Alert", "scope": "Public", "references": [],
             "code": [], "info": [info]}
    return alert_from_element(_parse_xml(tostring(alert_to_element(alert))))
