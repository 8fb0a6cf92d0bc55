"""Benchmark: ten minutes of steady load on a node with two syncing peers: errors, latencies and memory growth.

Three real nodes (`nnode init`, then `nnode run`, each in its own process on a free loopback port, discovery off) list
each other in `sync.peers`, so every pair is approved and syncs both ways: pushes at once, anti-entropy pulls every
`--anti-entropy` seconds (the shipped default, 30). On the node under test (A), the manager invites `--residents`
residents, who join from a spread of loopback addresses (127.0.0.2 and up, as few per address as the sign-in limit
lets through) and hold `--connections` live streams on /api/stream between them, opened from client processes (this
file, run with --client) from each resident's own address. Then, for `--minutes`:

- residents post `--rate` reports a second (POST /api/reports, each valid under the anti-profiling rules: what
  happened first, a person only with two details or more), round-robin, so each resident posts once every
  residents / rate seconds; A's manager shares every `--share-every`th report with the neighborhood, which makes a
  signed event pushed to both peers;
- each peer's manager posts and shares `--peer-rate` reports a second, which reach A and the other peer by sync.

Measured: the POST round trip; delivery, from just before a report's POST is sent to its arrival on each of A's
streams (the send time travels in the report's text, on CLOCK_MONOTONIC, one clock for every process on Linux); sync
propagation, from just before a share is sent to the event's arrival on a manager's stream on each other node; and
the RSS of A's process after the warm-up (`--warmup` seconds, default the first minute, or a fifth of a shorter run)
and at the end. Latencies count reports posted after the warm-up; errors count the whole run: failed posts and
shares, dropped streams, reports a stream missed or got twice, events that did not reach a node within
anti-entropy + DRAIN seconds of the end, ERROR lines in the nodes' logs, a node that exited. Prints the figures,
`soak_errors=<N>` (target 0) and last `soak_memory_growth=<end RSS / warm RSS>` (target at most 1.1).

    python bench/soak.py [--minutes 10] [--rate 50] [--residents 500] [--connections 1000] [--procs 4]

Every loop is bounded in count and in time; the bench stops by itself, and every process it started ends with it.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_clients import open_sse, reads  # noqa: E402 - found through the sys.path line above
from fanout import Processes, _cpu_seconds, _tail, free_port, percentile  # noqa: E402 - as the line above

PASSWORD = "soak bench password"
START_TIMEOUT = 30.0      # seconds for a node to start answering
READY_TIMEOUT = 180.0     # seconds for the client processes to open every stream
HTTP_TIMEOUT = 30.0       # seconds one API call may take before it counts as failed
MAX_IN_FLIGHT = 400       # posts awaiting their answer at once; past it the poster waits (and the rate shows it)
JOINS_PER_ADDRESS = 15    # under the sign-in limiter's burst of 20 per address
DRAIN = 15.0              # seconds after the last post for deliveries to finish (plus one anti-entropy interval)
RSS_EVERY = 5.0           # seconds between RSS samples
HIST_NS = 100_000         # delivery latency histogram bins: 0.1 ms

# Deliveries as the clients see them: a building report (this bench's, `soak#number#send-ns#`) on A's streams, or
# a neighborhood one (A's own shared event, relayed back to its pages, ignored); and a peer's shared report.
REPORT = re.compile(rb'"source":"(b|n)[a-z]*"[^{}]{0,300}?soak#(\d+)#(\d+)#')
PEER_REPORT = re.compile(rb"soakpeer#(\d+)#")

WHAT = ["someone tried every door handle in the bike room and left when the light came on",
        "a parcel was taken from the lobby shelf between the two deliveries this afternoon",
        "water is leaking from the ceiling of the stairwell between the second and third floor",
        "the side gate was propped open with a brick again and the latch is bent",
        "a grey van idled by the garage entrance for an hour with its lights off",
        "found a set of keys with a blue fob on the bench by the mailboxes"]
CATEGORIES = ["suspicious-activity", "crime", "safety-hazard", "safety-hazard", "suspicious-activity",
              "lost-and-found"]
PERSONS = [{"person_clothing": "dark green rain jacket, grey backpack", "person_height": "about 180 cm"},
           {"person_hair": "short, bleached", "person_age": "twenties", "person_vehicle": "red scooter"},
           {}]
PLACES = ["bike room", "lobby", "stairwell B", "side gate", "garage entrance", "mailboxes"]


def report_body(number: int, sent_ns: int) -> dict:
    """A valid report carrying its number and send time in what happened."""
    k = number % len(WHAT)
    return {"category": CATEGORIES[k], "what": f"Soak report soak#{number}#{sent_ns}# {WHAT[k]}",
            "where": PLACES[k], "when": time.strftime("%Y-%m-%dT%H:%M"), **PERSONS[number % len(PERSONS)]}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def quantiles(values: list[float]) -> str:
    """p50 / p99 / max of `values` in ms, or a dash."""
    if not values:
        return "-"
    ordered = sorted(values)
    return f"p50 {percentile(ordered, 50):8.2f}  p99 {percentile(ordered, 99):8.2f}  max {ordered[-1]:8.2f}  " \
           f"(n={len(ordered)})"


def hist_quantile(hist: Counter, q: float) -> float:
    """Nearest-rank percentile (ms) of a histogram of HIST_NS bins."""
    total = sum(hist.values())
    rank, seen = max(1, math.ceil(q / 100 * total)), 0
    for bin_, count in sorted(hist.items()):
        seen += count
        if seen >= rank:
            return (bin_ + 0.5) * HIST_NS / 1e6
    return math.nan


# -- client processes --------------------------------------------------------------------------------------------

def open_stream(port: int, address: str, cookie: str) -> tuple[socket.socket, bytes]:
    """A stream from `address` that the node has subscribed; the bytes after its headers."""
    return open_sse(port, f"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                          f"Cookie: nnode_session={cookie}\r\n\r\n".encode(), source=address)


def run_client(spec: dict) -> int:
    """Open the streams in `spec`, print `ready N`, tally deliveries until `stop` on stdin, print one JSON line.

    Blocking set-up, then one epoll loop over non-blocking sockets: a read costs a recv, a clock read and a regex
    scan, so the clients add little to what is measured. Memory is bounded: one byte per (stream, report).
    """
    reports, peer_reports, warm = spec["reports"], spec["peer_reports"], spec["warm_from"]
    deadline = time.monotonic() + spec["lifetime"]
    conns: dict[int, dict] = {}
    try:
        for address, cookie in spec["streams"]:
            for attempt in range(5):
                try:
                    sock, pending = open_stream(spec["port"], address, cookie)
                    break
                except (OSError, ConnectionError) as exc:
                    error = exc
                    time.sleep(0.2 * (attempt + 1))
            else:
                raise ConnectionError(f"could not open a stream from {address}: {error!r}")
            sock.setblocking(False)
            conns[sock.fileno()] = {"sock": sock, "buf": bytearray(pending), "seen": bytearray(reports),
                                    "peer_seen": bytearray(peer_reports), "open": True}
    except (OSError, ConnectionError) as exc:
        print(f"error {exc!r}", flush=True)
        return 1
    counts, peer_counts = array.array("I", bytes(4 * reports)), array.array("I", bytes(4 * peer_reports))
    hist: Counter = Counter()
    tally = Counter()
    for fd, data, at in reads(conns, lambda c: c["sock"], deadline):
        conn = conns[fd]
        if not data:
            tally["lost"] += 1
            conn["open"] = False
            continue
        buf = conn["buf"]
        buf += data
        tally["bytes"] += len(data)
        # Only whole messages are scanned, once: up to the last blank line; the rest waits for its end.
        end = buf.rfind(b"\n\n") + 2
        if end < 2:
            continue
        # bytes.find and rfind run in C: a regex over every byte cost the clients most of a core at 50/s.
        pos = buf.find(b"soak#", 0, end)
        while pos >= 0:
            first = buf.find(b"#", pos + 5, end)
            second = buf.find(b"#", first + 1, end)
            source = buf.rfind(b'"source":"', max(0, pos - 400), pos)
            if source >= 0 and buf[source + 10] == 0x62 and buf.find(b"{", source, pos) < 0:   # "b"uilding
                number = int(buf[pos + 5:first])
                if number >= reports:
                    tally["extra"] += 1
                elif conn["seen"][number]:
                    tally["duplicates"] += 1
                else:
                    conn["seen"][number] = 1
                    counts[number] += 1
                    if number >= warm:
                        hist[(at - int(buf[first + 1:second])) // HIST_NS] += 1
            pos = buf.find(b"soak#", second, end)
        if buf.find(b"soakpeer#", 0, end) >= 0:
            for match in PEER_REPORT.finditer(buf, 0, end):
                number = int(match[1])
                if number >= peer_reports:
                    tally["extra"] += 1
                elif conn["peer_seen"][number]:
                    tally["peer_duplicates"] += 1
                else:
                    conn["peer_seen"][number] = 1
                    peer_counts[number] += 1
        del buf[:end]
    print(json.dumps({"counts": counts.tolist(), "peer_counts": peer_counts.tolist(), "hist": dict(hist),
                      "open": sum(c["open"] for c in conns.values()), **tally}), flush=True)
    for conn in conns.values():
        conn["sock"].close()
    return 0


# -- the nodes ---------------------------------------------------------------------------------------------------

class Node:
    """One `nnode run` process, claimed; `manager` is its manager's HTTP session."""

    def __init__(self, processes: Processes, root: Path, name: str) -> None:
        self.processes, self.name = processes, name
        self.dir = root / name
        self.dir.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = self.dir / "node.toml"
        self.log = self.dir / "node.log"
        self.id = ""

    def write_config(self, peers: list["Node"], anti_entropy: float) -> None:
        listed = ", ".join(f'{{url = "{p.url}", key = "{p.id}"}}' for p in peers)
        self.config.write_text(
            f'[node]\nname = "soak {self.name}"\ndata_dir = "{self.dir / "data"}"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.port}\n[discovery]\nenabled = false\n'
            f'[sync]\nanti_entropy_interval = {anti_entropy:g}\npeers = [{listed}]\n'
            f'[log]\nlevel = "warning"\nformat = "json"\n')

    async def init(self) -> None:
        self.write_config([], 30)
        init = await self.processes.start(sys.executable, "-m", "node", "--config", str(self.config), "init",
                                          cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(init.communicate(), START_TIMEOUT)
        if init.returncode != 0 or not (match := re.search(rb"node id: (\S+)", out)):
            raise RuntimeError(f"nnode init of {self.name} failed: {out[-500:]!r}")
        self.id = match[1].decode()

    async def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = await self.processes.start(sys.executable, "-m", "node", "--config", str(self.config),
                                                      "run", cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log)
        self.pid = self.process.pid
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), max(0.01, deadline - time.monotonic()))
            if not line:
                raise RuntimeError(f"node {self.name} exited before its claim banner:\n{_tail(self.log)}")
            if match := re.search(r"Claim code: (\S+)", line.decode()):
                code = match[1]
                break
        self.drainer = asyncio.create_task(self._drain())
        self.manager = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                             timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self.manager.get(self.url + "/healthz") as resp:
                    if resp.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}/healthz did not answer 200 within {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)
        await self.post(self.manager, "/setup/claim", {"code": code, "password": PASSWORD})

    async def _drain(self) -> None:
        while await self.process.stdout.read(65536):   # a full pipe would stall the node
            pass

    async def post(self, session: aiohttp.ClientSession, path: str, body: dict, **kwargs) -> dict:
        async with session.post(self.url + path, json=body, **kwargs) as resp:
            answer = await resp.json(content_type=None)
            if resp.status not in (200, 201):
                raise RuntimeError(f"{self.name} POST {path}: {resp.status} {str(answer)[:300]}")
            return answer

    def log_errors(self) -> list[str]:
        """ERROR and CRITICAL records in the node's log."""
        errors = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                if json.loads(line).get("level", "").upper() in ("ERROR", "CRITICAL"):
                    errors.append(line)
                continue
            if "Traceback" in line or " ERROR " in line:
                errors.append(line)
        return errors

    async def close(self) -> None:
        if hasattr(self, "manager"):
            await self.manager.close()
        if hasattr(self, "process"):
            await self.processes.stop(self.process)
        if hasattr(self, "drainer"):
            self.drainer.cancel()


