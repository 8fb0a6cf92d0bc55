"""systemd integration: sd_notify READY/STOPPING/STATUS and watchdog pings sent from the event loop.

Pings come from a task on the loop and only after the database answers, so a stalled loop or a wedged database
stops them and systemd restarts the node (WatchdogSec in nnode.service).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Awaitable, Callable

log = logging.getLogger("nnode.systemd")

# How long the health probe of one watchdog round may take, as a share of the ping interval.
PROBE_SHARE = 0.5


def notify(message: str) -> bool:
    """Send one sd_notify datagram ("READY=1", "WATCHDOG=1", ...); False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed", extra={"error": str(exc)})
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when systemd asked for no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None


async def watchdog(healthy: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Ping systemd every `interval` seconds while `healthy()` answers True in time; runs until cancelled."""
    while True:
        try:
            ok = await asyncio.wait_for(healthy(), interval * PROBE_SHARE)
        except Exception as exc:  # a failing probe means no ping; systemd decides when to restart
            log.warning("health probe failed; watchdog not pinged", extra={"error": repr(exc)})
            ok = False
        if ok:
            notify("WATCHDOG=1")
        await asyncio.sleep(interval)
