"""Benchmark: alerts reaching 100 and 1,000 residents' open live streams, against Mosquitto with as many subscribers.

A real node (`nnode init`, then `nnode run` in its own process on a free loopback port, discovery off) is claimed over
HTTP; one resident session opens the streams on /api/stream; the manager posts alerts with POST /api/alerts on a
keep-alive connection. Debian's Mosquitto, started on another free port in the same run, gets as many subscribers on
`alerts/bench` (QoS 0); a separate connection publishes the node's own alert message (same bytes, ~1.5 KB). Both
systems' subscribers are one small C program (bench/_fanout_subscribers.c, built with gcc; `--client python` for the
Python ones), spread over client processes, so that the servers, not their subscribers, limit them; both publishers
write bytes made before the clock starts (the node's: whole HTTP requests), so neither publisher's own client library
is measured. Latency runs from just before a publish is sent to the message's arrival at each subscriber, on
CLOCK_MONOTONIC, which is one clock for every process on Linux.

Each run has single alerts, then bursts of 20 published back to back (the node's POSTs one after another, each timed
from its own send). The interval between publishes (0.27 s) is no multiple of the node's coalescing period, so a
burst's batching delay shows. The two systems take turns, a round each, and a round starts only when the previous
one has reached every subscriber. Prints a table per connection count (p50/p99 of singles and of bursts, server
and subscriber CPU), `fanout_p99_ratio_<connections>=<the worse of node p99 / mosquitto p99, singles or bursts>`,
then last `fanout_p99_ratio=<the worse of those>` (target: at most 3).

    python bench/fanout.py [--connections 100,1000] [--procs 4] [--rounds 20] [--bursts 5] [--burst 20]
                           [--interval 0.27] [--client c|python] [--verbose]

NNODE_BENCH_PROFILE=py-spy samples the node during the measured rounds (py-spy from the venv, attached to its
process); NNODE_BENCH_PROFILE=cprofile runs the whole node under cProfile. Either prints where the node's time went to
stderr; a profiled node is slower, so its figures are then not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yarl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_clients import TOPIC, mqtt_connect, mqtt_publish  # noqa: E402 - found through the sys.path line above
from _fanout_figures import Result, percentile, py_spy_summary  # noqa: E402

CLIENTS = Path(__file__).resolve().parent / "_fanout_clients.py"
SUBSCRIBERS_C = Path(__file__).resolve().parent / "_fanout_subscribers.c"
PASSWORD = "fanout bench password"
START_TIMEOUT = 30.0    # seconds for a server to start answering
READY_TIMEOUT = 90.0    # seconds for the client processes to open every connection
ROUND_TIMEOUT = 5.0     # seconds for one publish to reach every subscriber before the bench moves on (and counts misses)
SETTLE = 0.02           # seconds between the end of one round and the next publish
STOP_TIMEOUT = 15.0     # seconds a process gets to exit after SIGTERM before SIGKILL

# A real alert says what happened and what to do; this brings the stream's message to about 1.5 KB.
DESCRIPTION = ("A gas leak has been reported in the basement of the east wing. The utility company is on site and "
               "has shut off the supply to the building while the line is inspected. ") * 4
PRIMER = 999_999   # round number of the alert published before any subscriber, for its bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def _die_with_parent() -> None:
    # In the child before exec: SIGTERM if the bench itself is killed outright and its clean-up never runs.
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


class Processes:
    """Every process the bench starts, each in its own process group, ended in reverse order."""

    def __init__(self) -> None:
        self.started: list[asyncio.subprocess.Process] = []

    async def start(self, *argv: str, **kwargs) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(*argv, start_new_session=True, preexec_fn=_die_with_parent,
                                                       **kwargs)
        self.started.append(process)
        return process

    async def stop(self, process: asyncio.subprocess.Process, signum: int = signal.SIGTERM) -> None:
        """Signal its group (a node then shuts down cleanly and a profiler writes its report), SIGKILL if it lingers."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signum)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        with contextlib.suppress(ProcessLookupError):   # anything it started, in its group
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ValueError):
            self.started.remove(process)

    async def stop_all(self) -> None:
        for process in reversed(list(self.started)):
            await self.stop(process)


