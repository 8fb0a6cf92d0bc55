"""An agency's keys: its ed25519 key files, public keys given as bytes or hex, and the X25519 keys bundles use.

A bundle is encrypted to the agency's X25519 key, derived from its ed25519 key (libsodium's
crypto_sign_ed25519_pk_to_curve25519), so an agency has one key for signing its calls and opening its bundles.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from node.sharing.errors import SharingError

_HEX64 = re.compile(r"[0-9a-f]{64}")


def verify_key(value: nacl.signing.VerifyKey | bytes | str, what: str) -> nacl.signing.VerifyKey:
    """An ed25519 public key given as itself, 32 bytes or 64 hex digits; SharingError names `what` otherwise."""
    if isinstance(value, nacl.signing.VerifyKey):
        return value
    if isinstance(value, str):
        if not _HEX64.fullmatch(value.lower()):
            raise SharingError(f"the {what} must be 64 hex digits (an ed25519 public key)")
        value = bytes.fromhex(value)
    if not isinstance(value, bytes) or len(value) != 32:
        raise SharingError(f"the {what} must be an ed25519 public key (32 bytes or 64 hex digits)")
    return nacl.signing.VerifyKey(value)


def x25519_public(key: nacl.signing.VerifyKey) -> nacl.public.PublicKey:
    """The agency's X25519 key, derived from its ed25519 key (crypto_sign_ed25519_pk_to_curve25519)."""
    try:
        return nacl.public.PublicKey(sodium.crypto_sign_ed25519_pk_to_curve25519(key.encode()))
    except nacl.exceptions.CryptoError as exc:
        raise SharingError(f"agency key {key.encode().hex()} is not a usable ed25519 public key") from exc


def x25519_private(key: nacl.signing.SigningKey) -> nacl.public.PrivateKey:
    """The agency's X25519 private key (crypto_sign_ed25519_sk_to_curve25519 of seed + public key)."""
    secret = key.encode() + key.verify_key.encode()
    return nacl.public.PrivateKey(sodium.crypto_sign_ed25519_sk_to_curve25519(secret))


def load_agency_key(path: Path | str) -> nacl.signing.SigningKey:
    """Read an agency's ed25519 private seed: 64 hex digits (surrounding whitespace allowed) or 32 raw bytes."""
    path = Path(path)
    try:
        if path.stat().st_size > 1024:
            raise SharingError(f"{path}: too large for an agency key file")
        data = path.read_bytes()
    except OSError as exc:
        raise SharingError(f"{path}: cannot read the agency key: {exc.strerror or exc}") from exc
    if len(data) == 32:
        return nacl.signing.SigningKey(data)
    text = data.decode("ascii", "replace").strip().lower()
    if _HEX64.fullmatch(text):
        return nacl.signing.SigningKey(bytes.fromhex(text))
    raise SharingError(f"{path}: an agency key file holds the 32-byte ed25519 private seed, "
                       f"as 64 hex digits or 32 raw bytes (found {len(data)} bytes)")


def write_agency_key(path: Path | str) -> nacl.signing.SigningKey:
    """Generate an agency key into a new file (64 hex digits and a newline, mode 0600); refuse to overwrite."""
    path = Path(path)
    key = nacl.signing.SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SharingError(f"{path}: already exists; refusing to replace a key") from None
    except OSError as exc:
        raise SharingError(f"{path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(key.encode().hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key
