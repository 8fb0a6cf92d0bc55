"""The camera feature's lifecycle: the clip index, recording every configured camera, retention and free space."""

from __future__ import annotations

import asyncio
import importlib
from typing import AsyncIterator

from aiohttp import web

from node.camera.clips import ClipIndex
from node.camera.manager import Cameras
from node.keys import CAMERAS, CLIPS, CONFIG, DB, HUB, SCHEDULER
from node.periodic import Jobs


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Record the configured cameras; keep retention and the free-space guard."""
    config = app[CONFIG]
    index = app[CLIPS] = ClipIndex(app[DB], config.node.data_dir / "clips")
    await index.reconcile()  # finish what a crash interrupted before anything new is written
    cameras = app[CAMERAS] = Cameras(config.cameras.devices, index, config.node.data_dir,
                                     min_free_mb=config.cameras.min_free_mb,
                                     min_free_percent=config.cameras.min_free_percent,
                                     hold_before=config.sos.hold_before if config.cameras.devices else 0,
                                     publish=app[HUB].publish)

    async def guard() -> None:
        await cameras.check(config.cameras.upload_retention_days)
    await cameras.rescue()  # SOS footage a crash left in the rings, before the rings are cleared
    if config.cameras.devices:   # the camera manager needs OpenCV, which takes a while to load: not in the loop
        await asyncio.to_thread(importlib.import_module, "node.camera.motion")
    cameras.start()
    jobs = Jobs(app[SCHEDULER], "camera")
    jobs.every(config.cameras.check_interval, guard, name="retention", now=True)
    try:
        yield
    finally:
        await jobs.close()
        await cameras.close()
