"""The appliance's lifecycle: the data folder's lock, and the control socket the CLI talks to."""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import AsyncIterator

from aiohttp import web

from node.appliance.control import control_app
from node.errors import NodeError
from node.keys import CONFIG


async def lock_ctx(app: web.Application) -> AsyncIterator[None]:
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


async def control_ctx(app: web.Application) -> AsyncIterator[None]:
    """Serve the control API on a Unix socket in the data folder, mode 0600."""
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
