"""A withdrawn alert stays withdrawn for the life of what it withdrew: across restarts and after the Cancel's own
body is purged (an NWS Cancel often expires minutes after it is sent, the warning it cancels hours later)."""

import asyncio
import sqlite3
import time
from datetime import datetime, timedelta

import aiohttp

from node.safety.alerts import current_alerts
from node.safety.intake import import_alerts
from tests.cap_samples import current, sample
from tests.conftest import wait_until
from tests.test_alert_authority import NWS, reply
from tests.test_feed_shapes import KINGS


def short_lived_cancel(original: bytes) -> bytes:
    """The NWS's Cancel of `original`, in force for two minutes only (its <expires>)."""
    cancel = reply(original, sender=NWS)
    head, _, rest = cancel.partition(b"<expires>")
    _, _, tail = rest.partition(b"</expires>")
    sent = cancel.split(b"<sent>")[1].split(b"</sent>")[0].decode()
    expires = (datetime.fromisoformat(sent) + timedelta(minutes=2)).isoformat().encode()
    return head + b"<expires>" + expires + b"</expires>" + tail


async def public_alerts(node) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(node.url + "/api/alerts") as resp:
        return [a["cap"]["identifier"] for a in (await resp.json())["alerts"]]


async def test_a_cancel_outlives_its_own_body_and_a_restart(make_node):
    node = await make_node("t")
    original = current(sample("nws_winter_storm_kings.xml"))     # in force for hours
    await import_alerts(node.engine, original)
    [cancel] = (await import_alerts(node.engine, short_lived_cancel(original))).events
    assert await public_alerts(node) == []

    async def recorded() -> bool:
        rows = await node.store.db.reader.execute_fetchall("SELECT by_event FROM alert_withdrawals")
        return [r[0] for r in rows] == [cancel.id]
    await wait_until(recorded)                                   # the listener keeps the record
    later = int(time.time()) + 600                               # the Cancel has expired, the warning has not
    assert await node.store.purge_expired(now=later) == 1        # the Cancel's body is gone
    assert (await node.store.get(cancel.id)).body is None
    assert await current_alerts(node.store, location=None, now=later) == []

    await node.stop()
    await node.start()
    assert await public_alerts(node) == []                       # still withdrawn after a restart
    assert await current_alerts(node.store, location=None, now=later) == []


async def test_a_cancel_stored_before_a_crash_is_recorded_at_start(make_node):
    node = await make_node("t")
    original = current(sample("nws_winter_storm_kings.xml"))
    await import_alerts(node.engine, original)
    await import_alerts(node.engine, short_lived_cancel(original))
    await node.stop()

    def crash_before_the_listener_ran() -> None:
        with sqlite3.connect(node.config.db_path) as db:
            db.execute("DELETE FROM alert_withdrawals")
    await asyncio.to_thread(crash_before_the_listener_ran)
    await node.start()                                           # the start-up sweep records it again
    rows = await node.store.db.reader.execute_fetchall("SELECT key, until FROM alert_withdrawals")
    assert len(rows) == 1 and rows[0][0].startswith(f"{NWS},{KINGS},")
    assert rows[0][1] > int(time.time()) + 3600                  # until the warning's end, not the Cancel's
