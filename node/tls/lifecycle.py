"""The HTTPS certificate's lifecycle: made or checked before the node serves, renewed or reloaded while it runs."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from aiohttp import web

from node.identity import host_name, node_id
from node.keys import CONFIG, KEY, SCHEDULER, TLS
from node.periodic import Jobs
from node.tls.state import TlsState

CHECK_INTERVAL = 3600.0   # seconds between checks for renewal (local CA) or changed files (the manager's own)


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """With http.tls on: the certificate ready (TlsError stops the start otherwise) and kept current."""
    config = app[CONFIG]
    if config.http.tls.mode == "off":
        yield
        return
    state = app[TLS] = await asyncio.to_thread(TlsState.start, config, host_name(node_id(app[KEY])))

    async def refresh() -> None:
        await asyncio.to_thread(state.refresh)
    jobs = Jobs(app[SCHEDULER], "tls")
    jobs.every(CHECK_INTERVAL, refresh, name="certificate")
    try:
        yield
    finally:
        await jobs.close()
