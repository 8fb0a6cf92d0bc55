"""Benchmark: a city of 100 to 10,000 nodes syncing over simulated links, with and without areas of interest.

Nodes sit on a jittered grid of buildings (one node every `--spacing-m` metres) and peer with the nearest node in
each of six directions, as a manager would approve the buildings around. Links are in-process (no sockets).
Each round every node pushes what it newly stored to its peers (gossip) and, every `--ae-every` rounds, pulls
from each peer (anti-entropy); pushes and pulls are lost with probability `--loss`. The run ends once every node
holds every event that touches its area of interest and nothing is left to push.

What runs the real code, for every node and every event a node receives for the first time:
  - events are made by sync's `create_event` from the node's real bodies: CAP alerts built by node.alerts'
    `manager_alert` (a circle around the building) and `sos` bodies (the building's coarse location);
  - they travel as their canonical wire bytes and each receiver parses them with `parse_event` (canonical JSON,
    header, id, body hash, the kind's validator from node.kinds) and checks the signature with `signature_valid`;
  - the merge rule is EventStore.prepare's (dedupe by id, one id per (author, seq), equivocation quarantines the
    author); a sample of nodes (`--store-sample`, all of them at 100 nodes) also runs the real EventStore on SQLite
    (prepare, commit, quarantine) and every classification it makes is compared with the modelled one.
What is modelled:
  - duplicates are recognised by the id sliced from the canonical line before parsing (the real engine parses
    every line first; the sampled nodes hand their store the event as they parsed it the first time);
  - HTTP: a request or response costs its body plus a fixed header size (the request headers measured once from
    the real RFC 9421 `sign_request`); nothing is signed per request;
  - area-of-interest sync: a node keeps only events whose area touches its area of interest (a circle around its
    building, `--aoi-m`; the areas are read from the bodies by the node's own readers, node/areas.py), pushes a
    peer only events that touch the peer's, as the node does, and anti-entropy pulls by a per-peer cursor ("what
    you stored since N that touches this circle": ids, then the missing events), which the node does not: its
    pull sends its heads and its area, and the peer answers what touches the area. The flooding runs use the same
    protocol with no areas. See docs/scale.md.

Prints a table per size and mode, saves a plot, and last `city_cost_ratio=<per-node bytes at the largest size /
per-node bytes at the smallest size>` with areas of interest (near 1 means flat).

    python bench/city.py [--sizes 100,300,1000,3000,10000] [--quick] [--flood-max 1000] [--plot PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import nacl.signing
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.federation.kinds import build_registry  # noqa: E402
from node.safety.alerts import ALERT, manager_alert  # noqa: E402
from node.safety.sos import SOS  # noqa: E402
from sync import (  # noqa: E402
    EARTH_RADIUS_M,
    Circle,
    Database,
    EventRejected,
    EventStore,
    create_event,
    parse_event,
    setup_schema,
    touches_any,
)
from sync._event import signature_valid  # noqa: E402
from sync._httpsig import sign_request  # noqa: E402
from sync._store import Status  # noqa: E402

CITY_CENTRE = (45_508_888, -73_561_668)     # micro-degrees; any mid-latitude city would do
METRES_PER_E6_LAT = EARTH_RADIUS_M * math.pi / 180 / 1e6
PUSH_BATCH = 200            # SyncSettings.push_batch
EVENT_MIX = (("alert", 0.60, (250, 1500, 50)), ("wide-alert", 0.10, (3000, 5000, 250)), ("sos", 0.30, None))
PUBLISH_COUNTS = ((0, 0.75), (1, 0.20), (2, 0.05))   # events per node over the run (mean 0.3)
ALERT_EVENTS = ("Gas leak", "Water main break", "Power outage", "Road closure", "Fire", "Police activity",
                "Flooding", "Fallen tree")
_ID_MARK = b',"id":"'


def _http_overheads() -> tuple[int, int]:
    """(request, response) header bytes of one sync call: HTTP/1.1 lines plus the real RFC 9421 signature."""
    key = nacl.signing.SigningKey(bytes(32))
    url = "https://node-0000.example.net:8443/sync/v1/push"
    signed = sign_request(key, "POST", url, b"x")
    request = ["POST /sync/v1/push HTTP/1.1", "Host: node-0000.example.net:8443", "Accept: */*",
               "Accept-Encoding: gzip, deflate", "User-Agent: Python/3.11 aiohttp/3.14",
               "Content-Type: application/x-ndjson", "Content-Length: 123456"]
    request += [f"{k}: {v}" for k, v in signed.items()]
    response = ["HTTP/1.1 200 OK", "Content-Type: application/json; charset=utf-8", "Content-Length: 123",
                "Date: Mon, 23 Nov 2026 21:40:00 GMT", "Server: Python/3.11 aiohttp/3.14"]
    return sum(len(h) + 2 for h in request) + 2, sum(len(h) + 2 for h in response) + 2


REQUEST_OVERHEAD, RESPONSE_OVERHEAD = _http_overheads()
PUSH_RESULT = len(b'{"ok":true,"results":{"accepted":200,"duplicates":0,"rejected":[]}}')


# -- areas of events, as a city-scale node would read them from the bodies of its kinds -------------------------

def e6_text(value: int) -> str:
    """Integer micro-degrees as the decimal string CAP carries (exact, no float)."""
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 1_000_000}.{abs(value) % 1_000_000:06d}"


_AREAS = build_registry()


def event_areas(kind: str, body: dict) -> tuple[Circle, ...] | None:
    """The circles an event's body is about, or None for the whole city: the node's own readers (node/areas.py)."""
    return _AREAS.areas(kind, body)


def in_interest(areas: tuple[Circle, ...] | None, interest: Circle | None) -> bool:
    """Whether a node with this area of interest (None: everything) keeps an event with these areas."""
    return interest is None or areas is None or touches_any(areas, interest)


def line_id(line: bytes) -> str:
    """The id of a canonical wire event: no member after "id" (kind, seq, sig, ts, v) can hold the marker."""
    start = line.rfind(_ID_MARK) + len(_ID_MARK)
    return line[start:start + 64].decode("ascii")


# -- the city --------------------------------------------------------------------------------------------------

class SimNode:
    """One building's node: its key, place, area of interest, peers, what it holds and what it cost."""

    __slots__ = ("index", "key", "id", "name", "where", "aoi", "peers", "held", "seqs", "log", "outbox", "inbox",
                 "cursor", "sent", "received", "requests", "duplicates", "out_of_area", "refused", "cpu", "store",
                 "quarantined")

    def __init__(self, index: int, key: nacl.signing.SigningKey, where: Circle, aoi: Circle | None) -> None:
        self.index = index
        self.key = key
        self.id = key.verify_key.encode().hex()
        self.name = f"Building {index}"
        self.where = where
        self.aoi = aoi
        self.peers: list[SimNode] = []
        self.held: dict[str, tuple] = {}           # id -> (line, areas, parsed event kept for the real store)
        self.seqs: dict[tuple[str, int], str] = {}  # (author, seq) -> id
        self.log: list[str] = []                   # ids in the order stored (the anti-entropy cursor indexes it)
        self.outbox: list[tuple[str, SimNode | None]] = []
        self.inbox: list[tuple[list[bytes], SimNode]] = []
        self.cursor: dict[int, int] = {}
        self.sent = self.received = self.requests = 0
        self.duplicates = self.out_of_area = self.refused = 0
        self.cpu = 0.0
        self.store: EventStore | None = None
        self.quarantined: set[str] = set()


