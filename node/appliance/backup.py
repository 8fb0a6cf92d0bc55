"""`nnode backup` and `nnode restore`: the node's identity and database in one passphrase-encrypted file.

The file holds the private key, so it is never written in the clear: a tar of node.key, a consistent snapshot of
node.db (SQLite's online backup, safe while the node runs), the Web Push key vapid.pem (without it every phone's
subscription is dead after a restore) and the tls/ folder (the local CA and its certificate: residents installed
that CA once, and a new one would have them do it again), when the node has them, and a manifest, encrypted with libsodium secretstream
(XChaCha20-Poly1305, 1 MiB chunks, constant memory) under a key derived from the passphrase with Argon2id.

Layout: b"NNODEBK1" | salt (16) | opslimit (u64) | memlimit (u64) | secretstream header (24) |
        chunks: length (u32) + ciphertext; the last chunk carries TAG_FINAL, so a truncated file is detected.

A restored node may be behind its own published history (events it signed after the backup live on at its
peers), so restore marks the database; the node then publishes nothing until it has synced with a peer and taken
its own newer events back (see SyncEngine.hold_publishing), and never reuses a seq number.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import sqlite3
import struct
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import nacl.bindings as sodium
import nacl.exceptions
import nacl.pwhash
import nacl.signing
import nacl.utils

from node import __version__
from node.config import Config
from node.durable import write_private
from node.errors import NodeError
from node.identity import create_data_dir, load_key, node_id
from node.state import RESTORED

MAGIC = b"NNODEBK1"
CHUNK = 1024 * 1024
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
RESTORED_FLAG = RESTORED
REQUIRED = {"manifest.json", "node.key", "node.db"}
VAPID = "vapid.pem"              # node/push/sender.py's VAPID_FILE
TLS_FOLDER = "tls"               # node/tls/state.py's LocalCA folder
MAX_EXTRA_FILE = 1 << 20         # a key or a certificate chain: far smaller
MAX_TLS_FILES = 32
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _extras(data_dir: Path) -> list[tuple[str, bytes]]:
    """vapid.pem and the regular files of tls/, as (name in the archive, content), when the node has them."""
    found = []
    vapid = data_dir / VAPID
    if vapid.is_file():
        found.append((VAPID, vapid.read_bytes()))
    folder = data_dir / TLS_FOLDER
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.is_symlink() and _FILE_NAME.fullmatch(path.name) \
                    and not path.name.endswith(".new"):
                found.append((f"{TLS_FOLDER}/{path.name}", path.read_bytes()))
    return found


def _allowed_extra(name: str) -> bool:
    folder, _, file = name.partition("/")
    return name == VAPID or (folder == TLS_FOLDER and bool(_FILE_NAME.fullmatch(file)))


class BackupError(NodeError):
    """A backup could not be written, or a file could not be restored."""


def _key(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    if len(passphrase) < 8:
        raise BackupError("the backup passphrase must have at least 8 characters")
    return nacl.pwhash.argon2id.kdf(32, passphrase, salt, opslimit=opslimit, memlimit=memlimit)


def _snapshot(db_path: Path, into: Path) -> None:
    source = sqlite3.connect(db_path)
    target = sqlite3.connect(into)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _own_max_seq(db_path: Path, author: str) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE author = ?", (author,)).fetchone()[0])


def write_backup(config: Config, out: BinaryIO, passphrase: bytes) -> dict[str, Any]:
    """Encrypt key + database snapshot + manifest into `out`; returns the manifest. Blocking: run in a thread."""
    key = load_key(config.key_path)
    if not config.db_path.exists():
        raise BackupError(f"{config.db_path}: no database to back up")
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "node.db"
        _snapshot(config.db_path, snapshot)
        manifest = {"format": 1, "node": node_id(key), "created": int(time.time()), "software": __version__,
                    "own_max_seq": _own_max_seq(snapshot, node_id(key))}
        extras = _extras(config.node.data_dir)
        manifest["files"] = [name for name, _ in extras]
        archive = Path(tmp) / "backup.tar"
        with tarfile.open(archive, "w") as tar:
            for name, data in (("manifest.json", json.dumps(manifest).encode()), ("node.key", key.encode()),
                               *extras):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
            tar.add(snapshot, "node.db")
        salt = nacl.utils.random(16)
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        header = sodium.crypto_secretstream_xchacha20poly1305_init_push(state, _key(passphrase, salt, OPSLIMIT,
                                                                                    MEMLIMIT))
        out.write(MAGIC + salt + struct.pack(">QQ", OPSLIMIT, MEMLIMIT) + header)
        with open(archive, "rb") as plain:
            chunk = plain.read(CHUNK)
            while True:
                following = plain.read(CHUNK)
                tag = _TAG_MESSAGE if following else _TAG_FINAL
                sealed = sodium.crypto_secretstream_xchacha20poly1305_push(state, chunk, None, tag)
                out.write(struct.pack(">I", len(sealed)) + sealed)
                if not following:
                    break
                chunk = following
    return manifest


def _read_exact(source: BinaryIO, size: int, what: str) -> bytes:
    data = source.read(size)
    if len(data) != size:
        raise BackupError(f"backup file is truncated (in the {what})")
    return data


def _decrypt(source: BinaryIO, passphrase: bytes) -> Iterator[bytes]:
    if _read_exact(source, len(MAGIC), "header") != MAGIC:
        raise BackupError("not a Neighborhood Node backup file (bad magic)")
    salt = _read_exact(source, 16, "header")
    opslimit, memlimit = struct.unpack(">QQ", _read_exact(source, 16, "header"))
    if opslimit > 16 or memlimit > 2**30:
        raise BackupError("backup header asks for an unreasonable key derivation cost")
    header = _read_exact(source, 24, "header")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, _key(passphrase, salt, opslimit, memlimit))
    while True:
        raw = source.read(4)
        if len(raw) < 4:
            raise BackupError("backup file is truncated (no final chunk)")
        (length,) = struct.unpack(">I", raw)
        if length > CHUNK + 64:
            raise BackupError("backup file is corrupt (oversized chunk)")
        try:
            plain, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(
                state, _read_exact(source, length, "content"), None)
        except nacl.exceptions.CryptoError:
            raise BackupError("cannot decrypt the backup: wrong passphrase, or the file was altered") from None
        yield plain
        if tag == _TAG_FINAL:
            if source.read(1):
                raise BackupError("backup file has data after its final chunk")
            return


def restore_backup(config: Config, source: BinaryIO, passphrase: bytes, *, force: bool = False) -> dict[str, Any]:
    """Restore identity and database into config's data folder; returns the manifest. Blocking: run in a thread."""
    data_dir = config.node.data_dir
    if config.key_path.exists() and not force:
        raise BackupError(f"{data_dir} already holds a node identity; restore refuses to replace it "
                          "(stop the node and use --force to move the current files aside)")
    _refuse_if_running(data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "backup.tar"
        with open(archive, "wb") as plain:
            for chunk in _decrypt(source, passphrase):
                plain.write(chunk)
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            extra_names = [name for name in names if name not in REQUIRED]
            if not REQUIRED <= set(names) or len(set(names)) != len(names) or \
                    not all(_allowed_extra(name) for name in extra_names) or len(extra_names) > MAX_TLS_FILES + 1:
                raise BackupError(f"backup holds unexpected members: {sorted(names)}")
            manifest_file, key_file = tar.extractfile("manifest.json"), tar.extractfile("node.key")
            if manifest_file is None or key_file is None:   # a member that is not a regular file
                raise BackupError("backup holds a manifest or key that is not a file")
            manifest = json.load(manifest_file)
            key = key_file.read()
            extras: list[tuple[str, bytes]] = []
            for name in extra_names:
                member = tar.getmember(name)
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None or member.size > MAX_EXTRA_FILE:
                    raise BackupError(f"backup member {name} is not a file of at most {MAX_EXTRA_FILE} bytes")
                extras.append((name, handle.read()))
            tar.extract("node.db", tmp, filter="data")
        if not isinstance(manifest, dict):
            raise BackupError("the backup's manifest is not a JSON object")
        key_hex = nacl.signing.SigningKey(key).verify_key.encode().hex() if len(key) == 32 else None
        if key_hex is None or key_hex != manifest.get("node"):
            raise BackupError("the key in the backup does not match its manifest")
        db = Path(tmp) / "node.db"
        # Closed (and so checkpointed into the main file) before the file moves: a WAL left behind in the
        # temporary folder would take the restored flag with it.
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as conn:
            if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("the database in the backup fails its integrity check")
            conn.execute("CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR REPLACE INTO node_state (key, value) VALUES (?, ?)",
                         (RESTORED_FLAG, str(int(time.time()))))
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        create_data_dir(data_dir)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        # A stale WAL next to the restored database would be applied to it: always move those aside.
        for name in ("node.key", "node.db", "node.db-wal", "node.db-shm", *([VAPID, TLS_FOLDER] if extras else [])):
            if (data_dir / name).exists() and (force or name.endswith(("-wal", "-shm"))):
                (data_dir / name).rename(data_dir / f"{name}.before-restore-{stamp}")
        fd = os.open(config.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        restored = [config.key_path]
        for name, data in extras:
            if name.startswith(TLS_FOLDER + "/"):
                (data_dir / TLS_FOLDER).mkdir(mode=0o700, exist_ok=True)
            write_private(data_dir / name, data)
            restored.append(data_dir / name)
        os.replace(db, config.db_path)
        os.chmod(config.db_path, 0o600)
        restored.append(config.db_path)
        # Restored by root into the service's folder: the files belong to the folder's owner (the nnode user).
        owner = data_dir.stat()
        if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
            for path in [*restored, *([data_dir / TLS_FOLDER] if (data_dir / TLS_FOLDER).is_dir() else [])]:
                os.chown(path, owner.st_uid, owner.st_gid)
    return manifest


def _refuse_if_running(data_dir: Path) -> None:
    """The node holds an exclusive lock on node.lock while it runs (a stale socket after a crash does not count)."""
    lock = data_dir / "node.lock"
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BackupError("the node is running: stop it before restoring") from None
    finally:
        os.close(fd)
