"""The node's aiohttp application: every long-lived resource is one cleanup context, in dependency order."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import AsyncIterator

import aiohttp
import nacl.signing
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sync import (Database, Discovery, EventStore, PeerStore, SyncEngine, SyncServer, SyncSettings,
                  add_discovered, make_descriptor, setup_schema)
from sync import RateLimiter

from . import __version__, systemd
from .accounts import MIGRATIONS as ACCOUNT_MIGRATIONS, Accounts
from .alerts import MIGRATIONS as ALERT_MIGRATIONS, FeedPoller
from .areas import interest
from .backup import RESTORED_FLAG
from .claim import MIGRATIONS as CLAIM_MIGRATIONS, Claims
from .config import Config
from .errors import NodeError
from .identity import load_key, node_id
from .kinds import build_registry
from .live import MIGRATIONS as LIVE_MIGRATIONS, Hub
from .reports import MIGRATIONS as REPORT_MIGRATIONS, Reports
from .sos import MIGRATIONS as SOS_MIGRATIONS, SosDesk
from .camera.clips import MIGRATIONS as CLIP_MIGRATIONS, ClipIndex
from .sharing.agencies import MIGRATIONS as AGENCY_MIGRATIONS, Registry
from .sharing.audit import MIGRATIONS as AUDIT_MIGRATIONS, AuditLog
from .sharing.desk import MIGRATIONS as DESK_MIGRATIONS, SharingDesk

log = logging.getLogger("nnode")

CONFIG = web.AppKey("config", Config)
KEY = web.AppKey("key", nacl.signing.SigningKey)
DB = web.AppKey("db", Database)
STORE = web.AppKey("store", EventStore)
PEERS = web.AppKey("peers", PeerStore)
ENGINE = web.AppKey("engine", SyncEngine)
SYNC_SERVER = web.AppKey("sync_server", SyncServer)
STARTED = web.AppKey("started", float)
CLAIMS = web.AppKey("claims", "Claims")
FEEDS = web.AppKey("feeds", FeedPoller)
ACCOUNTS = web.AppKey("accounts", Accounts)
HUB = web.AppKey("hub", Hub)
REPORTS = web.AppKey("reports", Reports)
SOS_DESK = web.AppKey("sos_desk", SosDesk)
CLIPS = web.AppKey("clips", ClipIndex)
CAMERAS = web.AppKey("cameras", "Cameras")
REGISTRY = web.AppKey("registry", Registry)
AUDIT = web.AppKey("audit", AuditLog)
DESK = web.AppKey("desk", SharingDesk)
SIGN_IN_LIMITER = web.AppKey("sign_in_limiter", RateLimiter)  # per address, for invites and manager sign-in

# node/ tables; residents, clips... join with their issues.
NODE_MIGRATIONS = [
    *CLAIM_MIGRATIONS,
    (2, ["CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"]),
    *ACCOUNT_MIGRATIONS,
    *LIVE_MIGRATIONS,
    *REPORT_MIGRATIONS,
    *SOS_MIGRATIONS,
    *ALERT_MIGRATIONS,
    *CLIP_MIGRATIONS,
    *AGENCY_MIGRATIONS,
    *AUDIT_MIGRATIONS,
    *DESK_MIGRATIONS,
]
AUDIT_HEAD_INTERVAL = 2.0   # seconds between checks for a new audit-log head to publish to peers
SHARING_TICK = 60.0         # seconds between checks of consent holds and expired requests


def sync_settings(config: Config) -> SyncSettings:
    """The sync engine's settings from the [sync] section."""
    s = config.sync
    return SyncSettings(anti_entropy_interval=s.anti_entropy_interval, push_batch=s.push_batch,
                        pull_limit=s.pull_limit, max_batch_events=s.max_batch_events,
                        max_batch_bytes=s.max_batch_bytes, max_skew=s.max_clock_skew, rate=s.rate_limit,
                        burst=s.rate_burst, request_timeout=s.request_timeout,
                        interest=interest(coarse_location(config), s.interest_radius_m))


def node_location(config: Config) -> tuple[float, float] | None:
    """The building's configured location in degrees, or None."""
    node = config.node
    return (float(node.latitude), float(node.longitude)) if node.latitude else None


