"""This node's audit log checked against the copies of its heads that its peers hold (DESIGN invariant 4).

Each approved peer is asked, with a signed `GET /sync/v1/audit-heads?author=<this node>`, for the heads of this
node it kept (node/sharing/heads.py). Every head in an answer must be an `audit-head` event signed by this node's
own key, so a peer can withhold heads but cannot invent one. The log is then verified against all of them at once
(node/sharing/audit.py), together with the heads this node holds itself: a log rewritten or truncated after a head
was published fails against every peer that kept it, whatever happened to the node's own copies. Used by `nnode
audit verify` and, periodically, by the running node for the transparency page.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlencode

import aiohttp
import nacl.signing

from node.errors import NodeError
from node.sharing.audit import AuditError, verify_database
from node.sharing.events import AUDIT_HEAD_KIND, AUDIT_HEAD_TTL, validate_audit_head
from node.sharing.heads import MAX_ANSWER
from sync import (
    APPROVED,
    EventStore,
    KindRegistry,
    PeerStore,
    SyncError,
    canonical,
    parse_event,
    sign_request,
    verify_signature,
)

PATH = "/sync/v1/audit-heads"
ASK_TIMEOUT = 10.0                   # seconds for one peer's whole answer
MAX_ANSWER_BYTES = 1024 * 1024       # MAX_ANSWER heads of about 450 bytes fit many times over
_KINDS = KindRegistry()
_KINDS.register(AUDIT_HEAD_KIND, validate_audit_head, max_ttl=AUDIT_HEAD_TTL)


class HeadsUnavailable(NodeError):
    """A peer did not give a usable answer about the heads it holds."""

    status = 502
    reason = "peer_heads"


@dataclass(frozen=True)
class PeerCopy:
    """What one peer answered: the heads it holds of this node (verified), or why there are none."""

    key: str
    name: str
    heads: tuple[dict[str, Any], ...] = ()
    error: str = ""

    @property
    def label(self) -> str:
        """How reports name this peer."""
        return f"peer {self.name or '?'} ({self.key[:16]})"


def read_heads(value: Any, author: str, *, now: int) -> list[dict[str, Any]]:
    """The {seq, hash} of each head in a peer's answer; HeadsUnavailable unless every one is signed by `author`."""
    if not isinstance(value, dict) or value.get("author") != author or not isinstance(value.get("heads"), list):
        raise HeadsUnavailable("the answer is not {\"author\": <this node>, \"heads\": [...]}")
    if len(value["heads"]) > MAX_ANSWER:
        raise HeadsUnavailable(f"the answer holds {len(value['heads'])} heads, more than the {MAX_ANSWER} asked for")
    heads = []
    for index, item in enumerate(value["heads"]):
        try:
            event = parse_event(canonical(item), _KINDS, now=now)
            verify_signature(event)
        except SyncError as exc:
            raise HeadsUnavailable(f"head {index + 1}: {exc}") from None
        if event.author != author or event.kind != AUDIT_HEAD_KIND or event.body is None:
            raise HeadsUnavailable(f"head {index + 1}: not an audit head of this node")
        body = event.body_value()
        heads.append({"seq": body["seq"], "hash": body["hash"]})
    return heads


async def ask_peer(session: aiohttp.ClientSession, key: nacl.signing.SigningKey, url: str,
                   author: str) -> list[dict[str, Any]]:
    """The heads of `author` that the peer at `url` holds, asked with a signed request (bounded in size and time)."""
    target = f"{url.rstrip('/')}{PATH}?{urlencode({'author': author, 'limit': MAX_ANSWER})}"
    try:
        async with asyncio.timeout(ASK_TIMEOUT):
            async with session.get(target, headers=sign_request(key, "GET", target, None),
                                   allow_redirects=False) as resp:
                status, data = resp.status, bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_ANSWER_BYTES:
                        break
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise HeadsUnavailable(f"unreachable ({type(exc).__name__}: {exc})"[:300]) from None
    if len(data) > MAX_ANSWER_BYTES:
        raise HeadsUnavailable(f"the answer is over {MAX_ANSWER_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise HeadsUnavailable(f"HTTP {status}, not JSON") from None
    if status != 200:
        error = value.get("error") if isinstance(value, dict) else None
        raise HeadsUnavailable(f"HTTP {status}: {str(error)[:200]}")
    return read_heads(value, author, now=int(time.time()))


async def gather(key: nacl.signing.SigningKey, peers: Sequence[tuple[str, str, str]]) -> list[PeerCopy]:
    """Ask every (key, name, url) peer at once for its copies of this node's heads."""
    author = key.verify_key.encode().hex()
    async with aiohttp.ClientSession() as session:
        async def one(peer_key: str, name: str, url: str) -> PeerCopy:
            try:
                return PeerCopy(peer_key, name, tuple(await ask_peer(session, key, url, author)))
            except HeadsUnavailable as exc:
                return PeerCopy(peer_key, name, error=str(exc))
        return list(await asyncio.gather(*(one(*peer) for peer in peers)))


async def cross_check(db_path: Path, key: nacl.signing.SigningKey, peers: Sequence[tuple[str, str, str]],
                      own_heads: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Verify the log in `db_path` against the peers' copies of its heads (and `own_heads`); a report.

    `ok` is False when the log does not verify or disagrees with any copy; `problem` then says why ("history
    rewritten", "history truncated" or the first bad entry). Peers that did not answer are listed, not counted.
    """
    copies = await gather(key, peers)
    answered = [c for c in copies if not c.error]
    heads = [{"seq": h["seq"], "hash": h["hash"], "source": "this node's own copies"} for h in own_heads]
    heads += [dict(h, source=c.label) for c in answered for h in c.heads]
    report: dict[str, Any] = {
        "checked_at": int(time.time()), "peers": len(copies), "answered": len(answered),
        "holding": sum(1 for c in answered if c.heads), "unreachable": {c.label: c.error for c in copies if c.error},
        "heads": sum(len(c.heads) for c in answered)}
    try:
        result = await verify_database(db_path, key.verify_key.encode().hex(), heads)
    except AuditError as exc:
        disagree = [c.label for c in answered if c.label in exc.disagreeing]
        # A broken chain (no copy named) is agreed with by nobody.
        agree = sum(1 for c in answered if c.heads and c.label not in exc.disagreeing) if exc.disagreeing else 0
        return report | {"ok": False, "problem": str(exc), "entries": None, "disagree": disagree, "agree": agree}
    return report | {"ok": True, "problem": "", "entries": result["entries"], "disagree": [],
                     "agree": report["holding"], "heads_checked": result["heads_checked"], "head": result["head"]}


class PeerCheck:
    """The running node's cross-check against its approved peers, run periodically; its last report is what the
    transparency page shows."""

    def __init__(self, db_path: Path, key: nacl.signing.SigningKey, peers: PeerStore, store: EventStore) -> None:
        self.db_path, self.key, self.peers, self.store = db_path, key, peers, store
        self.node_key = key.verify_key.encode().hex()
        self.last: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    async def run(self) -> dict[str, Any]:
        """Ask every approved peer now and verify the log against their copies; the report."""
        async with self._lock:
            peers = [(p.key, p.name, p.url) for p in await self.peers.list(APPROVED)
                     if p.url and p.key != self.node_key]
            own = [e.body_value() for e in await self.store.recent(limit=MAX_ANSWER, kind=AUDIT_HEAD_KIND)
                   if e.author == self.node_key and e.body is not None]
            self.last = await cross_check(self.db_path, self.key, peers, own)
            return self.last
