"""The node drops expired event bodies on its own schedule (events.purge_interval)."""

from tests.conftest import wait_until


async def test_scheduled_purge_runs_in_the_node(make_node):
    node = await make_node("p", events__purge_interval=1)
    short = await node.engine.publish("notice", {"text": "short-lived"}, ttl=2)
    await wait_until(lambda: _body_dropped(node, short.id), timeout=15)
    assert await node.store.count() == 1


async def _body_dropped(node, event_id):
    return (await node.store.get(event_id)).body is None
