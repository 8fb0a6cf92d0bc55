"""The sync engine: ingest (validate, verify, store, forward), publishing, push gossip and anti-entropy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nacl.signing

from ._area import Circle, touches_any
from ._bounded import MIN_RATE as _MIN_RATE
from ._bounded import PULL_DEADLINE as _PULL_DEADLINE
from ._bounded import RATE_GRACE as _RATE_GRACE
from ._canonical import MAX_SAFE_INT
from ._client import MAX_PULL_BYTES, PeerClient, peer_session
from ._errors import BadSignature, EventRejected, MalformedEvent, PeerUnreachable, SyncError
from ._event import Event, create_event, parse_event
from ._kinds import TOMBSTONE, KindRegistry
from ._peers import APPROVED, Peer, PeerStore
from ._results import IngestResult, Stats
from ._store import EventStore, Gap, Status, equivocation_error
from ._verifier import Verifier

log = logging.getLogger("nnode.sync")

# Defaults of SyncSettings.push_retry_delay and .failed_peer_retry; the settings read them when they are made, so
# code that still shrinks these module attributes (before creating its settings) keeps working.
PUSH_RETRY_DELAY = 2.0
PULL_MAX_ROUNDS = 1000
# Pulled lines are gathered up to this many (or PULL_INGEST_BYTES) before one ingest (one verify call and one
# transaction): TCP reads bring about 100 lines each, and every ingest has a fixed cost of queries and a commit.
PULL_INGEST_LINES = 1000
PULL_INGEST_BYTES = 1024 * 1024
FAILED_PEER_RETRY = 5.0
# Bytes of pull answers one sync with a peer reads before it stops (and goes on at its next round, soon after).
MAX_SYNC_BYTES = 64 * 1024 * 1024
# Defaults of SyncSettings.pull_deadline, .min_rate and .rate_grace (see _bounded.py), read when settings are made.
PULL_DEADLINE = _PULL_DEADLINE
MIN_RATE = _MIN_RATE
RATE_GRACE = _RATE_GRACE


@dataclass(frozen=True)
class SyncSettings:
    """Tunables of the protocol; the node fills them from its config."""

    anti_entropy_interval: float = 30.0
    push_batch: int = 200
    push_queue: int = 20_000
    pull_limit: int = 5000
    max_batch_events: int = 5000
    max_batch_bytes: int = 8 * 1024 * 1024
    max_skew: int = 60
    rate: float = 50.0
    burst: int = 200
    request_timeout: float = 30.0
    verify_in_process: bool = True
    # This node's area of interest (DESIGN section 9), None for everything. With one, it keeps only events whose
    # area touches it, and asks its peers for only those; it tells them so in every pull, and each peer then also
    # pushes it only those.
    interest: Circle | None = None
    # Seconds a push worker waits after a failed push before it sends its next batch.
    push_retry_delay: float = field(default_factory=lambda: PUSH_RETRY_DELAY)
    # A peer whose last round failed is tried again this soon (not waiting the full anti-entropy interval).
    failed_peer_retry: float = field(default_factory=lambda: FAILED_PEER_RETRY)
    # Bounds of the calls to one peer (see _bounded.py): `request_timeout` is the whole of a heads, push or
    # descriptor call; a pull answer has `pull_deadline`; every answer must come at `min_rate` bytes/s on average
    # once `rate_grace` seconds were spent waiting on it; one sync reads at most `max_sync_bytes` of pull answers.
    pull_deadline: float = field(default_factory=lambda: PULL_DEADLINE)
    min_rate: float = field(default_factory=lambda: MIN_RATE)
    rate_grace: float = field(default_factory=lambda: RATE_GRACE)
    max_sync_bytes: int = field(default_factory=lambda: MAX_SYNC_BYTES)


@dataclass
class _PeerSync:
    """One approved peer's anti-entropy: its own task and schedule, so a slow peer delays only itself."""

    peer: Peer
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class _Outbox:
    """Events waiting to be pushed to one peer, and the task that pushes them."""

    def __init__(self, peer: Peer, size: int) -> None:
        self.peer = peer
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(size)
        self.task: asyncio.Task[None] | None = None


