"""RFC 9421 HTTP Message Signatures with ed25519, as the sync protocol uses them.

A sync request carries `Signature-Input` and `Signature` with the label `nnode`, covering
("@method" "@authority" "@path" "@query") and, when it has a body, "content-digest" (RFC 9530, sha-256);
parameters created, keyid (the sender's node id, hex), alg="ed25519", nonce and tag="nnode-sync". Agencies sign
their calls the same way with their own key and tag="nnode-agency" (docs/agencies.md), so that neither kind of
signature can stand in for the other.

The server binds what was signed to itself: `@authority` must be one of its own names (`normal_authority`, then a
lookup in the names it answers to) and `@method`/`@path` those of the route actually served, never values taken on
trust from the request. Replay caches are kept per caller, so one caller cannot fill them for everyone.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import nacl.exceptions
import nacl.signing
from http_sfv.dictionary import Dictionary

from ._errors import AuthError, Misdirected, RateLimited

LABEL = "nnode"
TAG = "nnode-sync"
REQUIRED_COMPONENTS = ("@method", "@authority", "@path", "@query")
MAX_SKEW = 60
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*")


def normal_authority(value: str, default_port: int = 80) -> str | None:
    """`host:port` in one spelling (lower case, no trailing dot, IPv6 in brackets, the port always written), or None
    if `value` is not a host name or address with an optional port (a Host header with a path, a user or spaces)."""
    value = value.strip().lower()
    if not value or len(value) > 300:
        return None
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            host, port_text = value, None
    if port_text is None:
        port = default_port
    elif port_text.isdigit() and len(port_text) <= 5 and 1 <= int(port_text) <= 65535:
        port = int(port_text)
    else:
        return None
    host = host.removesuffix(".")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if value.startswith("[") or not _HOSTNAME.fullmatch(host):
            return None
        return f"{host}:{port}"
    return f"[{address.compressed}]:{port}" if address.version == 6 else f"{address}:{port}"


def check_authority(host: str, names: Container[str]) -> str:
    """The request's Host if it names this server (one of `names`, as normal_authority spells them); else Misdirected.

    The signed `@authority` is this value, so a request signed for another server never verifies here.
    """
    normal = normal_authority(host)
    if normal is None or normal not in names:
        raise Misdirected(f"this request is addressed to {host[:100]!r}, which is not one of this node's names "
                          "(its manager lists further names in http.names)")
    return host


def content_digest(body: bytes) -> str:
    """RFC 9530 Content-Digest header value (sha-256)."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signature_params(components: tuple[str, ...], params: Mapping[str, int | str]) -> str:
    """Serialize the @signature-params value: an inner list of component names with parameters."""
    inner = "(" + " ".join(_sf_string(c) for c in components) + ")"
    for name, value in params.items():
        inner += f";{name}=" + (str(value) if isinstance(value, int) else _sf_string(value))
    return inner


def signature_base(components: tuple[str, ...], values: Mapping[str, str], params_value: str) -> bytes:
    """The RFC 9421 signature base: one `"name": value` line per component, then @signature-params."""
    lines = []
    for name in components:
        if name not in values:
            raise AuthError(f"signature covers {name!r}, which the request does not have")
        value = values[name]
        if "\n" in value or "\r" in value:
            raise AuthError(f"component {name!r} holds a line break")
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {params_value}')
    return "\n".join(lines).encode("utf-8")


def component_values(method: str, url: str, headers: Mapping[str, str]) -> dict[str, str]:
    """Derived components of a request, plus its (lower-cased) header fields."""
    parts = urlsplit(url)
    values = {name.lower(): value.strip() for name, value in headers.items()}
    values.update({"@method": method.upper(), "@authority": parts.netloc.lower(),
                   "@path": parts.path or "/", "@query": "?" + parts.query,
                   "@target-uri": url})
    return values


def sign_request(key: nacl.signing.SigningKey, method: str, url: str, body: bytes | None = None,
                 *, now: int | None = None, tag: str = TAG) -> dict[str, str]:
    """Headers (Signature-Input, Signature and, with a body, Content-Digest) that sign this request."""
    headers: dict[str, str] = {}
    components: tuple[str, ...] = REQUIRED_COMPONENTS
    if body:
        headers["Content-Digest"] = content_digest(body)
        components += ("content-digest",)
    params: dict[str, int | str] = {
        "created": int(time.time()) if now is None else now, "keyid": key.verify_key.encode().hex(),
        "alg": "ed25519", "nonce": secrets.token_urlsafe(12), "tag": tag}
    params_value = signature_params(components, params)
    base = signature_base(components, component_values(method, url, headers), params_value)
    signature = base64.b64encode(key.sign(base).signature).decode()
    headers["Signature-Input"] = f"{LABEL}={params_value}"
    headers["Signature"] = f"{LABEL}=:{signature}:"
    return headers


@dataclass(frozen=True, slots=True)
class Verified:
    """The outcome of a successful check: who signed and when."""

    keyid: str
    created: int
    signature: bytes


