"""The `nnode` command line: set up, run and manage a node."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import aiohttp

from sync import Database, PeerStore, PeerUnreachable, EventStore, setup_schema

from node import __version__
from node.config import Config, load, render_example
from node.errors import ConfigError, NodeError, NotInitialised
from node.identity import create_data_dir, create_key, load_key, node_id, short_id
from node.logs import setup_logging
from node.schema import migrate_all

DEFAULT_CONFIG = Path("/etc/nnode/config.toml")


def _config(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get("NNODE_CONFIG")
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    config = load(path)
    if args.data_dir:
        config = config.replace(node={"data_dir": Path(args.data_dir).expanduser().resolve()})
    return config


# -- talking to the running node --------------------------------------------------------------------------------

async def _control(config: Config, method: str, path: str, body: Any = None) -> Any:
    """Call the running node's control socket; NotInitialised if it is not running."""
    if not config.control_socket.exists():
        raise NotInitialised(f"the node is not running (no control socket at {config.control_socket}); "
                             "start it with `nnode run`")
    connector = aiohttp.UnixConnector(path=str(config.control_socket))
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.request(method, f"http://node{path}", json=body) as resp:
                value = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise NodeError(value.get("error", f"HTTP {resp.status}"))
                return value
    except aiohttp.ClientConnectionError as exc:
        raise NotInitialised(f"the node is not running ({config.control_socket}: {exc})") from exc


async def _open_db(config: Config) -> Database:
    if not config.db_path.exists():
        raise NotInitialised(f"{config.db_path}: no database; run `nnode init` first")
    db = await Database.open(config.db_path)
    await setup_schema(db)
    return db


# -- commands ---------------------------------------------------------------------------------------------------

async def initialise(config: Config) -> tuple[Any, bool]:
    """Create the data folder, the key (unless present) and the database; (key, created)."""
    create_data_dir(config.node.data_dir)
    created = not config.key_path.exists()
    key = create_key(config.key_path) if created else load_key(config.key_path)
    db = await Database.open(config.db_path)
    try:
        await migrate_all(db)
    finally:
        await db.close()
    return key, created


async def cmd_init(config: Config, args: argparse.Namespace) -> int:
    """Create the data folder, the key and the database."""
    key, created = await initialise(config)
    print(f"{'initialised' if created else 'already initialised'}: {config.node.data_dir}")
    print(f"node id: {node_id(key)}")
    return 0


async def cmd_run(config: Config, args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    from node.app import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(config, stop=stop)
    return 0


def _print_peers(peers: Sequence[dict]) -> None:
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


async def _peer_dicts(db: Database) -> list[dict]:
    return [dataclasses.asdict(p) for p in await PeerStore(db).list()]


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """Show the node: running or not, events, peers, quarantined authors."""
    try:
        status = await _control(config, "GET", "/control/status")
    except NotInitialised:
        key = load_key(config.key_path)
        db = await _open_db(config)
        try:
            store = EventStore(db)
            status = {"node": node_id(key), "name": config.node.name, "running": False,
                      "db": str(config.db_path), "db_ok": await db.integrity_ok(), "events": await store.count(),
                      "by_kind": await store.counts_by_kind(), "peers": await _peer_dicts(db),
                      "quarantined": await store.quarantined()}
        finally:
            await db.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"node      {status['node']}  ({status['name']})")
    print(f"state     {'running, up ' + str(status['uptime_s']) + ' s on ' + status['listen'] if status['running'] else 'not running'}")
    print(f"database  {status['db']}  integrity {'ok' if status['db_ok'] else 'FAILED'}")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(status["by_kind"].items())) or "none"
    print(f"events    {status['events']}  ({kinds})")
    if status.get("rejected"):
        print("rejected  " + ", ".join(f"{k} {v}" for k, v in sorted(status["rejected"].items())))
    print("peers")
    _print_peers(status["peers"])
    for author, q in status["quarantined"].items():
        print(f"QUARANTINED author {short_id(author)}: {q['reason']} (nnode quarantine release {author[:16]})")
    return 0


async def _nudge(config: Config) -> None:
    with contextlib.suppress(NodeError):
        await _control(config, "POST", "/control/peers-changed")


