"""The disclosure audit log: a hash chain signed by the node key, whose altered, deleted, rewritten or truncated
history is named by the verifier, and whose entries commit together with the action they record."""

import asyncio
import calendar
import itertools
import json

import nacl.signing
import pytest

from node.sharing.audit import (
    ACTIONS,
    COMPONENT,
    HEAD_CONTEXT,
    MIGRATIONS,
    AuditError,
    AuditLog,
    entry_hash,
    verify_database,
    verify_entries,
)
from sync import Database

KEY = nacl.signing.SigningKey(bytes(range(32)))
NODE = KEY.verify_key.encode().hex()
AGENCY = "a1" * 32


@pytest.fixture
async def db(tmp_path):
    db = await Database.open(tmp_path / "n.db")
    await db.migrate(COMPONENT, MIGRATIONS)
    yield db
    await db.close()


async def fill(log: AuditLog, n: int = 6) -> None:
    actions = ["agency_registered", "request_received", "consent", "bundle_built", "download", "withdrawal"]
    for i in range(n):
        await log.append(actions[i % len(actions)], agency=AGENCY, request_id="r1", clip=f"c{i}", actor="resident:7",
                         detail={"i": i, "note": "porch camera"})


async def update(db: Database, sql: str, *args) -> None:
    async with db.write() as conn:
        await conn.execute(sql, args)


async def rewrite(db: Database, key: nacl.signing.SigningKey, seq: int, **changes) -> None:
    """What someone holding the node key could do: change an entry, then re-hash and re-sign it and all after it."""
    entries = await AuditLog(db, key).entries()
    prev = entries[seq - 2]["hash"] if seq > 1 else "0" * 64
    async with db.write() as conn:
        for entry in entries[seq - 1:]:
            if entry["seq"] == seq:
                entry.update(changes)
            entry["prev"] = prev
            entry["hash"] = prev = entry_hash(entry)
            entry["sig"] = key.sign(HEAD_CONTEXT + entry["hash"].encode()).signature.hex()
            await conn.execute("UPDATE audit SET action = ?, detail = ?, prev = ?, hash = ?, sig = ? WHERE seq = ?",
                               (entry["action"], json.dumps(entry["detail"]), entry["prev"], entry["hash"],
                                entry["sig"], entry["seq"]))


async def test_appended_entries_form_a_signed_chain_whose_head_is_the_last_entry(db):
    log = AuditLog(db, KEY)
    assert await log.head() is None and verify_entries([], NODE) == {"entries": 0, "head": None, "heads_checked": 0}
    first = await log.append("request_received", agency=AGENCY, request_id="r1", detail={"case": "2026-004512"})
    async with db.write() as conn:  # a consent and its audit entry commit together
        await log.append("consent", agency=AGENCY, request_id="r1", clip="c1", actor="resident:7", conn=conn)
        await log.append("consent", agency=AGENCY, request_id="r1", clip="c2", actor="resident:8", conn=conn)
    last = await log.append("bundle_built", agency=AGENCY, request_id="r1", detail={"clips": 2, "bytes": 10_485_760})

    entries = await log.entries()
    assert [e["seq"] for e in entries] == [1, 2, 3, 4] and await log.count() == 4
    assert entries[0] == first and entries[-1] == last and entries[0]["prev"] == "0" * 64
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(entries))
    assert entries[1]["clip"] == "c1" and entries[1]["actor"] == "resident:7" and entries[3]["detail"]["clips"] == 2
    result = verify_entries(entries, NODE)
    head = await log.head()
    assert head == {"seq": 4, "hash": last["hash"], "at": last["at"], "sig": last["sig"]}
    assert result == {"entries": 4, "head": head, "heads_checked": 0}
    assert [e["seq"] for e in await log.entries(after=2, limit=1)] == [3]


