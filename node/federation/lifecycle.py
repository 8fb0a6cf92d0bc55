"""The sync engine's lifecycle: the engine and its server, expiry purging and header pruning, starting sync, and
mDNS discovery."""

from __future__ import annotations

import logging
from typing import AsyncIterator

from aiohttp import web

from node.config import Config
from node.federation.areas import coarse_location, interest
from node.federation.kinds import build_registry
from node.identity import host_name, node_id
from node.keys import CONFIG, DB, ENGINE, KEY, NAMES, PEERS, SCHEDULER, STORE, SYNC_SERVER
from node.names import Names
from node.periodic import Jobs
from node.state import RESTORED, NodeState
from sync import Discovery, Retention, SyncEngine, SyncServer, SyncSettings, add_discovered, make_descriptor

log = logging.getLogger("nnode")


def sync_settings(config: Config) -> SyncSettings:
    """The sync engine's settings from the [sync] section."""
    s = config.sync
    return SyncSettings(anti_entropy_interval=s.anti_entropy_interval, push_batch=s.push_batch,
                        pull_limit=s.pull_limit, max_batch_events=s.max_batch_events,
                        max_batch_bytes=s.max_batch_bytes, max_skew=s.max_clock_skew, rate=s.rate_limit,
                        burst=s.rate_burst, request_timeout=s.request_timeout,
                        interest=interest(coarse_location(config), s.interest_radius_m))


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Make the engine and its server (started later by `start_ctx`, once every listener is attached)."""
    config = app[CONFIG]
    engine = SyncEngine(app[KEY], app[STORE], app[PEERS], build_registry(), sync_settings(config))
    for peer in config.sync.peers:
        await app[PEERS].seen(peer.key, name="", url=peer.url, source="config", approve=True)
    for key in config.sync.trusted_keys:
        if (known := await app[PEERS].get(key)) is not None and not known.approved:
            await app[PEERS].approve(key)
    node_state = NodeState(app[DB])
    if await node_state.get(RESTORED) is not None:
        # A restored node may be behind its own published events: it publishes once a peer has told it its own.
        engine.hold_publishing("restored from a backup")

        async def synced() -> None:
            await node_state.delete(RESTORED)
        engine.on_peer_synced = synced
    app[ENGINE] = engine
    names: Names = app[NAMES]
    app[SYNC_SERVER] = SyncServer(engine, lambda nonce: make_descriptor(
        app[KEY], name=config.node.name, location=coarse_location(config), nonce=nonce), names)
    store = app[STORE]

    retention = Retention(keep_after=config.events.keep_headers_days * 86_400,
                          max_headers=config.events.max_headers)

    async def purge() -> None:
        if dropped := await store.purge_expired():
            log.info("expired bodies purged", extra={"count": dropped})

    async def purge_and_prune() -> None:
        await purge()
        # Pruning waits for the scheduler, off start-up: a first run on a large old store takes many batches.
        if pruned := await store.prune_headers(retention):
            log.info("expired headers pruned", extra={"count": pruned})
    await purge()
    jobs = Jobs(app[SCHEDULER], "federation")
    jobs.every(config.events.purge_interval, purge_and_prune, name="purge-expired")
    try:
        yield
    finally:
        await jobs.close()
        await engine.close()


async def start_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start syncing with peers; stop first on the way down, so no event reaches a feature that is stopping."""
    await app[ENGINE].start()
    try:
        yield
    finally:
        await app[ENGINE].close()


async def discovery_ctx(app: web.Application) -> AsyncIterator[None]:
    """Advertise this node over mDNS and propose the nodes it finds to the manager."""
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
                          interfaces=list(config.discovery.interfaces), on_found=found,
                          host=host_name(node_id(app[KEY])))
    await discovery.start()
    try:
        yield
    finally:
        await discovery.close()
