"""`nnode peer`, `publish`, `delete`, `events` and `quarantine`: the node's peers and the events it shares with them."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from node.commands.client import control, open_db
from node.config import Config
from node.errors import NodeError
from node.identity import load_key, short_id
from sync import Database, EventStore, PeerClient, PeerStore, PeerUnreachable, peer_session


def print_peers(peers: Sequence[dict[str, Any]]) -> None:
    """One line per peer: state, key, name, URL, where it was found and how its sync goes."""
    if not peers:
        print("no peers yet (discovered nodes appear here as pending)")
        return
    now = time.time()
    for p in peers:
        sync = f"synced {int(now - p['last_sync'])} s ago" if p.get("last_sync") else "never synced"
        lag = f", lag {p['lag']}" if p.get("lag") else ""
        error = f", last error: {p['last_error']}" if p.get("last_error") else ""
        print(f"{p['state']:9} {short_id(p['key'])}  {p['name'] or '-':24} {p['url'] or '-':28} "
              f"[{p['source']}] {sync}{lag}{error}")


async def peer_dicts(db: Database) -> list[dict[str, Any]]:
    """The peers in the database, as the running node's status reports them."""
    return [dataclasses.asdict(p) for p in await PeerStore(db).list()]


async def _nudge(config: Config) -> None:
    with contextlib.suppress(NodeError):
        await control(config, "POST", "/control/peers-changed")


async def _add_peer(config: Config, peers: PeerStore, url: str, expect_key: str | None) -> None:
    async with peer_session() as session:
        client = PeerClient(session, load_key(config.key_path))
        try:
            descriptor = await client.descriptor(url, expect_key=expect_key)
        except PeerUnreachable as exc:
            raise NodeError(str(exc)) from exc
    await peers.seen(descriptor["node"], name=descriptor["name"], url=url, source="manual", approve=True)
    print(f"approved {descriptor['node']} ({descriptor['name']}) at {url}")


async def cmd_peer(config: Config, args: argparse.Namespace) -> int:
    """nnode peer list|approve|remove|add."""
    db = await open_db(config)
    try:
        peers = PeerStore(db)
        if args.action == "list":
            print_peers(await peer_dicts(db))
            return 0
        if args.action == "add":
            await _add_peer(config, peers, args.target, args.key)
        else:
            try:
                peer = await peers.resolve(args.target)
            except LookupError as exc:
                raise NodeError(str(exc)) from exc
            if args.action == "approve":
                await peers.approve(peer.key)
                print(f"approved {peer.key} ({peer.name or peer.url})")
            else:
                await peers.remove(peer.key)
                print(f"removed {peer.key} ({peer.name or peer.url})")
    finally:
        await db.close()
    await _nudge(config)
    return 0


async def cmd_publish(config: Config, args: argparse.Namespace) -> int:
    """Publish a notice to the neighborhood."""
    body = {"text": args.text} | ({"title": args.title} if args.title else {})
    event = await control(config, "POST", "/control/publish", {"kind": "notice", "body": body, "ttl": args.ttl})
    print(f"published {event['id']} (seq {event['seq']})")
    return 0


async def cmd_delete(config: Config, args: argparse.Namespace) -> int:
    """Delete one of this node's events everywhere with a tombstone."""
    event = await control(config, "POST", "/control/delete", {"id": args.id})
    print(f"tombstone {event['id']} published for {args.id}")
    return 0


async def cmd_events(config: Config, args: argparse.Namespace) -> int:
    """List recent events."""
    query = f"?limit={args.limit}" + (f"&kind={args.kind}" if args.kind else "")
    for event in await control(config, "GET", "/control/events" + query):
        body = json.dumps(event["body"], ensure_ascii=False) if event["body"] is not None else "(body dropped)"
        print(f"{event['kind']:10} {short_id(event['author'])}#{event['seq']:<5} {event['id'][:16]} {body[:100]}")
    return 0


async def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    """List quarantined authors or release one."""
    if args.action == "release":
        await control(config, "POST", "/control/release", {"author": args.author})
        print(f"released {args.author}")
        return 0
    db = await open_db(config)
    try:
        for author, q in (await EventStore(db).quarantined()).items():
            print(f"{author}  {q['reason']}  since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(q['at']))} UTC")
    finally:
        await db.close()
    return 0


def add_commands(sub: Any) -> None:
    """Register peer, publish, delete, events and quarantine on the `nnode` subparsers."""
    peer = sub.add_parser("peer", help="list, approve, remove or add peers")
    peer_sub = peer.add_subparsers(dest="action", required=True)
    peer_sub.add_parser("list")
    for action in ("approve", "remove"):
        p = peer_sub.add_parser(action)
        p.add_argument("target", metavar="KEY", help="peer key or its first 8+ hex digits")
    add = peer_sub.add_parser("add", help="add and approve a peer on another network by URL")
    add.add_argument("target", metavar="URL")
    add.add_argument("--key", help="expected node key (refuse if the descriptor names another)")
    peer.set_defaults(func=cmd_peer)
    publish = sub.add_parser("publish", help="publish a notice to the neighborhood")
    publish.add_argument("text")
    publish.add_argument("--title")
    publish.add_argument("--ttl", type=int, default=86_400, help="seconds until it expires (default 86400)")
    publish.set_defaults(func=cmd_publish)
    delete = sub.add_parser("delete", help="delete one of this node's events (tombstone)")
    delete.add_argument("id")
    delete.set_defaults(func=cmd_delete)
    events = sub.add_parser("events", help="list recent events")
    events.add_argument("--kind")
    events.add_argument("--limit", type=int, default=20)
    events.set_defaults(func=cmd_events)
    quarantine = sub.add_parser("quarantine", help="authors quarantined for equivocation")
    q_sub = quarantine.add_subparsers(dest="action", required=True)
    q_sub.add_parser("list")
    release = q_sub.add_parser("release")
    release.add_argument("author")
    quarantine.set_defaults(func=cmd_quarantine)
