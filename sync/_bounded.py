"""A peer's answer read within bounds: a byte cap, a deadline for the whole call and a minimum transfer rate.

aiohttp's own read timeout restarts on every byte, so a peer that drips its answer a byte a second would hold a
call for as long as it liked; and its transparent decompression turns a small gzip or brotli body into any size
before anyone counts it. So peers' bodies are read here: sessions for peers are made with `auto_decompress=False`
and ask for `Accept-Encoding: identity`, an answer with another Content-Encoding is refused before its body is
read, and every body is read chunk by chunk against its cap, the call's deadline and the minimum rate.

The rate counts only the time spent waiting on the peer (not the time the caller spends storing what arrived, which
would charge our own slowness to the peer), and is checked from `rate_grace` seconds of waiting on: by then an
answer must have come at `min_rate` bytes a second on average.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

import aiohttp

from ._errors import PeerUnreachable

# PeerClient's defaults (a node's engine passes its SyncSettings, whose defaults sync/_engine.py takes from here).
CALL_DEADLINE = 30.0
PULL_DEADLINE = 120.0
MIN_RATE = 4096.0
RATE_GRACE = 10.0


class AnswerTooLarge(PeerUnreachable):
    """A peer's answer is larger than this node reads for that call."""

    reason = "answer_too_large"


class TooSlow(PeerUnreachable):
    """A peer's answer did not come within the call's deadline or at the minimum rate."""

    reason = "too_slow"


@dataclass(frozen=True, slots=True)
class Bounds:
    """Time bounds of one call to a peer: a deadline for the whole call and a minimum rate for its body."""

    deadline: float
    min_rate: float
    rate_grace: float


class Transfer:
    """The clock of one call: started when it is made, checked at every read."""

    def __init__(self, url: str, bounds: Bounds) -> None:
        loop = asyncio.get_running_loop()
        self.url = url
        self.bounds = bounds
        self.loop = loop
        self.deadline = loop.time() + bounds.deadline
        self.received = 0
        self.waited = 0.0

    async def respond(self, request: Awaitable[aiohttp.ClientResponse]) -> aiohttp.ClientResponse:
        """Send the request and wait for the answer's headers, within the call's deadline."""
        try:
            async with asyncio.timeout_at(self.deadline):
                resp = await request
        except TimeoutError as exc:
            raise TooSlow(f"{self.url}: no answer within {self.bounds.deadline:g} s") from exc
        encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            resp.close()
            raise PeerUnreachable(f"{self.url}: answer is encoded as {encoding[:40]!r}; this node asks for and "
                                  "reads only identity bodies, whose size it can bound before decoding")
        return resp

    async def chunks(self, resp: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive, refusing past `limit` bytes, the deadline or below the minimum rate."""
        if resp.content_length is not None and resp.content_length > limit:
            raise AnswerTooLarge(f"{self.url}: answer is {resp.content_length} bytes, this node reads at most {limit}")
        while True:
            chunk = await self._read(resp)
            if not chunk:
                return
            self.received += len(chunk)
            if self.received > limit:
                raise AnswerTooLarge(f"{self.url}: answer exceeds {limit} bytes, the most this node reads for it")
            yield chunk

    async def start(self, resp: aiohttp.ClientResponse, size: int) -> bytes:
        """At most the first `size` bytes of the body (an error's text, say); the rest is left unread."""
        body = bytearray()
        while len(body) < size:
            chunk = await self._read(resp)
            if not chunk:
                break
            self.received += len(chunk)
            body += chunk
        return bytes(body[:size])

    async def read(self, resp: aiohttp.ClientResponse, limit: int) -> bytes:
        """The whole body, within `limit` bytes and the call's time bounds."""
        body = bytearray()
        async for chunk in self.chunks(resp, limit):
            body += chunk
        return bytes(body)

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        bounds = self.bounds
        # The moment the average rate over the time waited so far would fall below the minimum.
        due = max(bounds.rate_grace, self.received / bounds.min_rate) - self.waited
        start = self.loop.time()
        until = min(self.deadline, start + max(due, 0.0))
        try:
            async with asyncio.timeout_at(until):
                return await resp.content.readany()
        except TimeoutError as exc:
            if until >= self.deadline:
                raise TooSlow(f"{self.url}: answer not complete within {bounds.deadline:g} s "
                              f"({self.received} bytes arrived)") from exc
            raise TooSlow(f"{self.url}: {self.received} bytes in {self.waited + until - start:.0f} s, below the "
                          f"minimum rate of {bounds.min_rate:g} bytes/s") from exc
        finally:
            self.waited += self.loop.time() - start


__all__ = ["CALL_DEADLINE", "MIN_RATE", "PULL_DEADLINE", "RATE_GRACE", "AnswerTooLarge", "Bounds", "TooSlow",
           "Transfer"]
