"""Benchmark: what a resident's and a peer's requests cost as the event store grows.

Builds stores of 1k, 100k and 1M events through the node's own write path (`EventStore.commit`; one store grown in
steps and copied at each size), each with the same 20 alerts in force and 10 shared reports; the rest are notices
from 100 authors and, one in fifty, old alerts whose bodies expiry has purged. Then it serves each store with a real
node (`nnode run`, one process per store) on loopback and times, over interleaved rounds (the stores in a new
random order each round), the routes GET /api/timeline, /api/alerts, /alerts.atom, /healthz and /metrics (signed
in as the manager), the sync endpoints GET /sync/v1/heads and a POST /sync/v1/pull with nothing new (signed by an
approved peer, sending the node's own heads and tips), and the caller's side of an anti-entropy round read from the
store (heads and tips, gaps). Prints each one's median and p99 per store, then `store_scale_ratio=<slowest route
at the largest store / same route at the smallest>` (target: at most 2).

    python bench/store_scale.py [--sizes 1000,100000,1000000] [--rounds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.cli import initialise  # noqa: E402
from node.config import build  # noqa: E402
from node.federation.kinds import build_registry  # noqa: E402
from node.safety.alerts import manager_alert  # noqa: E402
from sync import Database, EventStore, PeerStore, create_event, setup_schema, sign_request  # noqa: E402

ROUTES = ["/api/timeline", "/api/alerts", "/alerts.atom", "/healthz", "/metrics"]
SYNC_STEPS = ["heads", "pull (nothing new)", "store: heads and tips", "store: gaps"]
AUTHORS = 100
PASSWORD = "correct horse battery"
CHUNK = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alert(key: nacl.signing.SigningKey, name: str, now: int) -> dict:
    fields = {"event": name, "headline": f"{name} near the park", "severity": "Severe", "urgency": "Immediate",
              "certainty": "Observed", "category": "Safety", "expires_hours": 24}
    return manager_alert(fields, node_key=key.verify_key.encode().hex(), node_name="Bench building", location=None,
                         now=now)


class Builder:
    """Grows one store through EventStore.commit, as a node stores what its peers send."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.registry = build_registry()
        self.keys = [nacl.signing.SigningKey.generate() for _ in range(AUTHORS)]
        self.seqs = [0] * AUTHORS
        self.held = 0
        self.now = int(time.time())
        self.old_cap = _alert(self.keys[0], "Old warning", self.now - 30 * 86_400)

    def _next(self, author: int, kind: str, body: dict, *, ttl: int, now: int | None = None):
        self.seqs[author] += 1
        return create_event(self.keys[author], self.registry, kind=kind, seq=self.seqs[author], body=body, ttl=ttl,
                            now=now)

    async def fixed(self) -> None:
        """The 20 alerts in force and the 10 shared reports every store holds."""
        events = [self._next(i % AUTHORS, "alert", {"cap": _alert(self.keys[i % AUTHORS], f"Warning {i}", self.now)},
                             ttl=86_400) for i in range(20)]
        events += [self._next(i % AUTHORS, "report", {"category": "safety-hazard", "what": f"Broken stair rail {i}",
                                                      "where": "Block C", "when": "", "created": self.now - i},
                              ttl=7 * 86_400) for i in range(10)]
        await self.store.commit(events, [], "bench")
        self.held += len(events)

    async def grow_to(self, size: int) -> None:
        while self.held < size:
            events = []
            for i in range(min(CHUNK, size - self.held)):
                n = self.held + i
                author = n % AUTHORS
                if n % 50 == 0:    # an old alert, long expired
                    events.append(self._next(author, "alert", {"cap": self.old_cap}, ttl=3600,
                                             now=self.now - 30 * 86_400))
                else:
                    events.append(self._next(author, "notice", {"title": "bench", "text": f"event {n} " + "x" * 100},
                                             ttl=90 * 86_400))
            await self.store.commit(events, [], "bench")
            self.held += len(events)
        await self.store.purge_expired(now=self.now)


async def build_stores(root: Path, sizes: list[int], peer: nacl.signing.SigningKey) -> dict[int, Path]:
    """A data folder per size, each an initialised node holding `size` events, with `peer` approved."""
    seed = root / "seed"
    config = build({"node.data_dir": str(seed)})
    await initialise(config)
    db = await Database.open(config.db_path)
    await setup_schema(db)
    await PeerStore(db).seen(peer.verify_key.encode().hex(), name="bench peer", url=None, source="manual",
                             approve=True)
    builder = Builder(EventStore(db))
    await builder.fixed()
    folders: dict[int, Path] = {}
    try:
        for size in sorted(sizes):
            start = time.perf_counter()
            await builder.grow_to(size)
            await db.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            folders[size] = root / f"store-{size}"
            await asyncio.to_thread(shutil.copytree, seed, folders[size])
            print(f"built {size:,} events in {time.perf_counter() - start:.1f} s "
                  f"({(folders[size] / 'node.db').stat().st_size / 1e6:,.0f} MB)", flush=True)
    finally:
        await db.close()
    return folders


