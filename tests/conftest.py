"""Shared fixtures: real nodes on loopback ports with their own database files, and the checks every test gets:
no thread or asyncio task left running, no blocking call inside the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
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
from blockbuster import blockbuster_ctx

from node.app import create_app
from node.cli import initialise
from node.config import build
from node.federation.lifecycle import engine_ctx
from node.identity import load_key
from node.keys import ENGINE, KEY, PEERS, STORE, TLS
from sync import sign_request

# A failed push or pull is retried this soon in tests (the defaults, seconds, suit a real network).
PUSH_RETRY_DELAY = 0.2
FAILED_PEER_RETRY = 0.5


def bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1 (port 0: one the kernel picks), for `web.SockSite`.

    Bound, so the port is this test's from now on, but not listening: until the server starts, a connection to it
    is refused, as by a node that is down (asyncio's create_server calls listen). SO_REUSEADDR, as aiohttp's own
    test servers have it, so the node can bind its port again after a stop (its closed connections linger in
    TIME_WAIT); the kernel never hands a port someone holds to another bind to port 0."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a subprocess that binds it itself.

    Racy by nature (the port is free when chosen, and may be taken before the process binds it), so a caller retries
    with a new port when its process reports 'address already in use' (tests/procs.py does). A server in this process
    uses `bound_socket()` instead."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def serving(app: web.Application):
    """Serve a stand-in HTTP app (a rogue or flaky peer) on a loopback port of its own; yields its base URL."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    runner = web.AppRunner(app)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()   # closes the socket with the server


@pytest.fixture
def short_tmp():
    """A short temporary folder (Unix socket paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="nn", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _quick_retries(app: web.Application):
    """Shrink the engine's retry delays before it starts syncing (a cleanup context placed after its own)."""
    engine = app[ENGINE]
    engine.settings = dataclasses.replace(engine.settings, push_retry_delay=PUSH_RETRY_DELAY,
                                          failed_peer_retry=FAILED_PEER_RETRY)
    yield


class Node:
    """One node: a real aiohttp server on its own loopback port with its own data folder.

    Port 0 binds a socket now and the config carries its port (claim-code links and mDNS use `http.port`); the
    socket stays bound until the first start, so the port cannot be taken meanwhile. A later start (after `stop()`),
    or a node made with a fixed port, binds that port again."""

    def __init__(self, data_dir: Path, port: int, name: str, overrides: dict[str, Any]) -> None:
        self._sock = bound_socket() if port == 0 else None
        if self._sock is not None:
            port = self._sock.getsockname()[1]
        values = {"node.data_dir": str(data_dir), "node.name": name, "http.host": "127.0.0.1",
                  "http.port": port, "discovery.enabled": False, "log.format": "text",
                  # The sharing flow after the cooling-off period; its own tests set one.
                  "agencies.cooling_off_seconds": 0}
        values.update(overrides)
        # HTTPS (http.tls) on a second bound socket of its own, the same way.
        tls = values.get("http.tls")
        self._tls_sock = self.tls_port = None
        if isinstance(tls, dict) and tls.get("mode", "off") != "off":
            self._tls_sock = bound_socket() if not tls.get("port") else None
            self.tls_port = self._tls_sock.getsockname()[1] if self._tls_sock is not None else tls["port"]
            values["http.tls"] = tls | {"port": self.tls_port}
        self.config = build(values)
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self._key: nacl.signing.SigningKey | None = None

    @property
    def key(self) -> nacl.signing.SigningKey:
        """The node's signing key (the running app's; else the one `initialise` returned; else read from disk)."""
        if self.app is not None:
            return self.app[KEY]
        if self._key is None:
            self._key = load_key(self.config.key_path)
        return self._key

    @property
    def id(self) -> str:
        """The node's id: its public key in hex."""
        return self.key.verify_key.encode().hex()

    async def start(self) -> "Node":
        """Serve the node on its port (again, after `stop()`)."""
        if self._key is None:
            self._key = await asyncio.to_thread(load_key, self.config.key_path)
        sock, self._sock = self._sock or bound_socket(self.port), None
        self.app = create_app(self.config, self._key)
        self.app.cleanup_ctx.insert(self.app.cleanup_ctx.index(engine_ctx) + 1, _quick_retries)
        self.runner = web.AppRunner(self.app, access_log=None)
        try:
            await self.runner.setup()
            await web.SockSite(self.runner, sock).start()
            if self.tls_port is not None:
                tls_sock, self._tls_sock = self._tls_sock or bound_socket(self.tls_port), None
                await web.SockSite(self.runner, tls_sock, ssl_context=self.app[TLS].context).start()
        except BaseException:
            await self.stop()
            sock.close()
            raise
        self._key = self.app[KEY]
        return self

    async def stop(self) -> None:
        """Stop serving and release the port (safe to call twice, or on a node never started)."""
        if self.runner is not None:
            await self.runner.cleanup()   # closes the listening socket with the server
        for held in (self._sock, self._tls_sock):
            if held is not None:
                held.close()
        self._sock = self._tls_sock = None
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
        node = Node(short_tmp / name, 0, name, flat)
        nodes.append(node)
        node._key, _ = await initialise(node.config)
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


