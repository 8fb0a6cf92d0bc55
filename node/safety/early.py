"""A manager's new alert reaches the open pages while its event is being written, not after.

The event's transaction ends with an fsync (DESIGN invariant 6: the manager's POST is answered only once the alert
is on disk), and after it came the relay to the pages and a read of the alerts in force: together most of the time
from the POST to the first page (bench/fanout.py, docs/proof.md). A brand-new alert with an identifier this node has
just made needs none of that to know it is in force here (alerts.fresh_alert_in_force), so `Announcer.early` hands
its live message to the hub as soon as the event is signed, and the relay leaves that message out when the stored
event comes through. If the write fails, the pages are told the alert is withdrawn ("alert-withdrawn"), as they
would be for a Cancel, so no page keeps an alert the node does not hold. The manager still sees the failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from node.safety.alerts import alert_message, fresh_alert_in_force
from node.safety.geocodes import Geocodes
from node.safety.live import ALL
from sync import Event, EventStore

log = logging.getLogger("nnode")

Publish = Callable[[str, dict[str, Any], str], Coroutine[Any, Any, int]]
MAX_ANNOUNCED = 1024   # ids announced early whose stored event the relay has not yet passed (bounded)


class Announcer:
    """Live messages for fresh alerts before their commit; `settle` after it; `taken` for the relay."""

    def __init__(self, publish: Publish, store: EventStore, location: tuple[float, float] | None,
                 codes: Geocodes) -> None:
        self.publish = publish
        self.store = store
        self.location = location
        self.codes = codes
        self.announced: dict[str, None] = {}   # insertion-ordered set
        self._tasks: set[asyncio.Task[Any]] = set()

    def early(self, events: Sequence[Event]) -> None:
        """A before_commit hook (SyncEngine.publish): announce each fresh alert in force here, now."""
        for event in events:
            if fresh_alert_in_force(event, location=self.location, codes=self.codes):
                while len(self.announced) >= MAX_ANNOUNCED:
                    del self.announced[next(iter(self.announced))]
                self.announced[event.id] = None
                self._spawn(self.publish("alert", alert_message(event), ALL))

    def taken(self, kind: str, data: dict[str, Any]) -> bool:
        """True (once) for the relay's "alert" message of an event already announced early: leave it out."""
        if kind != "alert" or data.get("event") not in self.announced:
            return False
        del self.announced[data["event"]]
        return True

    def failed(self, events: Sequence[Event]) -> None:
        """The publish of `events` raised (or was cancelled): settle in the background."""
        if any(event.id in self.announced for event in events):
            self._spawn(self.settle(events))

    async def settle(self, events: Sequence[Event]) -> None:
        """After a publish that raised: withdraw from the pages what was announced but is not stored."""
        for event in events:
            if event.id in self.announced and await self.store.get(event.id) is None:
                del self.announced[event.id]
                log.warning("alert announced early was not stored: withdrawn from the pages",
                            extra={"event": event.id})
                await self.publish("alert-withdrawn", {"event": event.id}, ALL)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("early live message failed", exc_info=task.exception())

    async def close(self) -> None:
        """Let the messages under way finish (their feed rows written)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