class Clients:
    """The subscriber processes of one system, and what they report on stdout."""

    def __init__(self, kind: str, port: int, args: argparse.Namespace, env: dict[str, str] | None = None,
                 binary: Path | None = None) -> None:
        self.kind, self.port, self.env, self.binary = kind, port, env or {}, binary
        self.rounds = args.warmup + args.rounds + args.bursts * args.burst
        self.shares = [args.connections // args.procs + (i < args.connections % args.procs)
                       for i in range(args.procs)]
        self.children: list[asyncio.subprocess.Process] = []
        self.readers: list[asyncio.Task] = []
        self.ready: list[asyncio.Future] = []
        self.reports: list[asyncio.Future] = []
        self.got = [0] * self.rounds   # client processes that have each round on every connection
        self.changed = asyncio.Event()
        self.failure: Exception | None = None

    async def start(self, processes: Processes) -> None:
        loop = asyncio.get_running_loop()
        for share in self.shares:
            argv = [str(self.binary), self.kind] if self.binary else [sys.executable, str(CLIENTS), self.kind]
            child = await processes.start(
                *argv, str(self.port), str(share), str(self.rounds),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env={**os.environ, **self.env},
                limit=1 << 24)   # the report is one long JSON line
            self.children.append(child)
            self.ready.append(loop.create_future())
            self.reports.append(loop.create_future())
            for future in self.ready[-1], self.reports[-1]:   # a failure nobody waits for is not worth a warning
                future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self.readers.append(asyncio.create_task(self._read(child, self.ready[-1], self.reports[-1])))
        counts = await asyncio.wait_for(asyncio.gather(*self.ready), READY_TIMEOUT)
        if counts != self.shares:
            raise RuntimeError(f"{self.kind} clients opened {counts} connections, expected {self.shares}")

    async def _read(self, child: asyncio.subprocess.Process, ready: asyncio.Future, report: asyncio.Future) -> None:
        while line := (await child.stdout.readline()).decode().strip():
            if line.startswith("got "):
                self.got[int(line[4:])] += 1
                self.changed.set()
            elif line.startswith("ready ") and not ready.done():
                ready.set_result(int(line[6:]))
            elif line.startswith("{") and not report.done():
                report.set_result(json.loads(line))
            else:
                break
        error = RuntimeError(f"{self.kind} client process {child.pid} ended ({line or 'no output'}); "
                             f"exit status {await child.wait()}")
        for future in (ready, report):
            if not future.done():
                future.set_exception(error)
        self.failure = self.failure or error
        self.changed.set()

    async def round_done(self, number: int, timeout: float) -> bool:
        """Wait until every connection has round `number`; False if `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while self.got[number] < len(self.children):
            if self.failure is not None:
                raise self.failure
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return True

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(child.pid) for child in self.children)

    async def collect(self, processes: Processes) -> tuple[list[list[int | None]], int, int]:
        """(receive times per connection and round, unexpected messages, connections lost), then end the processes."""
        for child in self.children:
            child.stdin.write(b"stop\n")
            await child.stdin.drain()
        reports = await asyncio.wait_for(asyncio.gather(*self.reports), 30)
        for child in self.children:
            await processes.stop(child)
        for reader in self.readers:
            reader.cancel()
        times = [row for report in reports for row in report["times"]]
        return (times, sum(r["extra"] + r["duplicates"] for r in reports), sum(r["lost"] for r in reports))


async def subscribers(processes: Processes, root: Path, args: argparse.Namespace) -> Path | None:
    """The C subscriber program (built once per run), or None for the Python ones (`--client python`)."""
    if args.client != "c":
        return None
    binary = root / "fanout_subscribers"
    if not binary.exists():
        gcc = await processes.start("gcc", "-O2", "-D_GNU_SOURCE", "-o", str(binary), str(SUBSCRIBERS_C))
        if await gcc.wait() != 0:
            raise RuntimeError(f"gcc could not build {SUBSCRIBERS_C}")
    return binary


class System:
    """A server under test: its process, its subscribers and how to publish round N."""

    name = ""
    server: asyncio.subprocess.Process
    clients: Clients

    def __init__(self, processes: Processes, root: Path, args: argparse.Namespace) -> None:
        self.processes, self.root, self.args = processes, root, args
        self.result = Result(self.name)
        self.closed = False

    async def publish(self, number: int) -> int:
        """Publish round `number`; returns the send time (time.monotonic_ns just before)."""
        raise NotImplementedError

    async def profile_start(self) -> None:
        """Start sampling the server, if asked to."""

    async def profile_stop(self) -> None:
        """Stop sampling and print where the time went."""

    async def close(self) -> None:
        """Stop the server (once)."""
        self.closed = True
        if hasattr(self, "server"):
            await self.processes.stop(self.server)


# -- the node ------------------------------------------------------------------------------------------------------

class Node(System):
    """`nnode run`, claimed; its manager publishes and one resident session holds every stream."""

    name = "node"

    async def start(self) -> bytes:
        """Start, claim and subscribe; returns the data line of the node's alert message (for Mosquitto)."""
        data, self.port = self.root / "node", free_port()
        config = self.root / "node.toml"
        config.write_text(f'[node]\ndata_dir = "{data}"\n[http]\nhost = "127.0.0.1"\nport = {self.port}\n'
                          f'[discovery]\nenabled = false\n[sync]\nanti_entropy_interval = 3600\n'
                          f'[log]\nlevel = "warning"\n')
        node = [sys.executable, "-m", "node", "--config", str(config)]
        init = await self.processes.start(*node, "init", cwd=ROOT, stdout=asyncio.subprocess.DEVNULL)
        if await asyncio.wait_for(init.wait(), START_TIMEOUT) != 0:
            raise RuntimeError("nnode init failed")
        self.profile = os.environ.get("NNODE_BENCH_PROFILE", "")
        if self.profile not in ("", "cprofile", "py-spy"):
            raise SystemExit(f"NNODE_BENCH_PROFILE must be cprofile or py-spy, got {self.profile!r}")
        wrapper = ["-m", "cProfile", "-o", str(self.root / "node.prof")] if self.profile == "cprofile" else []
        run = [sys.executable, *wrapper, *node[1:], "run"]
        with (self.root / "node.log").open("wb") as log:
            self.server = await self.processes.start(*run, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log)
        code = await self._claim_code()
        self.url = f"http://127.0.0.1:{self.port}"
        self.manager = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        await self._wait_healthy()
        await self._post(self.manager, "/setup/claim", {"code": code, "password": PASSWORD})
        invite = (await self._post(self.manager, "/api/invites", {"unit": "B1", "name": "bench"}))["invite"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as resident:
            await self._post(resident, "/api/join", {"code": invite["code"]})
            cookie = resident.cookie_jar.filter_cookies(yarl.URL(self.url))["nnode_session"].value
        # An alert before any stream is open, for the bytes of its message (streams start after the newest one).
        answer = await self._post(self.manager, "/api/alerts", json.loads(_alert(PRIMER)))
        message = json.dumps({"event": answer["event"], "received": int(time.time() * 1000), "cap": answer["cap"]},
                             separators=(",", ":"), ensure_ascii=False).encode()
        self.result.payload_bytes = len(message)
        print(f"node: {self.args.connections} streams over {self.args.procs} client processes ...", flush=True)
        await self._open_publisher()
        self.clients = Clients("sse", self.port, self.args, {"NNODE_BENCH_COOKIE": cookie},
                               binary=await subscribers(self.processes, self.root, self.args))
        await self.clients.start(self.processes)
        return message

    async def _claim_code(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            line = await asyncio.wait_for(self.server.stdout.readline(), max(0.01, deadline - time.monotonic()))
            if not line:
                raise RuntimeError(f"the node exited before its claim banner; its log:\n{_tail(self.root / 'node.log')}")
            if match := re.search(r"Claim code: (\S+)", line.decode()):
                self.drainer = asyncio.create_task(self._drain())
                return match[1]

    async def _drain(self) -> None:
        # Nothing more is expected on the node's stdout, but a full pipe would stall it.
        while await self.server.stdout.read(65536):
            pass

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self.manager.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}/healthz did not answer 200 within {START_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict) -> dict:
        async with session.post(self.url + path, json=body, timeout=aiohttp.ClientTimeout(total=30)) as resp:
            answer = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"POST {path}: {resp.status} {answer}")
            return answer

    async def _open_publisher(self) -> None:
        """The manager's keep-alive connection for the measured POSTs: each request's bytes are made before its
        clock starts, as Mosquitto's PUBLISH packets are, so that the bench's own HTTP client is not measured."""
        cookie = self.manager.cookie_jar.filter_cookies(yarl.URL(self.url))["nnode_session"].value
        self.requests = []
        for number in range(self.args.warmup + self.args.rounds + self.args.bursts * self.args.burst):
            body = _alert(number)
            self.requests.append(f"POST /api/alerts HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                                 f"Cookie: nnode_session={cookie}\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def publish(self, number: int) -> int:
        t0 = time.monotonic_ns()
        self.writer.write(self.requests[number])
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        answer = await self.reader.readexactly(int(length[1])) if length else b""
        if not head.startswith(b"HTTP/1.1 200") or not length:
            raise RuntimeError(f"POST /api/alerts: {head[:200]!r} {answer[:300]!r}")
        if number >= self.args.warmup:
            self.result.publish_ms.append((time.monotonic_ns() - t0) / 1e6)
        return t0

    async def close(self) -> None:
        if self.closed:
            return
        if hasattr(self, "manager"):
            await self.manager.close()
        if hasattr(self, "writer"):
            self.writer.close()
        await super().close()
        if hasattr(self, "drainer"):
            self.drainer.cancel()
        if self.profile == "cprofile" and hasattr(self, "server"):
            import pstats
            print("\n--- node profile (cProfile, the whole run) ---", file=sys.stderr)
            stats = pstats.Stats(str(self.root / "node.prof"), stream=sys.stderr)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(40)

    async def profile_start(self) -> None:
        if self.profile == "py-spy":
            self.spy = await self.processes.start(
                str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(self.server.pid),
                "--format", "raw", "--rate", "250", "--output", str(self.root / "node.pyspy"),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def profile_stop(self) -> None:
        if hasattr(self, "spy"):
            await self.processes.stop(self.spy, signal.SIGINT)   # py-spy writes its samples on SIGINT
            print("\n--- node profile (py-spy, the measured rounds) ---", file=sys.stderr)
            print(py_spy_summary(self.root / "node.pyspy"), file=sys.stderr)


def _alert(number: int) -> bytes:
    return json.dumps({"event": "Bench", "headline": f"Fan-out benchmark fanout#{number}#", "severity": "Severe",
                       "urgency": "Immediate", "certainty": "Observed", "category": "Safety",
                       "description": DESCRIPTION, "expires_hours": 1}).encode()


# -- Mosquitto -----------------------------------------------------------------------------------------------------

class Mosquitto(System):
    """Debian's broker with a temporary configuration; one extra connection publishes."""

    name = "mosquitto"

    async def start(self, message: bytes) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        port = free_port()
        config = self.root / "mosquitto.conf"
        # `user` as ourselves: started by root, Mosquitto would switch to its own user, which (like any change of
        # user) clears the signal that ends it with the bench.
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n"
                          f"persistence false\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
                          f"log_dest stderr\nlog_type error\nlog_type warning\n")
        with (self.root / "mosquitto.log").open("wb") as log:
            self.server = await self.processes.start(binary, "-c", str(config), stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError as exc:
                if self.server.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"mosquitto did not start; its log:\n{_tail(self.root / 'mosquitto.log')}") from exc
                await asyncio.sleep(0.05)
        # The publisher lives for seconds: keep-alive 0 (off) spares it PINGREQs.
        self.writer.write(mqtt_connect(f"fanout-publisher-{os.getpid()}", keepalive=0))
        connack = await asyncio.wait_for(self.reader.readexactly(4), START_TIMEOUT)
        if connack != b"\x20\x02\x00\x00":
            raise RuntimeError(f"mosquitto refused the publisher: {connack!r}")
        self.packets = [mqtt_publish(TOPIC, message.replace(f"fanout#{PRIMER}#".encode(), f"fanout#{n}#".encode()))
                        for n in range(self.args.warmup + self.args.rounds + self.args.bursts * self.args.burst)]
        self.result.payload_bytes = len(message)
        print(f"mosquitto: {self.args.connections} subscribers over {self.args.procs} client processes ...",
              flush=True)
        self.clients = Clients("mqtt", port, self.args, binary=await subscribers(self.processes, self.root, self.args))
        await self.clients.start(self.processes)

    async def publish(self, number: int) -> int:
        t0 = time.monotonic_ns()
        self.writer.write(self.packets[number])
        await self.writer.drain()
        if number >= self.args.warmup:
            self.result.publish_ms.append((time.monotonic_ns() - t0) / 1e6)
        return t0

    async def close(self) -> None:
        if self.closed:
            return
        if hasattr(self, "writer"):
            self.writer.write(b"\xe0\x00")   # DISCONNECT
            self.writer.close()
        await super().close()


# -- rounds and report ---------------------------------------------------------------------------------------------

async def run_rounds(systems: list[System], args: argparse.Namespace) -> None:
    """Warm-up and measured rounds (one alert each), then bursts (`args.burst` alerts published back to back), the
    systems taking turns; then each one's figures."""
    sent: dict[str, list[int]] = {s.name: [] for s in systems}
    cpu: dict[str, tuple[float, float]] = {}
    singles = args.warmup + args.rounds
    groups = [[n] for n in range(singles)] + [list(range(singles + b * args.burst, singles + (b + 1) * args.burst))
                                              for b in range(args.bursts)]
    for numbers in groups:
        if numbers[0] == args.warmup:
            for system in systems:
                await system.profile_start()
            cpu = {s.name: (_cpu_seconds(s.server.pid), s.clients.cpu_seconds()) for s in systems}
        for system in systems:
            start = time.monotonic()
            for number in numbers:
                sent[system.name].append(await system.publish(number))
            for number in numbers:
                await system.clients.round_done(number, ROUND_TIMEOUT)   # a miss shows in the counts
            await asyncio.sleep(max(SETTLE, start + args.interval / len(systems) - time.monotonic()))
    for system in systems:
        await system.profile_stop()
        result = system.result
        result.server_cpu = _cpu_seconds(system.server.pid) - cpu[system.name][0]
        result.client_cpu = system.clients.cpu_seconds() - cpu[system.name][1]
        times, result.extra, result.lost = await system.clients.collect(system.processes)
        result.summarise(sent[system.name], times, args.warmup, singles)


def report(results: list[Result], args: argparse.Namespace, wall: float) -> None:
    print(f"\n{args.connections} subscribers in {args.procs} client processes; {args.rounds} single publishes per "
          f"system after {args.warmup} warm-up, {args.interval * 1000:.0f} ms apart at least, then {args.bursts} "
          f"bursts of {args.burst}; the systems taking turns; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'system':<10} {'payload B':>9} {'missed':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'burst p50':>9} {'burst p99':>9} {'med first':>9} {'publish ms':>10} {'server CPU s':>12} "
          f"{'client CPU s':>12} {'client CPU %':>12}")

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else math.nan

    for r in results:
        burst = [percentile(r.burst, q) if r.burst else math.nan for q in (50, 99)]
        print(f"{r.name:<10} {r.payload_bytes:>9} {r.missed:>6} {r.p(50):>7.2f} {r.p(99):>7.2f} "
              f"{r.latencies[-1] if r.latencies else math.nan:>7.2f} {burst[0]:>9.2f} {burst[1]:>9.2f} "
              f"{median(r.round_first):>9.2f} {median(r.publish_ms):>10.2f} {r.server_cpu:>12.2f} "
              f"{r.client_cpu:>12.2f} {100 * r.client_cpu / args.procs / wall:>12.1f}")
        if args.verbose:
            print(f"  {r.name} each round, first/p99 ms: "
                  f"{' '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(r.round_first, r.round_p99))}")
        if r.warmup_missed or r.extra or r.lost:
            print(f"  {r.name}: {r.warmup_missed} missed in warm-up, {r.extra} unexpected or duplicate messages, "
                  f"{r.lost} connections lost")
    print("med first: median over rounds of the latency to the first subscriber (what comes before the fan-out); "
          "publish ms: the node's POST /api/alerts round trip, Mosquitto's write of the PUBLISH; CPU: during the "
          "measured rounds and bursts; client CPU %: of one core per client process, over the measured time")


async def run_one(args: argparse.Namespace) -> float:
    """Both systems at `args.connections`; prints the figures and returns the worse of the two p99 ratios."""
    root = Path(tempfile.mkdtemp(prefix="nnfanout"))
    processes = Processes()
    systems: list[System] = []
    try:
        node = Node(processes, root, args)
        systems.append(node)
        message = await node.start()
        mosquitto = Mosquitto(processes, root, args)
        systems.append(mosquitto)
        await mosquitto.start(message)
        began = time.monotonic()
        await run_rounds(systems, args)
        wall = time.monotonic() - began
        for system in systems:
            await system.close()
        n, m = node.result, mosquitto.result
        report([n, m], args, wall)
        if n.missed or m.missed:
            print(f"WARNING: messages missed (node {n.missed}, mosquitto {m.missed})")
        single = n.p(99) / m.p(99)
        burst = percentile(n.burst, 99) / percentile(m.burst, 99) if n.burst and m.burst else math.nan
        print(f"single alerts: node p99 / mosquitto p99 = {single:.2f}; bursts of {args.burst}: {burst:.2f}")
        worse = max(single, burst) if not math.isnan(burst) else single
        print(f"fanout_p99_ratio_{args.connections}={worse:.2f}")
        return worse
    finally:
        for system in systems:
            with contextlib.suppress(Exception):
                await system.close()
        await processes.stop_all()
        shutil.rmtree(root, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> None:
    ratios = [await run_one(argparse.Namespace(**{**vars(args), "connections": n})) for n in args.connections]
    print(f"fanout_p99_ratio={max(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=lambda v: [int(n) for n in v.split(",")], default=[100, 1000],
                        help="comma-separated: each count is one run of both systems")
    parser.add_argument("--procs", type=int, default=4, help="client processes the connections are spread over")
    parser.add_argument("--rounds", type=int, default=20, help="measured single publishes per system")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=5, help="bursts per system, after the single publishes")
    parser.add_argument("--burst", type=int, default=20, help="alerts in a burst, published back to back")
    # Not a multiple of the node's coalescing period (0.1 s, 0.2 s at 1,000 streams), so that a publish can find
    # the node inside one and its batching delay shows.
    parser.add_argument("--interval", type=float, default=0.27, help="least seconds between one system's publishes")
    parser.add_argument("--client", choices=("c", "python"), default="c",
                        help="both systems' subscribers: bench/_fanout_subscribers.c (gcc) or bench/_fanout_clients.py")
    parser.add_argument("--verbose", action="store_true", help="also print each round's figures")
    args = parser.parse_args()
    # Every connection is a descriptor on both sides: the node and Mosquitto inherit this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * max(args.connections) + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
