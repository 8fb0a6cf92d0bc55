"""What a live-feed message becomes on a locked phone: a notice (title, body, tag, the page a tap opens) and who it
wakes. Pure functions of the message, so the pages and the pushes tell the same story."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from node.push.store import Subscription, rank
from node.push.texts import say
from node.safety.live import ALL, RESPONDERS

MAX_TITLE = 120
MAX_BODY = 400
MAX_PAYLOAD = 3000   # push services take 4096 bytes after encryption (RFC 8291's overhead is 103 bytes); keep a margin

ALERT, REPORT, SOS = "alert", "report", "sos"
SOS_KINDS = {"sos": "SOS", "sos-escalated": "SOS still unanswered", "sos-ack": "SOS answered",
             "sos-ended": "SOS ended"}


def _in_language(infos: list[Any], language: str) -> list[dict[str, Any]]:
    """The alert's infos in `language` (CAP: a missing language is en-US), or all of them when it has none."""
    usable = [i for i in infos if isinstance(i, dict)]
    chosen = [i for i in usable if str(i.get("language") or "en-US").lower().split("-")[0] == language]
    return chosen or usable


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


def _alert(data: dict[str, Any], language: str) -> Notice | None:
    cap = data.get("cap")
    infos = cap.get("info") if isinstance(cap, dict) else None
    if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
        return None
    info = max(_in_language(infos, language), key=lambda i: rank(str(i.get("severity", ""))))
    severity = str(info.get("severity", "Unknown"))
    headline = info.get("headline") or info.get("event") or say(language, "Alert")
    event_id = str(data.get("event", ""))
    title = say(language, "{severity} alert: {headline}", severity=say(language, severity), headline=str(headline))
    return Notice(ALERT, _cut(title, MAX_TITLE),
                  _cut(info.get("instruction") or info.get("description") or info.get("areaDesc") or "", MAX_BODY),
                  f"alert-{event_id}", f"/?alert={quote(event_id)}#alerts", severity,
                  "high" if rank(severity) >= rank("Severe") else "normal", 6 * 3600)


def _report(data: dict[str, Any], language: str) -> Notice | None:
    report = data.get("report")
    if not isinstance(report, dict):
        return None
    category = say(language, str(report.get("category", "report")).replace("-", " "))
    where = f" ({_cut(report['where'], 60)})" if report.get("where") else ""
    title = say(language, "Neighbor report: {category}{where}", category=category, where=where)
    return Notice(REPORT, _cut(title, MAX_TITLE), _cut(report.get("what"), MAX_BODY),
                  f"report-{report.get('id', '')}", f"/?report={quote(str(report.get('id', '')))}#report",
                  ttl=6 * 3600)


def _sos(kind: str, data: dict[str, Any], audience: str, language: str) -> Notice | None:
    call = data.get("sos")
    if not isinstance(call, dict):
        return None
    who = str(call.get("name") or (say(language, "unit {unit}", unit=str(call["unit"])) if call.get("unit")
                                   else say(language, "a neighbor")))
    if kind in ("sos", "sos-escalated"):
        body = _cut(call.get("note") or say(language, "A neighbor asked for help."), MAX_BODY)
        title = say(language, f"{SOS_KINDS[kind]}: {{who}}", who=who)
    else:
        body = _cut(call.get("resolution") or (say(language, "By {name}.", name=str(call["acked_by"]))
                                               if call.get("acked_by") else ""), MAX_BODY)
        state = call.get("state")
        title = say(language, f"SOS {state} ({{who}})", who=who) if kind == "sos-ended" and state in (
            "resolved", "cancelled") else say(language, f"{SOS_KINDS[kind]} ({{who}})", who=who)
    return Notice(SOS, _cut(title, MAX_TITLE), body, f"sos-{call.get('id', '')}", "/#sos", urgency="high",
                  ttl=600, audience=audience)


def notice_for(kind: str, data: dict[str, Any], audience: str, language: str = "en") -> Notice | None:
    """The notice a live message makes, written in `language` (en, es or zh; an alert in its info for that
    language when it has one), or None for messages that wake nobody (held reports, withdrawals...)."""
    if kind == "alert" and audience == ALL:
        return _alert(data, language)
    if kind == "report" and audience == ALL:
        return _report(data, language)
    if kind in SOS_KINDS and (audience == RESPONDERS or audience.startswith("resident:")):
        return _sos(kind, data, audience, language)
    return None
