"""Claiming a unit without a screen: its own host name (nnode-XXXX), the claim code in a file a manager reads on a
PC, and `nnode claim-code` for an operator with SSH."""

import asyncio
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from node.identity import host_name
from node.keys import CLAIMS, NAMES
from node.people.claim import Claims
from sync import Database

PASSWORD = "correct horse battery"


def _nnode(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


def _code_in(text: str) -> str:
    match = re.search(r"^Claim code: ([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})$", text, re.M)
    assert match, text
    return match.group(1)


async def test_the_claim_file_and_nnode_claim_code_give_the_code_that_claims_the_node(make_node, short_tmp):
    boot = short_tmp / "boot"
    boot.mkdir()
    claim_file = boot / "nnode-claim.txt"
    node = await make_node("a", node__claim_file=str(claim_file))
    host = host_name(node.id)
    # The file is there with the live code, private where the file system keeps modes, naming this unit.
    text = await asyncio.to_thread(claim_file.read_text)
    code = _code_in(text)
    assert code == node.app[CLAIMS].current
    assert stat.S_IMODE(os.stat(claim_file).st_mode) == 0o600
    assert f"{host} ({host}.local)" in text and f"{node.url}/setup" in text
    # An operator with SSH reads the same code from the running node.
    printed = await asyncio.to_thread(_nnode, node.config.node.data_dir, "claim-code")
    assert printed.returncode == 0, printed.stderr
    assert _code_in(printed.stdout) == code and f"{host}.local" in printed.stdout

    # When the code renews, the file is rewritten: the old code no longer claims, the one in the file does.
    claims = node.app[CLAIMS]
    claims.current_expires = int(time.time())          # as if it were about to expire
    await claims.ensure_code(node.url)
    renewed = _code_in(await asyncio.to_thread(claim_file.read_text))
    assert renewed != code and renewed == claims.current
    async with aiohttp.ClientSession() as session:
        async with session.post(node.url + "/setup/claim", json={"code": code, "password": PASSWORD}) as resp:
            assert resp.status == 403
        # The code read from the file claims the node (typed as people type it), and the file is gone.
        async with session.post(node.url + "/setup/claim", json={"code": renewed.lower().replace("-", " "),
                                                                  "password": PASSWORD}) as resp:
            assert resp.status == 200, await resp.text()
    assert not await asyncio.to_thread(claim_file.exists)
    assert not [p for p in await asyncio.to_thread(lambda: list(boot.iterdir()))]   # no temporary file left
    # Once claimed, `nnode claim-code` refuses in one clear line, and a restart writes no file.
    refused = await asyncio.to_thread(_nnode, node.config.node.data_dir, "claim-code")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"nnode: {host} is already claimed: there is no claim code; its manager signs in at /login "
        "(`nnode admin-link` prints a one-time sign-in link)"]
    await node.stop()
    await node.start()
    assert not await asyncio.to_thread(claim_file.exists)


async def test_a_claim_file_left_from_before_goes_once_the_node_is_claimed(make_node, short_tmp):
    claim_file = short_tmp / "nnode-claim.txt"
    node = await make_node("a", node__claim_file=str(claim_file))
    assert await asyncio.to_thread(claim_file.exists)
    await node.stop()
    # Claimed while the node was stopped (by another path than this node's claim page): the file from before is
    # removed at the next start, not left with a code that no longer works.
    db = await Database.open(node.config.db_path)
    try:
        claims = Claims(db)
        await claims.claim(await claims.issue(), PASSWORD)
    finally:
        await db.close()
    assert await asyncio.to_thread(claim_file.exists)
    await node.start()
    assert not await asyncio.to_thread(claim_file.exists)


async def test_each_unit_has_its_own_stable_host_name_and_answers_to_it(make_node):
    a = await make_node("a")
    b = await make_node("b")
    name_a, name_b = host_name(a.id), host_name(b.id)
    assert re.fullmatch(r"nnode-[0-9a-f]{4}", name_a) and name_a != name_b
    await a.stop()
    await a.start()
    assert host_name(a.id) == name_a == a.app[CLAIMS].host
    printed = await asyncio.to_thread(_nnode, a.config.node.data_dir, "hostname")
    assert printed.stdout.strip() == name_a
    # The unit answers requests addressed to nnode-XXXX.local (its mDNS name), and not to its neighbour's.
    assert f"{name_a}.local:{a.port}" in a.app[NAMES] and f"{name_a}:{a.port}" in a.app[NAMES]
    assert f"{name_b}.local:{a.port}" not in a.app[NAMES]
