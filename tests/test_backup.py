"""Backup and restore: encrypted, consistent while running, and a restored node never forks its own event log."""

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from node.appliance.backup import BackupError, restore_backup, write_backup
from node.config import Config
from sync import SyncError
from tests.conftest import Node, wait_until


def _write(config: Config, backup: Path, passphrase: bytes) -> dict[str, Any]:
    """write_backup into the file `backup` (blocking: the tests run it in a thread)."""
    with open(backup, "wb") as out:
        return write_backup(config, out, passphrase)


def _restore(config: Config, backup: Path, passphrase: bytes, **options: Any) -> dict[str, Any]:
    """restore_backup from the file `backup` (blocking: the tests run it in a thread)."""
    with open(backup, "rb") as source:
        return restore_backup(config, source, passphrase, **options)


async def test_restored_node_takes_back_its_newer_events_before_publishing(make_node, short_tmp):
    a = await make_node("a")
    b = await make_node("b")
    await a.approve(b)
    await b.approve(a)
    for i in range(3):
        await a.engine.publish("notice", {"text": f"before backup {i}"}, ttl=3600)
    passphrase = short_tmp / "pass"
    passphrase.write_text("correct horse battery staple\n")
    backup = short_tmp / "a.nnbk"
    # A backup of the running node, through the CLI as a manager would make it.
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "node", "--data-dir",
                                                      str(a.config.node.data_dir), "backup", str(backup),
                                                      "--passphrase-file", str(passphrase)],
                                     capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert a.key.encode() not in backup.read_bytes()                            # never in the clear
    later = [await a.engine.publish("notice", {"text": f"after backup {i}"}, ttl=3600) for i in range(2)]
    await wait_until(lambda: _has(b, {e.id for e in later}))
    await a.stop()                                   # the SD card dies
    await b.stop()                                   # and the neighbor is offline when a comes back

    restored = Node(short_tmp / "a2", a.port, "a", {"sync.anti_entropy_interval": 3600})
    manifest = await asyncio.to_thread(_restore, restored.config, backup, b"correct horse battery staple")
    assert manifest["node"] == a.id and manifest["own_max_seq"] == 3
    assert stat.S_IMODE(os.stat(restored.config.key_path).st_mode) == 0o600
    await restored.start()
    try:
        assert restored.id == a.id
        with pytest.raises(SyncError, match="restored from a backup"):
            await restored.engine.publish("notice", {"text": "too early"}, ttl=3600)
        await b.start()
        await wait_until(lambda: restored.engine._held is None)   # its retry reached b
        # The engine lets go of the hold, then its callback deletes the flag: wait for the second too.
        await wait_until(lambda: _no_state(restored))
        fresh = await restored.engine.publish("notice", {"text": "after restore"}, ttl=3600)
        assert fresh.seq == 6                        # not 4: seqs 4 and 5 came back from b
        await wait_until(lambda: _has(b, {fresh.id}))
        assert await b.store.quarantined() == {}     # no equivocation anywhere
    finally:
        await restored.stop()


async def _no_state(node):
    return list(await node.store.db.reader.execute_fetchall("SELECT * FROM node_state")) == []


async def _has(node, ids):
    return ids <= await node.ids()


async def test_wrong_passphrase_tampering_and_overwrite_are_refused(make_node, short_tmp):
    a = await make_node("a")
    backup = short_tmp / "a.nnbk"
    await asyncio.to_thread(_write, a.config, backup, b"a long passphrase")
    target = Node(short_tmp / "other", 1, "x", {})
    for data, passphrase, message in [
        (backup.read_bytes(), b"not the passphrase", "wrong passphrase"),
        (backup.read_bytes()[:-10], b"a long passphrase", "truncated"),
        (backup.read_bytes()[:100] + bytes([backup.read_bytes()[100] ^ 1]) + backup.read_bytes()[101:],
         b"a long passphrase", "wrong passphrase, or the file was altered"),
        (b"PK\x03\x04 not a backup", b"a long passphrase", "not a Neighborhood Node backup"),
    ]:
        altered = short_tmp / "altered"
        altered.write_bytes(data)
        with pytest.raises(BackupError, match=message):
            await asyncio.to_thread(_restore, target.config, altered, passphrase)
        assert not target.config.key_path.exists()       # nothing half-restored
    with pytest.raises(BackupError, match="already holds a node identity"):
        await asyncio.to_thread(_restore, a.config, backup, b"a long passphrase")


