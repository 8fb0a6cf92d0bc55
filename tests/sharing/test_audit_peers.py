"""Peers keep every node's audit heads append-only and refuse one that does not extend them; `nnode audit verify`
and the transparency page check the log against those copies, so a rewritten or truncated log is caught even when
the node's own copies of its heads were rewritten or deleted too."""

from __future__ import annotations

import json
import logging
import sqlite3

import aiohttp
import nacl.signing
import pytest
from aiohttp import web

import node.sharing.heads
import node.sharing.lifecycle
from node.federation.kinds import build_registry
from node.keys import AUDIT, AUDIT_HEADS, ENGINE, PEER_CHECK, STORE
from node.sharing.audit import HEAD_CONTEXT, entry_hash
from node.sharing.events import AUDIT_HEAD_KIND, AUDIT_HEAD_TTL
from sync import create_event
from tests.conftest import serving, signed, wait_until
from tests.people import browser, call, claim
from tests.sharing.test_sharing import nnode

AGENCY = "a1" * 32


@pytest.fixture(autouse=True)
def quick_heads(monkeypatch):
    monkeypatch.setattr(node.sharing.lifecycle, "AUDIT_HEAD_INTERVAL", 0.2)


async def neighborhood(make_node, *names: str):
    """The node n and its peers, each approved both ways."""
    n = await make_node("n")
    peers = [await make_node(name) for name in names]
    for peer in peers:
        await n.approve(peer)
        await peer.approve(n)
    return n, peers


async def held_seqs(peer, author: str) -> list[int]:
    heads, _ = await peer.app[AUDIT_HEADS].held(author)
    return sorted(h["body"]["seq"] for h in heads)


async def append(n, peers, *actions: str) -> None:
    """Append entries one at a time, each time until every peer holds the head naming it."""
    for action in actions:
        entry = await n.app[AUDIT].append(action, agency=AGENCY, request_id="r1", clip=f"c-{action}")

        async def everywhere(seq=entry["seq"]) -> bool:
            return all([seq in await held_seqs(p, n.id) for p in peers])
        await wait_until(everywhere, timeout=30)


def truncate(n, keep: int, own_heads: bool = True) -> None:
    """Remove the entries after `keep`, and (`own_heads`) the node's own heads that named them."""
    with sqlite3.connect(n.config.db_path) as db:
        db.execute("DELETE FROM audit WHERE seq > ?", (keep,))
        if own_heads:
            db.execute("DELETE FROM events WHERE kind = 'audit-head' AND json_extract(body, '$.seq') > ?", (keep,))


def rewrite(n, seq: int, action: str) -> None:
    """Change one entry and re-hash and re-sign it and every later one with the node key; drop its own heads."""
    key = n.key
    with sqlite3.connect(n.config.db_path) as db:
        rows = db.execute("SELECT seq, at, action, agency, request_id, clip, actor, detail FROM audit "
                          "ORDER BY seq").fetchall()
        prev = "0" * 64
        for number, at, old, agency, request_id, clip, actor, detail in rows:
            entry = {"seq": number, "at": at, "action": action if number == seq else old, "agency": agency,
                     "request_id": request_id, "clip": clip, "actor": actor, "detail": json.loads(detail),
                     "prev": prev}
            digest = entry_hash(entry)
            db.execute("UPDATE audit SET action = ?, prev = ?, hash = ?, sig = ? WHERE seq = ?",
                       (entry["action"], prev, digest, key.sign(HEAD_CONTEXT + digest.encode()).signature.hex(),
                        number))
            prev = digest
        db.execute("DELETE FROM events WHERE kind = 'audit-head'")
        db.execute("DELETE FROM node_state WHERE key = 'audit_head'")