def coarse_location(config: Config) -> dict[str, int] | None:
    """The building's location rounded to 0.01 degree (about 1 km), in integer micro-degrees."""
    if not config.node.latitude:
        return None
    def coarse(value: str) -> int:
        return int(round(Decimal(value), 2) * 1_000_000)
    return {"lat_e6": coarse(config.node.latitude), "lon_e6": coarse(config.node.longitude)}


async def _lock_ctx(app: web.Application) -> AsyncIterator[None]:
    """Hold an exclusive lock on the data folder so two nodes never share one database."""
    path = app[CONFIG].node.data_dir / "node.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise NodeError(f"{app[CONFIG].node.data_dir}: another nnode is running with this data folder") from None
    try:
        yield
    finally:
        os.close(fd)


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if not config.db_path.exists():
        raise NodeError(f"{config.db_path}: no database; run `nnode init` first")
    db = await Database.open(config.db_path)
    try:
        await setup_schema(db)
        await db.migrate("node", NODE_MIGRATIONS)
        app[DB] = db
        app[STORE] = EventStore(db)
        app[PEERS] = PeerStore(db)
        app[CLAIMS] = Claims(db)
        app[ACCOUNTS] = Accounts(db)
        app[HUB] = Hub(db, app[ACCOUNTS].session)
        app[REPORTS] = Reports(db, config.node.data_dir / "media" / "reports")
        app[SOS_DESK] = SosDesk(db, config)
        app[CLIPS] = ClipIndex(db, config.node.data_dir / "clips")
        app[REGISTRY] = Registry(db, config.agencies.trust_anchors)
        app[AUDIT] = AuditLog(db, app[KEY])
        yield
    finally:
        await db.close()


async def _engine_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = SyncEngine(app[KEY], app[STORE], app[PEERS], build_registry(), sync_settings(config))
    for peer in config.sync.peers:
        await app[PEERS].seen(peer.key, name="", url=peer.url, source="config", approve=True)
    for key in config.sync.trusted_keys:
        if (known := await app[PEERS].get(key)) is not None and not known.approved:
            await app[PEERS].approve(key)
    db = app[DB]
    if await db.reader.execute_fetchall("SELECT 1 FROM node_state WHERE key = ?", (RESTORED_FLAG,)):
        engine.hold_publishing("restored from a backup")

        async def synced() -> None:
            async with db.write() as conn:
                await conn.execute("DELETE FROM node_state WHERE key = ?", (RESTORED_FLAG,))
        engine.on_peer_synced = synced
    app[ENGINE] = engine
    from .alerts import live_messages

    relay: asyncio.Queue = asyncio.Queue()
    engine.listeners.append(relay.put_nowait)
    location = node_location(config)

    async def tell_pages() -> None:
        # New events (local or from peers) become live messages, in the order they were stored.
        while True:
            events = await relay.get()
            try:
                for kind, data, audience in await live_messages(app[STORE], events, location):
                    await app[HUB].publish(kind, data, audience)
            except Exception:
                log.exception("live delivery of new events failed")
    teller = asyncio.create_task(tell_pages(), name="nnode-live-events")
    app[SYNC_SERVER] = SyncServer(engine, lambda nonce: make_descriptor(
        app[KEY], name=config.node.name, location=coarse_location(config), nonce=nonce))
    await engine.start()
    try:
        yield
    finally:
        await engine.close()
        teller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await teller


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]

    running = asyncio.Lock()  # held by a job while it runs, so shutdown can wait for it

    async def purge() -> None:
        async with running:
            dropped = await store.purge_expired()
            await app[HUB].purge()
        if dropped:
            log.info("expired bodies purged", extra={"count": dropped})

    async def claim_code() -> None:
        async with running:
            await app[CLAIMS].ensure_code(app[CONFIG].http.port)

    scheduler = AsyncIOScheduler()
    scheduler.add_job(purge, "interval", seconds=app[CONFIG].events.purge_interval, id="purge-expired",
                      max_instances=1, coalesce=True)
    scheduler.add_job(claim_code, "interval", minutes=5, id="claim-code", max_instances=1, coalesce=True)
    scheduler.start()
    await purge()
    await claim_code()
    session = aiohttp.ClientSession(headers={"User-Agent": f"nnode/{__version__}"})
    poller = app[FEEDS] = FeedPoller(app[ENGINE], session, app[CONFIG].alerts)
    if app[CONFIG].alerts.feeds:  # first poll now, in the background: a slow feed must not delay start-up
        scheduler.add_job(poller.poll_all, "interval", seconds=app[CONFIG].alerts.poll_interval,
                          id="poll-alert-feeds", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(timezone.utc))
    try:
        yield
    finally:
        scheduler.shutdown(wait=False)
        async with running:  # a job that had started finishes before the database closes
            pass
        await poller.idle()  # a poll cancelled by the shutdown unwinds before its session closes
        await session.close()


