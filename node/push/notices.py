"""What a live-feed message becomes on a locked phone: a notice (title, body, tag, the page a tap opens) and who it
wakes. Pure functions of the message, so the pages and the pushes tell the same story."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from node.push.store import Subscription, rank
from node.safety.live import ALL, RESPONDERS

MAX_TITLE = 120
MAX_BODY = 400
MAX_PAYLOAD = 3000   # push services take 4096 bytes after encryption (RFC 8291's overhead is 103 bytes); keep a margin

ALERT, REPORT, SOS = "alert", "report", "sos"
SOS_KINDS = {"sos": "SOS", "sos-escalated": "SOS still unanswered", "sos-ack": "SOS answered",
             "sos-ended": "SOS ended"}


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification to push: its content, what kind of news it is, and how urgent (RFC 8030 Urgency, TTL)."""

    kind: str              # ALERT, REPORT or SOS
    title: str
    body: str
    tag: str
    url: str
    severity: str = "Unknown"
    urgency: str = "normal"
    ttl: int = 3600
    audience: str = ALL

    def payload(self) -> bytes:
        """The JSON the service worker reads (node/web/sw.js), at most MAX_PAYLOAD bytes."""
        data = {"title": self.title, "body": self.body, "tag": self.tag, "url": self.url, "kind": self.kind,
                "severity": self.severity}
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        while len(raw) > MAX_PAYLOAD:   # long non-ASCII text: trim the body until it fits
            data["body"] = str(data["body"])[:max(0, len(str(data["body"])) - 100)] + "…"
            raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return raw

    def wakes(self, device: Subscription) -> bool:
        """Whether this notice goes to `device`, by its owner's choices and role."""
        if self.kind == SOS:
            if self.audience == RESPONDERS:
                return device.role == "manager" or device.on_call
            return device.role == "resident" and self.audience == f"resident:{device.subject}"
        if self.kind == ALERT:
            return device.alerts and rank(self.severity) >= rank(device.min_severity)
        return self.kind == REPORT and device.reports


def _cut(value: Any, limit: int) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _alert(data: dict[str, Any]) -> Notice | None:
    cap = data.get("cap")
    infos = cap.get("info") if isinstance(cap, dict) else None
    if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
        return None
    info = max(infos, key=lambda i: rank(str(i.get("severity", ""))) if isinstance(i, dict) else -1)
    severity = str(info.get("severity", "Unknown"))
    headline = info.get("headline") or info.get("event") or "Alert"
    event_id = str(data.get("event", ""))
    return Notice(ALERT, _cut(f"{severity} alert: {headline}", MAX_TITLE),
                  _cut(info.get("instruction") or info.get("description") or info.get("areaDesc") or "", MAX_BODY),
                  f"alert-{event_id}", f"/?alert={quote(event_id)}#alerts", severity,
                  "high" if rank(severity) >= rank("Severe") else "normal", 6 * 3600)


def _report(data: dict[str, Any]) -> Notice | None:
    report = data.get("report")
    if not isinstance(report, dict):
        return None
    category = str(report.get("category", "report")).replace("-", " ")
    where = f" ({_cut(report['where'], 60)})" if report.get("where") else ""
    return Notice(REPORT, _cut(f"Neighbor report: {category}{where}", MAX_TITLE), _cut(report.get("what"), MAX_BODY),
                  f"report-{report.get('id', '')}", f"/?report={quote(str(report.get('id', '')))}#report",
                  ttl=6 * 3600)


def _sos(kind: str, data: dict[str, Any], audience: str) -> Notice | None:
    call = data.get("sos")
    if not isinstance(call, dict):
        return None
    who = call.get("name") or (f"unit {call['unit']}" if call.get("unit") else "a neighbor")
    if kind in ("sos", "sos-escalated"):
        body = _cut(call.get("note") or "A neighbor asked for help.", MAX_BODY)
        title = f"{SOS_KINDS[kind]}: {who}"
    else:
        body = _cut(call.get("resolution") or (f"By {call['acked_by']}." if call.get("acked_by") else ""), MAX_BODY)
        state = call.get("state")
        title = f"SOS {state} ({who})" if kind == "sos-ended" and state in ("resolved", "cancelled") \
            else f"{SOS_KINDS[kind]} ({who})"
    return Notice(SOS, _cut(title, MAX_TITLE), body, f"sos-{call.get('id', '')}", "/#sos", urgency="high",
                  ttl=600, audience=audience)


def notice_for(kind: str, data: dict[str, Any], audience: str) -> Notice | None:
    """The notice a live message makes, or None for messages that wake nobody (held reports, withdrawals...)."""
    if kind == "alert" and audience == ALL:
        return _alert(data)
    if kind == "report" and audience == ALL:
        return _report(data)
    if kind in SOS_KINDS and (audience == RESPONDERS or audience.startswith("resident:")):
        return _sos(kind, data, audience)
    return None
