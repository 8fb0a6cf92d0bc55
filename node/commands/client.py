"""How commands reach the node: its control socket while it runs, its database file when it does not."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from node.config import Config
from node.errors import NodeError, NotInitialised
from sync import Database, setup_schema


async def control(config: Config, method: str, path: str, body: Any = None) -> Any:
    """Call the running node's control socket; NotInitialised if it is not running."""
    if not await asyncio.to_thread(config.control_socket.exists):
        raise NotInitialised(f"the node is not running (no control socket at {config.control_socket}); "
                             "start it with `nnode run`")
    connector = aiohttp.UnixConnector(path=str(config.control_socket))
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.request(method, f"http://node{path}", json=body) as resp:
                value = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise NodeError(value.get("error", f"HTTP {resp.status}"))
                return value
    except aiohttp.ClientConnectionError as exc:
        raise NotInitialised(f"the node is not running ({config.control_socket}: {exc})") from exc


async def open_db(config: Config) -> Database:
    """The node's database, for commands that work while the node is stopped; NotInitialised if there is none."""
    if not await asyncio.to_thread(config.db_path.exists):
        raise NotInitialised(f"{config.db_path}: no database; run `nnode init` first")
    db = await Database.open(config.db_path)
    await setup_schema(db)
    return db
