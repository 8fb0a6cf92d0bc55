"""What sync reads from a peer is typed and bounded: the pull request, heads answers, end records, seq ranges, and
the size, deadline and rate of every answer (a stand-in peer on a loopback port, no node)."""

import asyncio
import gzip
import json

import aiohttp
import nacl.signing
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sync import MAX_SAFE_INT, MalformedEvent, PeerClient, PeerUnreachable, create_event, parse_event, peer_session
from sync._wire import WireError, decode_end, decode_heads, decode_pull
from tests.sync.kinds import build_test_registry

KEY = nacl.signing.SigningKey.generate()
REG = build_test_registry()
AUTHOR = "ab" * 32


@pytest.mark.parametrize("seq", [MAX_SAFE_INT + 1, 2**64, 0, True, "1"])
def test_no_event_is_signed_with_a_seq_outside_the_format(seq):
    with pytest.raises(MalformedEvent, match="seq"):
        create_event(KEY, REG, kind="notice", seq=seq, body={"text": "x"}, ttl=60)


def test_the_highest_seq_of_the_format_is_signed_and_read_back():
    event = create_event(KEY, REG, kind="notice", seq=MAX_SAFE_INT, body={"text": "x"}, ttl=60)
    assert parse_event(event.to_line(), REG, now=event.ts).seq == MAX_SAFE_INT


@pytest.mark.parametrize("body, where", [
    (b"[" * 200_000, "Expected `object`"),
    (b'{"heads": ' + b"[" * 200_000 + b"}", "$.heads"),
    (json.dumps({"gaps": [[AUTHOR, 1, 2**70]]}).encode(), "$.gaps[0][2]"),
    (json.dumps({"gaps": [[AUTHOR, 5, 4]]}).encode(), "first must not exceed last"),
    (json.dumps({"gaps": [[AUTHOR, 1, 2]] * 257}).encode(), "$.gaps"),
    (json.dumps({"heads": {AUTHOR: True}}).encode(), "got `bool`"),
    (json.dumps({"heads": {AUTHOR: 2**53}}).encode(), "<= 9007199254740991"),
    (json.dumps({"heads": {AUTHOR: -1}}).encode(), ">= 0"),
    (json.dumps({"heads": {"x": 1}}).encode(), "key"),
    (json.dumps({"tips": {AUTHOR: "not an id"}}).encode(), "$.tips"),
    (json.dumps({"limit": True}).encode(), "$.limit"),
    (json.dumps({"limit": 0}).encode(), "$.limit"),
    (json.dumps({"limit": 1.5}).encode(), "$.limit"),
    (json.dumps({"interest": {"lat_e6": 95_000_000, "lon_e6": 0, "radius_m": 1}}).encode(), "lat_e6"),
    (json.dumps({"more": 1}).encode(), "unknown field `more`"),
    (b'{"heads": {}', "truncated"),
])
def test_a_malformed_pull_request_is_refused_saying_where(body, where):
    with pytest.raises(WireError, match="pull body|interest") as caught:
        decode_pull(body)
    assert where in str(caught.value)


def test_a_valid_pull_request_decodes():
    request = decode_pull(json.dumps({"heads": {AUTHOR: 3}, "gaps": [[AUTHOR, 1, 2]], "tips": {AUTHOR: "cd" * 32},
                                      "limit": 10}).encode())
    assert (request.heads, request.gaps, request.limit, request.circle()) == ({AUTHOR: 3}, [(AUTHOR, 1, 2)], 10, None)


@pytest.mark.parametrize("body", [
    json.dumps({AUTHOR: MAX_SAFE_INT + 1}), json.dumps({AUTHOR: True}), json.dumps({AUTHOR: 0}),
    json.dumps({"zz": 1}), json.dumps([1]), "[" * 200_000])
def test_heads_outside_the_format_are_refused(body):
    with pytest.raises(WireError, match="heads"):
        decode_heads(body.encode())


@pytest.mark.parametrize("line", [b'{"end": {"count": 1, "more": 1}}', b'{"end": {"count": -1, "more": false}}',
                                  b'{"end": ' + b"[" * 100_000])
