"""SyncEngine.admission: checks the node adds before events are stored; what they refuse is reported with its
position and reason, and neither stored nor handed on, while the rest of the batch is stored."""

import nacl.signing
import pytest

from sync import Contradicts, Database, EventStore, PeerStore, SyncEngine, SyncSettings, create_event, setup_schema
from tests.sync.kinds import build_test_registry

REG = build_test_registry()
AUTHOR = nacl.signing.SigningKey.generate()


@pytest.fixture
async def engine(tmp_path):
    db = await Database.open(tmp_path / "node.db")
    await setup_schema(db)
    engine = SyncEngine(nacl.signing.SigningKey.generate(), EventStore(db), PeerStore(db), REG,
                        SyncSettings(verify_in_process=False))
    yield engine
    await engine.close()
    await db.close()


async def test_refused_events_are_reported_and_neither_stored_nor_handed_on(engine):
    seen: list[list] = []
    engine.listeners.append(seen.append)
    asked: list[list[int]] = []

    async def no_secrets(events):
        asked.append([e.seq for e in events])
        return {e.id: Contradicts(f"seq {e.seq} says secret") for e in events if "secret" in e.body_value()["text"]}

    engine.admission.append(no_secrets)
    batch = [create_event(AUTHOR, REG, kind="notice", seq=seq, body={"text": text}, ttl=3600)
             for seq, text in ((1, "fine"), (2, "a secret"), (3, "fine too"))]
    result = await engine.ingest([e.to_line() for e in batch], "peer")
    assert [e.seq for e in result.stored] == [1, 3]
    assert [(index, error.reason, error.status) for index, error in result.rejected] == [(1, "contradicts", 409)]
    assert "seq 2 says secret" in str(result.rejected[0][1])
    assert await engine.store.get(batch[1].id) is None and await engine.store.get(batch[2].id) is not None
    assert [[e.seq for e in events] for events in seen] == [[1, 3]]
    # only new events are asked about: held ones are duplicates, refused ones may come again and are asked again
    result = await engine.ingest([e.to_line() for e in batch], "peer")
    assert asked == [[1, 2, 3], [2]] and result.duplicates == 2 and len(result.rejected) == 1


async def test_a_body_arriving_for_a_header_held_without_one_is_asked_about_too(engine):
    async def no_secrets(events):
        return {e.id: Contradicts("secret") for e in events if e.body and "secret" in e.body_value()["text"]}

    engine.admission.append(no_secrets)
    event = create_event(AUTHOR, REG, kind="notice", seq=1, body={"text": "a secret"}, ttl=3600)
    result = await engine.ingest([event.without_body().to_line()], "peer")     # the header alone passes
    assert len(result.stored) == 1 and not result.rejected
    result = await engine.ingest([event.to_line()], "peer")
    assert [(index, error.reason) for index, error in result.rejected] == [(0, "contradicts")]
    assert (await engine.store.get(event.id)).body is None
