"""Helpers for tests that act as the manager or a resident of a node, over HTTP like the web app does."""

from __future__ import annotations

import aiohttp

from node.keys import CLAIMS

PASSWORD = "correct horse battery"


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def claim(node, session: aiohttp.ClientSession) -> None:
    """Claim `node` with its console code; `session` becomes the manager."""
    async with session.post(node.url + "/setup/claim", json={"code": node.app[CLAIMS].current,
                                                              "password": PASSWORD}) as resp:
        assert resp.status == 200, await resp.text()


async def invite(node, manager: aiohttp.ClientSession, unit: str = "4B", name: str = "") -> dict:
    """A new invite made by the manager through the API."""
    async with manager.post(node.url + "/api/invites", json={"unit": unit, "name": name}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["invite"]


async def join(node, session: aiohttp.ClientSession, code: str, name: str = "") -> dict:
    """Redeem an invite; `session` becomes the resident."""
    async with session.post(node.url + "/api/join", json={"code": code, "name": name}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return body


async def call(session: aiohttp.ClientSession, method: str, url: str, **kwargs) -> tuple[int, dict]:
    """One JSON request; returns (status, body)."""
    async with session.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


class EventStream:
    """A Server-Sent Events reader: `await stream.next()` gives (id, event, data) like EventSource does."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def next(self, timeout: float = 10.0) -> tuple[int, str, dict]:
        """The next message (comments and retry lines skipped)."""
        import asyncio
        import json

        fields: dict[str, str] = {}
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.response.content.readline()).decode()
                if line == "":
                    raise ConnectionError("stream ended")
                line = line.rstrip("\n")
                if line == "":
                    if "data" in fields:
                        self.last_id = fields.get("id", self.last_id)
                        return int(fields.get("id", "0")), fields.get("event", "message"), json.loads(fields["data"])
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value


async def open_stream(session: aiohttp.ClientSession, url: str, last_id: int | None = None) -> EventStream:
    """Open /api/stream (resuming after `last_id`) and return its reader; close with `stream.response.close()`."""
    headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
    response = await session.get(url + "/api/stream", headers=headers, timeout=aiohttp.ClientTimeout(total=None))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return EventStream(response)


async def control_call(node, method: str, path: str, body=None) -> tuple[int, object]:
    """Call a running node's control socket, as the CLI does."""
    connector = aiohttp.UnixConnector(path=str(node.config.control_socket))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, "http://node" + path, json=body) as resp:
            return resp.status, await resp.json(content_type=None)