async def test_a_restored_node_without_peers_waits_for_its_manager(make_node, short_tmp):
    a = await make_node("a")
    await a.engine.publish("notice", {"text": "x"}, ttl=3600)
    backup = short_tmp / "a.nnbk"
    await asyncio.to_thread(_write, a.config, backup, b"a long passphrase")
    await a.stop()
    restored = Node(short_tmp / "a2", a.port, "a", {})
    # A stale WAL from an earlier database in the folder must not be applied to the restored one.
    restored.config.node.data_dir.mkdir(parents=True)
    (restored.config.node.data_dir / "node.db-wal").write_bytes(b"stale")
    await asyncio.to_thread(_restore, restored.config, backup, b"a long passphrase")
    assert not (restored.config.node.data_dir / "node.db-wal").exists()
    await restored.start()
    try:
        with pytest.raises(SyncError, match="resume-publishing"):
            await restored.engine.publish("notice", {"text": "no peer to ask"}, ttl=3600)
        # The running node holds its lock, so a second restore refuses.
        with pytest.raises(BackupError, match="running"):
            await asyncio.to_thread(_restore, restored.config, backup, b"a long passphrase", force=True)
        await restored.engine.resume_publishing()           # the manager's decision
        assert (await restored.engine.publish("notice", {"text": "ok"}, ttl=3600)).seq == 2
    finally:
        await restored.stop()


async def test_the_push_key_and_the_local_ca_come_back_with_a_restore(make_node, short_tmp):
    """Residents' phones subscribed with the node's VAPID key and installed its CA: a restored node keeps both, so
    no phone has to subscribe or install a certificate again."""
    from node.keys import PUSH, TLS
    from tests.test_tls import LOCAL_CA

    a = await make_node("a", **LOCAL_CA)
    vapid_public, ca_fingerprint = a.app[PUSH].public_key, a.app[TLS].fingerprint
    assert ca_fingerprint and (a.config.node.data_dir / "tls" / "ca.key").exists()
    tls_files = {p.name: p.read_bytes() for p in (a.config.node.data_dir / "tls").iterdir() if p.is_file()}
    backup = short_tmp / "a.nnbk"
    manifest = await asyncio.to_thread(_write, a.config, backup, b"a long passphrase")
    assert "vapid.pem" in manifest["files"] and "tls/ca.key" in manifest["files"]
    assert (a.config.node.data_dir / "vapid.pem").read_bytes() not in backup.read_bytes()   # never in the clear
    await a.stop()

    restored = Node(short_tmp / "a2", 0, "a", {k.replace("__", "."): v for k, v in LOCAL_CA.items()})
    await asyncio.to_thread(_restore, restored.config, backup, b"a long passphrase")
    folder = restored.config.node.data_dir
    for path in (folder / "vapid.pem", folder / "tls" / "ca.key", folder / "tls" / "server.key"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(folder / "tls").st_mode) == 0o700
    assert {p.name: p.read_bytes() for p in (folder / "tls").iterdir() if p.is_file()} == tls_files
    await restored.start()
    try:
        assert restored.app[PUSH].public_key == vapid_public          # the phones' subscriptions still work
        assert restored.app[TLS].fingerprint == ca_fingerprint        # the CA the residents installed
    finally:
        await restored.stop()


async def test_a_backup_with_a_stray_member_is_refused(make_node, short_tmp, monkeypatch):
    """Only the node's own files come back: a member outside node.key, node.db, vapid.pem and tls/ is refused
    before anything is written."""
    from node.appliance import backup as module

    a = await make_node("a")
    original = module._extras
    # what a crafted file would hold: a member that would land outside the data folder
    monkeypatch.setattr(module, "_extras", lambda data_dir: [*original(data_dir), ("../evil", b"x")])
    backup = short_tmp / "a.nnbk"
    await asyncio.to_thread(_write, a.config, backup, b"a long passphrase")
    monkeypatch.setattr(module, "_extras", original)
    target = Node(short_tmp / "other", 1, "x", {})
    with pytest.raises(BackupError, match="unexpected members"):
        await asyncio.to_thread(_restore, target.config, backup, b"a long passphrase")
    assert not target.config.key_path.exists() and not (short_tmp / "evil").exists()