class Served:
    """One store served by `nnode run`, with a manager signed in."""

    def __init__(self, size: int, folder: Path) -> None:
        self.size = size
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        config = self.folder / "bench.toml"
        config.write_text(f'[node]\ndata_dir = "{self.folder}"\n[http]\nhost = "127.0.0.1"\nport = {self.port}\n'
                          f'[discovery]\nenabled = false\n[sync]\nrate_limit = 100000\nrate_burst = 100000\n'
                          f'anti_entropy_interval = 3600\n[log]\nlevel = "warning"\n')
        self.process = await asyncio.to_thread(
            subprocess.Popen, [sys.executable, "-m", "node", "--config", str(config), "run"], cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        code = await asyncio.to_thread(self._claim_code)
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        for _ in range(600):   # the banner comes before the server listens
            try:
                async with self.session.get(self.url + "/healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        async with self.session.post(self.url + "/setup/claim", json={"code": code, "password": PASSWORD}) as resp:
            if resp.status != 200:
                raise SystemExit(f"claiming the {self.size:,} node failed: {resp.status} {await resp.text()}")

    def _claim_code(self) -> str:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if found := re.search(r"Claim code: (\S+)", line):
                threading_drain(self.process.stdout)
                return found.group(1)
        raise SystemExit(f"the {self.size:,} node exited before printing its claim code")

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.process is not None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 30)


def threading_drain(stream) -> None:
    """Read the rest of a child's stdout in a thread, so a full pipe never blocks it."""
    import threading
    threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()


async def _timed_get(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    async with session.get(url, headers=headers) as resp:
        await resp.read()
        if resp.status != 200:
            raise SystemExit(f"GET {url}: {resp.status}")
    return time.perf_counter() - start


async def one_round(node: Served, peer: nacl.signing.SigningKey, store: EventStore, plain: aiohttp.ClientSession,
                    times: dict[tuple[int, str], list[float]]) -> None:
    """Each route and sync step once against one node."""
    assert node.session is not None
    for route in ROUTES:
        times[(node.size, route)].append(await _timed_get(node.session, node.url + route))
    url = node.url + "/sync/v1/heads"
    times[(node.size, "heads")].append(await _timed_get(plain, url, sign_request(peer, "GET", url, None)))
    start = time.perf_counter()
    heads, tips = await store.heads_and_tips()
    times[(node.size, "store: heads and tips")].append(time.perf_counter() - start)
    start = time.perf_counter()
    gaps = await store.gaps()
    times[(node.size, "store: gaps")].append(time.perf_counter() - start)
    url = node.url + "/sync/v1/pull"
    body = json.dumps({"heads": heads, "gaps": gaps, "tips": tips, "limit": 1000}).encode()
    headers = sign_request(peer, "POST", url, body) | {"Content-Type": "application/json"}
    start = time.perf_counter()
    async with plain.post(url, data=body, headers=headers) as resp:
        lines = (await resp.read()).splitlines()
        if resp.status != 200 or json.loads(lines[-1])["end"]["count"] != 0:
            raise SystemExit(f"pull with nothing new from the {node.size:,} node: {resp.status} {lines[-1]!r}")
    times[(node.size, "pull (nothing new)")].append(time.perf_counter() - start)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def measure(folders: dict[int, Path], peer: nacl.signing.SigningKey, rounds: int) -> None:
    nodes = [Served(size, folder) for size, folder in sorted(folders.items())]
    stores: dict[int, Database] = {}
    try:
        for node in nodes:
            start = time.perf_counter()
            await node.start()
            print(f"node with {node.size:,} events answering in {time.perf_counter() - start:.1f} s", flush=True)
            stores[node.size] = await Database.open(node.folder / "node.db")
        times: dict[tuple[int, str], list[float]] = {(n.size, step): [] for n in nodes for step in
                                                     ROUTES + SYNC_STEPS}
        async with aiohttp.ClientSession() as plain:
            for node in nodes:    # warm-up, not counted
                await one_round(node, peer, EventStore(stores[node.size]), plain, {k: [] for k in times})
            order = list(nodes)
            for _ in range(rounds):
                random.shuffle(order)   # no store always first (or last) in a round
                for node in order:
                    await one_round(node, peer, EventStore(stores[node.size]), plain, times)
        sizes = [n.size for n in nodes]
        print(f"\nmedian / p99 in ms over {rounds} interleaved rounds")
        print(f"{'':24}" + "".join(f"{size:>22,}" for size in sizes))
        for step in ROUTES + SYNC_STEPS:
            cells = [f"{statistics.median(times[(s, step)]) * 1e3:9.2f} / {_p99(times[(s, step)]) * 1e3:8.2f}"
                     for s in sizes]
            print(f"{step:24}" + "".join(f"{c:>22}" for c in cells))
        smallest, largest = sizes[0], sizes[-1]
        slowest = max(ROUTES, key=lambda r: statistics.median(times[(largest, r)]))
        ratio = statistics.median(times[(largest, slowest)]) / statistics.median(times[(smallest, slowest)])
        print(f"slowest route at {largest:,} events: {slowest}")
        print(f"store_scale_ratio={ratio:.2f}")
    finally:
        for db in stores.values():
            await db.close()
        for node in nodes:
            await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    root = Path(tempfile.mkdtemp(prefix="nnscale"))
    peer = nacl.signing.SigningKey.generate()
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores",
              flush=True)
        folders = asyncio.run(build_stores(root, sizes, peer))
        asyncio.run(measure(folders, peer, args.rounds))
        load = os.getloadavg()
        print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
