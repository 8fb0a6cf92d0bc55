"""Shared fixtures: real nodes on loopback ports with their own database files, and a leak check."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
import nacl.signing
import pytest
from aiohttp import web

import sync._engine
from node.app import create_app
from node.cli import initialise
from node.config import build
from node.keys import ENGINE, PEERS, STORE
from sync import sign_request

sync._engine.PUSH_RETRY_DELAY = 0.2
sync._engine.FAILED_PEER_RETRY = 0.5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(app: web.Application):
    """Serve a stand-in HTTP app (a rogue or flaky peer) on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
def short_tmp():
    """A short temporary folder (Unix socket paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="nn", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Node:
    """One node: a real aiohttp server on its own loopback port with its own data folder."""

    def __init__(self, data_dir: Path, port: int, name: str, overrides: dict[str, Any]) -> None:
        values = {"node.data_dir": str(data_dir), "node.name": name, "http.host": "127.0.0.1",
                  "http.port": port, "discovery.enabled": False, "log.format": "text"}
        values.update(overrides)
        self.config = build(values)
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None

    @property
    def key(self) -> nacl.signing.SigningKey:
        from node.identity import load_key
        return load_key(self.config.key_path)

    @property
    def id(self) -> str:
        return self.key.verify_key.encode().hex()

    async def start(self) -> "Node":
        self.app = create_app(self.config)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.app = self.runner = None

    @property
    def engine(self):
        return self.app[ENGINE]

    @property
    def store(self):
        return self.app[STORE]

    @property
    def peers(self):
        return self.app[PEERS]

    async def approve(self, other: "Node") -> None:
        await self.peers.seen(other.id, name=other.name, url=other.url, source="manual", approve=True)
        await self.engine.refresh_peers()
        self.engine.wake()

    async def ids(self) -> set[str]:
        rows = await self.store.db.reader.execute_fetchall("SELECT id FROM events")
        return {r[0] for r in rows}


@pytest.fixture
async def make_node(short_tmp):
    """Factory: `await make_node("a", **config_overrides)` returns a started Node."""
    nodes: list[Node] = []

    async def factory(name: str, start: bool = True, **overrides: Any) -> Node:
        flat = {k.replace("__", "."): v for k, v in overrides.items()}
        node = Node(short_tmp / name, free_port(), name, flat)
        await initialise(node.config)
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> None:
    """Poll an async or plain predicate until true; fail with the timeout otherwise (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def signed(session: aiohttp.ClientSession, key: nacl.signing.SigningKey, method: str, url: str,
                 body: bytes | None = None, content_type: str = "application/x-ndjson", **kw):
    """Send a request signed with `key` (RFC 9421) and return (status, parsed JSON or text)."""
    headers = sign_request(key, method, url, body)
    if body is not None:
        headers["Content-Type"] = content_type
    headers.update(kw.pop("headers", {}))
    async with session.request(method, url, data=body, headers=headers, **kw) as resp:
        text = await resp.text()
        try:
            import json
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves threads running (aiosqlite, executors, zeroconf)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
        leaked += [t for t in threading.enumerate() if t not in before and t.is_alive()
                   and t.name.startswith(("nnode", "zeroconf"))]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"

