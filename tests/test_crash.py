"""A node killed with SIGKILL while ingesting keeps every event it acknowledged, and its database is intact."""

import asyncio
import contextlib
import sqlite3

import aiohttp
import nacl.signing

from node.federation.kinds import build_registry
from sync import create_event, sign_request
from tests.procs import NodeProcess

REG = build_registry()
ACKED = 400   # events acknowledged before the node is killed


async def _pusher(url, peer, author, start_seq, acked, stop, enough):
    seq = start_seq
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            batch = [create_event(author, REG, kind="notice", seq=seq + i, body={"text": f"e{seq + i}"}, ttl=3600)
                     for i in range(10)]
            body = b"\n".join(e.to_line() for e in batch) + b"\n"
            try:
                async with session.post(url, data=body, headers=sign_request(peer, "POST", url, body),
                                        timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    if resp.status == 200:
                        acked.update(e.id for e in batch)
                        if len(acked) >= ACKED:
                            enough.set()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return
            seq += 10


def test_sigkill_while_ingesting_loses_no_acknowledged_event(short_tmp):
    peer = nacl.signing.SigningKey.generate()
    node = NodeProcess(short_tmp, "k", extra=f'rate_limit = 100000\nrate_burst = 100000\n'
                       f'peers = [{{url = "http://127.0.0.1:1", key = "{peer.verify_key.encode().hex()}"}}]\n')
    node.start()
    acked: set[str] = set()

    async def run():
        stop, enough = asyncio.Event(), asyncio.Event()
        authors = [nacl.signing.SigningKey.generate() for _ in range(4)]
        tasks = [asyncio.create_task(_pusher(node.url + "/sync/v1/push", peer, a, 1, acked, stop, enough))
                 for a in authors]
        with contextlib.suppress(asyncio.TimeoutError):   # too few acknowledged: the assertion below says so
            await asyncio.wait_for(enough.wait(), 30)
        node.kill()        # mid-stream: the pushers have requests in flight
        stop.set()
        await asyncio.gather(*tasks)

    try:
        asyncio.run(run())
    finally:
        node.kill()
    assert len(acked) >= ACKED
    db = node.root / "data" / "node.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {r[0] for r in conn.execute("SELECT id FROM events")}
    assert acked <= stored, f"{len(acked - stored)} acknowledged events lost"
    # The node starts again on the same files and reports them.
    node.start()
    try:
        assert f"events    {len(stored)}" in node.cli("status")
    finally:
        node.stop()