async def test_appends_with_unknown_actions_or_non_json_detail_are_refused(db):
    log = AuditLog(db, KEY)
    with pytest.raises(ValueError, match="unknown audit action 'peek'"):
        await log.append("peek", agency=AGENCY)
    with pytest.raises(ValueError, match="floats are not allowed"):
        await log.append("download", agency=AGENCY, detail={"mb": 1.5})
    assert await log.count() == 0 and "download" in ACTIONS


@pytest.mark.parametrize("sql, message", [
    ("UPDATE audit SET detail = '{\"i\":99,\"note\":\"porch camera\"}' WHERE seq = 3",
     "entry 3: hash does not match its content (altered)"),
    ("UPDATE audit SET action = 'request_refused' WHERE seq = 4", "entry 4: hash does not match its content"),
    ("UPDATE audit SET at = at - 86400 WHERE seq = 2", "entry 2: hash does not match its content"),
    ("UPDATE audit SET agency = '' WHERE seq = 5", "entry 5: hash does not match its content"),
    ("UPDATE audit SET clip = 'other' WHERE seq = 6", "entry 6: hash does not match its content"),
    ("DELETE FROM audit WHERE seq = 3", "entry 3 is missing (the log goes on with entry 4)"),
    ("UPDATE audit SET sig = (SELECT sig FROM audit WHERE seq = 1) WHERE seq = 2",
     "entry 2: signature does not verify"),
])
async def test_an_altered_or_deleted_entry_is_named(db, sql, message):
    log = AuditLog(db, KEY)
    await fill(log)
    await update(db, sql)
    with pytest.raises(AuditError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        verify_entries(await log.entries(), NODE)
    assert caught.value.status == 500 and caught.value.reason == "audit"
    with pytest.raises(AuditError, match=message.replace("(", r"\(").replace(")", r"\)")):
        await verify_database(db.path, NODE)


async def test_a_moved_entry_breaks_the_link_to_the_one_before(db):
    log = AuditLog(db, KEY)
    await fill(log)
    entries = await log.entries()
    entries[3]["prev"] = entries[1]["hash"]  # entry 4 re-hashed and re-signed to follow entry 2: 3 is cut out
    entries[3]["hash"] = entry_hash(entries[3])
    entries[3]["sig"] = KEY.sign(HEAD_CONTEXT + entries[3]["hash"].encode()).signature.hex()
    with pytest.raises(AuditError, match="entry 4: prev does not link to entry 3"):
        verify_entries(entries, NODE)


async def test_history_rewritten_with_the_node_key_fails_against_a_head_peers_hold(db):
    log = AuditLog(db, KEY)
    await fill(log)
    published = await log.head()  # sent to peers as an event
    earlier = (await log.entries())[2]
    await rewrite(db, KEY, 3, detail={"i": 2, "note": "nothing to see"})

    entries = await log.entries()
    assert entries[2]["detail"]["note"] == "nothing to see"
    assert verify_entries(entries, NODE)["entries"] == 6  # the chain alone holds
    with pytest.raises(AuditError, match=r"entry 6 differs from the head published to peers \(history rewritten\)"):
        verify_entries(entries, NODE, heads=[published])
    with pytest.raises(AuditError, match="entry 3 differs from the head published"):
        await verify_database(db.path, NODE, [{"seq": 3, "hash": earlier["hash"]}, published])


async def test_a_truncated_log_fails_against_a_head_beyond_its_end(db):
    log = AuditLog(db, KEY)
    await fill(log)
    published = await log.head()
    await update(db, "DELETE FROM audit WHERE seq > 4")
    assert verify_entries(await log.entries(), NODE)["entries"] == 4
    with pytest.raises(AuditError, match=r"published head 6 is beyond the log's last entry 4 \(history truncated\)"):
        verify_entries(await log.entries(), NODE, heads=[published])
    await fill(log, 2)  # new entries 5 and 6 cannot match the head peers kept
    with pytest.raises(AuditError, match="entry 6 differs from the head published to peers"):
        await verify_database(db.path, NODE, [published])


async def test_entries_signed_by_another_key_fail(db):
    await fill(AuditLog(db, KEY), 2)
    other = nacl.signing.SigningKey(bytes(range(1, 33)))
    await AuditLog(db, other).append("download", agency=AGENCY)
    with pytest.raises(AuditError, match="entry 3: signature does not verify"):
        verify_entries(await AuditLog(db, KEY).entries(), NODE)
    with pytest.raises(AuditError, match="entry 1: signature does not verify"):
        verify_entries(await AuditLog(db, KEY).entries(), other.verify_key.encode().hex())


async def test_a_rolled_back_action_leaves_no_entry_and_the_chain_goes_on(db):
    log = AuditLog(db, KEY)
    await log.append("request_received", agency=AGENCY, request_id="r1")
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await log.append("consent", agency=AGENCY, request_id="r1", clip="c1", conn=conn)
            raise RuntimeError("the consent could not be stored")
    assert await log.count() == 1
    entry = await log.append("request_refused", agency=AGENCY, request_id="r1")
    assert entry["seq"] == 2 and verify_entries(await log.entries(), NODE)["entries"] == 2


async def test_concurrent_appends_get_every_seq_once(db):
    log = AuditLog(db, KEY)
    stored = await asyncio.gather(*(log.append("download", agency=AGENCY, clip=f"c{i}") for i in range(50)))
    assert sorted(e["seq"] for e in stored) == list(range(1, 51))
    assert verify_entries(await log.entries(), NODE)["entries"] == 50


async def test_monthly_counts_per_agency_newest_month_first(db):
    log = AuditLog(db, KEY)
    other = "b2" * 32
    log.clock = lambda: calendar.timegm((2026, 10, 31, 23, 59, 59))
    for action in ("request_received", "consent", "consent", "bundle_built", "download"):
        await log.append(action, agency=AGENCY, request_id="r1")
    log.clock = lambda: calendar.timegm((2026, 11, 1, 0, 0, 0))
    for action in ("request_received", "withdrawal", "clip_purged"):
        await log.append(action, agency=AGENCY, request_id="r2")
    await log.append("request_received", agency=other, request_id="r3")
    await log.append("hold_released", clip="c1")  # no agency: not counted

    assert await log.monthly({AGENCY: "Metro PD"}) == [
        {"month": "2026-11", "agency": AGENCY, "name": "Metro PD", "requests": 1, "consents": 0, "bundles": 0,
         "downloads": 0, "withdrawals": 1},
        {"month": "2026-11", "agency": other, "name": "", "requests": 1, "consents": 0, "bundles": 0,
         "downloads": 0, "withdrawals": 0},
        {"month": "2026-10", "agency": AGENCY, "name": "Metro PD", "requests": 1, "consents": 2, "bundles": 1,
         "downloads": 1, "withdrawals": 0},
    ]


async def test_verify_database_reads_the_file_without_changing_it(db, tmp_path):
    log = AuditLog(db, KEY)
    await fill(log, 40)
    head = await log.head()
    while_open = await verify_database(db.path, NODE, [head])  # the node is running
    assert while_open == {"entries": 40, "head": head, "heads_checked": 1}

    await db.close()
    before = (db.path.stat().st_mtime_ns, db.path.read_bytes())
    assert await verify_database(db.path, NODE, [head]) == while_open
    assert (db.path.stat().st_mtime_ns, db.path.read_bytes()) == before
    with pytest.raises(AuditError, match="cannot open the database read-only"):
        await verify_database(tmp_path / "missing.db", NODE)
    assert not (tmp_path / "missing.db").exists()


def test_two_different_heads_for_one_entry_prove_a_rewrite():
    from node.sharing.audit import AuditError, verify_entries
    key = nacl.signing.SigningKey.generate().verify_key.encode().hex()
    with pytest.raises(AuditError, match="entry 3: two different heads"):
        verify_entries([], key, heads=[{"seq": 3, "hash": "a" * 64}, {"seq": 3, "hash": "b" * 64}])
