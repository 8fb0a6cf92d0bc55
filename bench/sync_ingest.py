"""Benchmark: a node pulls 50,000 events from a peer over loopback HTTP, fresh and with 1M events already stored.

Each run measures the raw single-core PyNaCl verify rate, then times a fresh node's pull (wall clock) and a pull by
a node already holding `--stored` events (default 1,000,000), counting the CPU seconds that node consumed: its
process (every thread: the event loop, SQLite's, the verify thread) and its child processes (the verify worker),
read from /proc, not the wall clock. The stored events are built once per run of the benchmark through the node's
own write path (EventStore.commit) into a database file that each run copies (`--store-cache FILE` keeps it between
invocations). Prints, last, `sync_ingest_ratio=<median fresh ingest rate / median raw verify rate>` and
`sync_ingest_cpu_ratio=<median events per CPU second at --stored / median raw verifies per CPU second>` (targets: at least 0.5
each). The serving peer is a separate `nnode run` process, as it would be another machine.

    python bench/sync_ingest.py [--events 50000] [--runs 3] [--stored 1000000] [--store-cache FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
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
    """User + system CPU seconds of a process (all its threads), from /proc; 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> set[int]:
    """The live child processes of `pid` (those of each of its threads)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


class NodeCpu:
    """CPU seconds consumed by this process (the ingesting node: every thread) and its child processes (the verify
    worker) since `start()`. A child that starts later counts from zero; one that ends is counted through its last
    reading, taken by `sample()` (called while the node runs and at the end)."""

    def __init__(self) -> None:
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}

    def start(self) -> None:
        me = os.getpid()
        self.base = {pid: _cpu_seconds(pid) for pid in {me} | _children(me)}
        self.last = dict(self.base)

    def sample(self) -> None:
        me = os.getpid()
        for pid in {me} | _children(me):
            if (cpu := _cpu_seconds(pid)) > 0:
                self.last[pid] = cpu

    def threads(self) -> dict[str, float]:
        """CPU seconds of this process's threads so far (since they started), by Python thread name."""
        names = {t.native_id: t.name.split("-")[0] for t in threading.enumerate()}
        found: dict[str, float] = {}
        for task in Path(f"/proc/{os.getpid()}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                name = names.get(int(task.name), "other")
                found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return found

    def total(self) -> tuple[float, float]:
        """(this process's CPU seconds, its children's)."""
        me = os.getpid()
        own = self.last.get(me, 0.0) - self.base.get(me, 0.0)
        kids = sum(cpu - self.base.get(pid, 0.0) for pid, cpu in self.last.items() if pid != me)
        return own, kids


def raw_verify_rate(events, seconds: float = 3.0) -> tuple[float, float]:
    """Single-core ed25519 verifications with PyNaCl's VerifyKey.verify on these events: (per wall second, per CPU
    second of the verifying thread). On a shared machine the two differ by the time other processes took."""
    prepared = [(nacl.signing.VerifyKey(bytes.fromhex(e.author)), e.signed_message(), bytes.fromhex(e.sig))
                for e in events]
    done = 0
    start, cpu_start = time.perf_counter(), time.thread_time()
    while time.perf_counter() - start < seconds:
        for key, message, sig in prepared:
            key.verify(message, sig)
        done += len(prepared)
    return done / (time.perf_counter() - start), done / (time.thread_time() - cpu_start)


def make_events(count: int, authors: int, first: int = 0, tag: str = "benchmark") -> list:
    """`count` notice events from `authors` fresh authors, numbered from `first` (for the body text)."""
    registry = build_registry()
    keys = [nacl.signing.SigningKey.generate() for _ in range(authors)]
    return [create_event(keys[i % authors], registry, kind="notice", seq=i // authors + 1,
                         body={"text": f"{tag} event {first + i} " + "x" * 120, "title": "bench"}, ttl=86_400)
            for i in range(count)]


async def seed(data_dir: Path, count: int, authors: int) -> list:
    """Initialise the serving node and store `count` events from `authors` authors in it."""
    config = build({"node.data_dir": str(data_dir)})
    await initialise(config)
    events = make_events(count, authors)
    db = await Database.open(config.db_path)
    await setup_schema(db)
    store = EventStore(db)
    for start in range(0, count, 5000):
        await store.commit(events[start:start + 5000], [], "bench")
    await db.close()
    return events


def _make_chunk(args: tuple[int, int, int]) -> list:
    count, authors, first = args
    return make_events(count, authors, first, tag="stored")


async def build_store(path: Path, count: int) -> None:
    """A node database holding `count` events of 1,000-event authors, written through EventStore.commit."""
    data = path.parent / f"build-{time.monotonic_ns()}"
    config = build({"node.data_dir": str(data)})
    await initialise(config)
    db = await Database.open(config.db_path)
    store = EventStore(db)
    per_author, chunk = 1000, 20_000     # a chunk is 20 authors' whole histories
    jobs = [(min(chunk, count - start), min(chunk, count - start) // per_author or 1, start)
            for start in range(0, count, chunk)]
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max(1, (os.cpu_count() or 1))) as pool:
        pending = [loop.run_in_executor(pool, _make_chunk, job) for job in jobs[:2]]
        for index in range(len(jobs)):
            events = await pending.pop(0)
            if index + 2 < len(jobs):
                pending.append(loop.run_in_executor(pool, _make_chunk, jobs[index + 2]))
            for start in range(0, len(events), 5000):
                await store.commit(events[start:start + 5000], [], "bench")
    await db.close()
    shutil.move(config.db_path, path)
    shutil.rmtree(data, ignore_errors=True)


async def ingest_once(root: Path, server_url: str, server_id: str, server_config: Path, count: int,
                      stored: Path | None = None) -> tuple[float, float, float]:
    """Time a node pulling everything from the server, starting from a copy of `stored` (or fresh).

    Returns (events per wall second, this process's CPU seconds, its children's) for the pull itself."""
    data = root / f"puller-{time.monotonic_ns()}"
    config = build({"node.data_dir": str(data), "http.host": "127.0.0.1", "http.port": free_port(),
                    "discovery.enabled": False, "sync.anti_entropy_interval": 3600, "log.level": "warning"})
    create_data_dir(data)
    key = create_key(config.key_path)
    if stored is not None:
        await asyncio.to_thread(shutil.copyfile, stored, config.db_path)
    # The server's manager approves this puller, as `nnode peer approve` would, through the server's database.
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _APPROVE, str(server_config),
                                             key.verify_key.encode().hex()], check=True, cwd=ROOT)
    await initialise(config)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        held_before = await app[STORE].count()
        peer = await app[PEERS].seen(server_id, name="server", url=server_url, source="manual", approve=True)
        profiler = perf = None
        if os.environ.get("NNODE_BENCH_PROFILE") == "perf" and stored is not None:
            # Linux perf on this process and its verify worker, for the pull into the stored node only.
            perf = await asyncio.create_subprocess_exec(
                "perf", "record", "-F", "999", "-g", "-o", f"perf-{os.getpid()}.data", "-p", str(os.getpid()),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1)   # perf attaches asynchronously; a profile is no measurement
        elif os.environ.get("NNODE_BENCH_PROFILE"):
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        cpu = NodeCpu()
        cpu.start()
        threads_before = cpu.threads()
        sampling = asyncio.create_task(_sample(cpu))
        start = time.perf_counter()
        stored_now = await app[ENGINE].sync_with(peer)
        elapsed = time.perf_counter() - start
        sampling.cancel()
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            await perf.wait()
        cpu.sample()
        threads_after = cpu.threads()
        print("  CPU s by thread: " + ", ".join(f"{name} {spent - threads_before.get(name, 0.0):.2f}"
                                              for name, spent in sorted(threads_after.items())), file=sys.stderr)
        if profiler is not None:
            import pstats
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        held = await app[STORE].count()
        if held != held_before + count:
            raise SystemExit(f"puller holds {held} events after sync (stored {stored_now}), "
                             f"expected {held_before + count}")
        return (count / elapsed, *cpu.total())
    finally:
        await runner.cleanup()
        shutil.rmtree(data, ignore_errors=True)


