"""Every kind of bad input to the push endpoint: a clear error, nothing stored, honest sync undisturbed."""

import asyncio
import json
import time

import aiohttp
import nacl.signing
import pytest

from sync import SIGNATURE_DOMAIN, canonical, sha256_hex, sign_request
from tests.conftest import signed


def event_line(key, *, kind="notice", seq=1, body=None, ts=None, expires=None, raw_body=None, sign_with=None,
               **header_overrides) -> bytes:
    """A wire event built by hand, so each test can break exactly one thing."""
    body = {"text": "hello"} if body is None else body
    ts = int(time.time()) if ts is None else ts
    header = {"v": 1, "kind": kind, "author": key.verify_key.encode().hex(), "seq": seq, "ts": ts,
              "expires": ts + 3600 if expires is None else expires, "body_hash": sha256_hex(canonical(body))}
    header.update(header_overrides)
    event_id = sha256_hex(canonical(header))
    sig = (sign_with or key).sign(SIGNATURE_DOMAIN + event_id.encode()).signature.hex()
    line = canonical(header | {"body": body, "id": event_id, "sig": sig})
    if raw_body is not None:
        line = line.replace(canonical(body), raw_body)
    return line


@pytest.fixture
async def target(make_node):
    """A running node with one approved peer key; yields (node, peer key, session, push)."""
    node = await make_node("t", sync__rate_limit=1000, sync__rate_burst=1000, sync__max_batch_events=50,
                           sync__max_batch_bytes=256 * 1024)
    peer = nacl.signing.SigningKey.generate()
    await node.peers.seen(peer.verify_key.encode().hex(), name="p", url=None, source="manual", approve=True)
    async with aiohttp.ClientSession() as session:
        async def push(body: bytes, key=peer):
            return await signed(session, key, "POST", node.url + "/sync/v1/push", body)
        yield node, peer, push


async def assert_rejected(node, push, line: bytes, status: int, reason: str, words: str):
    before = await node.store.count()
    code, body = await push(line + b"\n")
    assert code == status, body
    assert body["ok"] is False and body["status"] == status and body["reason"] == reason
    assert words in body["error"], body["error"]
    assert await node.store.count() == before
    # Honest sync carries on right after.
    honest = nacl.signing.SigningKey.generate()
    code, body = await push(event_line(honest, body={"text": "honest"}) + b"\n")
    assert code == 200 and body["results"]["accepted"] == 1, body
    assert await node.store.count() == before + 1


AUTHOR = nacl.signing.SigningKey.generate()


async def test_bad_signature(target):
    node, _, push = target
    line = event_line(AUTHOR, sign_with=nacl.signing.SigningKey.generate())
    await assert_rejected(node, push, line, 422, "bad_signature", "signature")


async def test_signature_without_domain_separation_is_bad(target):
    node, _, push = target
    good = json.loads(event_line(AUTHOR))
    good["sig"] = AUTHOR.sign(good["id"].encode()).signature.hex()
    await assert_rejected(node, push, canonical(good), 422, "bad_signature", "does not verify")


async def test_altered_header_is_caught_by_the_id(target):
    node, _, push = target
    event = json.loads(event_line(AUTHOR))
    event["expires"] += 1
    await assert_rejected(node, push, canonical(event), 422, "bad_signature", "header was altered")


async def test_body_not_matching_body_hash(target):
    node, _, push = target
    line = event_line(AUTHOR, raw_body=b'{"text":"hellO"}')
    await assert_rejected(node, push, line, 422, "body_hash", "body_hash")


async def test_non_canonical_bytes(target):
    node, _, push = target
    line = event_line(AUTHOR).replace(b'"seq":1,', b'"seq": 1,')
    await assert_rejected(node, push, line, 400, "non_canonical", "canonical")


async def test_non_canonical_member_order(target):
    node, _, push = target
    event = json.loads(event_line(AUTHOR))
    reordered = json.dumps(dict(reversed(list(event.items()))), separators=(",", ":")).encode()
    await assert_rejected(node, push, reordered, 400, "non_canonical", "canonical")


async def test_floats(target):
    node, _, push = target
    line = event_line(AUTHOR, raw_body=b'{"text":"hello","weight":1.5}')
    await assert_rejected(node, push, line, 400, "float", "floats are not allowed")


async def test_unknown_kind(target):
    node, _, push = target
    await assert_rejected(node, push, event_line(AUTHOR, kind="bogus"), 422, "unknown_kind", "'bogus'")


async def test_invalid_body_for_its_kind(target):
    node, _, push = target
    line = event_line(AUTHOR, body={"text": "x", "colour": "red"})
    await assert_rejected(node, push, line, 422, "invalid_body", "colour")