async def cmd_peer(config: Config, args: argparse.Namespace) -> int:
    """nnode peer list|approve|remove|add."""
    db = await _open_db(config)
    try:
        peers = PeerStore(db)
        if args.action == "list":
            _print_peers(await _peer_dicts(db))
            return 0
        if args.action == "add":
            from sync import PeerClient
            async with aiohttp.ClientSession() as session:
                client = PeerClient(session, load_key(config.key_path))
                try:
                    descriptor = await client.descriptor(args.target, expect_key=args.key)
                except PeerUnreachable as exc:
                    raise NodeError(str(exc)) from exc
            await peers.seen(descriptor["node"], name=descriptor["name"], url=args.target, source="manual",
                             approve=True)
            print(f"approved {descriptor['node']} ({descriptor['name']}) at {args.target}")
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
    event = await _control(config, "POST", "/control/publish", {"kind": "notice", "body": body, "ttl": args.ttl})
    print(f"published {event['id']} (seq {event['seq']})")
    return 0


async def cmd_delete(config: Config, args: argparse.Namespace) -> int:
    """Delete one of this node's events everywhere with a tombstone."""
    event = await _control(config, "POST", "/control/delete", {"id": args.id})
    print(f"tombstone {event['id']} published for {args.id}")
    return 0


async def cmd_events(config: Config, args: argparse.Namespace) -> int:
    """List recent events."""
    query = f"?limit={args.limit}" + (f"&kind={args.kind}" if args.kind else "")
    for event in await _control(config, "GET", "/control/events" + query):
        body = json.dumps(event["body"], ensure_ascii=False) if event["body"] is not None else "(body dropped)"
        print(f"{event['kind']:10} {short_id(event['author'])}#{event['seq']:<5} {event['id'][:16]} {body[:100]}")
    return 0