async def _sample(cpu: NodeCpu) -> None:
    while True:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cpu.sample)


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


def _stored_store(root: Path, count: int, cache: str | None) -> Path:
    path = Path(cache) if cache else root / "stored.db"
    if path.exists():
        print(f"using the stored-events database {path}", flush=True)
        return path
    print(f"building a node database of {count:,} events through EventStore.commit ...", flush=True)
    started = time.monotonic()
    asyncio.run(build_store(path, count))
    print(f"built in {time.monotonic() - started:.0f} s ({path.stat().st_size / 2**20:,.0f} MiB)", flush=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--authors", type=int, default=50)
    parser.add_argument("--stored", type=int, default=1_000_000, help="events the node holds before its pull")
    parser.add_argument("--store-cache", help="database file of the stored events: built if absent, else reused")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nnbench"))
    server = None
    try:
        stored = _stored_store(root, args.stored, args.store_cache)
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
        verify_rates, verify_cpu_rates, ingest_rates, cpu_rates = [], [], [], []
        for run in range(args.runs):
            wall_rate, cpu_rate = raw_verify_rate(events[:2000], seconds=2.0)
            verify_rates.append(wall_rate)
            verify_cpu_rates.append(cpu_rate)
            with contextlib.redirect_stdout(io.StringIO()):   # the puller's claim banner, likewise
                rate, _, _ = asyncio.run(ingest_once(root, url, server_id, config, args.events))
                held_rate, own, kids = asyncio.run(ingest_once(root, url, server_id, config, args.events, stored))
            ingest_rates.append(rate)
            cpu_rates.append(args.events / (own + kids))
            print(f"run {run + 1}: raw verify {wall_rate:,.0f}/s ({cpu_rate:,.0f} per CPU s)  fresh ingest {rate:,.0f} events/s  "
                  f"with {args.stored:,} stored: {held_rate:,.0f} events/s, CPU {own:.2f} s node process + "
                  f"{kids:.2f} s its subprocesses = {cpu_rates[-1]:,.0f} events per CPU second "
                  f"({1e6 / cpu_rates[-1]:.0f} us/event)", flush=True)
        verify = statistics.median(verify_rates)
        verify_cpu = statistics.median(verify_cpu_rates)
        ingest = statistics.median(ingest_rates)
        per_cpu = statistics.median(cpu_rates)
        print(f"raw PyNaCl verify rate (single core, median of {args.runs}): {verify:,.0f}/s, "
              f"{verify_cpu:,.0f} per CPU second ({1e6 / verify_cpu:.0f} us of CPU per verify)")
        print(f"fresh node ingest rate over loopback HTTP (median of {args.runs}): {ingest:,.0f} events/s "
              f"({args.events / ingest:.1f} s for {args.events} events)")
        print(f"ingest with {args.stored:,} stored (median of {args.runs}): {per_cpu:,.0f} events per CPU second "
              f"of the ingesting node (all its threads and processes)")
        print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"sync_ingest_ratio={ingest / verify:.3f}")
        print(f"sync_ingest_cpu_ratio={per_cpu / verify_cpu:.3f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
