"""Outbound sync calls: signed requests to one peer's heads, pull and push endpoints."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import nacl.signing

from ._area import Circle
from ._descriptor import check_descriptor
from ._errors import PeerUnreachable
from ._event import MAX_EVENT_BYTES
from ._httpsig import sign_request
from ._store import Gap

NDJSON = "application/x-ndjson"
END_PREFIX = b'{"end":'
REQUEST_TIMEOUT = 30.0


def _end_more(url: str, line: bytes) -> bool:
    try:
        more = json.loads(line)["end"]["more"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PeerUnreachable(f"{url}: malformed end record") from exc
    if not isinstance(more, bool):
        raise PeerUnreachable(f"{url}: malformed end record")
    return more


class PeerClient:
    """Signed HTTP calls to peers, over one shared aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, key: nacl.signing.SigningKey,
                 *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.session = session
        self.key = key
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)

    def _signed(self, method: str, url: str, body: bytes | None, content_type: str | None) -> dict[str, str]:
        headers = sign_request(self.key, method, url, body)
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def descriptor(self, base_url: str, *, expect_key: str | None = None) -> dict[str, Any]:
        """Fetch and verify a node's descriptor, signed over a fresh nonce of ours."""
        nonce = secrets.token_urlsafe(24)
        url = base_url.rstrip("/") + "/.well-known/nnode?nonce=" + nonce
        try:
            async with self.session.get(url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise PeerUnreachable(f"{url}: HTTP {resp.status}")
                value = json.loads(await resp.content.read(64 * 1024))
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise PeerUnreachable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        return check_descriptor(value, expect_key=expect_key, nonce=nonce)

    async def heads(self, base_url: str) -> dict[str, int]:
        """The peer's {author: max seq}."""
        url = base_url.rstrip("/") + "/sync/v1/heads"
        value = await self._json("GET", url, None)
        if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
            raise PeerUnreachable(f"{url}: heads must be an object of integers")
        return value

    async def push(self, base_url: str, lines: Sequence[bytes]) -> object:
        """Send events; returns the peer's per-batch result."""
        url = base_url.rstrip("/") + "/sync/v1/push"
        return await self._json("POST", url, b"\n".join(lines) + b"\n", NDJSON, per_event=True)

    async def pull(self, base_url: str, heads: dict[str, int], gaps: Sequence[Gap], tips: dict[str, str],
                   limit: int, interest: Circle | None = None) -> AsyncIterator[tuple[list[bytes], bool | None]]:
        """Yield chunks of event lines as they arrive; the last item is ([], more) from the end record.

        A stream that stops without its end record raises PeerUnreachable after yielding what did arrive, so the
        caller keeps those events and resumes after them.
        """
        url = base_url.rstrip("/") + "/sync/v1/pull"
        request = {"heads": heads, "gaps": gaps, "tips": tips, "limit": limit}
        if interest is not None:   # only what touches it is sent, and only that is pushed from now on
            request["interest"] = {"lat_e6": interest.lat_e6, "lon_e6": interest.lon_e6, "radius_m": interest.radius_m}
        body = json.dumps(request, separators=(",", ":")).encode()
        try:
            async with self.session.post(url, data=body, timeout=self.timeout,
                                         headers=self._signed("POST", url, body, "application/json")) as resp:
                if resp.status != 200:
                    raise PeerUnreachable(f"{url}: HTTP {resp.status}: {(await resp.text())[:300]}")
                buffer = b""
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    if len(buffer) > MAX_EVENT_BYTES + 1024:
                        raise PeerUnreachable(f"{url}: a line longer than {MAX_EVENT_BYTES} bytes")
                    if lines and lines[-1].startswith(END_PREFIX):
                        yield lines[:-1], None
                        yield [], _end_more(url, lines[-1])
                        return
                    if lines:
                        yield lines, None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PeerUnreachable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        raise PeerUnreachable(f"{url}: the stream ended without its end record (cut off)")

    async def _json(self, method: str, url: str, body: bytes | None, content_type: str | None = None,
                    *, per_event: bool = False) -> object:
        """Call and decode JSON; with `per_event`, a refusal of some events (a body with results) is an answer."""
        try:
            async with self.session.request(method, url, data=body, timeout=self.timeout,
                                            headers=self._signed(method, url, body, content_type)) as resp:
                text = await resp.text()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PeerUnreachable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if status >= 400 and not (per_event and isinstance(value, dict) and "results" in value):
            raise PeerUnreachable(f"{url}: HTTP {status}: {text[:300]}")
        if value is None:
            raise PeerUnreachable(f"{url}: HTTP {status}: response is not JSON")
        return value
