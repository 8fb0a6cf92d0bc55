"""The node's aiohttp application, composed from its features: every long-lived resource is one cleanup context, in
dependency order, torn down in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from typing import AsyncIterator

import nacl.signing
from aiohttp import web

from node.appliance import lifecycle as appliance
from node.appliance import systemd
from node.appliance.listen import check_port, unavailable
from node.appliance.snapshot import open_current
from node.camera import lifecycle as camera
from node.config import Config
from node.errors import NodeError
from node.federation import lifecycle as federation
from node.identity import host_name, load_key, node_id
from node.keys import CAMERAS, CONFIG, DB, HUB, KEY, NAMES, PEERS, SCHEDULER, STARTED, STORE, TLS
from node.names import Names
from node.people import lifecycle as people
from node.periodic import scheduler
from node.push import lifecycle as push
from node.routes import add_routes, auth_middleware, error_middleware
from node.safety import lifecycle as safety
from node.sharing import lifecycle as sharing
from node.tls import lifecycle as tls
from sync import EventStore, PeerStore

log = logging.getLogger("nnode")


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the database, bring every component's tables up to date, and make the event and peer stores."""
    config = app[CONFIG]
    if not config.db_path.exists():
        raise NodeError(f"{config.db_path}: no database; run `nnode init` first")
    db = await open_current(config.db_path)
    try:
        app[DB] = db
        app[STORE] = EventStore(db)
        app[PEERS] = PeerStore(db)
        yield
    finally:
        await db.close()


async def _scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """The one scheduler every feature's periodic jobs run on (node/periodic.py); each feature removes its own."""
    jobs = app[SCHEDULER] = scheduler()
    jobs.start()
    try:
        yield
    finally:
        jobs.shutdown(wait=False)


def create_app(config: Config, key: nacl.signing.SigningKey | None = None) -> web.Application:
    """The node app: API, sync endpoints and background work, for `config`'s data folder."""
    # keepalive_timeout is also aiohttp's header read timeout: from a connection's start, or the end of its last
    # answer, a request must arrive whole (line and headers) within it or the connection is closed. Set on the
    # app, so `nnode run` and every runner of this app (tests) get it.
    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=config.sync.max_batch_bytes,
                          handler_args={"keepalive_timeout": float(config.http.header_timeout)})
    app[CONFIG] = config
    app[KEY] = key or load_key(config.key_path)
    app[NAMES] = Names(config, host_name(node_id(app[KEY])))
    app[STARTED] = time.time()
    app.cleanup_ctx.extend([
        appliance.lock_ctx,       # one node per data folder
        _database_ctx,            # the database, every component's tables, the event and peer stores
        _scheduler_ctx,           # periodic work
        tls.ctx,                  # the HTTPS certificate (made, or the manager's checked) and its renewal
        people.ctx,               # claim code, accounts
        federation.engine_ctx,    # the sync engine (not yet syncing)
        safety.ctx,               # live feed, reports, SOS, alert feeds; relays new events to pages
        push.ctx,                 # Web Push: live messages that wake someone reach their locked phones
        federation.start_ctx,     # syncing with peers from here on
        camera.ctx,               # clips and recording
        sharing.ctx,              # agency requests, consent, bundles, audit heads
        appliance.control_ctx,    # the CLI's socket
        federation.discovery_ctx, # mDNS, last: peers find a node that is ready
    ])
    add_routes(app)

    async def end_streams(app: web.Application) -> None:
        if HUB in app:
            await app[HUB].close()
        if CAMERAS in app:
            app[CAMERAS].shutdown()  # end live views
    app.on_shutdown.append(end_streams)
    return app


async def serve(config: Config, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the node until `stop` is set (or forever); tell systemd when it serves and ping its watchdog.
    PortUnavailable, before anything starts, if the HTTP port is taken."""
    host, port = config.http.host, config.http.port
    await asyncio.to_thread(check_port, host, port)
    if config.http.tls.mode != "off":
        await asyncio.to_thread(check_port, host, config.http.tls.port)
    app = create_app(config, await asyncio.to_thread(load_key, config.key_path))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    pinger: asyncio.Task[None] | None = None
    try:
        sites = [(web.TCPSite(runner, host, port, reuse_address=True), port)]
        if TLS in app:   # the same app over HTTPS, on a port of its own
            sites.append((web.TCPSite(runner, host, app[TLS].port, ssl_context=app[TLS].context,
                                      reuse_address=True), app[TLS].port))
        for site, site_port in sites:
            try:
                await site.start()
            except OSError as exc:   # taken between the check and now
                raise unavailable(host, site_port, exc) from exc
        log.info("node serving", extra={"node": node_id(app[KEY]), "host": config.http.host,
                                        "port": config.http.port,
                                        "https_port": app[TLS].port if TLS in app else None})
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
