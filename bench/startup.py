"""Benchmark: start-up of `nnode run` to its first answer on /healthz, with 1k and with 1M events stored.

Each store is a claimed node (start-up of an unclaimed one also hashes a new claim code with scrypt, whatever its
size) with one approved peer configured at a loopback address where nothing listens, so its start-up sync round is
tried and fails as a peer that is down would. The 1M events are built once through the node's own write path
(EventStore.commit, as bench/sync_ingest.py builds them; `--store-cache FILE` keeps them between invocations), the 1k
store holds the first 1,000 of the same kind. Runs alternate the stores; each times from the process's start to the
first 200 from /healthz, and reads the CPU seconds the node process had used by then (on a shared machine the
wall time is not all its own). The node processes keep their compiled bytecode (in a folder of the run, whatever
PYTHONDONTWRITEBYTECODE says), as an installed node's is compiled at install: the first start, which claims the
node, compiles it, and the timed starts read it. Prints each run, the medians, `startup_growth=<median start-up at
the largest store / at 1k>` (target: at most 1.25, start-up flat in the store's size) and last
`startup_seconds=<median start-up at the largest store>` (target: at most 2).

    python bench/startup.py [--runs 5] [--stored 1000000] [--store-cache FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from sync_ingest import _cpu_seconds, build_store  # noqa: E402

from sync import Database, PeerStore, setup_schema  # noqa: E402

PASSWORD = "bench manager password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, port: int) -> Path:
    config = folder / "bench.toml"
    config.write_text(f'[node]\ndata_dir = "{folder}"\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
                      f'[discovery]\nenabled = false\n[log]\nlevel = "warning"\n')
    return config


def start(folder: Path) -> tuple[subprocess.Popen[str], str, float]:
    """Start `nnode run` on `folder`; (process, its URL, the monotonic time it was started)."""
    port = free_port()
    config = write_config(folder, port)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "node", "--config", str(config), "run"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=node_env(folder))
    return process, f"http://127.0.0.1:{port}", started


def node_env(folder: Path) -> dict[str, str]:
    """The node's environment: bytecode compiled once and kept beside the run's node folders, not in the tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder.parent / "pycache")
    return env


def wait_healthy(url: str, process: subprocess.Popen[str], deadline: float = 120.0) -> float:
    """The monotonic time /healthz first answered 200."""
    limit = time.monotonic() + deadline
    while time.monotonic() < limit:
        if process.poll() is not None:
            raise SystemExit(f"nnode run exited ({process.returncode}) before answering /healthz")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic()
        except OSError:
            time.sleep(0.01)
    raise SystemExit(f"/healthz did not answer within {deadline:.0f} s")


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=60)


def claim(folder: Path) -> None:
    """Start the node once and claim it, as its manager would, so that later start-ups are a claimed node's."""
    process, url, _ = start(folder)
    try:
        assert process.stdout is not None
        code = None
        for line in process.stdout:
            if found := re.search(r"Claim code: (\S+)", line):
                code = found[1]
                break
        if code is None:
            raise SystemExit("the node exited before printing its claim code")
        threading.Thread(target=lambda: [None for _ in process.stdout or []], daemon=True).start()
        wait_healthy(url, process)
        request = urllib.request.Request(url + "/setup/claim", method="POST", headers={"Content-Type": "application/json"},
                                         data=('{"code": "%s", "password": "%s"}' % (code, PASSWORD)).encode())
        with urllib.request.urlopen(request, timeout=30) as resp:
            if resp.status != 200:
                raise SystemExit(f"claiming failed: HTTP {resp.status}")
    finally:
        stop(process)


async def add_peer(folder: Path) -> None:
    """One approved peer at a loopback port where nothing listens."""
    db = await Database.open(folder / "node.db")
    try:
        await setup_schema(db)
        await PeerStore(db).seen(nacl.signing.SigningKey.generate().verify_key.encode().hex(), name="bench peer",
                                 url=f"http://127.0.0.1:{free_port()}", source="manual", approve=True)
    finally:
        await db.close()


def prepare(root: Path, name: str, db_file: Path | None) -> Path:
    """An initialised, claimed node folder holding `db_file`'s events, with one peer configured."""
    folder = root / name
    folder.mkdir()
    if db_file is not None:
        shutil.copyfile(db_file, folder / "node.db")
    subprocess.run([sys.executable, "-m", "node", "--config", str(write_config(folder, free_port())), "init"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, env=node_env(folder))
    claim(folder)
    asyncio.run(add_peer(folder))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--store-cache", help="database file of the stored events: built if absent, else reused")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nnstart"))
    try:
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores",
              flush=True)
        small_db, large_db = root / "small.db", Path(args.store_cache) if args.store_cache else root / "large.db"
        asyncio.run(build_store(small_db, 1000))
        if not large_db.exists():
            print(f"building a node database of {args.stored:,} events through EventStore.commit ...", flush=True)
            began = time.monotonic()
            asyncio.run(build_store(large_db, args.stored))
            print(f"built in {time.monotonic() - began:.0f} s", flush=True)
        folders = {"1k": prepare(root, "small", small_db), "large": prepare(root, "large", large_db)}
        times: dict[str, list[float]] = {name: [] for name in folders}
        cpu: dict[str, list[float]] = {name: [] for name in folders}
        for run in range(args.runs):
            for name, folder in (folders.items() if run % 2 == 0 else reversed(folders.items())):
                process, url, started = start(folder)
                try:
                    threading.Thread(target=lambda p=process: [None for _ in p.stdout or []], daemon=True).start()
                    times[name].append(wait_healthy(url, process) - started)
                    cpu[name].append(_cpu_seconds(process.pid))   # on a shared machine, wall time is not all its own
                finally:
                    stop(process)
            print(f"run {run + 1}: " + ", ".join(f"{name} {t[-1]:.2f} s ({cpu[name][-1]:.2f} s of CPU)"
                                                 for name, t in times.items()), flush=True)
        print(f"median start-up to /healthz over {args.runs} runs: 1,000 events {statistics.median(times['1k']):.2f} s "
              f"({statistics.median(cpu['1k']):.2f} s of CPU), {args.stored:,} events "
              f"{statistics.median(times['large']):.2f} s ({statistics.median(cpu['large']):.2f} s of CPU)")
        load = os.getloadavg()
        print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(f"startup_1k_seconds={statistics.median(times['1k']):.2f}")
        print(f"startup_growth={statistics.median(times['large']) / statistics.median(times['1k']):.2f}")
        print(f"startup_seconds={statistics.median(times['large']):.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