def place_nodes(count: int, spacing: float, rng: random.Random) -> np.ndarray:
    """Metres (x east, y north) of `count` buildings on a jittered square grid centred on the city centre."""
    cols = math.ceil(math.sqrt(count))
    cells = np.array([(i % cols, i // cols) for i in range(count)], dtype=float)
    jitter = np.array([(rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35)) for _ in range(count)])
    xy = (cells + jitter) * spacing
    return xy - xy.mean(axis=0)


def to_circle(x: float, y: float, radius: int) -> Circle:
    lat0, lon0 = CITY_CENTRE
    lat = lat0 + round(y / METRES_PER_E6_LAT)
    lon = lon0 + round(x / (METRES_PER_E6_LAT * math.cos(math.radians(lat0 / 1e6))))
    return Circle(lat, lon, radius)


def nearest_peers(xy: np.ndarray, k: int) -> list[set[int]]:
    """Each node's k nearest nodes, made mutual (an approval goes both ways)."""
    peers: list[set[int]] = [set() for _ in range(len(xy))]
    k = min(k, len(xy) - 1)
    for start in range(0, len(xy), 512):
        block = xy[start:start + 512]
        d = ((block[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)
        for row, i in enumerate(range(start, start + len(block))):
            d[row, i] = np.inf
        for row, nearest in enumerate(np.argpartition(d, k, axis=1)[:, :k]):
            for j in nearest:
                peers[start + row].add(int(j))
                peers[int(j)].add(start + row)
    return peers


def sector_peers(xy: np.ndarray, sectors: int, reach: float) -> list[set[int]]:
    """Each node's nearest node in each of `sectors` equal directions (within `reach` metres), made mutual.

    With sectors of at most 60 degrees a node has a peer nearer than itself to any other node within reach (the
    nearest one in that node's direction), so the relay path from an alert's author, at the centre of its
    circle, to any node it touches can go through nodes nearer the centre, which it touches too. Plain k-nearest
    peering lacks this: a node at the edge of an event's reach whose nearest neighbours all lie further out
    never receives it, with area filtering (seen with --peering nearest).
    """
    peers: list[set[int]] = [set() for _ in range(len(xy))]
    for start in range(0, len(xy), 512):
        block = xy[start:start + 512]
        delta = xy[None, :, :] - block[:, None, :]
        d = np.hypot(delta[..., 0], delta[..., 1])
        sector = ((np.arctan2(delta[..., 1], delta[..., 0]) + math.pi) / (2 * math.pi) * sectors).astype(int) % sectors
        for row, i in enumerate(range(start, start + len(block))):
            d[row, i] = np.inf
        d[d > reach] = np.inf
        for row in range(len(block)):
            for s in range(sectors):
                masked = np.where(sector[row] == s, d[row], np.inf)
                j = int(np.argmin(masked))
                if masked[j] < np.inf:
                    peers[start + row].add(j)
                    peers[j].add(start + row)
    return peers


@dataclass
class Result:
    """The figures of one run."""

    mode: str
    nodes: int
    events: int
    rounds_converged: int | None
    rounds_run: int
    missing: int
    expected_per_node: float
    stored_mean: float
    stored_max: int
    traffic_mean_kb: float
    traffic_p95_kb: float
    received_mean_kb: float
    requests_mean: float
    duplicates_mean: float
    heads_bytes_mean: float
    cpu_ms_mean: float
    peers_mean: float
    store_nodes: int
    store_disagreements: int
    equivocator_area: int
    equivocator_quarantined: int
    seconds: float


class City:
    """The simulation of one city size in one mode ("areas" or "flood")."""

    def __init__(self, size: int, mode: str, args: argparse.Namespace) -> None:
        self.size, self.mode, self.args = size, mode, args
        self.rng = random.Random(f"{args.seed}:{size}")          # the same city and events in both modes
        self.loss_rng = random.Random(f"{args.seed}:{size}:loss")
        self.registry = build_registry()
        self.now = 1_790_000_000
        self.missing = 0
        self.disagreements = 0
        self.nodes: list[SimNode] = []
        self.equivocator: SimNode | None = None

    # -- set-up -------------------------------------------------------------------------------------------------

    def build(self) -> list:
        """Place the nodes, peer them and create every event; returns the events with their publishers."""
        args, rng = self.args, self.rng
        xy = place_nodes(self.size, args.spacing_m, rng)
        for i, (x, y) in enumerate(xy):
            where = to_circle(float(x), float(y), 0)
            aoi = Circle(where.lat_e6, where.lon_e6, args.aoi_m) if self.mode == "areas" else None
            self.nodes.append(SimNode(i, nacl.signing.SigningKey(rng.randbytes(32)), where, aoi))
        links = (sector_peers(xy, args.peers, 4 * args.spacing_m) if args.peering == "sectors"
                 else nearest_peers(xy, args.peers))
        for node, peers in zip(self.nodes, links):
            node.peers = [self.nodes[j] for j in sorted(peers)]
        events = []
        counts, weights = zip(*PUBLISH_COUNTS)
        for node in self.nodes:
            for seq in range(1, rng.choices(counts, weights)[0] + 1):
                events.append((node, self._make_event(node, seq)))
        # One node in the middle signs two different events with one seq, each sent to half its peers.
        self.equivocator = min(self.nodes, key=lambda n: abs(xy[n.index]).sum())
        twins = [self._sos(self.equivocator, seq=1_000, raised=self.now - i) for i in range(2)]
        return events + [(self.equivocator, twins[0]), (self.equivocator, twins[1])]

    def _make_event(self, node: SimNode, seq: int):
        kind = self.rng.choices([m[0] for m in EVENT_MIX], [m[1] for m in EVENT_MIX])[0]
        if kind == "sos":
            return self._sos(node, seq=seq, raised=self.now - self.rng.randrange(600))
        low, high, step = dict((m[0], m[2]) for m in EVENT_MIX)[kind]
        radius = self.rng.randrange(low, high + 1, step)
        what = self.rng.choice(ALERT_EVENTS)
        cap = manager_alert({"event": what, "headline": f"{what} near {node.name}", "radius_km": radius / 1000,
                             "description": f"{what} reported near {node.name}. Avoid the area and follow the "
                                            "instructions of the emergency services on site.",
                             "expires_hours": 12},
                            node_key=node.id, node_name=node.name,
                            location=(e6_text(node.where.lat_e6), e6_text(node.where.lon_e6)), now=self.now)
        return create_event(node.key, self.registry, kind=ALERT, seq=seq, body={"cap": cap}, ttl=12 * 3600,
                            now=self.now)

    def _sos(self, node: SimNode, *, seq: int, raised: int):
        # The building's location as the node publishes it: rounded to 0.01 degree (node.federation.areas.coarse_location).
        coarse = {"lat_e6": round(node.where.lat_e6, -4), "lon_e6": round(node.where.lon_e6, -4)}
        return create_event(node.key, self.registry, kind=SOS, seq=seq,
                            body={"building": node.name, "raised": raised, "location": coarse}, ttl=6 * 3600,
                            now=self.now)

    def expected(self, events: list) -> int:
        """How many (node, event) pairs convergence needs: honest events, each at every node it touches."""
        if self.mode == "flood":
            return self.size * sum(1 for author, _ in events if author is not self.equivocator)
        lat = np.array([n.where.lat_e6 for n in self.nodes], dtype=float)
        lon = np.array([n.where.lon_e6 for n in self.nodes], dtype=float)
        metres_lon = METRES_PER_E6_LAT * math.cos(math.radians(CITY_CENTRE[0] / 1e6))
        total = 0
        for author, event in events:
            if author is self.equivocator:
                continue
            areas = event_areas(event.kind, event.body_value())
            if areas is None:
                total += self.size
                continue
            near: set[int] = set()
            for area in areas:
                # A generous box first (numpy), then the exact test every node applies.
                reach = (area.radius_m + self.args.aoi_m) * 1.05 + 50
                near.update(np.nonzero((np.abs(lat - area.lat_e6) * METRES_PER_E6_LAT <= reach)
                                       & (np.abs(lon - area.lon_e6) * metres_lon <= reach))[0].tolist())
            total += sum(1 for i in near if in_interest(areas, self.nodes[i].aoi))
        return total

    # -- ingest: the real checks, the store's merge rule -----------------------------------------------------

    def ingest(self, node: SimNode, lines: list[bytes], origin: SimNode | None) -> list:
        """Parse, filter by area, verify and merge `lines` at `node`; returns (event, expected status) pairs for a
        node that runs the real store."""
        checks = []
        quarantine = []
        for line in lines:
            event_id = line_id(line)
            held = node.held.get(event_id)
            if held is not None:
                node.duplicates += 1
                if node.store is not None:   # the store looks at quarantine before ids
                    checks.append((held[2], "quarantined" if held[2].author in node.quarantined else "DUPLICATE"))
                continue
            started = time.perf_counter()
            try:
                event = parse_event(line, self.registry, now=self.now)
            except EventRejected:
                node.refused += 1
                node.cpu += time.perf_counter() - started
                continue
            areas = event_areas(event.kind, event.body_value())
            if not in_interest(areas, node.aoi):
                node.out_of_area += 1
                node.cpu += time.perf_counter() - started
                continue
            valid = signature_valid(event)
            node.cpu += time.perf_counter() - started
            if not valid:
                node.refused += 1
                continue
            # EventStore.prepare's rule: quarantined author, then one id per (author, seq).
            if event.author in node.quarantined:
                node.refused += 1
                status = "quarantined"
            elif (held_id := node.seqs.get((event.author, event.seq))) is not None and held_id != event.id:
                quarantine.append(event.author)   # the engine quarantines after the batch is classified
                status = "EQUIVOCATION"
            else:
                status = "NEW"
                node.held[event.id] = (line, areas, event if node.store is not None else None)
                node.seqs[(event.author, event.seq)] = event.id
                node.log.append(event.id)
                node.outbox.append((event.id, origin))
                if event.author != self.equivocator.id:
                    self.missing -= 1
            if node.store is not None:
                checks.append((event, status))
        node.quarantined.update(quarantine)
        return checks

    async def real_store(self, node: SimNode, checks: list, origin: SimNode | None) -> None:
        """Run the batch through the node's real EventStore and count any classification that differs."""
        if not checks:
            return
        plan = await node.store.prepare([event for event, _ in checks])
        new = []
        for (event, expected), status, index in zip(checks, plan.statuses, range(len(checks))):
            name = status.name if isinstance(status, Status) else status.reason
            if name != expected:
                self.disagreements += 1
            if status is Status.NEW:
                new.append(event)
            elif status is Status.EQUIVOCATION:
                await node.store.quarantine(event, plan.conflicts[index], now=self.now)
        await node.store.commit(new, [], origin.id if origin else "local", now=self.now)

    async def receive(self, node: SimNode, lines: list[bytes], origin: SimNode | None) -> None:
        checks = self.ingest(node, lines, origin)
        if node.store is not None:
            await self.real_store(node, checks, origin)

    # -- traffic ------------------------------------------------------------------------------------------------

    def call(self, caller: SimNode, server: SimNode, request: int, response: int | None) -> bool:
        """Account one request (and its response unless it is lost); False if it was lost."""
        caller.requests += 1
        caller.sent += request + REQUEST_OVERHEAD
        if self.loss_rng.random() < self.args.loss:
            return False
        server.received += request + REQUEST_OVERHEAD
        if response is not None:
            server.sent += response + RESPONSE_OVERHEAD
            caller.received += response + RESPONSE_OVERHEAD
        return True

    def push_phase(self) -> None:
        """Every node pushes what it stored last round to each peer (except where it came from) it touches."""
        for node in self.nodes:
            if not node.outbox:
                continue
            batches: dict[int, list[bytes]] = {}
            for event_id, origin in node.outbox:
                line, areas, _ = node.held[event_id]
                for peer in node.peers:
                    if peer is not origin and in_interest(areas, peer.aoi):
                        batches.setdefault(peer.index, []).append(line)
            node.outbox = []
            for index, lines in batches.items():
                peer = self.nodes[index]
                for start in range(0, len(lines), PUSH_BATCH):
                    batch = lines[start:start + PUSH_BATCH]
                    if self.call(node, peer, sum(len(line) + 1 for line in batch), PUSH_RESULT):
                        peer.inbox.append((batch, node))

    async def deliver(self) -> None:
        for node in self.nodes:
            inbox, node.inbox = node.inbox, []
            for lines, sender in inbox:
                await self.receive(node, lines, sender)

    async def anti_entropy(self) -> None:
        """Each node asks each peer what it stored since the last pull that touches its area, then the missing."""
        for node in self.nodes:
            circle = {} if node.aoi is None else {"aoi": {"lat_e6": node.aoi.lat_e6, "lon_e6": node.aoi.lon_e6,
                                                          "radius_m": node.aoi.radius_m}}
            for peer in node.peers:
                since = node.cursor.get(peer.index, 0)
                request = len(json.dumps(circle | {"since": since, "limit": 5000}, separators=(",", ":")))
                offered = [i for i in peer.log[since:] if in_interest(peer.held[i][1], node.aoi)]
                if not self.call(node, peer, request, 67 * len(offered) + 40):
                    continue
                node.cursor[peer.index] = len(peer.log)
                wanted = [i for i in offered if i not in node.held]
                if not wanted:
                    continue
                lines = [peer.held[i][0] for i in wanted]
                if self.call(node, peer, 67 * len(wanted) + 10, sum(len(line) + 1 for line in lines) + 40):
                    await self.receive(node, lines, peer)

    # -- the run ------------------------------------------------------------------------------------------------

    async def run(self) -> Result:
        started = time.perf_counter()
        events = self.build()
        self.missing = self.expected(events)
        expected_total = self.missing
        sample = self.rng.sample(self.nodes, min(self.args.store_sample, self.size))
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: ASYNC240 - once, before anything is timed
        folder = Path(tempfile.mkdtemp(prefix="nncity", dir=shm))
        databases = []
        try:
            for node in sample:
                db = await Database.open(folder / f"{node.index}.db")
                databases.append(db)
                await setup_schema(db)
                node.store = EventStore(db)
            twins = [event for author, event in events if author is self.equivocator][-2:]
            for author, event in events:
                if author is self.equivocator and event in twins:
                    continue
                # The author stores its own event (as SyncEngine.publish does) and pushes it next round.
                author.held[event.id] = (event.to_line(), event_areas(event.kind, event.body_value()),
                                         event if author.store is not None else None)
                author.seqs[(event.author, event.seq)] = event.id
                author.log.append(event.id)
                author.outbox.append((event.id, None))
                self.missing -= author is not self.equivocator
                if author.store is not None:
                    await author.store.commit([event], [], "local", now=self.now)
            eq = self.equivocator
            await self.receive(eq, [twins[0].to_line()], None)
            eq.outbox = []
            for n, peer in enumerate(eq.peers):
                twin = twins[n % 2]
                if self.call(eq, peer, len(twin.to_line()) + 1, PUSH_RESULT):
                    peer.inbox.append(([twin.to_line()], eq))
            converged = None
            rounds = 0
            for rounds in range(1, self.args.max_rounds + 1):
                self.push_phase()
                await self.deliver()
                if rounds % self.args.ae_every == 0:
                    await self.anti_entropy()
                if self.missing == 0 and converged is None:
                    converged = rounds
                if converged is not None and not any(n.outbox or n.inbox for n in self.nodes):
                    break
            for node in sample:
                if await node.store.count() != len(node.held) or \
                        set(await node.store.quarantined()) != node.quarantined:
                    self.disagreements += 1
        finally:
            for db in databases:
                await db.close()
            shutil.rmtree(folder, ignore_errors=True)
        return self.figures(events, expected_total, converged, rounds, len(sample), time.perf_counter() - started)

    def figures(self, events, expected_total, converged, rounds, store_nodes, seconds) -> Result:
        nodes = self.nodes
        traffic = sorted((n.sent + n.received) / 1024 for n in nodes)
        heads = []
        for n in nodes:
            top: dict[str, int] = {}
            for author, seq in n.seqs:
                top[author] = max(seq, top.get(author, 0))
            heads.append(len(json.dumps({"heads": top}, separators=(",", ":"))))
        twins = [e for a, e in events if a is self.equivocator][-2:]
        area = sum(1 for n in nodes if in_interest(event_areas(SOS, twins[0].body_value()), n.aoi))
        return Result(
            mode=self.mode, nodes=self.size, events=len(events), rounds_converged=converged, rounds_run=rounds,
            missing=self.missing, expected_per_node=expected_total / self.size,
            stored_mean=statistics.fmean(len(n.held) for n in nodes), stored_max=max(len(n.held) for n in nodes),
            traffic_mean_kb=statistics.fmean(traffic), traffic_p95_kb=traffic[int(0.95 * (len(traffic) - 1))],
            received_mean_kb=statistics.fmean(n.received / 1024 for n in nodes),
            requests_mean=statistics.fmean(n.requests for n in nodes),
            duplicates_mean=statistics.fmean(n.duplicates for n in nodes),
            heads_bytes_mean=statistics.fmean(heads), cpu_ms_mean=statistics.fmean(n.cpu * 1000 for n in nodes),
            peers_mean=statistics.fmean(len(n.peers) for n in nodes), store_nodes=store_nodes,
            store_disagreements=self.disagreements, equivocator_area=area,
            equivocator_quarantined=sum(1 for n in nodes if self.equivocator.id in n.quarantined),
            seconds=seconds)


def run_job(size: int, mode: str, args: argparse.Namespace) -> Result:
    """One simulation, in a worker process."""
    if os.environ.get("NNODE_BENCH_PROFILE"):
        import cProfile
        import pstats
        profiler = cProfile.Profile()
        result = profiler.runcall(asyncio.run, City(size, mode, args).run())
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
        return result
    return asyncio.run(City(size, mode, args).run())


# -- output -----------------------------------------------------------------------------------------------------

def peering(args: argparse.Namespace) -> str:
    if args.peering == "sectors":
        return f"peers: the nearest node in each of {args.peers} directions (mutual)"
    return f"peers: the {args.peers} nearest nodes (mutual)"


def table(results: list[Result]) -> str:
    head = ("mode", "nodes", "peers", "events", "rounds", "missing", "stored/node", "max", "KB/node", "p95 KB",
            "recv KB", "dup/node", "req/node", "heads B", "cpu ms", "sqlite")
    rows = [head]
    for r in results:
        rows.append((r.mode, f"{r.nodes:,}", f"{r.peers_mean:.1f}", f"{r.events:,}",
                     f"{r.rounds_converged}/{r.rounds_run}" if r.rounds_converged else f"-/{r.rounds_run}",
                     f"{r.missing:,}", f"{r.stored_mean:,.1f}", f"{r.stored_max:,}", f"{r.traffic_mean_kb:,.0f}",
                     f"{r.traffic_p95_kb:,.0f}", f"{r.received_mean_kb:,.0f}", f"{r.duplicates_mean:,.0f}",
                     f"{r.requests_mean:,.0f}", f"{r.heads_bytes_mean:,.0f}", f"{r.cpu_ms_mean:,.0f}",
                     f"{r.store_nodes}:{'ok' if r.store_disagreements == 0 else r.store_disagreements}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows)


def plot(results: list[Result], path: Path, args: argparse.Namespace) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode, style, label in (("areas", "o-", f"areas of interest ({args.aoi_m / 1000:g} km)"),
                               ("flood", "s--", "flooding (no areas)")):
        rs = [r for r in results if r.mode == mode]
        if rs:
            left.plot([r.nodes for r in rs], [r.traffic_mean_kb for r in rs], style, label=label)
            right.plot([r.nodes for r in rs], [r.stored_mean for r in rs], style, label=label)
    for ax, title in ((left, "traffic per node (KB sent + received)"), (right, "events stored per node")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes in the city")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"City-scale sync: a node every {args.spacing_m:g} m, {peering(args)}, "
                 f"{args.loss:.0%} loss, anti-entropy every {args.ae_every} rounds", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000,3000,10000", help="comma-separated node counts")
    parser.add_argument("--quick", action="store_true", help="a small run: 100 and 300 nodes")
    parser.add_argument("--flood-max", type=int, default=1000, help="largest city also run with flooding")
    parser.add_argument("--spacing-m", type=float, default=400.0, help="metres between nodes on the grid")
    parser.add_argument("--aoi-m", type=int, default=2000, help="radius of a node's area of interest, metres")
    parser.add_argument("--peers", type=int, default=6, help="directions (or nearest nodes) each node peers with")
    parser.add_argument("--peering", choices=("sectors", "nearest"), default="sectors",
                        help="nearest node in each of --peers directions, or the --peers nearest nodes")
    parser.add_argument("--loss", type=float, default=0.05, help="chance that a push or pull is lost")
    parser.add_argument("--ae-every", type=int, default=5, help="rounds between anti-entropy pulls")
    parser.add_argument("--max-rounds", type=int, default=300)
    parser.add_argument("--store-sample", type=int, default=100, help="nodes that also run the real SQLite store")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "out" / "city.png")
    args = parser.parse_args()
    sizes = [100, 300] if args.quick else sorted(int(s) for s in args.sizes.split(","))
    if args.quick:
        args.flood_max = min(args.flood_max, 300)
    jobs = [(size, "areas") for size in sizes] + [(size, "flood") for size in sizes if size <= args.flood_max]
    # Largest first, so the two workers finish together.
    jobs.sort(key=lambda job: -(job[0] ** 2 if job[1] == "flood" else job[0] * 150))
    started = time.perf_counter()
    print(f"city: sizes {sizes}, flooding up to {args.flood_max} nodes, a node every {args.spacing_m:g} m "
          f"({1e6 / args.spacing_m ** 2:.1f}/km2), area of interest {args.aoi_m} m, {peering(args)}, "
          f"loss {args.loss:.0%}, "
          f"anti-entropy every {args.ae_every} rounds, {args.jobs} workers",
          flush=True)
    results: list[Result] = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {pool.submit(run_job, size, mode, args): (size, mode) for size, mode in jobs}
        for future in as_completed(futures):
            r = future.result()
            results.append(r)
            print(f"  {r.mode} {r.nodes}: converged in {r.rounds_converged} rounds, {r.traffic_mean_kb:,.0f} KB "
                  f"and {r.stored_mean:,.1f} events per node ({r.seconds:.0f} s)", flush=True)
    results.sort(key=lambda r: (r.mode != "areas", r.nodes))
    print()
    print("Real code at every node: parse_event (node kinds' validators) and signature_valid on each event it "
          "receives for the first time, EventStore.prepare's merge rule; the real SQLite EventStore at the "
          "'sqlite' sample of nodes (ok: every classification and final count agreed). Modelled: links, HTTP "
          "framing, area filtering and the cursor pull (the node does not do them yet). Per node: peers, KB sent "
          "+ received (mean, 95th percentile), KB received, events stored (mean, max), duplicates received, "
          "requests made, size of the heads map a real pull would send, CPU in parse + verify; rounds: to "
          "converge / run; sqlite: nodes with the real store and whether it agreed.")
    print(table(results))
    for r in results:
        if r.mode == "areas":
            print(f"equivocator ({r.nodes} nodes): quarantined by {r.equivocator_quarantined} of the "
                  f"{r.equivocator_area} nodes its events touch")
    if any(size > args.flood_max for size in sizes):
        print(f"flooding not run above {args.flood_max} nodes: every node would store every event "
              f"(cost grows with the square of the city)")
    areas = [r for r in results if r.mode == "areas"]
    floods = {r.nodes: r for r in results if r.mode == "flood"}
    for r in areas:
        if r.nodes in floods:
            print(f"{r.nodes} nodes: flooding costs {floods[r.nodes].traffic_mean_kb / r.traffic_mean_kb:.1f}x "
                  f"the traffic and {floods[r.nodes].stored_mean / r.stored_mean:.1f}x the events per node")
    plot(results, args.plot, args)
    print(f"plot: {args.plot}")
    print(f"total {time.perf_counter() - started:.0f} s")
    if len(areas) >= 2:
        print(f"per-node traffic with areas, {areas[-2].nodes} -> {areas[-1].nodes} nodes: "
              f"x{areas[-1].traffic_mean_kb / areas[-2].traffic_mean_kb:.2f}")
    print(f"city_cost_ratio={areas[-1].traffic_mean_kb / areas[0].traffic_mean_kb:.3f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