class SyncEngine:
    """Owns the event flow of one node. Start with `start()`, stop with `close()` (idempotent)."""

    def __init__(self, key: nacl.signing.SigningKey, store: EventStore, peers: PeerStore, registry: KindRegistry,
                 settings: SyncSettings | None = None) -> None:
        self.key = key
        self.node_id = key.verify_key.encode().hex()
        self.store = store
        self.peers = peers
        self.registry = registry
        # Made here, not as the default argument, so its timing defaults are read now, not at import.
        settings = SyncSettings() if settings is None else settings
        self.settings = settings
        self.stats = Stats()
        self.listeners: list[Callable[[list[Event]], Any]] = []
        # Checks the node adds before events from peers are stored (under the ingest lock, so one at a time): each
        # gets a batch's new, verified events (and bodies arriving for headers held without one) and answers
        # {event id: why} for those it refuses, which are then neither stored nor forwarded (say, an audit-log
        # head that does not extend the last one held).
        self.admission: list[Callable[[Sequence[Event]], Awaitable[dict[str, EventRejected]]]] = []
        self._ingest_lock = asyncio.Lock()
        self._verifier = Verifier(settings.verify_in_process)
        self._outboxes: dict[str, _Outbox] = {}
        self._session: aiohttp.ClientSession | None = None
        self.client: PeerClient | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._syncing: dict[str, asyncio.Lock] = {}
        self._peer_syncs: dict[str, _PeerSync] = {}
        self._unfinished: set[str] = set()   # peers whose last sync stopped at max_sync_bytes
        self._started = False
        self._closed = False
        self._held: str | None = None  # why publishing waits (a node restored from a backup), if it does
        self._synced_while_held: set[str] = set()
        self.on_peer_synced: Callable[[], Awaitable[None]] | None = None
        # Peers' areas of interest, as each said in its last pull (until it has, it gets everything, and filters).
        self.interests: dict[str, Circle | None] = {}

    def applies(self, event: Event, interest: Circle | None, known: dict[str, Any] | None = None) -> bool:
        """Whether `event` touches `interest` (None: everything). An event with no area, or whose body was dropped,
        applies everywhere. `known` caches the events' areas by id across calls."""
        if interest is None:
            return True
        if known is None or event.id not in known:
            areas = self.registry.areas(event.kind, event.body_value())
            if known is not None:
                known[event.id] = areas
        else:
            areas = known[event.id]
        return areas is None or touches_any(areas, interest)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP client, start push workers for approved peers and the anti-entropy loop."""
        settings = self.settings
        self._session = peer_session(connector=aiohttp.TCPConnector(limit_per_host=4))
        self.client = PeerClient(self._session, self.key, timeout=settings.request_timeout,
                                 call_deadline=settings.request_timeout, pull_deadline=settings.pull_deadline,
                                 min_rate=settings.min_rate, rate_grace=settings.rate_grace,
                                 max_pull_bytes=max(MAX_PULL_BYTES, 2 * settings.max_batch_bytes))
        if dropped := await self.store.drop_beyond_range(self.node_id):
            log.warning("own events numbered past the event format's range deleted: no peer accepts them",
                        extra={"count": dropped})
        self._started = True
        await self.refresh_peers()
        self._loop_task = asyncio.create_task(self._anti_entropy_loop(), name="nnode-anti-entropy")

    async def close(self) -> None:
        """Stop every task and close the client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in [self._loop_task, *(o.task for o in self._outboxes.values()),
                             *(s.task for s in self._peer_syncs.values())] if t]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._outboxes.clear()
        self._peer_syncs.clear()
        if self._session is not None:
            await self._session.close()
        await self._verifier.close()

    def wake(self) -> None:
        """Re-read peers and run an anti-entropy round now (after an approval, say)."""
        self._wake.set()

    async def refresh_peers(self) -> list[Peer]:
        """Match push workers and anti-entropy tasks (once started) to the approved peers that have a URL."""
        approved = [p for p in await self.peers.list(APPROVED) if p.url and p.key != self.node_id]
        wanted = {p.key: p for p in approved}
        for key in list(self._outboxes):
            if key not in wanted:
                outbox = self._outboxes.pop(key)
                if outbox.task:
                    outbox.task.cancel()
        for key in list(self._peer_syncs):
            if key not in wanted:
                task = self._peer_syncs.pop(key).task
                if task:
                    task.cancel()
        if self._started and not self._closed:
            for key, peer in wanted.items():
                if key in self._peer_syncs:
                    self._peer_syncs[key].peer = peer
                else:
                    state = self._peer_syncs[key] = _PeerSync(peer)
                    state.task = asyncio.create_task(self._peer_loop(state), name=f"nnode-sync-{key[:8]}")
        for key, peer in wanted.items():
            if key in self._outboxes:
                self._outboxes[key].peer = peer
            else:
                outbox = _Outbox(peer, self.settings.push_queue)
                outbox.task = asyncio.create_task(self._push_worker(outbox), name=f"nnode-push-{key[:8]}")
                self._outboxes[key] = outbox
        return approved

    # -- events in ----------------------------------------------------------------------------------------------

    async def ingest(self, lines: Sequence[bytes], origin: str) -> IngestResult:
        """Validate, verify and store wire events from `origin` (a peer key); forward what is new.

        Signatures are checked off the event loop (a worker process for large batches, see _verifier.py) before
        the store lock is taken, so that while one batch is verified the next can be parsed and the previous one
        committed.
        """
        parsed = self._parse(lines)
        result = IngestResult()
        for e in parsed:
            if isinstance(e, Event) and e.seq > result.seen.get(e.author, 0):
                result.seen[e.author] = e.seq
        # Out of this node's area: neither kept nor forwarded (nor verified). `positions` maps back to input order.
        interest = self.settings.interest
        positions = [i for i, e in enumerate(parsed) if not isinstance(e, Event) or e.author == self.node_id
                     or self.applies(e, interest)]   # our own events come back after a restore: keep them
        if len(positions) < len(parsed):
            # ...except one at an (author, seq) held here under another id: that is an equivocation, which must be
            # seen wherever the two versions meet, whatever their areas.
            kept = set(positions)
            outside = {i: e for i, e in enumerate(parsed) if i not in kept and isinstance(e, Event)}
            held = await self.store.ids_at([(e.author, e.seq) for e in outside.values()])
            positions = sorted(kept | {i for i, e in outside.items() if held.get((e.author, e.seq), e.id) != e.id})
        if len(positions) < len(parsed):
            result.out_of_area = len(parsed) - len(positions)
            parsed = [parsed[i] for i in positions]
        candidates = [e for e in parsed if isinstance(e, Event)]
        # Known by the id held at each (author, seq): one lookup in the (author, seq) index, whose pages an
        # author's run of seqs shares, instead of one in the id index, a random page of it for every event (at a
        # million events, most of them a read: bench/sync_ingest.py). Equal ids are the same event (the id is the
        # header's hash, which holds author and seq).
        held = await self.store.ids_at([(e.author, e.seq) for e in candidates])
        unknown = [e for e in candidates if held.get((e.author, e.seq)) != e.id]
        valid = dict(zip((e.id for e in unknown), await self._verify(unknown)))
        async with self._ingest_lock:
            plan = await self.store.prepare(parsed)
            late = [e for s, e in zip(plan.statuses, plan.events)
                    if e is not None and s in (Status.NEW, Status.EQUIVOCATION) and e.id not in valid]
            if late:  # rare: not seen by the pre-check (an equivocation within this batch, say)
                valid.update(zip((e.id for e in late), await self._verify(late)))
            new: list[Event] = []
            fills: list[Event] = []
            where: dict[str, int] = {}   # input position of each new event and fill
            for index, (status, event) in enumerate(zip(plan.statuses, plan.events)):
                if isinstance(status, EventRejected):
                    result.rejected.append((positions[index], status))
                    continue
                assert event is not None   # only a rejection comes without its event
                if status in (Status.NEW, Status.EQUIVOCATION) and not valid[event.id]:
                    result.rejected.append((positions[index], BadSignature(
                        f"signature of event {event.id[:16]} does not verify against author {event.author[:16]}")))
                elif status is Status.EQUIVOCATION:
                    await self.store.quarantine(event, plan.conflicts[index])
                    error = equivocation_error(event, plan.conflicts[index])
                    log.warning("equivocation", extra={"author": event.author, "seq": event.seq, "origin": origin})
                    result.rejected.append((positions[index], error))
                elif status is Status.NEW:
                    new.append(event)
                    where[event.id] = positions[index]
                elif status is Status.FILL_BODY:
                    fills.append(event)
                    where[event.id] = positions[index]
                else:
                    result.duplicates += 1
            refused = await self._admit([*new, *fills])
            if refused:
                result.rejected.extend((where[event_id], error) for event_id, error in refused.items())
                result.rejected.sort(key=lambda item: item[0])
                new = [e for e in new if e.id not in refused]
                fills = [e for e in fills if e.id not in refused]
            result.stored = await self.store.commit(new, fills, origin)
        self._account(result)
        self._distribute(result.stored, origin)
        return result

    def _parse(self, lines: Sequence[bytes]) -> list[Event | EventRejected]:
        """Each wire line as an event, or the reason it was refused (one bad line never sinks its batch)."""
        now = int(time.time())
        parsed: list[Event | EventRejected] = []
        for line in lines:
            try:
                parsed.append(parse_event(line, self.registry, now=now))
            except EventRejected as exc:
                parsed.append(exc)
            except (ValueError, TypeError, RecursionError) as exc:
                parsed.append(MalformedEvent(f"unreadable event: {exc.__class__.__name__}"))
        return parsed

    async def _admit(self, events: Sequence[Event]) -> dict[str, EventRejected]:
        refused: dict[str, EventRejected] = {}
        for check in self.admission:
            remaining = [e for e in events if e.id not in refused]
            if remaining:
                refused.update(await check(remaining))
        return refused

    async def _verify(self, events: Sequence[Event]) -> list[bool]:
        if not events:
            return []
        return await self._verifier.verify([(bytes.fromhex(e.author), bytes.fromhex(e.sig) + e.signed_message())
                                            for e in events])

    def _account(self, result: IngestResult) -> None:
        self.stats.stored += len(result.stored)
        self.stats.duplicates += result.duplicates
        self.stats.out_of_area += result.out_of_area
        for _, error in result.rejected:
            self.stats.rejected[error.reason] += 1

    def _distribute(self, events: list[Event], origin: str) -> None:
        if not events:
            return
        targets = [outbox for key, outbox in self._outboxes.items() if key != origin]
        lines = [e.to_line() for e in events] if targets else []
        known: dict[str, Any] = {}
        for outbox in targets:
            interest = self.interests.get(outbox.peer.key)
            for event, line in zip(events, lines):
                if not self.applies(event, interest, known):
                    self.stats.out_of_area += 1
                    continue
                try:
                    outbox.queue.put_nowait(line)
                except asyncio.QueueFull:
                    # Anti-entropy repairs whatever a full outbox drops.
                    self.stats.push_dropped += 1
        for listener in self.listeners:
            try:
                listener(events)
            except Exception:  # a listener's bug must not break sync
                log.exception("event listener failed")

    @property
    def publishing_held(self) -> str | None:
        """Why publishing is held (after a restore), or None."""
        return self._held

    def hold_publishing(self, reason: str) -> None:
        """Refuse to publish until a sync round has succeeded with every approved peer (used after a restore, so
        the node takes back the events it signed after the backup before it signs new ones). With no peer to ask,
        only the manager can lift it (resume_publishing)."""
        self._held = reason
        self._synced_while_held = set()

    async def resume_publishing(self) -> None:
        """Lift a hold (the manager's decision, or every peer has synced)."""
        if self._held is None:
            return
        self._held = None
        log.info("publishing resumes")
        if self.on_peer_synced is not None:
            await self.on_peer_synced()

    async def _note_synced(self, peer: Peer) -> None:
        if self._held is None:
            return
        self._synced_while_held.add(peer.key)
        approved = {p.key for p in await self.peers.list(APPROVED) if p.url and p.key != self.node_id}
        if approved and approved <= self._synced_while_held:
            await self.resume_publishing()

    async def publish(self, kind: str, body: Any, *, ttl: int,
                      before_commit: Callable[[list[Event]], Any] | None = None) -> Event:
        """Sign and store a new event by this node, then push it to every approved peer."""
        [event] = await self.publish_many([(kind, body, ttl)], before_commit=before_commit)
        return event

    async def publish_many(self, items: Sequence[tuple[str, Any, int]], *,
                           before_commit: Callable[[list[Event]], Any] | None = None) -> list[Event]:
        """Sign and store new events by this node, (kind, body, ttl) each, in one transaction (all are stored or
        none: a body its kind refuses raises before anything is written), then push them.

        `before_commit` is handed the signed events once every check has passed, just before the transaction
        (node/safety/early.py announces a manager's alert to open pages while it is written); what it raises is
        logged, never in the way of the write."""
        if self._held:
            raise SyncError(f"{self._held}: this node publishes again once it has synced with every approved peer "
                            "(or, with none, once its manager runs `nnode resume-publishing`), so that it cannot "
                            "reuse its own seq numbers")
        async with self._ingest_lock:
            # From our own store only: a peer's word on our seqs is never taken (see _check_claims).
            seq = await self.store.next_seq(self.node_id)
            events = [create_event(self.key, self.registry, kind=kind, seq=seq + i, body=body, ttl=ttl)
                      for i, (kind, body, ttl) in enumerate(items)]
            for event in events:
                if event.kind == TOMBSTONE:
                    target = await self.store.get(event.body_value()["target"])
                    if target is None or target.author != self.node_id:
                        raise SyncError(f"tombstone target {event.body_value()['target'][:16]} is not an event of "
                                        "this node")
            if before_commit is not None:
                try:
                    before_commit(events)
                except Exception:
                    log.exception("before_commit hook failed")
            stored = await self.store.commit(events, [], "local")
        self.stats.stored += len(stored)
        self._distribute(stored, "local")
        return events

    async def delete(self, event_id: str) -> Event:
        """Publish a tombstone for one of this node's events; it outlives its target."""
        target = await self.store.get(event_id)
        if target is None or target.author != self.node_id:
            raise SyncError(f"event {event_id[:16]} is not an event of this node")
        ttl = max(target.expires - int(time.time()), 1) + 86_400
        return await self.publish(TOMBSTONE, {"target": event_id}, ttl=ttl)

    # -- push ---------------------------------------------------------------------------------------------------

    async def _push_worker(self, outbox: _Outbox) -> None:
        while True:
            batch = [await outbox.queue.get()]
            while len(batch) < self.settings.push_batch and not outbox.queue.empty():
                batch.append(outbox.queue.get_nowait())
            try:
                assert self.client is not None and outbox.peer.url
                await self.client.push(outbox.peer.url, batch)
            except PeerUnreachable as exc:
                # Dropped here, repaired by the peer's next pull from us.
                self.stats.push_dropped += len(batch)
                log.info("push failed", extra={"peer": outbox.peer.key, "error": str(exc)})
                await asyncio.sleep(self.settings.push_retry_delay)

    # -- pull / anti-entropy ------------------------------------------------------------------------------------

    async def _anti_entropy_loop(self) -> None:
        """Re-read the approved peers every interval or on wake(), and wake each peer's own loop on wake()."""
        while True:
            woken = self._wake.is_set()
            self._wake.clear()   # before refreshing: a wake() meanwhile (another approval) asks for one more
            try:
                await self.refresh_peers()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("anti-entropy: reading the peers failed")
            if woken:
                for state in self._peer_syncs.values():
                    state.wake.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.anti_entropy_interval)

    async def _peer_loop(self, state: _PeerSync) -> None:
        """One peer's rounds: at once, then every interval (sooner after a failure or an unfinished sync)."""
        while True:
            state.wake.clear()
            try:
                stored = await self.sync_with(state.peer)
            except asyncio.CancelledError:
                raise
            except Exception:   # a bug must not end this peer's rounds
                log.exception("anti-entropy round failed", extra={"peer": state.peer.key})
                stored = None
            delay = self.settings.anti_entropy_interval
            if stored is None or state.peer.key in self._unfinished:
                delay = min(delay, self.settings.failed_peer_retry)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.wake.wait(), delay)

    async def sync_with(self, peer: Peer) -> int | None:
        """Pull whatever `peer` has that we lack; the number of events stored, None if it failed. Never raises.

        A sync with the same peer already under way (the start-up round, say) is waited for and then followed by
        this one, so that what the peer held when this was called is here when it returns."""
        lock = self._syncing.setdefault(peer.key, asyncio.Lock())
        async with lock:
            try:
                return await self._pull(peer)
            except SyncError as exc:
                self.stats.sync_failed[exc.reason] += 1
                await self.peers.record_sync(peer.key, error=str(exc))
                log.info("sync failed", extra={"peer": peer.key, "error": str(exc)})
                return None

    async def _pull(self, peer: Peer) -> int:
        assert self.client is not None and peer.url
        theirs = await self.client.heads(peer.url)
        ours, tips = await self.store.heads_and_tips()
        quarantined = set(await self.store.quarantined())
        # Quarantined authors are named with the highest seq so the peer sends none of their events: refused
        # anyway, they would fill batches and starve the authors after them.
        asked = ours | {a: MAX_SAFE_INT for a in quarantined}
        gaps = await self.store.gaps()
        total = size = 0
        self._unfinished.discard(peer.key)
        for _ in range(PULL_MAX_ROUNDS):
            stored, more, seen, received = await self._pull_round(peer, asked, gaps, tips)
            total += stored
            size += received
            advanced = False
            for author, seq in seen.items():
                if seq > asked.get(author, 0):
                    asked[author] = seq
                    advanced = True
            # Go on while the peer has more and the stream moves forward (even over events refused here).
            if not more or not advanced:
                break
            if size >= self.settings.max_sync_bytes:   # the rest at this peer's next round, soon
                self._unfinished.add(peer.key)
                break
            gaps, tips = [], {}
        ours = await self.store.heads()
        # With an area of interest, seqs held elsewhere and not here are expected: no lag can be told from heads.
        lag = None if self.settings.interest is not None else \
            sum(max(0, top - ours.get(a, 0)) for a, top in theirs.items() if a not in quarantined | {self.node_id})
        await self.peers.record_sync(peer.key, error=None, lag=lag, lag_unknown=lag is None,
                                     problem=self._check_claims(peer, theirs, ours))
        await self._note_synced(peer)
        return total

    def _check_claims(self, peer: Peer, theirs: dict[str, int], ours: dict[str, int]) -> str | None:
        """A peer that says it holds events of ours beyond those we hold after pulling from it is wrong (or lying,
        to make us skip seqs): never believed, told to the manager as the peer's problem."""
        claimed, held = theirs.get(self.node_id, 0), ours.get(self.node_id, 0)
        if claimed <= held:
            return None
        self.stats.false_claims += 1
        log.warning("peer claims events of ours we do not hold", extra={"peer": peer.key, "claimed": claimed,
                                                                         "held": held})
        return (f"claims to hold this node's events up to seq {claimed}, but sent none past {held}: "
                "not believed (this node numbers its events from its own store)")

    async def _pull_round(self, peer: Peer, heads: dict[str, int], gaps: Sequence[Gap], tips: dict[str, str]
                          ) -> tuple[int, bool, dict[str, int], int]:
        """One pull request; the lines are gathered into batches of PULL_INGEST_LINES (or PULL_INGEST_BYTES) as
        they arrive and ingested two at a time, so that parsing the next batch overlaps with verifying and storing
        the previous one. Returns (stored, more, highest seq seen, bytes)."""
        assert self.client is not None and peer.url
        self.stats.pull_requests += 1
        stored = received = 0
        more = False
        seen: dict[str, int] = {}
        in_flight: list[asyncio.Task[IngestResult]] = []
        batch: list[bytes] = []
        batch_bytes = 0

        def tally(result: IngestResult) -> int:
            for author, seq in result.seen.items():
                seen[author] = max(seen.get(author, 0), seq)
            return len(result.stored)

        try:
            async for lines, flag in self.client.pull(peer.url, heads, gaps, tips, self.settings.pull_limit,
                                                      interest=self.settings.interest):
                size = sum(len(line) + 1 for line in lines)
                received += size
                batch += lines
                batch_bytes += size
                if batch and (flag is not None or len(batch) >= PULL_INGEST_LINES or batch_bytes >= PULL_INGEST_BYTES):
                    in_flight.append(asyncio.create_task(self.ingest(batch, peer.key)))
                    batch, batch_bytes = [], 0
                    if len(in_flight) > 1:
                        stored += tally(await in_flight.pop(0))
                if flag is not None:
                    more = flag
        finally:
            # Whatever arrived before a broken stream is still stored: the next round resumes after it.
            if batch:
                in_flight.append(asyncio.create_task(self.ingest(batch, peer.key)))
            for task in in_flight:
                stored += tally(await task)
        return stored, more, seen, received


async def add_discovered(engine: SyncEngine, key: str, url: str, *, source: str, trusted: bool) -> Peer:
    """Record a node seen at `url` after checking its signed descriptor names `key`; pending unless trusted."""
    assert engine.client is not None
    descriptor = await engine.client.descriptor(url, expect_key=key)
    peer = await engine.peers.seen(key, name=descriptor["name"], url=url, source=source, approve=trusted,
                                   location=descriptor.get("location"))
    if peer.approved:
        engine.wake()
    return peer
