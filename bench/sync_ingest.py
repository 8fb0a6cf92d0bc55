"""Benchmark: a fresh node pulls 50,000 events from a peer over loopback HTTP.

Prints the raw single-core PyNaCl verify rate measured in the same run, the ingest rate of each run and their
medians, and last `sync_ingest_ratio=<median ingest rate / median raw verify rate>` (target: at least 0.5).
The serving peer is a separate `nnode run` process, as it would be another machine.

    python bench/sync_ingest.py [--events 50000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from node.app import create_app  # noqa: E402
from node.cli import initialise  # noqa: E402
from node.config import build  # noqa: E402
from node.federation.kinds import build_registry  # noqa: E402
from node.identity import create_data_dir, create_key  # noqa: E402
from node.keys import ENGINE, PEERS, STORE  # noqa: E402
from sync import Database, EventStore, create_event, setup_schema  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_verify_rate(events, seconds: float = 3.0) -> float:
    """Single-core ed25519 verifications per second with PyNaCl's VerifyKey.verify, on these events."""
    prepared = [(nacl.signing.VerifyKey(bytes.fromhex(e.author)), e.signed_message(), bytes.fromhex(e.sig))
                for e in events]
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for key, message, sig in prepared:
            key.verify(message, sig)
        done += len(prepared)
    return done / (time.perf_counter() - start)


async def seed(data_dir: Path, count: int, authors: int) -> list:
    """Initialise the serving node and store `count` events from `authors` authors in it."""
    config = build({"node.data_dir": str(data_dir)})
    await initialise(config)
    registry = build_registry()
    keys = [nacl.signing.SigningKey.generate() for _ in range(authors)]
    events = [create_event(keys[i % authors], registry, kind="notice", seq=i // authors + 1,
                           body={"text": f"benchmark event {i} " + "x" * 120, "title": "bench"}, ttl=86_400)
              for i in range(count)]
    db = await Database.open(config.db_path)
    await setup_schema(db)
    store = EventStore(db)
    for start in range(0, count, 5000):
        await store.commit(events[start:start + 5000], [], "bench")
    await db.close()
    return events


async def ingest_once(root: Path, server_url: str, server_id: str, server_config: Path, count: int) -> float:
    """Time a fresh node pulling everything from the server; returns events per second."""
    data = root / f"puller-{time.monotonic_ns()}"
    config = build({"node.data_dir": str(data), "http.host": "127.0.0.1", "http.port": free_port(),
                    "discovery.enabled": False, "sync.anti_entropy_interval": 3600, "log.level": "warning"})
    create_data_dir(data)
    key = create_key(config.key_path)
    # The server's manager approves this puller, as `nnode peer approve` would, through the server's database.
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _APPROVE, str(server_config),
                                             key.verify_key.encode().hex()], check=True, cwd=ROOT)
    await initialise(config)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        peer = await app[PEERS].seen(server_id, name="server", url=server_url, source="manual", approve=True)
        profiler = None
        if os.environ.get("NNODE_BENCH_PROFILE"):
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        start = time.perf_counter()
        stored = await app[ENGINE].sync_with(peer)
        elapsed = time.perf_counter() - start
        if profiler is not None:
            import pstats
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        held = await app[STORE].count()
        if held != count:
            raise SystemExit(f"puller holds {held} events after sync (stored {stored}), expected {count}")
        return count / elapsed
    finally:
        await runner.cleanup()
        shutil.rmtree(data, ignore_errors=True)


_APPROVE = """
import asyncio, sys
from node.config import load
from sync import Database, PeerStore, setup_schema
async def main():
    config = load(sys.argv[1])
    db = await Database.open(config.db_path)
    await setup_schema(db)
    await PeerStore(db).seen(sys.argv[2], name="bench puller", url=None, source="manual", approve=True)
    await db.close()
asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--authors", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nnbench"))
    server = None
    try:
        print(f"seeding {args.events} events from {args.authors} authors ...", flush=True)
        events = asyncio.run(seed(root / "server", args.events, args.authors))
        port = free_port()
        config = root / "server.toml"
        config.write_text(f'[node]\ndata_dir = "{root / "server"}"\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
                          f'[discovery]\nenabled = false\n[sync]\nrate_limit = 100000\n'
                          f'rate_burst = 100000\nanti_entropy_interval = 3600\n[log]\nlevel = "warning"\n')
        # stdout of an unclaimed node carries its claim banner, which is not a figure of this benchmark.
        server = subprocess.Popen([sys.executable, "-m", "node", "--config", str(config), "run"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        server_id = nacl.signing.SigningKey((root / "server" / "node.key").read_bytes()).verify_key.encode().hex()
        verify_rates, ingest_rates = [], []
        for run in range(args.runs):
            verify_rates.append(raw_verify_rate(events[:2000], seconds=2.0))
            cpu_before = _cpu_seconds(server.pid), resource.getrusage(resource.RUSAGE_SELF), \
                resource.getrusage(resource.RUSAGE_CHILDREN)
            with contextlib.redirect_stdout(io.StringIO()):   # the puller's claim banner, likewise
                rate = asyncio.run(ingest_once(root, url, server_id, config, args.events))
            ingest_rates.append(rate)
            server_cpu = _cpu_seconds(server.pid) - cpu_before[0]
            own = resource.getrusage(resource.RUSAGE_SELF)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            puller_cpu = own.ru_utime + own.ru_stime - cpu_before[1].ru_utime - cpu_before[1].ru_stime
            worker_cpu = children.ru_utime + children.ru_stime - cpu_before[2].ru_utime - cpu_before[2].ru_stime
            print(f"run {run + 1}: raw verify {verify_rates[-1]:,.0f}/s  ingest {rate:,.0f} events/s  "
                  f"(CPU s, set-up included: puller {puller_cpu:.2f}, its subprocesses {worker_cpu:.2f}, "
                  f"server {server_cpu:.2f})", flush=True)
        verify = statistics.median(verify_rates)
        ingest = statistics.median(ingest_rates)
        print(f"raw PyNaCl verify rate (single core, median of {args.runs}): {verify:,.0f}/s")
        print(f"ingest rate over loopback HTTP (median of {args.runs}): {ingest:,.0f} events/s "
              f"({args.events / ingest:.1f} s for {args.events} events)")
        print(f"sync_ingest_ratio={ingest / verify:.3f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
