"""Secrets at rest: scrypt (memory-hard, in the standard library) for passwords and claim codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# 2**15 x 8 x 128 bytes = 32 MiB per hash: expensive to guess in bulk, affordable on a Pi once per sign-in.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def hash_secret(secret: str) -> str:
    """`scrypt$n$r$p$salt$hash` (base64) for storage. CPU-heavy: call it in a thread."""
    salt = os.urandom(16)
    digest = _scrypt(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_secret(secret: str, stored: str) -> bool:
    """True if `secret` hashes to `stored` (constant-time comparison). CPU-heavy: call it in a thread."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(secret, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)
