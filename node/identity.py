"""The node's identity: an ed25519 key in the data folder (mode 0600, never logged).

The node id is the public key as 64 lowercase hex digits; `short_id` is its first 16 for people to read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import nacl.encoding
import nacl.hash
import nacl.signing

from node.errors import NodeError, NotInitialised

KEY_BYTES = 32


def node_id(key: nacl.signing.SigningKey) -> str:
    """The node id: the public key in lowercase hex."""
    return key.verify_key.encode().hex()


def derive_secret(key: nacl.signing.SigningKey, purpose: bytes) -> bytes:
    """A 32-byte secret for one purpose, derived from the node's signing seed by keyed BLAKE2b with the purpose as
    its personalisation (at most 16 bytes, one per use: b"nnode-pseudonym"), so the seed itself is never used as
    a MAC key and one purpose's secret says nothing of another's or of the seed."""
    if not 1 <= len(purpose) <= 16:
        raise ValueError(f"purpose: expected 1 to 16 bytes, got {len(purpose)}")
    return nacl.hash.blake2b(b"nnode-derived-secret-v1", key=key.encode(), person=purpose.ljust(16, b"\0"),
                             digest_size=32, encoder=nacl.encoding.RawEncoder)


def host_name(key_hex: str) -> str:
    """This unit's own host name, `nnode-` and 4 hex digits of a hash of its public key: the same on every start,
    and different for the next node in the building (1 in 65,536 alike), so `nnode-XXXX.local` names one unit."""
    digest = nacl.hash.sha256(bytes.fromhex(key_hex), encoder=nacl.encoding.HexEncoder).decode()
    return f"nnode-{digest[:4]}"


def short_id(key_hex: str) -> str:
    """The first 16 hex digits of a key, for display."""
    return key_hex[:16]


def create_data_dir(path: Path) -> None:
    """Create the data folder with mode 0700 (existing folders are tightened to 0700)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def create_key(path: Path) -> nacl.signing.SigningKey:
    """Generate a new key into `path` (mode 0600); refuse to overwrite an existing one."""
    key = nacl.signing.SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise NodeError(f"{path}: a node key already exists; refusing to replace this node's identity") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.encode())
        handle.flush()
        os.fsync(handle.fileno())
    return key


def load_key(path: Path) -> nacl.signing.SigningKey:
    """Load the node key, refusing one readable by group or others."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotInitialised(f"{path}: no node key; run `nnode init` first") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise NodeError(f"{path}: node key is accessible to other users (mode {stat.S_IMODE(mode):04o}); "
                        f"run `chmod 600 {path}`")
    if len(data) != KEY_BYTES:
        raise NodeError(f"{path}: node key must be {KEY_BYTES} bytes, found {len(data)}")
    return nacl.signing.SigningKey(data)