async def test_oversized_event(target):
    node, _, push = target
    line = event_line(AUTHOR, kind="notice", body={"text": "x" * (70 * 1024)})
    await assert_rejected(node, push, line, 413, "oversized", "65536")


async def test_future_timestamp(target):
    node, _, push = target
    line = event_line(AUTHOR, ts=int(time.time()) + 2000)
    await assert_rejected(node, push, line, 422, "future_ts", "in the future")


async def test_already_expired(target):
    node, _, push = target
    line = event_line(AUTHOR, ts=int(time.time()) - 7200, expires=int(time.time()) - 60)
    await assert_rejected(node, push, line, 422, "expired", "expired")


async def test_malformed_json(target):
    node, _, push = target
    await assert_rejected(node, push, b'{"v":1,"kind":', 400, "malformed", "malformed JSON")


async def test_wrong_field_types(target):
    node, _, push = target
    event = json.loads(event_line(AUTHOR))
    event["seq"] = "1"
    await assert_rejected(node, push, canonical(event), 400, "malformed", "'seq' must be an integer")


async def test_missing_expiry(target):
    node, _, push = target
    event = json.loads(event_line(AUTHOR))
    del event["expires"]
    await assert_rejected(node, push, canonical(event), 400, "malformed", "missing expires")


async def test_replay_is_idempotent_not_an_error(target):
    node, _, push = target
    line = event_line(AUTHOR, seq=7)
    for attempt in range(3):
        code, body = await push(line + b"\n")
        assert code == 200 and body["ok"]
        assert body["results"]["accepted"] == (1 if attempt == 0 else 0)
        assert body["results"]["duplicates"] == (0 if attempt == 0 else 1)
    assert await node.store.count() == 1


async def test_equivocation_quarantines_the_author(target):
    node, _, push = target
    liar = nacl.signing.SigningKey.generate()
    code, _ = await push(event_line(liar, seq=1, body={"text": "first"}) + b"\n")
    assert code == 200
    await assert_rejected(node, push, event_line(liar, seq=1, body={"text": "second"}), 409, "equivocation",
                          "signed seq 1 twice")
    from node.appliance.control import gather_status
    status = await gather_status(node.app)
    assert liar.verify_key.encode().hex() in status["quarantined"]
    # Later events of the quarantined author are refused too.
    await assert_rejected(node, push, event_line(liar, seq=2), 403, "quarantined", "quarantined")


async def test_forged_equivocation_does_not_quarantine(target):
    node, _, push = target
    victim = nacl.signing.SigningKey.generate()
    await push(event_line(victim, seq=1) + b"\n")
    forged = event_line(victim, seq=1, body={"text": "forged"}, sign_with=nacl.signing.SigningKey.generate())
    await assert_rejected(node, push, forged, 422, "bad_signature", "signature")
    assert await node.store.quarantined() == {}


async def test_unapproved_sender(target):
    node, _, push = target
    stranger = nacl.signing.SigningKey.generate()
    before = await node.store.count()
    code, body = await push(event_line(AUTHOR) + b"\n", key=stranger)
    assert code == 403 and body["reason"] == "not_approved" and "not an approved peer" in body["error"]
    assert await node.store.count() == before


async def test_unsigned_and_replayed_requests(target):
    node, peer, push = target
    async with aiohttp.ClientSession() as session:
        async with session.post(node.url + "/sync/v1/push", data=event_line(AUTHOR)) as resp:
            assert resp.status == 401 and "not signed" in (await resp.json())["error"]
        body = event_line(AUTHOR, seq=3) + b"\n"
        headers = sign_request(peer, "POST", node.url + "/sync/v1/push", body)
        async with session.post(node.url + "/sync/v1/push", data=body, headers=headers) as resp:
            assert resp.status == 200
        async with session.post(node.url + "/sync/v1/push", data=body, headers=headers) as resp:
            assert resp.status == 401 and "replay" in (await resp.json())["error"]


async def test_oversized_batch_by_count_and_by_bytes(target):
    node, _, push = target
    many = b"\n".join(event_line(AUTHOR, seq=i) for i in range(1, 52)) + b"\n"
    code, body = await push(many)
    assert code == 413 and body["reason"] == "batch_too_large" and "limit is 50" in body["error"]
    big = b"\n".join(event_line(AUTHOR, seq=i, body={"text": "y" * 30000}) for i in range(1, 12)) + b"\n"
    code, body = await push(big)
    assert code == 413 and body["reason"] == "batch_too_large" and "262144" in body["error"]
    assert await node.store.count() == 0