@pytest.mark.parametrize("tamper, message", [
    (lambda n: truncate(n, keep=2), "published head 4 is beyond the log's last entry 2 (history truncated)"),
    (lambda n: rewrite(n, 3, "withdrawal"), "entry 3 differs from the head published to peers (history rewritten)"),
])
async def test_a_log_cut_or_rewritten_with_its_own_heads_fails_against_the_peers_copies(make_node, tamper, message):
    n, peers = await neighborhood(make_node, "p", "q")
    await append(n, peers, "request_received", "consent", "download", "download")
    code, out, err = await nnode(n, "audit", "verify")
    assert code == 0 and "4 entries" in out and "2 of 2 peers' copies agree" in out, (out, err)
    await n.stop()

    tamper(n)
    code, out, err = await nnode(n, "audit", "verify", "--local")
    assert code == 0, err   # its own database alone agrees with itself
    code, out, err = await nnode(n, "audit", "verify")
    assert code == 3 and message in err, (out, err)
    assert "0 of 2 peers' copies agree" in err and "2 of 2 peers answered" in err, err

    # One peer down: the other's copy is enough, and the silent one is named.
    await peers[1].stop()
    code, out, err = await nnode(n, "audit", "verify")
    assert code == 3 and message in err and "0 of 1 peers' copies agree" in err, err
    assert "peer q" in err and "did not answer" in err, err


async def test_a_head_that_does_not_extend_the_last_one_is_refused_flagged_and_shown(make_node, caplog):
    n, (p,) = await neighborhood(make_node, "p")
    await append(n, [p], "request_received", "consent", "download")
    report = await n.app[PEER_CHECK].run()
    assert report["ok"] and report["agree"] == 1 and report["entries"] == 3, report
    await n.stop()

    # Cut to one entry; it restarts and publishes head 1. (Its own events stay: with them deleted it would sign
    # new ones with seqs it used before, and its peer would quarantine it for that instead.)
    truncate(n, keep=1, own_heads=False)
    caplog.set_level(logging.WARNING, logger="nnode.audit")
    await n.start()
    await n.approve(p)

    async def flagged() -> bool:
        return n.id in await p.app[AUDIT_HEADS].conflicts()
    await wait_until(flagged, timeout=30)
    assert await held_seqs(p, n.id) == [1, 2, 3]                       # nothing held was lost or replaced
    # (anti-entropy brought back n's own earlier heads from p: the new one is the last n signed)
    latest = max((e for e in await n.app[STORE].recent(limit=20, kind=AUDIT_HEAD_KIND) if e.author == n.id),
                 key=lambda e: e.seq)
    assert json.loads(latest.body)["seq"] == 1
    assert await p.app[STORE].get(latest.id) is None                    # refused: not stored, not relayed
    assert p.app[ENGINE].stats.rejected["contradicts"] >= 1
    assert any(r.getMessage() == "audit head refused" and r.author == n.id for r in caplog.records)
    async with browser() as manager:
        await claim(p, manager)
        status, body = await call(manager, "GET", p.url + "/api/peers")
        (listed,) = [peer for peer in body["peers"] if peer["key"] == n.id]
        assert listed["audit_conflict"]["refused"] >= 1
        assert "below entry 3" in listed["audit_conflict"]["reason"], listed
        async with manager.get(p.url + "/metrics") as resp:
            assert 'nnode_events_rejected_total{reason="contradicts"}' in await resp.text()

    # n's own transparency page says its log disagrees with its peer's copy.
    report = await n.app[PEER_CHECK].run()
    assert not report["ok"] and "history truncated" in report["problem"], report
    assert report["agree"] == 0 and report["disagree"] == [f"peer p ({p.id[:16]})"]
    async with browser() as manager:
        await claim(n, manager)
        status, body = await call(manager, "GET", n.url + "/api/transparency")
        check = body["peer_check"]
        assert status == 200 and check["ok"] is False and "history truncated" in check["problem"], body
        assert check["peers"] == check["answered"] == check["holding"] == 1 and check["agree"] == 0