async def _sos_ctx(app: web.Application) -> AsyncIterator[None]:
    """Escalate unacknowledged SOS calls (webhook, then nearby nodes)."""
    from .sos import escalate_forever

    task = asyncio.create_task(escalate_forever(app[SOS_DESK], app[ENGINE], app[HUB].publish, app[CONFIG],
                                                coarse_location(app[CONFIG])), name="nnode-sos-escalation")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _cameras_ctx(app: web.Application) -> AsyncIterator[None]:
    """Record the configured cameras; keep retention and the free-space guard."""
    from .camera.manager import Cameras

    config = app[CONFIG]
    index = app[CLIPS]
    await index.reconcile()  # finish what a crash interrupted before anything new is written
    cameras = app[CAMERAS] = Cameras(config.cameras.devices, index, config.node.data_dir,
                                     min_free_mb=config.cameras.min_free_mb,
                                     min_free_percent=config.cameras.min_free_percent,
                                     hold_before=config.sos.hold_before if config.cameras.devices else 0,
                                     publish=app[HUB].publish)

    async def guard() -> None:
        while True:
            try:
                await cameras.check(config.cameras.upload_retention_days)
            except Exception:
                log.exception("retention or free-space check failed")
            await asyncio.sleep(config.cameras.check_interval)
    await cameras.rescue()  # SOS footage a crash left in the rings, before the rings are cleared
    cameras.start()
    task = asyncio.create_task(guard(), name="nnode-camera-guard")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await cameras.close()


async def _sharing_ctx(app: web.Application) -> AsyncIterator[None]:
    """Agency requests from peers, bundles built in the background, consent holds, and audit heads to peers."""
    from .sharing.events import AUDIT_HEAD_KIND, AUDIT_HEAD_TTL, DISCLOSURE_KIND, REQUEST_KIND

    engine, store, audit, db = app[ENGINE], app[STORE], app[AUDIT], app[DB]
    desk = app[DESK] = SharingDesk(db, app[KEY], app[CLIPS], app[REGISTRY], audit, app[CONFIG],
                                   publish=engine.publish, notify=app[HUB].publish)
    inbox: asyncio.Queue = asyncio.Queue()

    def heard(events: list) -> None:
        for event in events:
            if event.kind in (REQUEST_KIND, DISCLOSURE_KIND) and event.body is not None:
                inbox.put_nowait(event)

    async def take(event) -> None:
        body = event.body_value()
        if event.kind == REQUEST_KIND:
            await desk.consider(body["request"], body.get("credential"), origin=event.author)
        else:
            await desk.note_disclosure(event.author, event.seq, body, event.ts)

    async def listen() -> None:
        # Requests and counts stored while the node was down, or before a crash let it look at them.
        for kind in (REQUEST_KIND, DISCLOSURE_KIND):
            for event in reversed(await store.recent(limit=1000, kind=kind)):
                if event.body is not None:
                    inbox.put_nowait(event)
        while True:
            event = await inbox.get()
            try:
                await take(event)
            except Exception:
                log.exception("looking at a sharing event failed", extra={"event": event.id})

    async def publish_heads() -> None:
        published = None
        rows = await db.reader.execute_fetchall("SELECT value FROM node_state WHERE key = 'audit_head'")
        if rows:
            published = int(rows[0][0])
        while True:
            try:
                head = await audit.head()
                if head is not None and head["seq"] != published and not engine.publishing_held:
                    await engine.publish(AUDIT_HEAD_KIND, {"seq": head["seq"], "hash": head["hash"]},
                                         ttl=AUDIT_HEAD_TTL)
                    published = head["seq"]
                    async with db.write() as conn:
                        await conn.execute("INSERT INTO node_state (key, value) VALUES ('audit_head', ?) "
                                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(published),))
            except Exception:
                log.exception("publishing the audit head failed")
            await asyncio.sleep(AUDIT_HEAD_INTERVAL)

    async def keep() -> None:
        while True:
            try:
                await desk.tick()
            except Exception:
                log.exception("consent holds check failed")
            await asyncio.sleep(SHARING_TICK)

    engine.listeners.append(heard)
    await desk.start()
    tasks = [asyncio.create_task(job(), name=f"nnode-sharing-{job.__name__}")
             for job in (listen, publish_heads, keep)]
    try:
        yield
    finally:
        engine.listeners.remove(heard)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await desk.close()


