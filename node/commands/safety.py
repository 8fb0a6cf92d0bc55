"""`nnode alerts`: import CAP 1.2 alerts into the running node, or list those in force; `nnode feeds`: how each
official feed's last poll went."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from node.commands.client import control
from node.config import Config
from node.errors import NodeError, NotInitialised


async def _import_alerts(config: Config, file: str) -> int:
    try:
        document = await asyncio.to_thread(Path(file).read_bytes)
    except OSError as exc:
        raise NodeError(f"{file}: {exc}") from exc
    if not await asyncio.to_thread(config.control_socket.exists):
        raise NotInitialised("the node is not running; start it with `nnode run`")
    connector = aiohttp.UnixConnector(path=str(config.control_socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://node/control/alerts/import", data=document) as resp:
            value = await resp.json(content_type=None)
    if resp.status >= 400:
        raise NodeError(f"{file}: {value.get('error')}")
    for line in import_lines(value):
        print(line)
    return 1 if any(entry["outcome"] == "skipped" for entry in value["entries"]) else 0


def import_lines(value: dict[str, Any]) -> list[str]:
    """What `nnode alerts import` prints: one line per entry (published, already held, skipped and why), then a
    count."""
    lines = []
    for entry in value["entries"]:
        name = entry.get("alert") or entry.get("entry")
        if entry["outcome"] == "published":
            lines.append(f"published {name} as event {entry['event'][:16]}")
        elif entry["outcome"] == "already held":
            lines.append(f"already held {name}: nothing changed")
        else:
            lines.append(f"skipped {name}: {entry['reason']}")
    counts = {outcome: sum(e["outcome"] == outcome for e in value["entries"])
              for outcome in ("published", "already held", "skipped")}
    lines.append(f"{value['shape']}: " + ", ".join(f"{n} {outcome}" for outcome, n in counts.items()))
    return lines


async def cmd_alerts(config: Config, args: argparse.Namespace) -> int:
    """Import CAP alerts from a file, or list those in force."""
    if args.action == "import":
        return await _import_alerts(config, args.file)
    for event in await control(config, "GET", "/control/events?kind=alert&limit=200"):
        cap = event["body"]["cap"] if event["body"] else None
        if cap:
            info = cap["info"][0] if cap["info"] else {}
            print(f"{cap['sent']}  {cap['msgType']:6} {cap['status']:8} {info.get('severity', '-'):8} "
                  f"{info.get('headline') or info.get('event', '')}")
    return 0


def feed_lines(feeds: list[dict[str, Any]]) -> list[str]:
    """What `nnode feeds` prints: per feed, its last poll and outcome, then each entry skipped and why."""
    lines = []
    for feed in feeds:
        when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(feed["last_poll"])) if feed["last_poll"]
                else "not polled yet")
        lines.append(feed["url"])
        last = feed["last"]
        if feed["ok"] is False:
            lines.append(f"  {when}  FAILED (HTTP {feed['http_status'] or '-'}, {feed['failures']} failures so far): "
                         f"{feed['error']}")
        elif last is not None and last["not_modified"]:
            lines.append(f"  {when}  HTTP 304: unchanged since the last poll")
        elif last is not None:
            lines.append(f"  {when}  HTTP {last['http_status']}  {last['shape']} feed, {last['entries']} entries: "
                         f"{last['found']} alerts found ({last['linked']} linked files fetched), "
                         f"{last['published']} published, {last['known']} already held, "
                         f"{len(last['skipped'])} skipped")
            if last["found"] == 0:
                lines.append("  no alerts in this feed" + (" (every entry was skipped)" if last["entries"] else ""))
        else:
            lines.append(f"  {when}")
        lines.append(f"  published since start: {feed['published']}")
        for item in (last or {}).get("skipped", []):
            lines.append(f"  skipped {item.get('alert') or item.get('entry')}: {item['reason']}")
    return lines or ["no feeds configured (alerts.feeds)"]


async def cmd_feeds(config: Config, args: argparse.Namespace) -> int:
    """Show each official feed's last poll."""
    for line in feed_lines(await control(config, "GET", "/control/feeds")):
        print(line)
    return 0


def add_commands(sub: Any) -> None:
    """Register alerts and feeds on the `nnode` subparsers."""
    alerts = sub.add_parser("alerts", help="import CAP 1.2 alerts (alert or Atom/RSS feed file) or list them")
    alerts_sub = alerts.add_subparsers(dest="action", required=True)
    alerts_import = alerts_sub.add_parser("import")
    alerts_import.add_argument("file")
    alerts_sub.add_parser("list")
    alerts.set_defaults(func=cmd_alerts)
    feeds = sub.add_parser("feeds", help="how each official feed's last poll went: HTTP status, alerts found, "
                                         "skipped and why")
    feeds.set_defaults(func=cmd_feeds)