class ReplayCache:
    """Signatures seen within the skew window, per caller, so a captured request cannot be replayed.

    Each caller (a peer's or an agency's key) has its own bounded set, and the number of callers held is bounded:
    one caller that fills its set is refused (429) while the others go on.
    """

    def __init__(self, window: int = MAX_SKEW, capacity: int = 2048, callers: int = 512) -> None:
        self.window = window
        self.capacity = capacity        # signatures held per caller
        self.callers = callers          # callers held at once
        self._seen: dict[str, OrderedDict[bytes, float]] = {}

    def check_and_add(self, signature: bytes, now: float, caller: str = "") -> None:
        """Raise AuthError if `caller` already sent `signature`; remember it otherwise.

        Entries leave only when they are older than the skew window allows (a request that old is refused for
        its time anyway); a full set refuses that caller's new requests rather than forget live entries, which
        would let a flood make room for a replay. Callers add only authenticated, rate-limited keys' requests.
        """
        horizon = now - 2 * self.window
        seen = self._seen.get(caller)
        if seen is None:
            if len(self._seen) >= self.callers:
                self._forget_idle(horizon)
            if len(self._seen) >= self.callers:
                raise RateLimited("too many callers in the replay window; retry shortly", retry_after=5.0)
            seen = self._seen[caller] = OrderedDict()
        _expire(seen, horizon)
        if signature in seen:
            raise AuthError("this signed request was already received (replay)")
        if len(seen) >= self.capacity:
            raise RateLimited("too many signed requests from this key in the replay window; retry shortly",
                              retry_after=5.0)
        seen[signature] = now

    def _forget_idle(self, horizon: float) -> None:
        for caller in list(self._seen):
            _expire(self._seen[caller], horizon)
            if not self._seen[caller]:
                del self._seen[caller]


def _expire(seen: OrderedDict[bytes, float], horizon: float) -> None:
    while seen and next(iter(seen.values())) < horizon:
        seen.popitem(last=False)


def check_content_digest(headers: Mapping[str, str], body: bytes) -> None:
    """Raise AuthError unless the (signed) Content-Digest header matches `body`."""
    lower = {k.lower(): v for k, v in headers.items()}
    if lower.get("content-digest", "").strip() != content_digest(body):
        raise AuthError("Content-Digest does not match the request body")


def verify_request(method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                   *, has_body: bool | None = None, max_skew: int = MAX_SKEW, now: float | None = None,
                   replay: ReplayCache | None = None,
                   key_lookup: Callable[[str], bytes] | None = None, tag: str = TAG) -> Verified:
    """Check a request's RFC 9421 signature; raise AuthError naming the first problem.

    With `body=None` the headers are checked before the body is read (so nobody can make the node buffer a body
    unauthenticated); the caller then reads the body and calls check_content_digest.
    """
    if has_body is None:
        has_body = bool(body)
    lower = {k.lower(): v for k, v in headers.items()}
    if "signature-input" not in lower or "signature" not in lower:
        raise AuthError("request is not signed: Signature-Input and Signature headers are required")
    try:
        inputs = Dictionary()
        inputs.parse(lower["signature-input"].encode())
        sigs = Dictionary()
        sigs.parse(lower["signature"].encode())
    except ValueError as exc:
        raise AuthError(f"Signature-Input or Signature is not a valid structured field: {exc}") from exc
    if LABEL not in inputs or LABEL not in sigs:
        raise AuthError(f"no signature labelled {LABEL!r}")
    inner = inputs[LABEL]
    try:
        components = tuple(str(item.value) for item in inner)
        params = dict(inner.params)
    except TypeError as exc:
        raise AuthError("Signature-Input must be an inner list of component names") from exc
    signature = sigs[LABEL].value
    if not isinstance(signature, bytes):
        raise AuthError("Signature must be a byte sequence")
    if params.get("alg") != "ed25519" or params.get("tag") != tag:
        raise AuthError(f'signature parameters must include alg="ed25519" and tag="{tag}"')
    keyid, created = params.get("keyid"), params.get("created")
    if not isinstance(keyid, str) or not isinstance(created, int) or isinstance(created, bool):
        raise AuthError("signature parameters must include keyid (string) and created (integer)")
    needed = REQUIRED_COMPONENTS + (("content-digest",) if has_body else ())
    missing = [c for c in needed if c not in components]
    if missing:
        raise AuthError(f"signature must cover {', '.join(missing)}")
    if body is not None and has_body:
        check_content_digest(lower, body)
    clock = time.time() if now is None else now
    if abs(clock - created) > max_skew:
        raise AuthError(f"signature created {int(clock - created)} s from now; allowed clock skew is {max_skew} s")
    try:
        public = key_lookup(keyid) if key_lookup else bytes.fromhex(keyid)
        verify_key = nacl.signing.VerifyKey(public)
    except (ValueError, nacl.exceptions.CryptoError) as exc:
        raise AuthError("keyid is not an ed25519 public key in hex") from exc
    # The signed @signature-params is the inner list as serialized (RFC 8941), which http_sfv reproduces.
    base = signature_base(components, component_values(method, url, lower), str(inner))
    try:
        verify_key.verify(base, signature)
    except (nacl.exceptions.BadSignatureError, ValueError) as exc:
        raise AuthError("request signature does not verify") from exc
    if replay is not None:
        replay.check_and_add(signature, clock, keyid)
    return Verified(keyid=keyid, created=created, signature=signature)