async def test_batch_stores_good_events_and_names_the_bad_one(target):
    node, _, push = target
    lines = [event_line(AUTHOR, seq=1), event_line(AUTHOR, seq=2, kind="bogus"), event_line(AUTHOR, seq=3)]
    code, body = await push(b"\n".join(lines) + b"\n")
    assert code == 422 and body["error"].startswith("event 2 of 3: ")
    assert body["results"]["accepted"] == 2
    assert await node.store.count() == 2


async def test_too_many_requests_from_one_peer(make_node):
    node = await make_node("r", sync__rate_limit=1, sync__rate_burst=5)
    peer = nacl.signing.SigningKey.generate()
    await node.peers.seen(peer.verify_key.encode().hex(), name="p", url=None, source="manual", approve=True)
    async with aiohttp.ClientSession() as session:
        codes = []
        for i in range(1, 9):
            code, body = await signed(session, peer, "POST", node.url + "/sync/v1/push",
                                      event_line(AUTHOR, seq=i) + b"\n")
            codes.append(code)
        assert codes[:5] == [200] * 5 and 429 in codes[5:]
        async with session.post(node.url + "/sync/v1/push", data=b"x\n",
                                headers=sign_request(peer, "POST", node.url + "/sync/v1/push", b"x\n")) as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            assert "too many sync requests" in (await resp.json())["error"]
        # Another peer is not affected.
        other = nacl.signing.SigningKey.generate()
        await node.peers.seen(other.verify_key.encode().hex(), name="o", url=None, source="manual", approve=True)
        code, _ = await signed(session, other, "POST", node.url + "/sync/v1/push", event_line(AUTHOR, seq=50) + b"\n")
        assert code == 200


async def test_unreadable_lines_do_not_sink_their_batch(target):
    node, _, push = target
    good = event_line(AUTHOR, seq=1)
    huge_int = b'{"author":' + b"1" * 5000 + b"}"
    deep = b"[" * 5000 + b"]" * 5000
    code, body = await push(b"\n".join([huge_int, good, deep]) + b"\n")
    assert code == 400 and body["results"]["accepted"] == 1
    assert [r["reason"] for r in body["results"]["rejected"]] == ["malformed", "malformed"]
    assert await node.store.count() == 1


async def test_a_tombstone_by_another_author_deletes_nothing(target):
    node, _, push = target
    stranger = nacl.signing.SigningKey.generate()
    first = event_line(AUTHOR, seq=1, body={"text": "secret"})
    target_id = json.loads(first)["id"]
    # The stranger's tombstone arrives before the event it names: stored, but it cannot take the real one's place.
    code, _ = await push(event_line(stranger, kind="tombstone", seq=1, body={"target": target_id}) + b"\n")
    assert code == 200
    await push(first + b"\n")
    assert (await node.store.get(target_id)).body is not None
    # Once the event is known, a stranger's tombstone is refused outright.
    await assert_rejected(node, push, event_line(stranger, kind="tombstone", seq=2, body={"target": target_id}),
                          422, "invalid_body", "another author")
    # The author's own tombstone deletes it, and a replay of the event stays deleted.
    code, _ = await push(event_line(AUTHOR, kind="tombstone", seq=2, body={"target": target_id},
                                    expires=int(time.time()) + 7200) + b"\n")
    assert code == 200
    await push(first + b"\n")
    assert (await node.store.get(target_id)).body is None


async def test_unauthenticated_body_is_not_read(target):
    node, _, _ = target
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    writer.write(b"POST /sync/v1/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                 b"Content-Length: 8000000\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)   # answered without sending a byte of the body
    assert status.startswith(b"HTTP/1.1 401")
    # The node stops with the connection open: a client that leaves first has aiohttp linger up to 10 s after the
    # node stopped, waiting to drain the body nobody sends.
    await node.stop()
    writer.close()


async def test_strangers_cannot_flush_the_replay_cache(target):
    node, peer, _ = target
    from node.keys import SYNC_SERVER
    server = node.app[SYNC_SERVER]
    server.replay.capacity = 20
    url = node.url + "/sync/v1/heads"
    async with aiohttp.ClientSession() as session:
        captured = sign_request(peer, "GET", url)
        async with session.get(url, headers=captured) as resp:
            assert resp.status == 200
        for _ in range(30):  # validly signed by keys nobody approved
            code, _ = await signed(session, nacl.signing.SigningKey.generate(), "GET", url)
            assert code == 403
        async with session.get(url, headers=captured) as resp:
            assert resp.status == 401 and "replay" in (await resp.json())["error"]
