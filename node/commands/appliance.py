"""`nnode init`, `run`, `demo`, `status`, `backup`, `restore`, `resume-publishing` and `config-example`: the node
itself, its data folder and its backups."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import nacl.signing

from node.appliance.backup import restore_backup, write_backup
from node.appliance.listen import check_port
from node.appliance.snapshot import open_current
from node.camera.settings import CameraConfig, parse_camera
from node.commands.client import control, open_db
from node.commands.federation import peer_dicts, print_peers
from node.config import Config, render_example
from node.errors import NodeError, NotInitialised
from node.identity import create_data_dir, create_key, host_name, load_key, node_id, short_id
from node.people.claim import Claims
from node.schema import migrate_all
from sync import Database, EventStore


def _identity(config: Config) -> tuple[nacl.signing.SigningKey, bool]:
    create_data_dir(config.node.data_dir)
    created = not config.key_path.exists()
    key = create_key(config.key_path) if created else load_key(config.key_path)
    return key, created


async def initialise(config: Config) -> tuple[nacl.signing.SigningKey, bool]:
    """Create the data folder, the key (unless present) and the database; (key, created)."""
    key, created = await asyncio.to_thread(_identity, config)
    db = await open_current(config.db_path)
    await db.close()
    return key, created


async def cmd_init(config: Config, args: argparse.Namespace) -> int:
    """Create the data folder, the key and the database."""
    key, created = await initialise(config)
    print(f"{'initialised' if created else 'already initialised'}: {config.node.data_dir}")
    print(f"node id: {node_id(key)}")
    return 0


async def cmd_hostname(config: Config, args: argparse.Namespace) -> int:
    """Print the unit's host name (`nnode-XXXX`), from its key: the name its mDNS advertisement and claim card use."""
    print(host_name(node_id(await asyncio.to_thread(load_key, config.key_path))))
    return 0


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so the node shuts down in order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def cmd_run(config: Config, args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    from node.app import serve  # lazy: the app loads OpenCV and PyAV, which `nnode status` and the others need not

    if args.port is not None:
        config = config.replace(http={"port": args.port})
    await serve(config, stop=_stop_on_signals())
    return 0


DEMO_PORT = 8470


def demo_camera() -> CameraConfig:
    """The demo's simulated camera: someone crosses a courtyard every 20 s, so a clip appears within a minute."""
    return parse_camera("demo camera", {"id": "courtyard", "name": "Courtyard (simulated)",
                                        "url": "sim:?width=640&height=360&fps=10&period=20&walk=4",
                                        "pre_capture": 3, "post_capture": 3, "retention_days": 1,
                                        "viewers": ["manager", "resident"],
                                        "privacy_masks": [[[0.8, 0], [1, 0], [1, 0.3], [0.8, 0.3]]]},
                        latitude="40.7128", longitude="-74.0060")


def demo_config(config: Config, port: int) -> Config:
    """The demo's settings over the defaults: ./demo-data, a simulated camera, loopback only."""
    # Loopback only: a demo must not advertise itself (mDNS) or listen on the building's network.
    return config.replace(node={"data_dir": Path("demo-data").resolve(), "name": "Demo building",
                                "latitude": "40.7128", "longitude": "-74.0060"},
                          http={"host": "127.0.0.1", "port": port}, discovery={"interfaces": ("127.0.0.1",)},
                          log={"format": "text"}, cameras={"devices": (demo_camera(),)})


async def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    """Initialise ./demo-data if needed, publish a welcome notice and run."""
    from node.app import serve  # lazy, as in cmd_run

    if args.port is not None:
        config = config.replace(http={"port": args.port})
    # A busy port is one line before anything is made or printed.
    await asyncio.to_thread(check_port, config.http.host, config.http.port)
    if not config.key_path.exists():
        await cmd_init(config, args)
    # Claimed before it serves: the node then prints no claim code, which the demo would only use up itself.
    claimed_with = await _claim_demo(config)
    stop = _stop_on_signals()
    ready = asyncio.Event()
    server = asyncio.create_task(serve(config, ready=ready, stop=stop))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({server, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        waiter.cancel()
        await server
        return 0
    await control(config, "POST", "/control/publish", {"kind": "notice", "ttl": 3600, "body": {
        "title": "Welcome", "text": "This demo node is running. Try `nnode --data-dir demo-data status`."}})
    demo = await control(config, "POST", "/control/demo-setup")
    password = f"\n  manager password: {claimed_with}" if claimed_with else ""
    names = ", ".join(c.name or c.id for c in config.cameras.devices)
    camera_note = (f"{names}: someone walks by every 20 s, and the clip shows in the console and the resident app"
                   if names else "none configured")
    print(f"demo node on {demo['app']} (Ctrl-C stops it)\n"
          f"  manager console (one-time link, 15 min): {demo['admin_link']}{password}\n"
          f"  resident app (one-time invite for unit Demo 1A): {demo['invite_link']}\n"
          f"  cameras: {camera_note}\n"
          f"  agency walk-through (docs/agencies.md): `nnode agency-key new demo.key`, then\n"
          f"    `nnode --data-dir demo-data agency add <its public key> --name \"Demo PD\" --jurisdiction Demo`,\n"
          f"    and ask for footage in the portal on your own computer: `nnode agency-client portal --key demo.key "
          f"--node {demo['app'].rstrip('/')}`\n"
          f"  more: `nnode --data-dir demo-data invite --unit 2C`, `... admin-link`, `... status`", flush=True)
    await server
    return 0


async def _claim_demo(config: Config) -> str | None:
    """Claim an unclaimed demo node with a new password (returned); None if it was claimed already."""
    db = await Database.open(config.db_path)
    try:
        await migrate_all(db)
        claims = Claims(db)
        if await claims.claimed():
            return None
        password = secrets.token_urlsafe(12)
        await claims.claim(await claims.issue(), password)
        return password
    finally:
        await db.close()


async def _offline_status(config: Config) -> dict[str, Any]:
    """What `status` shows of a node that is not running, read from its key and database."""
    key = load_key(config.key_path)
    db = await open_db(config)
    try:
        store = EventStore(db)
        return {"node": node_id(key), "name": config.node.name, "running": False,
                "db": str(config.db_path), "db_ok": await db.integrity_ok(), "events": await store.count(),
                "by_kind": await store.counts_by_kind(), "peers": await peer_dicts(db),
                "quarantined": await store.quarantined()}
    finally:
        await db.close()


async def cmd_status(config: Config, args: argparse.Namespace) -> int:
    """Show the node: running or not, events, peers, quarantined authors."""
    try:
        status = await control(config, "GET", "/control/status")
    except NotInitialised:
        status = await _offline_status(config)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"node      {status['node']}  ({status['name']})")
    print(f"state     {'running, up ' + str(status['uptime_s']) + ' s on ' + status['listen'] if status['running'] else 'not running'}")
    if status.get("names"):
        print(f"names     {status['url']}; answers to {', '.join(status['names'])}")
    print(f"database  {status['db']}  integrity {'ok' if status['db_ok'] else 'FAILED'}")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(status["by_kind"].items())) or "none"
    print(f"events    {status['events']}  ({kinds})")
    if status.get("rejected"):
        print("rejected  " + ", ".join(f"{k} {v}" for k, v in sorted(status["rejected"].items())))
    print("peers")
    print_peers(status["peers"])
    for author, q in status["quarantined"].items():
        print(f"QUARANTINED author {short_id(author)}: {q['reason']} (nnode quarantine release {author[:16]})")
    return 0


def _passphrase(args: argparse.Namespace, *, confirm: bool) -> bytes:
    if args.passphrase_file:
        try:
            return Path(args.passphrase_file).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise NodeError(f"{args.passphrase_file}: cannot read the passphrase: {exc}") from exc
    first = getpass.getpass("Backup passphrase: ").encode()
    if confirm and getpass.getpass("Again: ").encode() != first:
        raise NodeError("the passphrases differ")
    return first


async def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    """Write an encrypted backup of identity and database."""
    passphrase = _passphrase(args, confirm=True)
    target = Path(args.file)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            manifest = await asyncio.to_thread(write_backup, config, out, passphrase)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        # Here, not in a thread: a cancelled (Ctrl-C) command must not leave a partial backup behind.
        target.unlink(missing_ok=True)  # noqa: ASYNC240
        raise
    print(f"backup of node {manifest['node']} written to {target} (encrypted; keep the passphrase apart)")
    return 0


async def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    """Restore identity and database from a backup."""
    passphrase = _passphrase(args, confirm=False)
    try:
        source = await asyncio.to_thread(open, args.file, "rb")
        with source:
            manifest = await asyncio.to_thread(restore_backup, config, source, passphrase, force=args.force)
    except FileNotFoundError:
        raise NodeError(f"{args.file}: no such backup file") from None
    print(f"restored node {manifest['node']} (backup of {time.strftime('%Y-%m-%d %H:%M', time.gmtime(manifest['created']))}"
          f" UTC); it publishes again once it has synced with a peer")
    return 0


async def cmd_resume_publishing(config: Config, args: argparse.Namespace) -> int:
    """Let a restored node publish before it has synced with every peer (the manager's decision)."""
    await control(config, "POST", "/control/resume-publishing")
    print("publishing resumed; if this node signed events after its backup that no peer returned, they "
          "will be seen as equivocation")
    return 0


async def cmd_config_example(config: Config, args: argparse.Namespace) -> int:
    """Print config.example.toml."""
    sys.stdout.write(render_example())
    return 0


def add_node_commands(sub: Any) -> None:
    """Register init, run, demo and status on the `nnode` subparsers."""
    sub.add_parser("init", help="create the data folder, node key and database").set_defaults(func=cmd_init)
    run = sub.add_parser("run", help="run the node")
    run.add_argument("--port", type=int, help="HTTP port (default: http.port in the config, 8470)")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="initialise if needed and run a demo node (loopback only, ./demo-data)")
    demo.add_argument("--port", type=int, help="HTTP port (default 8470, or http.port of a given config)")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("hostname", help="print this unit's host name (nnode-XXXX, from its key)"
                   ).set_defaults(func=cmd_hostname)
    status = sub.add_parser("status", help="show the node, its events and peers")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)


def add_backup_commands(sub: Any) -> None:
    """Register backup and restore on the `nnode` subparsers."""
    backup = sub.add_parser("backup", help="write an encrypted backup of identity and database")
    backup.add_argument("file")
    backup.add_argument("--passphrase-file", help="read the passphrase from this file (else it is asked for)")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore identity and database from a backup")
    restore.add_argument("file")
    restore.add_argument("--passphrase-file", help="read the passphrase from this file (else it is asked for)")
    restore.add_argument("--force", action="store_true", help="move an existing identity aside instead of refusing")
    restore.set_defaults(func=cmd_restore)


def add_upkeep_commands(sub: Any) -> None:
    """Register resume-publishing and config-example on the `nnode` subparsers."""
    sub.add_parser("resume-publishing", help="let a restored node publish before every peer has synced"
                   ).set_defaults(func=cmd_resume_publishing)
    sub.add_parser("config-example", help="print config.example.toml").set_defaults(func=cmd_config_example)
