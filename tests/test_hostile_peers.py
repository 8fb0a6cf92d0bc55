"""One hostile approved peer against real nodes on loopback: its numbers are not believed, its answers are read in
bounded memory and time, its malformed requests get a 400 with the reason, its slowness delays only itself; and
after it the honest nodes still publish and sync with each other."""

import asyncio
import contextlib
import gzip
import json
import sqlite3
import time
import tracemalloc

import aiohttp
import nacl.signing
import pytest
from aiohttp import web

import sync._engine
from sync import MAX_SAFE_INT, create_event
from tests.conftest import serving, signed, wait_until

END = b'{"end":{"count":0,"more":false}}\n'


def rogue_app(*, heads=None, pull=None) -> web.Application:
    """A stand-in peer: answers heads and pull with the handlers given (empty by default), accepts every push."""
    async def empty_heads(request):
        return web.json_response({})

    async def empty_pull(request):
        return web.Response(body=END, content_type="application/x-ndjson")

    async def push(request):
        await request.read()
        return web.json_response({"ok": True, "results": {}})

    app = web.Application()
    app.router.add_get("/sync/v1/heads", heads or empty_heads)
    app.router.add_post("/sync/v1/pull", pull or empty_pull)
    app.router.add_post("/sync/v1/push", push)
    return app


async def adopt(node, url: str, *, start: bool = False):
    """Approve a stand-in peer at `url` on `node` (its rounds start at once with `start`); return the Peer."""
    key = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    await node.peers.seen(key, name="rogue", url=url, source="manual", approve=True)
    if start:
        await node.engine.refresh_peers()
        node.engine.wake()
    return await node.peers.get(key)