async def test_pushed_heads_must_extend_the_ones_held(make_node, monkeypatch):
    n, (p,) = await neighborhood(make_node, "p")
    await append(n, [p], "request_received", "consent")
    heads, _ = await p.app[AUDIT_HEADS].held(n.id)
    first, second = sorted(heads, key=lambda head: head["seq"])      # in the order n signed them
    key, registry = n.key, build_registry()
    await n.stop()                 # from here on only these crafted heads carry n's key
    event_seq = second["seq"]

    async def push(body: dict) -> tuple[int, dict]:
        nonlocal event_seq
        event_seq += 1
        event = create_event(key, registry, kind=AUDIT_HEAD_KIND, seq=event_seq, body=body, ttl=AUDIT_HEAD_TTL)
        async with aiohttp.ClientSession() as session:
            return await signed(session, key, "POST", p.url + "/sync/v1/push", event.to_line() + b"\n")

    status, answer = await push({"seq": 2, "hash": "f" * 64})
    assert status == 409 and answer["reason"] == "contradicts" and "entry 2 comes with hash" in answer["error"]
    status, answer = await push({"seq": 1, "hash": first["body"]["hash"]})
    assert status == 409 and "below entry 2" in answer["error"], answer
    status, answer = await push(second["body"])                          # the same head again: fine
    assert status == 200 and answer["results"]["accepted"] == 1, answer
    status, answer = await push({"seq": 7, "hash": "e" * 64})           # further on: fine
    assert status == 200, answer
    assert await held_seqs(p, n.id) == [1, 2, 2, 7]
    assert (await p.app[AUDIT_HEADS].conflicts())[n.id]["refused"] == 2
    monkeypatch.setattr(node.sharing.heads, "MAX_HEADS_PER_AUTHOR", 4)   # a flood of heads stops at the cap
    status, answer = await push({"seq": 8, "hash": "e" * 64})
    assert status == 409 and "4 heads of this author are held already" in answer["error"], answer
    assert await held_seqs(p, n.id) == [1, 2, 2, 7]
    with sqlite3.connect(p.config.db_path) as db, pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit_heads")


async def test_the_audit_heads_endpoint_answers_approved_peers_only_and_within_bounds(make_node):
    n, (p,) = await neighborhood(make_node, "p")
    await append(n, [p], "request_received", "consent", "download")
    url = f"{p.url}/sync/v1/audit-heads?author={n.id}"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 401
        stranger = nacl.signing.SigningKey.generate()
        status, body = await signed(session, stranger, "GET", url)
        assert status == 403 and "not an approved peer" in body["error"]
        for query, expected in [("author=abc", "author: expected a node key"),
                                (f"author={n.id}&limit=0", "limit: expected a whole number from 1 to 256"),
                                (f"author={n.id}&limit=99999", "limit"), (f"author={n.id}&limit=-1", "limit")]:
            status, body = await signed(session, n.key, "GET", f"{p.url}/sync/v1/audit-heads?{query}")
            assert status == 400 and expected in body["error"], (query, body)
        status, body = await signed(session, n.key, "GET", url + "&limit=2")
        assert status == 200 and body["held"] == 3 and body["more"] is True and body["refused"] == 0
        assert [h["body"]["seq"] for h in body["heads"]] == [3, 2]
        assert all(h["author"] == n.id and h["kind"] == AUDIT_HEAD_KIND for h in body["heads"])
        status, body = await signed(session, n.key, "GET", f"{p.url}/sync/v1/audit-heads?author={'0' * 64}")
        assert status == 200 and body["heads"] == [] and body["held"] == 0


async def test_peers_that_forge_withhold_or_flood_cannot_sway_the_check(make_node):
    n, (p,) = await neighborhood(make_node, "p")
    await append(n, [p], "request_received", "consent")
    forger = nacl.signing.SigningKey.generate()
    fake = create_event(forger, build_registry(), kind=AUDIT_HEAD_KIND, seq=1, body={"seq": 2, "hash": "d" * 64},
                        ttl=AUDIT_HEAD_TTL)

    async def forged(request: web.Request) -> web.Response:   # a head "of n" signed by another key
        return web.json_response({"ok": True, "author": n.id, "heads": [json.loads(fake.to_line())]})

    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(64):
            await response.write(b" " * 32768)
        return response

    apps = []
    for handler in (forged, flood):
        app = web.Application()
        app.router.add_get("/sync/v1/audit-heads", handler)
        apps.append(app)
    async with serving(apps[0]) as forger_url, serving(apps[1]) as flood_url:
        for name, url in (("forger", forger_url), ("flood", flood_url)):
            await n.peers.seen(nacl.signing.SigningKey.generate().verify_key.encode().hex(), name=name, url=url,
                               source="manual", approve=True)
        report = await n.app[PEER_CHECK].run()
    assert report["ok"] and report["agree"] == 1 and report["answered"] == 1 and report["peers"] == 3, report
    problems = {label.split()[1]: error for label, error in report["unreachable"].items()}
    assert "head 1: signature" in problems["forger"] or "not an audit head of this node" in problems["forger"]
    assert "over 1048576 bytes" in problems["flood"], problems
