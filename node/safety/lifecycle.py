"""The safety feature's lifecycle: the live feed, reports, SOS escalation, alert feed polling, and new events told to
open pages."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from node import __version__
from node.federation.areas import coarse_location, node_location
from node.keys import ACCOUNTS, ANNOUNCER, BASEMAP, CONFIG, DB, ENGINE, FEEDS, HUB, REPORTS, SCHEDULER, SOS_DESK, STORE
from node.periodic import Jobs
from node.safety import sos
from node.safety.alerts import ALERT, live_messages, purge_withdrawals, record_withdrawals
from node.safety.basemap import Basemap
from node.safety.early import Announcer
from node.safety.feeds import FeedPoller
from node.safety.geocodes import Geocodes
from node.safety.live import Hub
from node.safety.reports import Reports
from sync import Event

log = logging.getLogger("nnode")


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Make the safety stores; relay new events to open pages; escalate SOS calls; poll the official feeds."""
    config, db = app[CONFIG], app[DB]
    hub = app[HUB] = Hub(db, app[ACCOUNTS].session)
    app[REPORTS] = Reports(db, config.node.data_dir / "media" / "reports",
                           hold_person_reports=config.reports.hold_person_reports)
    desk = app[SOS_DESK] = sos.SosDesk(db, config)
    basemap = app[BASEMAP] = Basemap(config.node.data_dir)
    engine = app[ENGINE]
    announcer = app[ANNOUNCER] = Announcer(hub.publish, app[STORE], node_location(config),
                                           Geocodes.parse(config.alerts.geocodes))
    relay: asyncio.Queue[list[Event]] = asyncio.Queue()
    engine.listeners.append(relay.put_nowait)
    teller = asyncio.create_task(_tell_pages(app, relay, announcer), name="nnode-live-events")
    await hub.purge()
    # an Update or Cancel stored just before a crash, before its listener ran, is recorded now
    await record_withdrawals(app[STORE], await app[STORE].with_bodies(ALERT))
    session = aiohttp.ClientSession(headers={"User-Agent": f"nnode/{__version__}"})
    poller = app[FEEDS] = FeedPoller(engine, session, config.alerts)
    escalator = sos.Escalator(desk, engine, hub.publish, config, coarse_location(config), session)
    jobs = Jobs(app[SCHEDULER], "safety")
    jobs.every(config.events.purge_interval, hub.purge, name="purge-feed")
    jobs.every(config.events.purge_interval, functools.partial(purge_withdrawals, app[STORE]), name="purge-withdrawals")
    jobs.every(sos.TICK, escalator.run_due, name="sos-escalation", cancel=True)
    if config.alerts.feeds and config.node.latitude and not config.alerts.geocodes:
        log.warning("alerts.geocodes is empty: official alerts that name only codes (most NWS zone warnings) cannot "
                    "be placed and are shown to everyone; set the building's SAME, UGC and ZIP codes")
    if config.alerts.feeds:  # first poll now, in the background: a slow feed must not delay start-up
        jobs.every(config.alerts.poll_interval, poller.poll_all, name="poll-alert-feeds", now=True, cancel=True)
    try:
        yield
    finally:
        await jobs.close()
        await poller.idle()  # a poll cancelled by the shutdown unwinds before its session closes
        await session.close()
        await basemap.close()
        engine.listeners.remove(relay.put_nowait)
        await announcer.close()
        teller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await teller


async def _tell_pages(app: web.Application, relay: asyncio.Queue[list[Event]], announcer: Announcer) -> None:
    """New events (local or from peers) become live messages, in the order they were stored."""
    location = node_location(app[CONFIG])
    codes = Geocodes.parse(app[CONFIG].alerts.geocodes)
    while True:
        events = await relay.get()
        try:
            await record_withdrawals(app[STORE], events)
            for kind, data, audience in await live_messages(app[STORE], events, location, codes=codes):
                if not announcer.taken(kind, data):   # not already sent by Announcer.early
                    await app[HUB].publish(kind, data, audience)
        except Exception:
            log.exception("live delivery of new events failed")
