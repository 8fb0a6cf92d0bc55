"""An agency's keys: its key file, public keys given as bytes or hex, and the X25519 key bundles are sealed to.

An agency key file holds two private keys (docs/agencies.md): the ed25519 key that signs the agency's calls and
requests, and a separate X25519 (crypto_box) key that opens its bundles. Each request names the X25519 public key
("encryption_key") and the node seals the bundle's content key to that key, so the signing key opens nothing, and
a key that only signs (an anchor's, or a copy handed to a signing tool) discloses no footage. The file is text:

    # nnode agency key: private, keep it safe
    signing 9f2c...(64 hex: the ed25519 seed)
    encryption 41be...(64 hex: the X25519 secret key)

A file of the old form (the ed25519 seed alone, 64 hex digits or 32 raw bytes) is still read, as `legacy`: its
X25519 key is the conversion of the signing key, which opens the bundles made for it before; it can no longer
post requests (make a new key file with `nnode agency-key new`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from node.sharing.errors import SharingError

_HEX64 = re.compile(r"[0-9a-f]{64}")
HEADER = "# nnode agency key: private, keep it safe (signing: ed25519 seed; encryption: X25519 secret key)"
_PROBE = bytes([9]) + bytes(31)
"""Any scalar: a low-order point multiplied by a clamped scalar gives zero, which libsodium refuses."""


@dataclass(frozen=True)
class AgencyKey:
    """An agency's private keys: `signing` signs its calls, `box` opens the bundles sealed to it."""

    signing: nacl.signing.SigningKey
    box: nacl.public.PrivateKey
    legacy: bool = False
    """An old single-key file: `box` is the conversion of the signing key (it opens old bundles, posts nothing)."""

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        """The agency's ed25519 public key (what its manager registers)."""
        return self.signing.verify_key

    @property
    def public(self) -> str:
        """The ed25519 public key in hex."""
        return self.signing.verify_key.encode().hex()

    @property
    def encryption_key(self) -> str:
        """The X25519 public key in hex (what a request names, and bundles are sealed to)."""
        return self.box.public_key.encode().hex()

    def encoded(self) -> str:
        """The key file's text."""
        return (f"{HEADER}\nsigning {self.signing.encode().hex()}\n"
                f"encryption {self.box.encode().hex()}\n")


def agency_key(value: AgencyKey | nacl.signing.SigningKey) -> AgencyKey:
    """An AgencyKey; a bare ed25519 key becomes a legacy one (its X25519 key converted from it)."""
    if isinstance(value, AgencyKey):
        return value
    return AgencyKey(value, x25519_private(value), legacy=True)


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


def box_key(value: nacl.public.PublicKey | bytes | str, what: str = "encryption key") -> nacl.public.PublicKey:
    """An X25519 public key given as itself, 32 bytes or 64 hex digits, refused (naming `what`) when it is not a
    point a content key can be sealed to (a low-order point would make the seal readable by anyone)."""
    if isinstance(value, nacl.public.PublicKey):
        value = value.encode()
    if isinstance(value, str):
        if not _HEX64.fullmatch(value):
            raise SharingError(f"the {what} must be 64 lowercase hex digits (an X25519 public key)")
        value = bytes.fromhex(value)
    if not isinstance(value, bytes) or len(value) != 32:
        raise SharingError(f"the {what} must be an X25519 public key (32 bytes or 64 hex digits)")
    if not is_box_point(value):
        raise SharingError(f"the {what} {value.hex()} is a low-order point, not an X25519 public key")
    return nacl.public.PublicKey(value)


def is_box_point(value: bytes) -> bool:
    """Whether 32 bytes are an X25519 public key a seal can use (not one of the low-order points)."""
    try:
        sodium.crypto_scalarmult(_PROBE, value)
    except nacl.exceptions.RuntimeError:
        return False
    return True


def x25519_public(key: nacl.signing.VerifyKey) -> nacl.public.PublicKey:
    """The X25519 key converted from an ed25519 key (crypto_sign_ed25519_pk_to_curve25519): old requests only."""
    try:
        return nacl.public.PublicKey(sodium.crypto_sign_ed25519_pk_to_curve25519(key.encode()))
    except nacl.exceptions.CryptoError as exc:
        raise SharingError(f"agency key {key.encode().hex()} is not a usable ed25519 public key") from exc


def x25519_private(key: nacl.signing.SigningKey) -> nacl.public.PrivateKey:
    """The X25519 private key converted from an ed25519 key (crypto_sign_ed25519_sk_to_curve25519)."""
    secret = key.encode() + key.verify_key.encode()
    return nacl.public.PrivateKey(sodium.crypto_sign_ed25519_sk_to_curve25519(secret))


def _parse(path: Path, text: str) -> AgencyKey:
    found: dict[str, bytes] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        value = value.strip().lower()
        if name not in ("signing", "encryption") or name in found or not _HEX64.fullmatch(value):
            raise SharingError(f"{path}: line {n}: expected 'signing <64 hex>' or 'encryption <64 hex>' once each")
        found[name] = bytes.fromhex(value)
    if set(found) != {"signing", "encryption"}:
        raise SharingError(f"{path}: an agency key file holds a 'signing' and an 'encryption' line "
                           f"(found {', '.join(sorted(found)) or 'neither'}); make one with nnode agency-key new")
    box = nacl.public.PrivateKey(found["encryption"])
    if not is_box_point(box.public_key.encode()):
        raise SharingError(f"{path}: the encryption key is not a usable X25519 key")
    return AgencyKey(nacl.signing.SigningKey(found["signing"]), box)


def load_agency_key(path: Path | str) -> AgencyKey:
    """Read an agency key file (see the module's docstring); an old single-seed file gives a legacy key."""
    path = Path(path)
    try:
        if path.stat().st_size > 1024:
            raise SharingError(f"{path}: too large for an agency key file")
        data = path.read_bytes()
    except OSError as exc:
        raise SharingError(f"{path}: cannot read the agency key: {exc.strerror or exc}") from exc
    if len(data) == 32:
        return agency_key(nacl.signing.SigningKey(data))
    text = data.decode("ascii", "replace")
    if _HEX64.fullmatch(text.strip().lower()):
        return agency_key(nacl.signing.SigningKey(bytes.fromhex(text.strip().lower())))
    if not text.lstrip().startswith(("#", "signing", "encryption")):
        raise SharingError(f"{path}: not an agency key file (one holds a 'signing' and an 'encryption' line, as "
                           f"nnode agency-key new writes; found {len(data)} bytes)")
    return _parse(path, text)


def write_agency_key(path: Path | str) -> AgencyKey:
    """Generate an agency's two keys into a new file (mode 0600); refuse to overwrite."""
    path = Path(path)
    key = AgencyKey(nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SharingError(f"{path}: already exists; refusing to replace a key") from None
    except OSError as exc:
        raise SharingError(f"{path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(key.encoded())
        handle.flush()
        os.fsync(handle.fileno())
    return key