async def cmd_quarantine(config: Config, args: argparse.Namespace) -> int:
    """List quarantined authors or release one."""
    if args.action == "release":
        await _control(config, "POST", "/control/release", {"author": args.author})
        print(f"released {args.author}")
        return 0
    db = await _open_db(config)
    try:
        for author, q in (await EventStore(db).quarantined()).items():
            print(f"{author}  {q['reason']}  since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(q['at']))} UTC")
    finally:
        await db.close()
    return 0


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> bytes:
    if args.passphrase_file:
        try:
            return Path(args.passphrase_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise NodeError(f"{args.passphrase_file}: cannot read the passphrase: {exc}") from exc
    import getpass
    first = getpass.getpass("Backup passphrase: ").encode()
    if confirm and getpass.getpass("Again: ").encode() != first:
        raise NodeError("the passphrases differ")
    return first


async def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    """Write an encrypted backup of identity and database."""
    from node.appliance.backup import write_backup
    passphrase = _passphrase(args, confirm=True)
    target = Path(args.file)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            manifest = await asyncio.to_thread(write_backup, config, out, passphrase)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    print(f"backup of node {manifest['node']} written to {target} (encrypted; keep the passphrase apart)")
    return 0


async def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    """Restore identity and database from a backup."""
    from node.appliance.backup import restore_backup
    passphrase = _passphrase(args, confirm=False)
    try:
        with open(args.file, "rb") as source:
            manifest = await asyncio.to_thread(restore_backup, config, source, passphrase, force=args.force)
    except FileNotFoundError:
        raise NodeError(f"{args.file}: no such backup file") from None
    print(f"restored node {manifest['node']} (backup of {time.strftime('%Y-%m-%d %H:%M', time.gmtime(manifest['created']))}"
          f" UTC); it publishes again once it has synced with a peer")
    return 0


async def cmd_alerts(config: Config, args: argparse.Namespace) -> int:
    """Import CAP alerts from a file, or list those in force."""
    if args.action == "import":
        try:
            document = Path(args.file).read_bytes()
        except OSError as exc:
            raise NodeError(f"{args.file}: {exc}") from exc
        connector = aiohttp.UnixConnector(path=str(config.control_socket))
        if not config.control_socket.exists():
            raise NotInitialised("the node is not running; start it with `nnode run`")
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post("http://node/control/alerts/import", data=document) as resp:
                value = await resp.json(content_type=None)
        if resp.status >= 400:
            raise NodeError(f"{args.file}: {value.get('error')}")
        for event in value:
            cap = event["body"]["cap"]
            print(f"published {cap['msgType']} {cap['identifier']} from {cap['sender']} as event {event['id'][:16]}")
        return 0
    for event in await _control(config, "GET", "/control/events?kind=alert&limit=200"):
        cap = event["body"]["cap"] if event["body"] else None
        if cap:
            info = cap["info"][0] if cap["info"] else {}
            print(f"{cap['sent']}  {cap['msgType']:6} {cap['status']:8} {info.get('severity', '-'):8} "
                  f"{info.get('headline') or info.get('event', '')}")
    return 0


async def cmd_invite(config: Config, args: argparse.Namespace) -> int:
    """Print a one-time invite for a resident: code, link and a terminal QR."""
    from node.people.claim import terminal_qr

    made = await _control(config, "POST", "/control/invite", {"unit": args.unit, "name": args.name or ""})
    expires = time.strftime("%Y-%m-%d %H:%M", time.localtime(made["expires"]))
    print(f"Invite for unit {made['unit']}{' (' + made['name'] + ')' if made['name'] else ''}, single use, "
          f"valid until {expires}\n  code: {made['code']}\n  link: {made['link']}\n"
          f"Scan on the building's Wi-Fi:\n{terminal_qr(made['link'])}")
    return 0


async def cmd_admin_link(config: Config, args: argparse.Namespace) -> int:
    """Print a one-time manager sign-in link (valid 15 minutes)."""
    from node.people.claim import terminal_qr

    made = await _control(config, "POST", "/control/admin-link")
    print(f"One-time manager sign-in link (valid 15 minutes):\n  {made['link']}\n{terminal_qr(made['link'])}")
    return 0


async def cmd_residents(config: Config, args: argparse.Namespace) -> int:
    """List residents, or revoke one (their sessions end at once)."""
    if args.action == "revoke":
        await _control(config, "POST", "/control/residents/revoke", {"id": args.id})
        print(f"resident {args.id} revoked; their sessions have ended")
        return 0
    for r in await _control(config, "GET", "/control/residents"):
        state = "revoked" if r["revoked"] else ("on call" if r["on_call"] else "")
        print(f"{r['id']:>4}  {r['unit']:8} {r['name'] or '-':24} sessions={r['sessions']}  {state}")
    return 0


async def cmd_resume_publishing(config: Config, args: argparse.Namespace) -> int:
    """Let a restored node publish before it has synced with every peer (the manager's decision)."""
    await _control(config, "POST", "/control/resume-publishing")
    print("publishing resumed; if this node signed events after its backup that no peer returned, they "
          "will be seen as equivocation")
    return 0


async def cmd_agency(config: Config, args: argparse.Namespace) -> int:
    """Register, list or revoke agencies (through the running node, which logs each change)."""
    if args.action == "add":
        agency = await _control(config, "POST", "/control/agencies", {
            "key": args.key, "name": args.name, "jurisdiction": args.jurisdiction or "", "contact": args.contact or ""})
        print(f"agency {agency['name']!r} registered ({agency['key']})")
        return 0
    if args.action == "revoke":
        agency = await _control(config, "POST", "/control/agencies/revoke", {"key": args.key,
                                                                             "reason": args.reason or ""})
        print(f"agency {agency['name']!r} revoked; its open requests are refused and undownloaded bundles deleted")
        return 0
    agencies = await _control(config, "GET", "/control/agencies")
    for a in agencies:
        state = "revoked" if a["revoked"] else ("credential until " + time.strftime("%Y-%m-%d", time.gmtime(
            a["expires"])) if a["expires"] else "active")
        print(f"{a['key']}  {a['name']:32} {a['jurisdiction'] or '-':20} {a['source']:8} {state}")
    if not agencies:
        print("no agencies registered")
    return 0


async def cmd_audit(config: Config, args: argparse.Namespace) -> int:
    """Check the audit log: chain, signatures, and every head of it published to peers (read-only)."""
    from node.identity import load_key
    from node.sharing.audit import AuditError, verify_database

    if not config.db_path.exists():
        raise NotInitialised(f"{config.db_path}: no database; run `nnode init` first")
    node_key = node_id(load_key(config.key_path))
    heads = await _published_heads(config, node_key)
    try:
        report = await verify_database(config.db_path, node_key, heads)
    except AuditError as exc:
        print(f"nnode audit verify: FAILED: {exc}", file=sys.stderr)
        return 3
    head = report["head"]
    print(f"audit log verified: {report['entries']} entries, chain and signatures intact; "
          f"{report['heads_checked']} heads published to peers match"
          + (f"; head {head['seq']} {head['hash'][:16]}…" if head else ""))
    return 0


async def _published_heads(config: Config, node_key: str) -> list[dict]:
    """This node's audit heads in its event store (its own, and those anti-entropy brought back from peers)."""
    import sqlite3

    def read() -> list[dict]:
        with contextlib.closing(sqlite3.connect(config.db_path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT body FROM events WHERE kind = 'audit-head' AND author = ? AND body IS NOT "
                                "NULL", (node_key,)).fetchall()
        return [json.loads(r[0]) for r in rows]
    return await asyncio.to_thread(read)


async def cmd_config_example(config: Config, args: argparse.Namespace) -> int:
    """Print config.example.toml."""
    sys.stdout.write(render_example())
    return 0


async def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    """Initialise ./demo-data if needed, publish a welcome notice and run."""
    from node.app import serve

    if not config.key_path.exists():
        await cmd_init(config, args)
    stop = asyncio.Event()
    ready = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    server = asyncio.create_task(serve(config, ready=ready, stop=stop))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        waiter.cancel()
        return await server or 0
    await _control(config, "POST", "/control/publish", {"kind": "notice", "ttl": 3600, "body": {
        "title": "Welcome", "text": "This demo node is running. Try `nnode --data-dir demo-data status`."}})
    demo = await _control(config, "POST", "/control/demo-setup")
    password = f"\n  manager password: {demo['password']}" if demo["password"] else ""
    names = ", ".join(c.name or c.id for c in config.cameras.devices)
    camera_note = (f"{names}: someone walks by every 20 s, and the clip shows in the console and the resident app"
                   if names else "none configured")
    print(f"demo node on {demo['app']} (Ctrl-C stops it)\n"
          f"  manager console (one-time link, 15 min): {demo['admin_link']}{password}\n"
          f"  resident app (one-time invite for unit Demo 1A): {demo['invite_link']}\n"
          f"  cameras: {camera_note}\n"
          f"  more: `nnode --data-dir demo-data invite --unit 2C`, `... admin-link`, `... status`", flush=True)
    await server
    return 0


# -- offline tools for agencies: no config, data folder or running node ------------------------------------------

VERIFY_FAILED = 3
"""Exit status of `nnode verify` when the bundle fails a check (2: it could not be checked at all)."""


def cmd_verify(args: argparse.Namespace) -> int:
    """Check an agency bundle offline; print the report, or one line naming the first failure."""
    from node.sharing import VerifyError, load_agency_key, verify_bundle
    from node.sharing.bundle import SUFFIX

    bundle = Path(args.bundle)
    out = Path(args.out) if args.out else bundle.with_name(bundle.name.removesuffix(SUFFIX) + ".verified")
    try:
        result = verify_bundle(bundle, load_agency_key(args.key), out, expected_node_key=args.node_key)
    except VerifyError as exc:
        print(f"nnode verify: FAILED: {exc}", file=sys.stderr)
        return VERIFY_FAILED
    except NodeError as exc:
        print(f"nnode verify: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.report)
    return 0


def cmd_agency_key(args: argparse.Namespace) -> int:
    """Make an agency key file, or print the public key of one."""
    from node.sharing import load_agency_key, write_agency_key

    try:
        key = write_agency_key(args.file) if args.action == "new" else load_agency_key(args.file)
    except NodeError as exc:
        print(f"nnode agency-key: {exc}", file=sys.stderr)
        return 2
    if args.action == "new":
        print(f"agency key written to {args.file} (private: keep it safe, mode 0600)")
        print("public key (give this to the node's manager):")
    print(key.verify_key.encode().hex())
    return 0


def cmd_agency_credential(args: argparse.Namespace) -> int:
    """For a trust anchor: sign an agency's credential with the anchor key and print it as JSON."""
    from node.sharing import load_agency_key
    from node.sharing.agencies import sign_credential

    try:
        credential = sign_credential(load_agency_key(args.anchor_key), agency=args.agency, name=args.name,
                                     jurisdiction=args.jurisdiction or "", contact=args.contact or "",
                                     days=args.days)
    except NodeError as exc:
        print(f"nnode agency credential: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(credential, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(prog="nnode", description="Neighborhood Node: a privacy-first "
                                     "neighborhood safety appliance.")
    parser.add_argument("--config", help=f"config file (default: $NNODE_CONFIG, else {DEFAULT_CONFIG} if present)")
    parser.add_argument("--data-dir", help="override node.data_dir")
    parser.add_argument("--version", action="version", version=f"nnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("init", help="create the data folder, node key and database").set_defaults(func=cmd_init)
    sub.add_parser("run", help="run the node").set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="initialise if needed and run a demo node (loopback only, ./demo-data)")
    demo.add_argument("--port", type=int, default=8470, help="HTTP port (default 8470)")
    demo.set_defaults(func=cmd_demo)
    status = sub.add_parser("status", help="show the node, its events and peers")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
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
    backup = sub.add_parser("backup", help="write an encrypted backup of identity and database")
    backup.add_argument("file")
    backup.add_argument("--passphrase-file", help="read the passphrase from this file (else it is asked for)")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore identity and database from a backup")
    restore.add_argument("file")
    restore.add_argument("--passphrase-file", help="read the passphrase from this file (else it is asked for)")
    restore.add_argument("--force", action="store_true", help="move an existing identity aside instead of refusing")
    restore.set_defaults(func=cmd_restore)
    alerts = sub.add_parser("alerts", help="import CAP 1.2 alerts (alert or Atom/RSS feed file) or list them")
    alerts_sub = alerts.add_subparsers(dest="action", required=True)
    alerts_import = alerts_sub.add_parser("import")
    alerts_import.add_argument("file")
    alerts_sub.add_parser("list")
    alerts.set_defaults(func=cmd_alerts)
    invite = sub.add_parser("invite", help="print a one-time invite (code, link, QR) for a resident")
    invite.add_argument("--unit", required=True, help="the resident's apartment or unit, like 4B")
    invite.add_argument("--name", help="the resident's name, shown to the manager and responders")
    invite.set_defaults(func=cmd_invite)
    sub.add_parser("admin-link", help="print a one-time manager sign-in link").set_defaults(func=cmd_admin_link)
    residents = sub.add_parser("residents", help="list residents or revoke one")
    residents_sub = residents.add_subparsers(dest="action", required=True)
    residents_sub.add_parser("list")
    revoke = residents_sub.add_parser("revoke")
    revoke.add_argument("id", type=int)
    residents.set_defaults(func=cmd_residents)
    sub.add_parser("resume-publishing", help="let a restored node publish before every peer has synced"
                   ).set_defaults(func=cmd_resume_publishing)
    sub.add_parser("config-example", help="print config.example.toml").set_defaults(func=cmd_config_example)
    verify = sub.add_parser("verify", help="check an agency bundle offline and extract its clip (agencies; needs "
                            "no node)", description="Check an agency bundle offline and extract its clip, signed "
                            "manifest and a report. Exit status 0 when every check passes, 3 when one fails, 2 when "
                            "the bundle could not be checked.")
    verify.add_argument("bundle", metavar="BUNDLE")
    verify.add_argument("--key", required=True, metavar="AGENCY_KEY_FILE",
                        help="the agency's ed25519 private seed: 64 hex digits or 32 raw bytes")
    verify.add_argument("--out", metavar="DIR", help="new or empty folder for the results "
                        "(default: BUNDLE without .nnbundle, plus .verified)")
    verify.add_argument("--node-key", metavar="HEX", help="refuse unless the node that signed it has this key")
    verify.set_defaults(func=cmd_verify, offline=True)
    agency_key = sub.add_parser("agency-key", help="make an agency key file, or show its public key (agencies)")
    agency_sub = agency_key.add_subparsers(dest="action", required=True)
    agency_sub.add_parser("new", help="write a new key to FILE (mode 0600) and print its public key"
                          ).add_argument("file", metavar="FILE")
    agency_sub.add_parser("public", help="print the public key of the key in FILE").add_argument("file", metavar="FILE")
    agency_key.set_defaults(func=cmd_agency_key, offline=True)
    agency = sub.add_parser("agency", help="register, list or revoke the agencies that may ask for footage")
    agency_actions = agency.add_subparsers(dest="action", required=True)
    agency_actions.add_parser("list")
    agency_add = agency_actions.add_parser("add", help="register an agency by its public key")
    agency_add.add_argument("key", metavar="KEY", help="the agency's ed25519 public key (64 hex digits)")
    agency_add.add_argument("--name", required=True)
    agency_add.add_argument("--jurisdiction")
    agency_add.add_argument("--contact")
    agency_revoke = agency_actions.add_parser("revoke", help="revoke an agency for good")
    agency_revoke.add_argument("key", metavar="KEY")
    agency_revoke.add_argument("--reason")
    agency.set_defaults(func=cmd_agency)
    credential = sub.add_parser("agency-credential", help="sign an agency credential with a trust anchor's key "
                                "(accreditation bodies; needs no node)")
    credential.add_argument("--anchor-key", required=True, metavar="FILE", help="the anchor's key file "
                            "(`nnode agency-key new FILE`)")
    credential.add_argument("--agency", required=True, metavar="KEY", help="the agency's public key")
    credential.add_argument("--name", required=True)
    credential.add_argument("--jurisdiction")
    credential.add_argument("--contact")
    credential.add_argument("--days", type=int, default=365, help="validity (default 365)")
    credential.set_defaults(func=cmd_agency_credential, offline=True)
    audit = sub.add_parser("audit", help="check the audit log of disclosures")
    audit.add_argument("action", choices=["verify"])
    audit.set_defaults(func=cmd_audit)
    from node.sharing.agency_cli import add_parser as add_agency_client
    add_agency_client(sub)
    return parser


def DEMO_CAMERA():
    """The demo's simulated camera: someone crosses a courtyard every 20 s, so a clip appears within a minute."""
    from node.camera.settings import parse_camera
    return parse_camera("demo camera", {"id": "courtyard", "name": "Courtyard (simulated)",
                                        "url": "sim:?width=640&height=360&fps=10&period=20&walk=4",
                                        "pre_capture": 3, "post_capture": 3, "retention_days": 1,
                                        "viewers": ["manager", "resident"],
                                        "privacy_masks": [[[0.8, 0], [1, 0], [1, 0.3], [0.8, 0.3]]]},
                        latitude="40.7128", longitude="-74.0060")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nnode` console script."""
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # the database, key and socket are for the node's user only
    if getattr(args, "offline", False):
        # Agencies run these on their own machines: no config file, data folder or node is read.
        try:
            return args.func(args)
        except KeyboardInterrupt:
            return 130
    try:
        config = _config(args)
        if args.command == "demo" and not args.data_dir and config.source == "<defaults>":
            # Loopback only: a demo must not advertise itself (mDNS) or listen on the building's network.
            config = config.replace(node={"data_dir": Path("demo-data").resolve(), "name": "Demo building",
                                          "latitude": "40.7128", "longitude": "-74.0060"},
                                    http={"host": "127.0.0.1", "port": args.port}, discovery={"interfaces": ("127.0.0.1",)},
                                    log={"format": "text"}, cameras={"devices": (DEMO_CAMERA(),)})
        setup_logging(config.log.level, config.log.format)
        return asyncio.run(args.func(config, args))
    except ConfigError as exc:
        print(f"nnode: config error: {exc}", file=sys.stderr)
        return 2
    except NodeError as exc:
        print(f"nnode: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
