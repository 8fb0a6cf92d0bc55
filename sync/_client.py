"""Outbound sync calls: signed requests to one peer's heads, pull and push endpoints, every answer read in bounds.

Byte caps (sized for a 1 GB Raspberry Pi: the largest, a pull answer, is read and stored chunk by chunk, so what is
held at once is two chunks, not the answer): a descriptor 64 KiB, a heads answer 4 MiB (as much as a pull request
may carry, which holds our own heads), a push reply 2 MiB, an error's text 4 KiB, a pull answer 16 MiB or twice
the node's own max_batch_bytes if more (the peer's batch, its divergent headers and the end record; a longer answer
is cut, keeping what arrived, and the next round resumes after it), each line of it MAX_EVENT_BYTES. Time bounds are in _bounded.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import nacl.signing

from ._area import Circle
from ._bounded import CALL_DEADLINE, MIN_RATE, PULL_DEADLINE, RATE_GRACE, Bounds, Transfer
from ._descriptor import check_descriptor
from ._errors import PeerUnreachable
from ._event import MAX_EVENT_BYTES
from ._httpsig import sign_request
from ._store import Gap
from ._wire import WireError, decode_end, decode_heads

NDJSON = "application/x-ndjson"
END_PREFIX = b'{"end":'
REQUEST_TIMEOUT = 30.0

MAX_DESCRIPTOR_BYTES = 64 * 1024
MAX_HEADS_BYTES = 4 * 1024 * 1024
MAX_REPLY_BYTES = 2 * 1024 * 1024
MAX_ERROR_BYTES = 4096
MAX_PULL_BYTES = 16 * 1024 * 1024


class BadAnswer(PeerUnreachable):
    """A peer's answer is not what the protocol allows (types, ranges, keys)."""

    reason = "bad_answer"


def peer_session(**kwargs: Any) -> aiohttp.ClientSession:
    """A client session for peers: bodies are never decompressed on the fly (see _bounded.py)."""
    return aiohttp.ClientSession(auto_decompress=False, headers={"Accept-Encoding": "identity"}, **kwargs)


