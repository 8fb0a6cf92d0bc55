"""`nnode alerts`: import CAP 1.2 alerts into the running node, or list those in force."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from node.commands.client import control
from node.config import Config
from node.errors import NodeError, NotInitialised


async def _import_alerts(config: Config, file: str) -> None:
    try:
        document = await asyncio.to_thread(Path(file).read_bytes)
    except OSError as exc:
        raise NodeError(f"{file}: {exc}") from exc
    if not config.control_socket.exists():
        raise NotInitialised("the node is not running; start it with `nnode run`")
    connector = aiohttp.UnixConnector(path=str(config.control_socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post("http://node/control/alerts/import", data=document) as resp:
            value = await resp.json(content_type=None)
    if resp.status >= 400:
        raise NodeError(f"{file}: {value.get('error')}")
    for event in value:
        cap = event["body"]["cap"]
        print(f"published {cap['msgType']} {cap['identifier']} from {cap['sender']} as event {event['id'][:16]}")


async def cmd_alerts(config: Config, args: argparse.Namespace) -> int:
    """Import CAP alerts from a file, or list those in force."""
    if args.action == "import":
        await _import_alerts(config, args.file)
        return 0
    for event in await control(config, "GET", "/control/events?kind=alert&limit=200"):
        cap = event["body"]["cap"] if event["body"] else None
        if cap:
            info = cap["info"][0] if cap["info"] else {}
            print(f"{cap['sent']}  {cap['msgType']:6} {cap['status']:8} {info.get('severity', '-'):8} "
                  f"{info.get('headline') or info.get('event', '')}")
    return 0


def add_commands(sub: Any) -> None:
    """Register alerts on the `nnode` subparsers."""
    alerts = sub.add_parser("alerts", help="import CAP 1.2 alerts (alert or Atom/RSS feed file) or list them")
    alerts_sub = alerts.add_subparsers(dest="action", required=True)
    alerts_import = alerts_sub.add_parser("import")
    alerts_import.add_argument("file")
    alerts_sub.add_parser("list")
    alerts.set_defaults(func=cmd_alerts)
