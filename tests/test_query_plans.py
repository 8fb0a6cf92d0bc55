"""No request path reads the whole event store: every statement the routes run, traced on the node's own database
connections during real requests, is planned by SQLite without a scan of the events table (nor of the agency
requests received)."""

from __future__ import annotations

import json
import re

from node.keys import DB
from tests.conftest import signed, wait_until
from tests.people import browser, call, claim, invite, join, open_stream
from tests.sharing.flow import HERE, Agency, request_fields
from tests.test_live import alert_form

# Every GET a resident, a manager, an agency, Prometheus or a peer makes, the live feed's replay included.
READS = ["/api/alerts", "/alerts.atom", "/api/timeline", "/api/timeline?types=alert,report,sos", "/api/reports",
         "/api/sos", "/api/map", "/api/requests", "/api/transparency", "/api/transparency/log", "/metrics",
         "/healthz", "/api/peers", "/api/feeds"]
# Tables that grow with the node's history and that no request may read whole.
_SCAN = re.compile(r"^SCAN (events|agency_requests)\b")
_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|REPLACE)\b", re.IGNORECASE)


async def _plans_scanning_events(traced: list[str], db) -> dict[str, list[str]]:
    """{statement: its plan} for the traced statements whose plan scans events or agency_requests."""
    found: dict[str, list[str]] = {}
    for sql in dict.fromkeys(traced):
        if not _STATEMENT.match(sql) or not re.search(r"\b(events|agency_requests)\b", sql):
            continue
        details = [row[3] for row in await db.reader.execute_fetchall(f"EXPLAIN QUERY PLAN {sql}")]
        if any(_SCAN.match(detail) for detail in details):
            found[sql] = details
    return found


async def test_no_request_path_scans_the_events_table(make_node):
    a = await make_node("a", node__latitude=HERE[0], node__longitude=HERE[1])
    b = await make_node("b", node__latitude=HERE[0], node__longitude=HERE[1])
    await a.approve(b)
    await b.approve(a)
    agency = Agency()
    traced: list[str] = []
    db = a.app[DB]
    try:
        async with browser() as manager, browser() as resident, browser() as other:
            await claim(a, manager)
            await join(a, resident, (await invite(a, manager))["code"])
            status, body = await call(manager, "POST", a.url + "/api/agencies",
                                      json={"key": agency.id, "name": "Metro PD", "jurisdiction": "Metro"})
            assert status == 201, body
            for connection in (db.reader, db.writer):
                await connection.set_trace_callback(traced.append)
            assert (await call(manager, "POST", a.url + "/api/alerts", json=alert_form("Gas leak")))[0] == 200
            assert (await agency.ask(a.url, request_fields()))[0] == 201
            # an event pushed by the peer: the ingest path's reads
            await claim(b, other)
            _, pushed = await call(other, "POST", b.url + "/api/alerts", json=alert_form("Water main break"))
            await wait_until(lambda: a.store.get(pushed["event"]))
            for path in READS:
                for session in (manager, resident):
                    async with session.get(a.url + path) as response:
                        assert response.status in (200, 403), (path, response.status)
            stream = await open_stream(resident, a.url, last_id=0)
            await stream.next()
            stream.response.close()
            assert (await agency.call("GET", a.url + "/api/agency/requests"))[0] == 200
            status, heads = await signed(resident, b.key, "GET",
                                         a.url + "/sync/v1/heads")
            assert status == 200, heads
            _, tips = await a.store.heads_and_tips()   # a caller that holds all of it: nothing new
            pull = json.dumps({"heads": heads, "gaps": [], "tips": tips, "limit": 100}).encode()
            status, _ = await signed(resident, b.key, "POST", a.url + "/sync/v1/pull", pull,
                                     content_type="application/json")
            assert status == 200
            pull = json.dumps({"heads": {}, "gaps": [], "tips": {}, "limit": 100}).encode()
            assert (await signed(resident, b.key, "POST", a.url + "/sync/v1/pull", pull,
                                 content_type="application/json"))[0] == 200
    finally:
        for connection in (db.reader, db.writer):
            await connection.set_trace_callback(None)
        await agency.close()
    assert any("event_authors" in sql for sql in traced), "the sync reads were not traced"
    assert any("kind = 'alert'" in sql for sql in traced), "the alert reads were not traced"
    scans = await _plans_scanning_events(traced, db)
    # the check itself sees a scan
    assert await _plans_scanning_events(["SELECT kind, COUNT(*) FROM events GROUP BY kind"], db)
    assert not scans, "statements scanning a table that grows with history:\n" + "\n".join(f"{s}\n  {p}" for s, p in scans.items())