@pytest.fixture(autouse=True)
def no_lingering_tasks(request: pytest.FixtureRequest) -> None:
    """Fail an async test that leaves asyncio tasks running (checked on the test's own loop, after its nodes stopped).

    Requested here, first among the test's fixtures, the check is set up before any node fixture and so torn down
    after them all; a plain test gets no event loop for it."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        request.getfixturevalue("_tasks_left_check")


@pytest.fixture
async def _tasks_left_check():
    """After the test: give its tasks a bounded chance to end, then fail naming those still running."""
    yield
    me = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def running() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks(loop) if t is not me and not t.done()]

    deadline = loop.time() + 5
    while (left := running()) and (remaining := deadline - loop.time()) > 0:
        await asyncio.wait(left, timeout=remaining)     # returns as soon as they have all ended
    if not left:
        return
    names = sorted(f"{t.get_name()} ({getattr(t.get_coro(), '__qualname__', t.get_coro())})" for t in left)
    for task in left:
        task.cancel()
    await asyncio.wait(left, timeout=5)                 # cancelled, so the loop closes without complaint
    pytest.fail(f"asyncio tasks left running: {names}")


# Blocking calls that node/ code makes on the event loop and that are tolerated, each with why:
# (file, functions on the stack, blocking calls allowed below them). Anything else fails the test.
_FILES = ["os.stat", "os.mkdir", "os.unlink", "os.rmdir", "os.scandir", "os.path.samestat"]
TOLERATED_BLOCKING: list[tuple[str, set[str], list[str]]] = [
    # Start-up and shutdown (cleanup contexts): the node does not serve yet, or no longer, so nothing waits on the
    # loop; each is a few metadata calls on the node's own folders.
    ("node/app.py", {"_database_ctx"}, ["os.stat"]),
    ("node/appliance/lifecycle.py", {"control_ctx"}, ["os.stat", "os.unlink"]),
    ("node/camera/clips.py", {"reconcile"}, ["os.stat"]),
    ("node/camera/manager.py", {"start"}, _FILES),
    ("node/sharing/delivery.py", {"start"}, _FILES),
    # apscheduler's AsyncIOScheduler asks tzlocal for the local zone when it is made (start-up; cached after).
    ("node/periodic.py", {"scheduler"}, ["os.stat", "os.path.islink", "os.readlink", "os.path.abspath",
                                          "io.BufferedReader.read", "io.TextIOWrapper.read"]),
    # The agency's command-line tool is a program of its own (tests run it in a thread): one task on its own loop.
    ("node/sharing/agency_cli.py", {"main"}, ["os.stat", "os.replace"]),
    # Log lines go to stderr (the journal) through the standard library's synchronous handlers, as aiohttp's access
    # log does; a line is small and the stream is a pipe.
    ("logging/__init__.py", {"emit", "flush"}, ["io.TextIOWrapper.write", "io.BufferedWriter.write"]),
]


@pytest.fixture(autouse=True)
def no_blocking_calls():
    """Fail a test in which node/ or sync/ code makes a blocking call inside the event loop (blockbuster).

    Only calls with node/ or sync/ on the stack count (as aiohttp's suite scans aiohttp): a test's own file work
    between requests is not the product's, but a test calling a blocking product function on the loop is caught."""
    with blockbuster_ctx(["node", "sync"]) as bb:
        for where, functions, calls in TOLERATED_BLOCKING:
            for call in calls:
                bb.functions[call].can_block_in(where, functions)
        yield bb
