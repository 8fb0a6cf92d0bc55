"""The sharing feature's lifecycle: agency requests from peers, bundles built in the background, consent holds, and
the audit log's heads published to peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from aiohttp import web

from node.keys import (
    AGENCY_LIMITS,
    AGENCY_REPLAY,
    AUDIT,
    AUDIT_HEADS,
    CLIPS,
    CONFIG,
    DB,
    DESK,
    ENGINE,
    HUB,
    KEY,
    PEER_CHECK,
    PEERS,
    REGISTRY,
    SCHEDULER,
    STORE,
)
from node.periodic import Jobs
from node.sharing.agencies import Registry
from node.sharing.audit import AuditLog
from node.sharing.crosscheck import PeerCheck
from node.sharing.desk import SharingDesk
from node.sharing.events import AUDIT_HEAD_KIND, AUDIT_HEAD_TTL, DISCLOSURE_KIND, REQUEST_KIND
from node.sharing.heads import HeadBook
from node.sharing.limits import AgencyLimits
from node.state import AUDIT_HEAD, NodeState
from sync import Event, ReplayCache

log = logging.getLogger("nnode")

AUDIT_HEAD_INTERVAL = 2.0   # seconds between checks for a new audit-log head to publish to peers
SHARING_TICK = 60.0         # seconds between checks of consent holds and expired requests
AGENCY_REPLAY_PER_AGENCY = 1024   # agency signatures remembered per agency within the replay window
AGENCY_REPLAY_AGENCIES = 256      # agencies remembered at once
AUDIT_CHECK_INTERVAL = 600.0  # seconds between checks of the audit log against peers' copies of its heads


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Make the registry, audit log and sharing desk; look at sharing events; keep holds; publish audit heads."""
    config, db, engine = app[CONFIG], app[DB], app[ENGINE]
    # Per agency: one agency filling its share is refused (429) and the others go on.
    app[AGENCY_REPLAY] = ReplayCache(window=config.sync.max_clock_skew, capacity=AGENCY_REPLAY_PER_AGENCY,
                                     callers=AGENCY_REPLAY_AGENCIES)
    app[AGENCY_LIMITS] = AgencyLimits(config.agencies)
    app[REGISTRY] = Registry(db, config.agencies.trust_anchors)
    audit = app[AUDIT] = AuditLog(db, app[KEY])
    desk = app[DESK] = SharingDesk(db, app[KEY], app[CLIPS], app[REGISTRY], audit, config,
                                   publish=engine.publish, notify=app[HUB].publish)
    inbox: asyncio.Queue[Event] = asyncio.Queue()

    def heard(events: list[Event]) -> None:
        for event in events:
            if event.kind in (REQUEST_KIND, DISCLOSURE_KIND) and event.body is not None:
                inbox.put_nowait(event)

    # Requests and counts stored while the node was down, or before a crash let it look at them.
    for kind in (REQUEST_KIND, DISCLOSURE_KIND):
        for event in reversed(await app[STORE].recent(limit=1000, kind=kind)):
            if event.body is not None:
                inbox.put_nowait(event)
    engine.listeners.append(heard)
    # Other nodes' audit heads: kept append-only, and refused unless they extend the ones held (heads.py); those
    # that reached the store before the check was in place (while this started, or before an upgrade) are taken in.
    book = app[AUDIT_HEADS] = HeadBook(db, engine.node_id)
    engine.admission.append(book.admit)
    await book.catch_up(await app[STORE].recent(limit=5000, kind=AUDIT_HEAD_KIND))
    check = app[PEER_CHECK] = PeerCheck(config.db_path, app[KEY], app[PEERS], app[STORE])
    await desk.start()
    listener = asyncio.create_task(_listen(desk, inbox), name="nnode-sharing-listen")
    heads = HeadPublisher(app)
    await heads.load()
    jobs = Jobs(app[SCHEDULER], "sharing")
    jobs.every(AUDIT_HEAD_INTERVAL, heads.publish, name="audit-heads", now=True)
    jobs.every(SHARING_TICK, desk.tick, name="consent-holds", now=True)
    jobs.every(AUDIT_CHECK_INTERVAL, check.run, name="audit-peers", now=True, cancel=True)
    try:
        yield
    finally:
        engine.listeners.remove(heard)
        engine.admission.remove(book.admit)
        await jobs.close()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await desk.close()


async def _listen(desk: SharingDesk, inbox: asyncio.Queue[Event]) -> None:
    """Look at each agency request and disclosure count, one at a time (so one is never looked at twice)."""
    while True:
        event = await inbox.get()
        try:
            body = event.body_value()
            if event.kind == REQUEST_KIND:
                await desk.consider(body["request"], body.get("credential"), origin=event.author)
            else:
                await desk.note_disclosure(event.author, event.seq, body, event.ts)
        except Exception:
            log.exception("looking at a sharing event failed", extra={"event": event.id})


class HeadPublisher:
    """Publishes the audit log's head to peers whenever it has moved (DESIGN invariant 4)."""

    def __init__(self, app: web.Application) -> None:
        self.engine, self.audit, self.state = app[ENGINE], app[AUDIT], NodeState(app[DB])
        self.published: int | None = None

    async def load(self) -> None:
        """Remember the head published before a restart."""
        value = await self.state.get(AUDIT_HEAD)
        self.published = int(value) if value is not None else None

    async def publish(self) -> None:
        """Publish the current head if it differs from the last one published (and publishing is not held)."""
        head = await self.audit.head()
        if head is None or head["seq"] == self.published or self.engine.publishing_held:
            return
        await self.engine.publish(AUDIT_HEAD_KIND, {"seq": head["seq"], "hash": head["hash"]}, ttl=AUDIT_HEAD_TTL)
        self.published = head["seq"]
        await self.state.set(AUDIT_HEAD, str(self.published))
