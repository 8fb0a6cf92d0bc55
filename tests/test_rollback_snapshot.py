"""A rollback after a schema migration: the older release restores the pre-update snapshot instead of refusing to
start, keeps the newer database aside, and gets what arrived meanwhile back from its peers."""

import asyncio
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from node import schema
from node.appliance.snapshot import SchemaNewer, read_versions, snapshot_path
from node.keys import DB
from node.state import RESTORED, NodeState
from tests.conftest import wait_until

# The component a newer release migrates one step further (any would do: "state" is small).
COMPONENT = "state"


@pytest.fixture
def newer_release():
    """Call it to make this process the next release: the state component gets a migration the release before
    does not know. Undone when the test ends (the other tests run the real list)."""
    index = [name for name, _ in schema.COMPONENTS].index(COMPONENT)
    original = schema.COMPONENTS[index]

    def upgrade() -> int:
        name, migrations = original
        version = len(migrations) + 1
        schema.COMPONENTS[index] = (name, [*migrations, (version, ["CREATE TABLE trial_only (x TEXT)"])])
        return version

    def rollback() -> None:
        schema.COMPONENTS[index] = original
    yield upgrade, rollback
    rollback()


async def _versions(path: Path) -> dict[str, int]:
    return await asyncio.to_thread(read_versions, path)


def _own_notices(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM events WHERE kind = 'notice'")}


async def _has(node, ids):
    return ids <= await node.ids()


async def test_a_rollback_restores_the_snapshot_keeps_the_newer_database_and_peers_fill_the_gap(
        make_node, newer_release, caplog):
    upgrade, rollback = newer_release
    a = await make_node("a")
    b = await make_node("b")
    await a.approve(b)
    await b.approve(a)
    before = {(await a.engine.publish("notice", {"text": f"before the update {i}"}, ttl=3600)).id for i in range(3)}
    await NodeState(a.app[DB]).set("manager_setting", "kept")
    await wait_until(lambda: _has(b, before))
    await a.stop()
    db_path = a.config.db_path
    known = (await _versions(db_path))[COMPONENT]

    # The update's trial boot: the new release snapshots the database, then migrates it past what the old knows.
    version = upgrade()
    await a.start()
    snapshot = snapshot_path(db_path)
    assert (await _versions(snapshot))[COMPONENT] == known
    assert (await _versions(db_path))[COMPONENT] == version == known + 1
    during = await a.engine.publish("notice", {"text": "during the trial"}, ttl=3600)
    await wait_until(lambda: _has(b, {during.id}))
    await a.stop()
    await b.stop()                      # the neighbour is away when the old release comes back

    # The trial is rolled back: the old release starts on the newer database and restores the snapshot.
    rollback()
    with caplog.at_level(logging.WARNING, logger="nnode.snapshot"):
        await a.start()
    line = next(r.getMessage() for r in caplog.records if r.name == "nnode.snapshot")
    assert f"{COMPONENT} v{version} > v{known}" in line and "restored the pre-update snapshot" in line
    assert (await _versions(db_path))[COMPONENT] == known
    # Nothing from before the update is lost: the node's own events and its settings.
    assert before <= await a.ids() and during.id not in await a.ids()
    assert await NodeState(a.app[DB]).get("manager_setting") == "kept"
    # The newer database is kept aside, whole (its WAL with it), with the trial's event in it.
    aside = [p for p in db_path.parent.iterdir() if p.name.startswith("node.db.newer-") and p.suffix != ""
             and not p.name.endswith(("-wal", "-shm"))]
    assert len(aside) == 1, sorted(p.name for p in db_path.parent.iterdir())
    assert (await _versions(aside[0]))[COMPONENT] == version
    assert during.id in await asyncio.to_thread(_own_notices, aside[0])
    # The node holds back its own events until a peer has told it its latest: no second event at a used seq.
    assert await NodeState(a.app[DB]).get(RESTORED) is not None
    await b.start()
    await wait_until(lambda: _has(a, {during.id}))           # anti-entropy brings the trial's event back
    await wait_until(lambda: a.engine._held is None)
    fresh = await a.engine.publish("notice", {"text": "after the rollback"}, ttl=3600)
    assert fresh.seq == during.seq + 1
    await wait_until(lambda: _has(b, {fresh.id}))
    assert await b.store.quarantined() == {}


def _nnode(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=120)


def _bump(path: Path, component: str, version: int) -> None:
    """What a newer release leaves behind, as far as this one can tell: a higher version in schema_version."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = ? WHERE component = ?", (version, component))
    conn.close()


async def test_nnode_restores_the_snapshot_from_the_command_line(make_node, newer_release):
    upgrade, _ = newer_release
    a = await make_node("a", start=False)
    data = a.config.node.data_dir
    upgrade()
    await a.start()                      # the newer release, in this process: snapshot, then its migration
    await a.stop()
    # The older release is the `nnode` command (a process with the real migration list).
    result = await asyncio.to_thread(_nnode, data, "init")
    assert result.returncode == 0, result.stderr
    assert "restored the pre-update snapshot" in result.stderr
    assert any(p.name.startswith("node.db.newer-") for p in data.iterdir())
    status = await asyncio.to_thread(_nnode, data, "status", "--json")
    assert status.returncode == 0, status.stderr


async def test_without_a_usable_snapshot_the_node_says_which_versions_and_what_to_do(make_node):
    a = await make_node("a", start=False)
    data, db_path = a.config.node.data_dir, a.config.db_path
    known = (await _versions(db_path))[COMPONENT]
    await asyncio.to_thread(_bump, db_path, COMPONENT, known + 1)
    before = await asyncio.to_thread(db_path.read_bytes)
    result = await asyncio.to_thread(_nnode, data, "run", "--port", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"'{COMPONENT}' is version {known + 1} (this software knows {known})" in lines[0]
    assert "no pre-update snapshot" in lines[0] and "rauc install" in lines[0] and "nnode restore" in lines[0]
    assert await asyncio.to_thread(db_path.read_bytes) == before                # refused, nothing changed or moved
    assert not any(p.name.startswith("node.db.newer-") for p in data.iterdir())

    # A snapshot that is itself newer than this release is no way back either.
    snapshot = snapshot_path(db_path)
    await asyncio.to_thread(snapshot.write_bytes, before)
    with pytest.raises(SchemaNewer, match="its pre-update snapshot .* is newer too"):
        await a.start()
    assert await asyncio.to_thread(db_path.read_bytes) == before
