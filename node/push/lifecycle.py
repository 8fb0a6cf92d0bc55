"""The push feature's lifecycle: the VAPID key, the sender, and the live hub telling it each message."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from node import __version__
from node.keys import CONFIG, DB, HUB, PUSH
from node.push.sender import Pusher, load_vapid
from node.push.store import Subscriptions


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Load (or make) the VAPID key and push each waking message to the devices it wakes, until shutdown."""
    config = app[CONFIG]
    vapid = await asyncio.to_thread(load_vapid, config.node.data_dir)
    session = aiohttp.ClientSession(headers={"User-Agent": f"nnode/{__version__}"})
    pusher = app[PUSH] = Pusher(Subscriptions(app[DB]), config.push, vapid, session)
    hub = app[HUB]
    if config.push.enabled:
        pusher.start()
        hub.listeners.append(pusher.offer)
    try:
        yield
    finally:
        if pusher.offer in hub.listeners:
            hub.listeners.remove(pusher.offer)
        await pusher.close()
        await session.close()