async def stream(request, pieces, *, content_type="application/json", pause=None):
    """Send `pieces` as a chunked body (the hostile peer's pace: `pause` between them); stop when the caller hangs up."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionResetError):
        for piece in pieces:
            await response.write(piece)
            if pause is not None:
                await pause()
    return response


async def still_friends(a, b) -> None:
    """a and b, honest and approved by each other, still publish and sync both ways."""
    mine = await a.engine.publish("notice", {"text": "from a, after"}, ttl=3600)
    theirs = await b.engine.publish("notice", {"text": "from b, after"}, ttl=3600)
    assert await a.engine.sync_with(await a.peers.get(b.id)) is not None
    await wait_until(lambda: _holds(a, theirs.id))
    await wait_until(lambda: _holds(b, mine.id))


async def _holds(node, event_id) -> bool:
    return await node.store.get(event_id) is not None


async def _pair(make_node, **overrides):
    a = await make_node("a", **overrides)
    b = await make_node("b")
    await a.approve(b)
    await b.approve(a)
    return a, b


async def test_a_peer_claiming_a_huge_seq_of_ours_does_not_move_our_numbering(make_node):
    a, b = await _pair(make_node)
    first = await a.engine.publish("notice", {"text": "before"}, ttl=3600)

    async def liar(request):
        return web.json_response({a.id: MAX_SAFE_INT})

    async with serving(rogue_app(heads=liar)) as url:
        rogue = await adopt(a, url)
        assert await a.engine.sync_with(rogue) == 0
        problem = (await a.peers.get(rogue.key)).last_error
        assert f"seq {MAX_SAFE_INT}" in problem and "not believed" in problem
        assert a.engine.stats.false_claims >= 1     # (a's own round may have met the liar too)
        assert (await a.engine.publish("notice", {"text": "next"}, ttl=3600)).seq == first.seq + 1
    await a.stop()
    await a.start()
    after = await a.engine.publish("notice", {"text": "after a restart"}, ttl=3600)
    assert after.seq == first.seq + 2
    await wait_until(lambda: _holds(b, after.id))
    await still_friends(a, b)


async def test_a_node_that_signed_past_the_format_before_the_fix_numbers_from_its_valid_events_again(make_node):
    a, b = await _pair(make_node)
    held = await a.engine.publish("notice", {"text": "valid"}, ttl=3600)
    await a.stop()
    # What the old engine stored after a peer's heads said 2**53-1: an event of ours no peer accepts.
    # Its id differs from the valid one's in the first byte (a fixed "ff" collided when the valid id began so).
    poisoned_id = ("00" if held.id[:2] != "00" else "11") + held.id[2:]

    def poison():
        db = sqlite3.connect(a.config.db_path)
        with db:
            db.execute("INSERT INTO events (id, author, seq, kind, ts, expires, body_hash, sig, body, received, "
                       "origin) SELECT ?, author, ?, kind, ts, expires, body_hash, sig, body, "
                       "received, origin FROM events WHERE id = ?", (poisoned_id, MAX_SAFE_INT + 1, held.id))
        db.close()
    await asyncio.to_thread(poison)
    await a.start()
    assert (await a.store.heads())[a.id] == held.seq
    assert (await a.engine.publish("notice", {"text": "next"}, ttl=3600)).seq == held.seq + 1
    await still_friends(a, b)


async def test_a_node_with_an_area_of_interest_gets_back_every_seq_of_its_own(make_node):
    # What made trusting peers' heads tempting: a restored node must not reuse a seq a peer holds. Now the pull
    # itself brings back all of its own events, even expired ones and those outside its area, and heads are not
    # needed for that.
    a, b = await _pair(make_node, node__latitude="40.7128", node__longitude="-74.0060", sync__interest_radius_m=3000)
    gone = create_event(a.key, a.engine.registry, kind="notice", seq=1, body={"text": "lost in a restore"},
                        ttl=3600, now=int(time.time()) - 7200)
    assert not (await b.engine.ingest([gone.without_body().to_line()], origin=a.id)).rejected
    assert await a.engine.sync_with(await a.peers.get(b.id)) is not None   # (or a's own round brought it)
    assert (await a.store.get(gone.id)).body is None                         # its header, back
    assert (await a.peers.get(b.id)).last_error is None
    assert (await a.engine.publish("notice", {"text": "next"}, ttl=3600)).seq == 2
    await still_friends(a, b)


@pytest.mark.parametrize("answer, words", [
    (json.dumps({"ab" * 32: MAX_SAFE_INT + 1}), "<= 9007199254740991"),
    (json.dumps({"ab" * 32: True}), "got `bool`"),
    (json.dumps({"ab" * 32: 0}), ">= 1"),
    (json.dumps({"not a key": 1}), "key"),
    ("[" * 200_000, "Expected `object`"),
])
async def test_heads_outside_the_format_fail_the_sync_with_a_reason_and_change_nothing(make_node, answer, words):
    a, b = await _pair(make_node)
    before = await a.engine.publish("notice", {"text": "before"}, ttl=3600)

    async def bad(request):
        return web.Response(text=answer, content_type="application/json")

    async with serving(rogue_app(heads=bad)) as url:
        rogue = await adopt(a, url)
        assert await a.engine.sync_with(rogue) is None
        error = (await a.peers.get(rogue.key)).last_error
        assert "heads" in error and words in error, error
    assert (await a.engine.publish("notice", {"text": "next"}, ttl=3600)).seq == before.seq + 1
    await still_friends(a, b)


def _huge_heads(total: int):
    entry = b'"' + b"ab" * 32 + b'":1,'
    piece = entry * (256 * 1024 // len(entry))
    yield b"{"
    for _ in range(total // len(piece)):
        yield piece
    yield b'"' + b"cd" * 32 + b'":1}'


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_a_huge_heads_answer_is_refused_in_bounded_memory(make_node, encoding):
    a, b = await _pair(make_node)
    size = 96 << 20
    body = None if encoding is None else await asyncio.to_thread(lambda: gzip.compress(b"".join(_huge_heads(size)), 1))

    async def huge(request):
        if body is not None:
            return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        return await stream(request, _huge_heads(size))

    async with serving(rogue_app(heads=huge)) as url:
        rogue = await adopt(a, url)
        tracemalloc.start()
        try:
            outcome = await a.engine.sync_with(rogue)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        error = (await a.peers.get(rogue.key)).last_error
    assert outcome is None
    assert ("exceeds 4194304 bytes" if encoding is None else "encoded as 'gzip'") in error, error
    assert peak < 32 << 20, f"reading a {size >> 20} MiB answer peaked at {peak >> 20} MiB"
    await still_friends(a, b)


async def test_a_pull_answer_is_cut_at_its_cap_keeping_the_sync_bounded(make_node):
    a, b = await _pair(make_node)
    sent = []
    junk = b'{"author":"' + b"0" * 60_000 + b'"}\n'

    def pieces():
        for _ in range(4096):              # 240 MiB if nobody stopped it
            sent.append(len(junk))
            yield junk

    async def endless(request):
        return await stream(request, pieces(), content_type="application/x-ndjson")

    async with serving(rogue_app(pull=endless)) as url:
        rogue = await adopt(a, url)
        assert await a.engine.sync_with(rogue) is None
        error = (await a.peers.get(rogue.key)).last_error
    assert "exceeds 16777216 bytes" in error, error
    assert sum(sent) < 32 << 20
    await still_friends(a, b)


async def test_a_dripping_peer_does_not_delay_the_sync_with_an_honest_one(make_node, monkeypatch):
    monkeypatch.setattr(sync._engine, "RATE_GRACE", 120.0)    # the drip is not cut while this test runs
    a = await make_node("a")
    h = await make_node("h")
    await h.approve(a)
    dripping = asyncio.Event()
    stop = asyncio.Event()
    active = []

    async def pace():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)

    async def drip(request):
        dripping.set()
        active.append(True)
        try:
            return await stream(request, (b" " for _ in range(240) if not stop.is_set()),
                                content_type="application/x-ndjson", pause=pace)
        finally:
            active.pop()

    async with serving(rogue_app(pull=drip)) as url:
        await adopt(a, url, start=True)
        await asyncio.wait_for(dripping.wait(), 20)
        # h's event can reach a only by a's own pull: a did not approve h when it was pushed.
        event = await h.engine.publish("notice", {"text": "while the drip goes on"}, ttl=3600)
        await a.approve(h)
        await wait_until(lambda: _holds(a, event.id))
        assert active, "the drip ended before the honest peer's event arrived"
        stop.set()
    await still_friends(a, h)


async def test_a_dripping_peer_is_cut_at_the_minimum_rate(make_node, monkeypatch):
    monkeypatch.setattr(sync._engine, "RATE_GRACE", 1.0)
    a, b = await _pair(make_node)
    stop = asyncio.Event()

    async def pace():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)

    async def drip(request):
        return await stream(request, (b" " for _ in range(600) if not stop.is_set()),
                            content_type="application/x-ndjson", pause=pace)

    async with serving(rogue_app(pull=drip)) as url:
        rogue = await adopt(a, url)
        assert await a.engine.sync_with(rogue) is None
        stop.set()
        error = (await a.peers.get(rogue.key)).last_error
    assert "below the minimum rate of 4096 bytes/s" in error, error
    await still_friends(a, b)


DEEP = b'{"heads": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"


@pytest.mark.parametrize("body, words", [
    (DEEP, "$.heads"),
    (json.dumps({"heads": {}, "gaps": [["ab" * 32, 1, 2**70]]}).encode(), "$.gaps[0][2]"),
    (json.dumps({"heads": {"ab" * 32: 2**64}}).encode(), "<= 9007199254740991"),
    (json.dumps({"heads": {"ab" * 32: True}}).encode(), "got `bool`"),
    (json.dumps({"heads": {"short": 1}}).encode(), "key"),
    (json.dumps({"limit": True}).encode(), "$.limit"),
    (json.dumps({"tips": {"ab" * 32: 7}}).encode(), "$.tips"),
    (json.dumps({"gaps": [["ab" * 32, 9, 3]]}).encode(), "first must not exceed last"),
    (b"\xff\xfe{}", "pull body"),
])
async def test_a_malformed_pull_request_gets_a_400_with_the_reason(make_node, body, words):
    a, b = await _pair(make_node)
    await a.engine.publish("notice", {"text": "held"}, ttl=3600)
    async with aiohttp.ClientSession() as http:
        status, answer = await signed(http, b.key, "POST", a.url + "/sync/v1/pull", body,
                                      content_type="application/json")
        assert status == 400 and answer["reason"] == "bad_request", answer
        assert words in answer["error"], answer
        status, text = await signed(http, b.key, "POST", a.url + "/sync/v1/pull", b'{"heads": {}}',
                                    content_type="application/json")
    assert status == 200 and text.splitlines()[-1].startswith('{"end"'), text
    await still_friends(a, b)


@pytest.mark.parametrize("line, words", [
    (b"[" * 30_000 + b"]" * 30_000, "nested deeper"),
    (b'{"author": ' + b"9" * 5000 + b"}", "outside"),
    (b"\xff", "not UTF-8"),
])
async def test_a_malformed_pushed_event_gets_a_400_with_the_reason(make_node, line, words):
    a, b = await _pair(make_node)
    async with aiohttp.ClientSession() as http:
        status, answer = await signed(http, b.key, "POST", a.url + "/sync/v1/push", line + b"\n")
    assert status == 400 and words in answer["error"], answer
    await still_friends(a, b)


async def test_a_push_of_more_lines_than_events_allowed_is_refused_before_it_is_split(make_node):
    a, b = await _pair(make_node)
    body = b"\n" * (8 << 20)      # sync.max_batch_bytes: read in full, then refused
    async with aiohttp.ClientSession() as http:
        tracemalloc.start()
        try:
            status, answer = await signed(http, b.key, "POST", a.url + "/sync/v1/push", body)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert status == 413 and f"push holds {8 << 20} lines, the limit is 5000 events" in answer["error"], answer
    assert peak < 48 << 20, f"a push of 8 MiB of newlines peaked at {peak >> 20} MiB"     # 8 M lines: 64 MiB more
    await still_friends(a, b)