def test_a_malformed_end_record_is_refused(line):
    with pytest.raises(WireError, match="end record"):
        decode_end(line)


class Rogue:
    """A stand-in peer whose heads answer is whatever the test sets."""

    def __init__(self, handler, pull=None):
        app = web.Application()
        app.router.add_get("/sync/v1/heads", handler)
        if pull is not None:
            app.router.add_post("/sync/v1/pull", pull)
        self.server = TestServer(app, host="127.0.0.1")

    async def __aenter__(self):
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")

    async def __aexit__(self, *exc):
        await self.server.close()


async def _stream(request, pieces, pause=0.0):
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        for piece in pieces:
            await response.write(piece)
            if pause:
                await asyncio.sleep(pause)     # the hostile peer's pace, not a wait of the test
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        pass
    return response


async def test_a_heads_answer_over_its_cap_is_cut_at_the_cap():
    sent = []

    async def endless(request):
        def pieces():
            yield b"{"
            for _ in range(64 * 4):        # up to 64 MiB, far beyond the cap
                sent.append(1)
                yield b" " * (256 * 1024)
        return await _stream(request, pieces())

    async with Rogue(endless) as url, peer_session() as session:
        with pytest.raises(PeerUnreachable, match="exceeds 4194304 bytes"):
            await PeerClient(session, KEY).heads(url)
    assert len(sent) < 64 * 4


async def test_a_compressed_answer_is_refused_before_it_is_decoded():
    bomb = await asyncio.to_thread(gzip.compress, b"{" + b" " * (64 << 20) + b"}", 1)

    async def gzipped(request):
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})

    async with Rogue(gzipped) as url, peer_session() as session:
        with pytest.raises(PeerUnreachable, match="encoded as 'gzip'"):
            await PeerClient(session, KEY).heads(url)


async def test_a_dripping_answer_is_cut_at_the_minimum_rate():
    async def drip(request):
        return await _stream(request, (b" " for _ in range(600)), pause=0.05)

    async with Rogue(drip) as url, peer_session() as session:
        client = PeerClient(session, KEY, min_rate=1000, rate_grace=0.5)
        with pytest.raises(PeerUnreachable, match="below the minimum rate of 1000 bytes/s"):
            await client.heads(url)


async def test_an_answer_that_never_ends_is_cut_at_the_deadline():
    async def slow(request):
        return await _stream(request, (b" " * 100 for _ in range(600)), pause=0.05)

    async with Rogue(slow) as url, peer_session() as session:
        client = PeerClient(session, KEY, call_deadline=0.5, min_rate=1)
        with pytest.raises(PeerUnreachable, match="not complete within 0.5 s"):
            await client.heads(url)


async def test_an_answer_that_never_starts_is_cut_at_the_deadline():
    never = asyncio.Event()

    async def silent(request):
        await never.wait()

    async with Rogue(silent) as url, peer_session() as session:
        with pytest.raises(PeerUnreachable, match="no answer within 0.5 s"):
            await PeerClient(session, KEY, call_deadline=0.5).heads(url)


async def test_a_pull_answer_of_more_lines_than_asked_for_is_cut():
    async def junk(request):
        return await _stream(request, [b"\n" * 20_000, b'{"end":{"count":0,"more":false}}\n'])

    async with Rogue(junk, pull=junk) as url, peer_session() as session:
        received = []
        with pytest.raises(PeerUnreachable, match="more than the 10 lines asked for"):
            async for lines, _ in PeerClient(session, KEY).pull(url, {}, [], {}, 10):
                received += lines
    assert len(received) < 20_000


async def test_a_pull_answer_within_its_bounds_is_read_to_its_end_record():
    event = create_event(KEY, REG, kind="notice", seq=1, body={"text": "x"}, ttl=60)

    async def one(request):
        return await _stream(request, [event.to_line() + b"\n", b'{"end":{"count":1,"more":true}}\n', b"ignored"])

    async with Rogue(one, pull=one) as url, peer_session() as session:
        items = [item async for item in PeerClient(session, KEY).pull(url, {}, [], {}, 10)]
    assert items == [([event.to_line()], None), ([], True)]