async def _discovery_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    if not config.discovery.enabled:
        yield
        return
    engine = app[ENGINE]
    trusted = set(config.sync.trusted_keys)

    async def found(key: str, name: str, url: str) -> None:
        peer = await add_discovered(engine, key, url, source="mdns", trusted=key in trusted)
        log.info("node discovered", extra={"peer": key, "peer_name": peer.name, "url": url, "state": peer.state})

    discovery = Discovery(key=node_id(app[KEY]), name=config.node.name, port=config.http.port,
                          interfaces=list(config.discovery.interfaces), on_found=found)
    await discovery.start()
    try:
        yield
    finally:
        await discovery.close()


async def _control_ctx(app: web.Application) -> AsyncIterator[None]:
    from .control import control_app

    path = app[CONFIG].control_socket
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    runner = web.AppRunner(control_app(app), access_log=None)
    await runner.setup()
    site = web.UnixSite(runner, str(path))
    await site.start()
    os.chmod(path, 0o600)
    try:
        yield
    finally:
        await runner.cleanup()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def create_app(config: Config, key: nacl.signing.SigningKey | None = None) -> web.Application:
    """The node app: API, sync endpoints and background work, for `config`'s data folder."""
    from .routes import add_routes, auth_middleware, error_middleware

    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=config.sync.max_batch_bytes)
    app[CONFIG] = config
    app[KEY] = key or load_key(config.key_path)
    app[STARTED] = time.time()
    # Codes and tokens are unguessable; this keeps scrypt (password sign-in) from being used to load the node.
    app[SIGN_IN_LIMITER] = RateLimiter(rate=10 / 60, burst=20)
    from .api_sharing import AGENCY_REPLAY
    from sync import ReplayCache
    app[AGENCY_REPLAY] = ReplayCache(window=config.sync.max_clock_skew, capacity=20_000)
    app.cleanup_ctx.extend([_lock_ctx, _database_ctx, _engine_ctx, _scheduler_ctx, _sos_ctx, _cameras_ctx,
                            _sharing_ctx, _control_ctx, _discovery_ctx])
    add_routes(app)

    async def end_streams(app: web.Application) -> None:
        if HUB in app:
            await app[HUB].close()
        if CAMERAS in app:
            app[CAMERAS].shutdown()  # end live views
    app.on_shutdown.append(end_streams)
    return app


async def serve(config: Config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the node until `stop` is set (or forever); tell systemd when it serves and ping its watchdog."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    pinger: asyncio.Task | None = None
    try:
        site = web.TCPSite(runner, config.http.host, config.http.port, reuse_address=True)
        await site.start()
        log.info("node serving", extra={"node": node_id(app[KEY]), "host": config.http.host,
                                        "port": config.http.port})
        systemd.notify(f"READY=1\nSTATUS=serving on {config.http.host}:{config.http.port}")
        # Everything made at start-up lives as long as the process: keep it out of the collector's way, whose
        # full passes over it were the fan-out's worst pauses (bench/fanout.py).
        gc.freeze()
        interval = systemd.watchdog_interval()
        if interval:
            pinger = asyncio.create_task(systemd.watchdog(app[DB].integrity_probe, interval), name="nnode-watchdog")
        if ready is not None:
            ready.set()
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        systemd.notify("STOPPING=1")
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
        await runner.cleanup()
        log.info("node stopped")
