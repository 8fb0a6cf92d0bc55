"""The node descriptor served at /.well-known/nnode: who a node is, signed by its own key."""

from __future__ import annotations

import re
import time
from typing import Any

import nacl.exceptions
import nacl.signing

from ._canonical import canonical
from ._errors import SyncError

DESCRIPTOR_DOMAIN = b"nnode-descriptor-v1:"
PROTOCOLS = ["nnode-sync/1"]


class BadDescriptor(SyncError):
    """A peer's descriptor is malformed or not signed by the key it names."""

    status = 502
    reason = "bad_descriptor"


NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
MAX_NAME = 256    # characters of a node's name kept from its descriptor


def make_descriptor(key: nacl.signing.SigningKey, *, name: str, location: dict[str, int] | None,
                    nonce: str | None = None, now: int | None = None) -> dict[str, Any]:
    """A signed descriptor; `location` is coarse, in integer micro-degrees. A caller's nonce is signed in, which
    proves the key holder answers at this address now (a copied descriptor cannot)."""
    body = {"v": 1, "node": key.verify_key.encode().hex(), "name": name, "location": location,
            "protocols": PROTOCOLS, "ts": int(time.time()) if now is None else now}
    if nonce is not None:
        body["nonce"] = nonce
    body["sig"] = key.sign(DESCRIPTOR_DOMAIN + canonical(body)).signature.hex()
    return body


def check_descriptor(value: Any, *, expect_key: str | None = None, nonce: str | None = None) -> dict[str, Any]:
    """Verify a descriptor's signature (and that it names `expect_key` and signs `nonce`); return it."""
    if not isinstance(value, dict) or not isinstance(value.get("sig"), str) or not isinstance(value.get("node"), str):
        raise BadDescriptor("descriptor must be an object with 'node' and 'sig'")
    if nonce is not None and value.get("nonce") != nonce:
        raise BadDescriptor("descriptor does not sign the nonce we sent: not a live answer from that key")
    if expect_key is not None and value["node"] != expect_key:
        raise BadDescriptor(f"descriptor names key {value['node'][:16]}, expected {expect_key[:16]}")
    unsigned = {k: v for k, v in value.items() if k != "sig"}
    try:
        nacl.signing.VerifyKey(bytes.fromhex(value["node"])).verify(
            DESCRIPTOR_DOMAIN + canonical(unsigned), bytes.fromhex(value["sig"]))
    except (ValueError, nacl.exceptions.CryptoError, SyncError) as exc:
        raise BadDescriptor(f"descriptor signature does not verify: {exc}") from exc
    if not isinstance(value.get("name"), str) or len(value["name"]) > MAX_NAME:
        raise BadDescriptor(f"descriptor 'name' must be a string of at most {MAX_NAME} characters")
    return value