class Observer:
    """A manager's stream on one node: when each shared report (ours or a peer's) first arrives from elsewhere."""

    def __init__(self, node: Node, origin_of_peer_report: dict[int, str]) -> None:
        self.node = node
        self.origin = origin_of_peer_report
        self.reports: dict[int, int] = {}        # A's report number -> arrival ns (neighborhood copies only)
        self.peer_reports: dict[int, int] = {}   # peer report number -> arrival ns (from another node only)
        self.lost = False
        self.task: asyncio.Task | None = None

    async def open(self) -> None:
        self.response = await self.node.manager.get(self.node.url + "/api/stream",
                                                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        if self.response.status != 200:
            raise RuntimeError(f"{self.node.name}: stream refused with {self.response.status}")
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while line := await self.response.content.readline():
                if not line.startswith(b"data: "):
                    continue
                at = time.monotonic_ns()
                if (match := REPORT.search(line)) is not None:
                    if match[1] == b"n":
                        self.reports.setdefault(int(match[2]), at)
                elif (match := PEER_REPORT.search(line)) is not None:
                    number = int(match[1])
                    if self.origin.get(number) != self.node.name:
                        self.peer_reports.setdefault(number, at)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        self.lost = True

    async def close(self) -> None:
        if self.task is not None:
            self.lost = self.lost or self.task.done()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.response.close()


@dataclass
class Figures:
    """What the load phase saw, outside the client processes."""

    post_ms: list[float] = field(default_factory=list)     # measured window
    share_ms: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    posted: set[int] = field(default_factory=set)          # report numbers answered 201
    shared: dict[int, int] = field(default_factory=dict)   # report number -> share send ns (shared ok)
    peer_shared: dict[int, int] = field(default_factory=dict)   # peer report number -> share send ns
    peer_origin: dict[int, str] = field(default_factory=dict)
    rss: list[tuple[float, int]] = field(default_factory=list)
    behind: float = 0.0    # most seconds the poster fell behind its schedule

    def error(self, kind: str, exc: BaseException | str) -> None:
        self.errors[kind] += 1
        self.examples.setdefault(kind, str(exc)[:300] or repr(exc))


# -- the run -----------------------------------------------------------------------------------------------------

class Soak:
    """The three nodes, A's residents and their streams, the load and the report."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.processes = Processes()
        self.nodes: list[Node] = []
        self.sessions: dict[str, aiohttp.ClientSession] = {}   # per source address, for residents
        self.residents: list[tuple[str, str]] = []             # (address, session cookie)
        self.children: list[asyncio.subprocess.Process] = []
        self.readers: list[asyncio.Task] = []
        self.reports: list[asyncio.Future] = []
        self.observers: list[Observer] = []
        self.figures = Figures()
        self.duration = args.minutes * 60
        self.warmup = args.warmup if args.warmup is not None else min(60.0, self.duration / 5)
        self.total = math.ceil(self.duration * args.rate)
        self.warm_from = math.ceil(self.warmup * args.rate)
        self.peer_total = 2 * math.ceil(self.duration * args.peer_rate) + 2

    async def run(self) -> None:
        try:
            await self.setup()
            await self.load()
            await self.drain()
            await self.report(await self.collect())
        finally:
            await self.close()

    async def setup(self) -> None:
        args = self.args
        self.nodes = [Node(self.processes, self.root, name) for name in ("A", "B", "C")]
        await asyncio.gather(*(node.init() for node in self.nodes))
        for node in self.nodes:
            node.write_config([p for p in self.nodes if p is not node], args.anti_entropy)
        await asyncio.gather(*(node.start() for node in self.nodes))
        a = self.nodes[0]
        print(f"nodes A {a.url}, B {self.nodes[1].url}, C {self.nodes[2].url}, each the others' approved peer; "
              f"anti-entropy every {args.anti_entropy:g} s", flush=True)
        await self._join_residents(a)
        for node in self.nodes:
            observer = Observer(node, self.figures.peer_origin)
            await observer.open()
            self.observers.append(observer)
        await self._start_clients(a)

    async def _join_residents(self, a: Node) -> None:
        args = self.args
        started = time.monotonic()
        semaphore = asyncio.Semaphore(16)

        async def one(i: int) -> tuple[str, str]:
            address = f"127.0.{2 + i // JOINS_PER_ADDRESS // 250}.{2 + i // JOINS_PER_ADDRESS % 250}"
            if address not in self.sessions:
                self.sessions[address] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=64),
                    cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
            async with semaphore:
                invite = (await a.post(a.manager, "/api/invites", {"unit": f"{1 + i // 40}{'ABCDEFGH'[i % 8]}",
                                                                   "name": f"resident {i}"}))["invite"]
                async with self.sessions[address].post(a.url + "/api/join", json={"code": invite["code"]}) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"join from {address}: {resp.status} {await resp.text()}")
                    return address, resp.cookies["nnode_session"].value

        self.residents = list(await asyncio.gather(*(one(i) for i in range(args.residents))))
        print(f"{args.residents} residents invited and joined from {len(self.sessions)} addresses in "
              f"{time.monotonic() - started:.1f} s", flush=True)

    async def _start_clients(self, a: Node) -> None:
        args = self.args
        streams = [self.residents[i % len(self.residents)] for i in range(args.connections)]
        shares = [streams[p::args.procs] for p in range(args.procs)]
        loop = asyncio.get_running_loop()
        ready = []
        started = time.monotonic()
        for share in shares:
            child = await self.processes.start(sys.executable, __file__, "--client", stdin=asyncio.subprocess.PIPE,
                                               stdout=asyncio.subprocess.PIPE, limit=1 << 26)
            spec = {"port": a.port, "streams": share, "reports": self.total, "peer_reports": self.peer_total,
                    "warm_from": self.warm_from, "lifetime": self.duration + self.warmup + 600}
            child.stdin.write(json.dumps(spec).encode() + b"\n")
            await child.stdin.drain()
            self.children.append(child)
            ready.append(loop.create_future())
            self.reports.append(loop.create_future())
            for future in ready[-1], self.reports[-1]:
                future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.readers.append(asyncio.create_task(self._read_child(child, ready[-1], self.reports[-1])))
        counts = await asyncio.wait_for(asyncio.gather(*ready), READY_TIMEOUT)
        if counts != [len(s) for s in shares]:
            raise RuntimeError(f"clients opened {counts} streams, expected {[len(s) for s in shares]}")
        print(f"{args.connections} streams open over {args.procs} client processes in "
              f"{time.monotonic() - started:.1f} s", flush=True)

    async def _read_child(self, child, ready: asyncio.Future, report: asyncio.Future) -> None:
        line = b""
        while line := (await child.stdout.readline()).strip():
            if line.startswith(b"ready ") and not ready.done():
                ready.set_result(int(line[6:]))
            elif line.startswith(b"{") and not report.done():
                report.set_result(json.loads(line))
            else:
                break
        error = RuntimeError(f"client process {child.pid} ended ({line[:300]!r}); exit status {await child.wait()}")
        for future in (ready, report):
            if not future.done():
                future.set_exception(error)

    # -- load ---------------------------------------------------------------------------------------------------

    async def load(self) -> None:
        args, figures = self.args, self.figures
        a = self.nodes[0]
        print(f"load: {args.rate:g} reports/s from {args.residents} residents (each one every "
              f"{args.residents / args.rate:g} s), every {args.share_every}th shared, {args.peer_rate:g}/s shared by "
              f"each peer; {self.duration:.0f} s, the first {self.warmup:.0f} s warm-up", flush=True)
        self.t0 = time.monotonic()
        self.cpu0 = None
        tasks = [asyncio.create_task(self._post_reports(a)), asyncio.create_task(self._sample_rss(a))]
        tasks += [asyncio.create_task(self._peer_reports(node, k)) for k, node in enumerate(self.nodes[1:])]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks[:1], *tasks[2:]), self.duration + HTTP_TIMEOUT + 60)
        finally:
            tasks[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[1]
        figures.rss.append((time.monotonic() - self.t0, rss_bytes(a.pid)))
        self.load_seconds = time.monotonic() - self.t0
        self.cpu_measured = _cpu_seconds(a.pid) - (self.cpu0 if self.cpu0 is not None else 0.0)
        for node in self.nodes:
            if node.process.returncode is not None:
                figures.error("node exited", f"node {node.name} exited with {node.process.returncode}")

    async def _post_reports(self, a: Node) -> None:
        args, figures = self.args, self.figures
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending: set[asyncio.Task] = set()

        async def one(number: int) -> None:
            address, cookie = self.residents[number % len(self.residents)]
            headers = {"Cookie": f"nnode_session={cookie}"}
            try:
                sent = time.monotonic_ns()
                async with self.sessions[address].post(a.url + "/api/reports", json=report_body(number, sent),
                                                       headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                    if resp.status != 201:
                        raise RuntimeError(f"{resp.status} {str(answer)[:300]}")
                if number >= self.warm_from:
                    figures.post_ms.append((time.monotonic_ns() - sent) / 1e6)
                figures.posted.add(number)
            except Exception as exc:
                figures.error("report post failed", exc)
                return
            if number % args.share_every:
                return
            try:
                sent = time.monotonic_ns()
                await a.post(a.manager, f"/api/reports/{answer['report']['id']}/share", {})
                if number >= self.warm_from:
                    figures.share_ms.append((time.monotonic_ns() - sent) / 1e6)
                figures.shared[number] = sent
            except Exception as exc:
                figures.error("share failed", exc)

        for number in range(self.total):
            due = self.t0 + number / args.rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            else:
                figures.behind = max(figures.behind, -wait)
            if number == self.warm_from:
                self.cpu0 = _cpu_seconds(a.pid)
            if time.monotonic() > self.t0 + self.duration + HTTP_TIMEOUT:
                figures.error("reports never sent (poster too far behind)", f"{self.total - number} of {self.total}")
                figures.errors["reports never sent (poster too far behind)"] += self.total - number - 1
                break
            await in_flight.acquire()
            task = asyncio.create_task(one(number))
            pending.add(task)
            task.add_done_callback(lambda t: (pending.discard(t), in_flight.release()))
        if pending:
            await asyncio.wait(pending, timeout=2 * HTTP_TIMEOUT)

    async def _peer_reports(self, node: Node, k: int) -> None:
        """The peer's manager posts and shares; peer report numbers interleave (k, k+2, k+4...)."""
        args, figures = self.args, self.figures
        count = math.ceil(self.duration * args.peer_rate)
        for j in range(count):
            due = self.t0 + (j + 0.5 * k) / args.peer_rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            if time.monotonic() > self.t0 + self.duration + HTTP_TIMEOUT:
                figures.error("peer reports never sent", f"{node.name}: {count - j} of {count}")
                figures.errors["peer reports never sent"] += count - j - 1
                break
            number = 2 * j + k
            figures.peer_origin[number] = node.name
            body = {"category": "safety-hazard", "where": "across the street",
                    "what": f"Peer report soakpeer#{number}# the streetlight outside {node.name} is out again"}
            try:
                answer = await node.post(node.manager, "/api/reports", body)
                sent = time.monotonic_ns()
                await node.post(node.manager, f"/api/reports/{answer['report']['id']}/share", {})
                figures.peer_shared[number] = sent
            except Exception as exc:
                figures.error("peer share failed", exc)

    async def _sample_rss(self, a: Node) -> None:
        rounds = math.ceil((self.duration + 2 * HTTP_TIMEOUT + 60) / RSS_EVERY)
        warm_taken = False
        for _ in range(rounds):
            elapsed = time.monotonic() - self.t0
            if not warm_taken and elapsed >= self.warmup:
                self.warm_rss = rss_bytes(a.pid)
                warm_taken = True
            with contextlib.suppress(OSError):
                self.figures.rss.append((elapsed, rss_bytes(a.pid)))
            next_at = RSS_EVERY if warm_taken or self.warmup - elapsed > RSS_EVERY else self.warmup - elapsed
            await asyncio.sleep(max(0.01, next_at))

    # -- drain, collect and report ----------------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every shared event has reached every other node, or anti-entropy + DRAIN seconds."""
        deadline = time.monotonic() + self.args.anti_entropy + DRAIN
        await asyncio.sleep(2.0)   # the last posts' deliveries to the streams
        # Polled at a fixed pace on purpose: _unreached() walks every shared report, so it must not run per arrival.
        while time.monotonic() < deadline and self._unreached():  # noqa: ASYNC110 - see above
            await asyncio.sleep(0.5)

    def _unreached(self) -> dict[str, int]:
        figures = self.figures
        a, *peers = self.observers
        missing = Counter()
        for observer in peers:
            missing[f"A->{observer.node.name}"] += sum(1 for n in figures.shared if n not in observer.reports)
        for observer in self.observers:
            missing.update(f"{figures.peer_origin[n]}->{observer.node.name}" for n in figures.peer_shared
                           if figures.peer_origin[n] != observer.node.name and n not in observer.peer_reports)
        return {k: v for k, v in missing.items() if v}

    async def collect(self) -> list[dict]:
        for child in self.children:
            with contextlib.suppress(ConnectionError):
                child.stdin.write(b"stop\n")
                await child.stdin.drain()
        reports = await asyncio.wait_for(asyncio.gather(*self.reports, return_exceptions=True), 60)
        for report in reports:
            if isinstance(report, BaseException):
                self.figures.error("client process failed", report)
        return [r for r in reports if isinstance(r, dict)]

    async def report(self, clients: list[dict]) -> None:
        args, figures = self.args, self.figures
        a = self.nodes[0]
        measured = [n for n in figures.posted if n >= self.warm_from]
        streams = args.connections
        counts = [sum(col) for col in zip(*(c["counts"] for c in clients))] or [0] * self.total
        peer_counts = [sum(col) for col in zip(*(c["peer_counts"] for c in clients))] or [0] * self.peer_total
        hist = Counter()
        for c in clients:
            hist.update({int(k): v for k, v in c["hist"].items()})
        missed = sum(streams - counts[n] for n in figures.posted)
        peer_missed = sum(streams - peer_counts[n] for n in figures.peer_shared)
        lost = sum(c.get("lost", 0) for c in clients)
        for kind, value in (("stream deliveries missed", missed), ("peer reports missed by streams", peer_missed),
                            ("streams dropped", lost), ("duplicate deliveries",
                                                        sum(c.get("duplicates", 0) + c.get("peer_duplicates", 0)
                                                            for c in clients)),
                            ("unexpected report numbers", sum(c.get("extra", 0) for c in clients))):
            if value:
                figures.errors[kind] += value
        for observer in self.observers:
            if observer.lost or (observer.task is not None and observer.task.done()):
                figures.error("streams dropped", f"the manager's stream on {observer.node.name} ended")
        for route, count in self._unreached().items():
            figures.errors["events that did not reach a node"] += count
            figures.examples.setdefault("events that did not reach a node", "")
            figures.examples["events that did not reach a node"] += f"{route}: {count}  "
        for node in self.nodes:
            for line in node.log_errors():
                figures.error("node log errors", f"{node.name}: {line}")

        propagation = {"A->peers": [], "peers->A": [], "peer->peer": []}
        for observer in self.observers[1:]:
            propagation["A->peers"] += [(observer.reports[n] - sent) / 1e6 for n, sent in figures.shared.items()
                                        if n >= self.warm_from and n in observer.reports]
        for observer in self.observers:
            for n, sent in figures.peer_shared.items():
                if n in observer.peer_reports and (n // 2) / args.peer_rate >= self.warmup:
                    key = "peers->A" if observer.node.name == "A" else "peer->peer"
                    propagation[key].append((observer.peer_reports[n] - sent) / 1e6)
        metrics = await self._metrics(a)
        total_errors = sum(figures.errors.values())
        rss = figures.rss
        warm = getattr(self, "warm_rss", rss[0][1] if rss else 0)
        end = rss[-1][1] if rss else 0
        measured_s = max(1e-9, self.load_seconds - self.warmup)
        delivered = sum(hist.values())

        print(f"\n{args.minutes:g} min soak ({self.warmup:.0f} s warm-up) of node A with peers B and C; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"reports posted   {len(figures.posted)} of {self.total} ({len(figures.posted) / self.load_seconds:.1f}/s"
              f" achieved, target {args.rate:g}/s; poster at most {figures.behind:.2f} s behind its schedule); "
              f"{len(figures.shared)} shared by A, {len(figures.peer_shared)} by the peers")
        print(f"streams          {streams} on A for {args.residents} residents; {delivered} measured deliveries "
              f"({delivered / measured_s:.0f}/s), {sum(c.get('bytes', 0) for c in clients) / 2**20:.0f} MiB read")
        print("latency, ms, after the warm-up:")
        print(f"  POST /api/reports round trip         {quantiles(figures.post_ms)}")
        print(f"  POST .../share round trip (manager)  {quantiles(figures.share_ms)}")
        if hist:
            print(f"  delivery, post -> each stream        p50 {hist_quantile(hist, 50):8.2f}  p99 "
                  f"{hist_quantile(hist, 99):8.2f}  max {(max(hist) + 1) * HIST_NS / 1e6:8.2f}  (n={delivered}, "
                  f"{len(measured)} reports answered 201 x {streams} streams, and late ones)")
        for key, values in propagation.items():
            print(f"  sync, share -> {key:<21} {quantiles(values)}")
        print(f"node A CPU       {self.cpu_measured / measured_s * 100:.0f}% of one core after the warm-up")
        print("node A sync      " + ", ".join(f"{k} {v:g}" for k, v in metrics.items()))
        print(f"node A RSS       warm {warm / 2**20:.1f} MiB at {self.warmup:.0f} s, end {end / 2**20:.1f} MiB at "
              f"{rss[-1][0] if rss else 0:.0f} s; min {min(r for _, r in rss) / 2**20:.1f}, max "
              f"{max(r for _, r in rss) / 2**20:.1f} MiB over {len(rss)} samples")
        per_minute = [next(f"{m}m {r / 2**20:.0f}" for t, r in rss if t >= 60 * m)
                      for m in range(int(rss[-1][0] // 60) + 1)] if rss else []
        print(f"                 by minute (MiB): {', '.join(per_minute)}")
        print(f"errors           {total_errors} (target 0)")
        for kind, count in sorted(figures.errors.items()):
            print(f"  {kind}: {count}   e.g. {figures.examples.get(kind, '')[:300]}")
        print(f"soak_errors={total_errors}")
        print(f"soak_memory_growth={end / warm:.3f}" if warm else "soak_memory_growth=nan")

    async def _metrics(self, a: Node) -> dict[str, float]:
        wanted = ("nnode_push_dropped", "nnode_events_accepted", "nnode_events_duplicate",
                  "nnode_events_rejected", "nnode_sync_requests_refused")
        found: dict[str, float] = {}
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with a.manager.get(a.url + "/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    name = re.split(r"[{ ]", line, maxsplit=1)[0].removesuffix("_total")
                    if name in wanted:
                        found[name.removeprefix("nnode_")] = found.get(name.removeprefix("nnode_"), 0) + \
                            float(line.rsplit(" ", 1)[1])
        return found

    async def close(self) -> None:
        for observer in self.observers:
            with contextlib.suppress(Exception):
                await observer.close()
        for session in self.sessions.values():
            await session.close()
        for child in self.children:
            await self.processes.stop(child)
        for reader in self.readers:
            reader.cancel()
        for node in reversed(self.nodes):
            with contextlib.suppress(Exception):
                await node.close()
        await self.processes.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load, warm-up included")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of load before RSS and latencies count (default: 60, or a fifth of a shorter run)")
    parser.add_argument("--rate", type=float, default=50.0, help="reports per second posted to node A")
    parser.add_argument("--residents", type=int, default=500)
    parser.add_argument("--connections", type=int, default=1000, help="live streams on A, over the residents")
    parser.add_argument("--procs", type=int, default=4, help="client processes holding the streams")
    parser.add_argument("--share-every", type=int, default=10, help="A's manager shares every Nth report")
    parser.add_argument("--peer-rate", type=float, default=1.0, help="reports each peer shares per second")
    parser.add_argument("--anti-entropy", type=float, default=30.0, help="seconds between anti-entropy pulls")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' folders (and logs) for a look")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        sys.exit(run_client(json.loads(sys.stdin.readline())))
    if not (args.minutes > 0 and args.rate > 0 and args.residents > 0 and args.connections > 0 and args.procs > 0
            and args.share_every > 0 and args.peer_rate > 0 and args.anti_entropy > 0):
        parser.error("every figure must be positive")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * args.connections + 2 * MAX_IN_FLIGHT + 512
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    root = Path(tempfile.mkdtemp(prefix="nnsoak"))
    try:
        asyncio.run(Soak(args, root).run())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