class PeerClient:
    """Signed HTTP calls to peers, over one shared aiohttp session (best made with peer_session())."""

    def __init__(self, session: aiohttp.ClientSession, key: nacl.signing.SigningKey,
                 *, timeout: float = REQUEST_TIMEOUT, call_deadline: float | None = None,
                 pull_deadline: float | None = None, min_rate: float | None = None,
                 rate_grace: float | None = None, max_pull_bytes: int = MAX_PULL_BYTES) -> None:
        self.session = session
        self.key = key
        self.max_pull_bytes = max_pull_bytes
        # aiohttp's own idle timeout stays as a backstop; the bounds below are what limit a call.
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout)
        rate = MIN_RATE if min_rate is None else min_rate
        grace = RATE_GRACE if rate_grace is None else rate_grace
        self.call = Bounds(CALL_DEADLINE if call_deadline is None else call_deadline, rate, grace)
        self.pull_bounds = Bounds(PULL_DEADLINE if pull_deadline is None else pull_deadline, rate, grace)

    def _headers(self, method: str, url: str, body: bytes | None, content_type: str | None) -> dict[str, str]:
        headers = sign_request(self.key, method, url, body)
        if content_type:
            headers["Content-Type"] = content_type
        headers["Accept-Encoding"] = "identity"
        return headers

    async def descriptor(self, base_url: str, *, expect_key: str | None = None) -> dict[str, Any]:
        """Fetch and verify a node's descriptor, signed over a fresh nonce of ours."""
        nonce = secrets.token_urlsafe(24)
        url = base_url.rstrip("/") + "/.well-known/nnode?nonce=" + nonce
        transfer = Transfer(url, self.call)
        try:
            resp = await transfer.respond(self.session.get(url, timeout=self.timeout,
                                                           headers={"Accept-Encoding": "identity"}))
            async with resp:
                if resp.status != 200:
                    raise PeerUnreachable(f"{url}: HTTP {resp.status}")
                value = json.loads(await transfer.read(resp, MAX_DESCRIPTOR_BYTES))
        except (TimeoutError, aiohttp.ClientError, ValueError, RecursionError) as exc:
            raise PeerUnreachable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        return check_descriptor(value, expect_key=expect_key, nonce=nonce)

    async def heads(self, base_url: str) -> dict[str, int]:
        """The peer's {author: max seq}: author keys of 64 hex digits, seqs integers from 1 to 2**53-1."""
        url = base_url.rstrip("/") + "/sync/v1/heads"
        status, body = await self._call("GET", url, None, MAX_HEADS_BYTES)
        if status != 200:
            raise PeerUnreachable(f"{url}: HTTP {status}: {_text(body)}")
        try:
            return decode_heads(body)
        except WireError as exc:
            raise BadAnswer(f"{url}: {exc}") from None

    async def push(self, base_url: str, lines: Sequence[bytes]) -> object:
        """Send events; returns the peer's per-batch result (a refusal of some events is an answer too)."""
        url = base_url.rstrip("/") + "/sync/v1/push"
        status, body = await self._call("POST", url, b"\n".join(lines) + b"\n", MAX_REPLY_BYTES, NDJSON)
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            value = None
        if status >= 400 and not (isinstance(value, dict) and "results" in value):
            raise PeerUnreachable(f"{url}: HTTP {status}: {_text(body)}")
        if not isinstance(value, dict):
            raise BadAnswer(f"{url}: HTTP {status}: the push reply is not a JSON object")
        return value

    async def pull(self, base_url: str, heads: dict[str, int], gaps: Sequence[Gap], tips: dict[str, str],
                   limit: int, interest: Circle | None = None) -> AsyncIterator[tuple[list[bytes], bool | None]]:
        """Yield chunks of event lines as they arrive; the last item is ([], more) from the end record.

        A stream that stops without its end record, or breaks a bound (16 MiB, a line over MAX_EVENT_BYTES, more
        lines than the `limit` events and one divergent header per tip asked for, the deadline, the minimum rate),
        raises PeerUnreachable after yielding what did arrive, so the caller keeps those events and resumes after
        them. The line count bounds the work a peer can make us do with junk lines (each a parse and a refusal).
        """
        url = base_url.rstrip("/") + "/sync/v1/pull"
        request: dict[str, Any] = {"heads": heads, "gaps": gaps, "tips": tips, "limit": limit}
        if interest is not None:   # only what touches it is sent, and only that is pushed from now on
            request["interest"] = {"lat_e6": interest.lat_e6, "lon_e6": interest.lon_e6, "radius_m": interest.radius_m}
        body = json.dumps(request, separators=(",", ":")).encode()
        transfer = Transfer(url, self.pull_bounds)
        try:
            resp = await transfer.respond(self.session.post(
                url, data=body, timeout=self.timeout, headers=self._headers("POST", url, body, "application/json")))
            async with resp:
                if resp.status != 200:
                    text = await _error_text(transfer, resp)
                    raise PeerUnreachable(f"{url}: HTTP {resp.status}: {text}")
                buffer = b""
                most, count = limit + len(tips), 0
                async for chunk in transfer.chunks(resp, self.max_pull_bytes):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    if len(buffer) > MAX_EVENT_BYTES + 1024:
                        raise BadAnswer(f"{url}: a line longer than {MAX_EVENT_BYTES} bytes")
                    end = next((i for i, line in enumerate(lines) if line.startswith(END_PREFIX)), None)
                    events = lines if end is None else lines[:end]   # an event line starts '{"author":'
                    count += len(events)
                    if count > most:
                        raise BadAnswer(f"{url}: more than the {most} lines asked for before the end record")
                    if events:
                        yield events, None
                    if end is not None:
                        yield [], _end_more(url, lines[end])
                        return
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PeerUnreachable(f"{url}: {exc.__class__.__name__}: {exc}") from exc
        raise PeerUnreachable(f"{url}: the stream ended without its end record (cut off)")

    async def _call(self, method: str, url: str, body: bytes | None, limit: int,
                    content_type: str | None = None) -> tuple[int, bytes]:
        """Send a signed request; (status, body read within `limit` bytes and the call's bounds)."""
        transfer = Transfer(url, self.call)
        try:
            resp = await transfer.respond(self.session.request(
                method, url, data=body, timeout=self.timeout,
                headers=self._headers(method, url, body, content_type)))
            async with resp:
                if resp.status >= 400 and method == "GET":
                    return resp.status, (await _error_text(transfer, resp)).encode()
                return resp.status, await transfer.read(resp, limit)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise PeerUnreachable(f"{url}: {exc.__class__.__name__}: {exc}") from exc


async def _error_text(transfer: Transfer, resp: aiohttp.ClientResponse) -> str:
    """The start of an error answer, for the message (the rest is not read)."""
    return _text(await transfer.start(resp, MAX_ERROR_BYTES))


def _text(body: bytes) -> str:
    return body[:300].decode("utf-8", "replace")


def _end_more(url: str, line: bytes) -> bool:
    try:
        return decode_end(line).more
    except WireError as exc:
        raise BadAnswer(f"{url}: {exc}") from None


__all__ = ["MAX_HEADS_BYTES", "MAX_PULL_BYTES", "BadAnswer", "PeerClient", "peer_session"]
