"""SOS: a resident's call for help reaches the on-call responders' open pages at once, and escalates if nobody answers.

Escalation, while unacknowledged: after `sos.ack_timeout` the configured webhook (a paging or phone service), then
after `sos.peer_escalation_after` nearby nodes, as a signed `sos` event naming the building, not the resident.
Each SOS also holds camera footage around its moment from retention, until the manager releases it (ending the call
does not: footage of a real emergency may be needed later). The node never calls emergency services.
A call is open, then acknowledged, then ended: resolved by a responder or the manager (with a note), or cancelled
by whoever raised it (a false alarm). An ended call is never reopened and never escalates.
The state lives in the database and the escalator polls it, so a restart loses no step. The webhook is recorded as
being called before it is called (a crash at that moment costs one page rather than paging in a loop); the event to
nearby nodes waits while publishing is held (after a restore) and may, after a crash at the wrong moment, go out
twice, which is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence

import aiohttp

from node.config import Config
from node.errors import BadRequest, Conflict, Forbidden, NotFound
from node.safety.live import RESPONDERS
from node.sql import inserted_id
from sync import Database, Migration, SyncEngine, require_fields

log = logging.getLogger("nnode.sos")

SOS = "sos"
SOS_EVENT_TTL = 6 * 3600
TICK = 1.0                 # seconds between escalation checks
WEBHOOK_TIMEOUT = 10.0
MAX_NOTE = 500

COMPONENT = "sos"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE sos (
            id INTEGER PRIMARY KEY,
            resident_id INTEGER,
            manager INTEGER,
            unit TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            note TEXT NOT NULL DEFAULT '',
            created INTEGER NOT NULL,
            acked_by TEXT,
            acked_at INTEGER,
            webhook_at INTEGER,
            webhook_result TEXT,
            escalated_at INTEGER,
            event_id TEXT
        )""",
        # Footage around these moments is never purged by retention (cameras honour this table).
        """CREATE TABLE holds (
            id INTEGER PRIMARY KEY,
            reason TEXT NOT NULL CHECK (reason IN ('sos', 'manager', 'consent')),
            ref TEXT NOT NULL,
            start INTEGER NOT NULL,
            end INTEGER NOT NULL,
            created INTEGER NOT NULL,
            released INTEGER
        )""",
    ]),
    (2, [
        # The lifecycle: open -> acknowledged -> resolved | cancelled (an ended call never goes back).
        "ALTER TABLE sos ADD COLUMN state TEXT NOT NULL DEFAULT 'open' "
        "CHECK (state IN ('open', 'acknowledged', 'resolved', 'cancelled'))",
        "ALTER TABLE sos ADD COLUMN ended_by TEXT",
        "ALTER TABLE sos ADD COLUMN ended_at INTEGER",
        "ALTER TABLE sos ADD COLUMN resolution TEXT NOT NULL DEFAULT ''",
        "UPDATE sos SET state = 'acknowledged' WHERE acked_at IS NOT NULL",
        "CREATE INDEX sos_by_state ON sos (state, created)",
    ]),
]

OPEN_STATES = ("open", "acknowledged")
ENDED_STATES = ("resolved", "cancelled")

_COLUMNS = "id, resident_id, unit, name, note, created, acked_by, acked_at, webhook_at, webhook_result, " \
           "escalated_at, event_id, state, ended_by, ended_at, resolution"
_HOLD = "SELECT start, end, released FROM holds WHERE reason = 'sos' AND ref = ? AND clip_id IS NULL"


def validate_sos_event(body: Any) -> None:
    """An escalated SOS from a nearby building: which building, when, roughly where."""
    require_fields(body, {"building": str, "raised": int}, {"location": dict})
    if not body["building"].strip() or len(body["building"]) > 200:
        raise ValueError("field 'building' must hold 1 to 200 characters")
    location = body.get("location")
    if location is not None and (set(location) != {"lat_e6", "lon_e6"}
                                 or not all(type(v) is int for v in location.values())):
        raise ValueError("field 'location' must be {lat_e6, lon_e6} in integer micro-degrees")


def _view(row: Sequence[Any]) -> dict[str, Any]:
    return {"id": row[0], "resident_id": row[1], "unit": row[2], "name": row[3], "note": row[4], "created": row[5],
            "acked_by": row[6], "acked_at": row[7], "webhook_at": row[8], "webhook_result": row[9],
            "escalated_at": row[10], "event": row[11], "state": row[12], "ended_by": row[13], "ended_at": row[14],
            "resolution": row[15]}


def hold_view(start: int, end: int, released: int | None) -> dict[str, Any]:
    """The footage hold of a call, saying why it is there and what ends it."""
    if released is not None:
        why = "The camera footage around this call was kept from deletion; the manager has released it."
    else:
        why = (f"Camera footage from {(end - start) // 60} minutes around this call is kept from deletion in case "
               "it is needed. Ending the call does not release it; only the manager does.")
    return {"start": start, "end": end, "released": released, "why": why}


def _ended(call: dict[str, Any]) -> Conflict:
    verb = "resolved" if call["state"] == "resolved" else "cancelled"
    return Conflict(f"SOS {call['id']} was already {verb} by {call['ended_by']}: an ended call cannot be "
                    "acknowledged, resolved or cancelled again; raise a new SOS if help is needed")


class SosDesk:
    """SOS calls, their acknowledgement and escalation."""

    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.config = config

    async def raise_sos(self, *, resident_id: int | None, unit: str, name: str, note: Any,
                        now: int | None = None) -> dict[str, Any]:
        """Record an SOS and hold the footage around it."""
        now = int(time.time()) if now is None else now
        if note is None:
            note = ""
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise BadRequest(f"field 'note' must be text of at most {MAX_NOTE} characters")
        settings = self.config.sos
        async with self.db.write() as conn:
            cursor = await conn.execute("INSERT INTO sos (resident_id, unit, name, note, created) VALUES (?, ?, ?, ?, ?)",
                                        (resident_id, unit, name, note.strip(), now))
            sos_id = inserted_id(cursor)
            await conn.execute("INSERT INTO holds (reason, ref, start, end, created) VALUES ('sos', ?, ?, ?, ?)",
                               (str(sos_id), now - settings.hold_before, now + settings.hold_after, now))
        return await self.get(sos_id)

    async def get(self, sos_id: int) -> dict[str, Any]:
        """One SOS, or NotFound."""
        rows = list(await self.db.reader.execute_fetchall(f"SELECT {_COLUMNS} FROM sos WHERE id = ?", (sos_id,)))
        if not rows:
            raise NotFound(f"no SOS {sos_id}")
        return _view(rows[0]) | {"hold": await self.hold(sos_id)}

    async def open_calls(self, *, resident_id: int | None = None, hours: int = 24, ended: bool = False,
                         now: int | None = None) -> list[dict[str, Any]]:
        """Recent calls, newest first (one resident's own when `resident_id` is given); ended ones only with
        `ended`."""
        now = int(time.time()) if now is None else now
        where, args = "created > ?", [now - hours * 3600]
        if not ended:
            where += " AND state IN ('open', 'acknowledged')"
        if resident_id is not None:
            where += " AND resident_id = ?"
            args.append(resident_id)
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM sos WHERE {where} ORDER BY id DESC LIMIT 100", args)
        holds = {int(r[0]): hold_view(*r[1:]) for r in await self.db.reader.execute_fetchall(
            "SELECT ref, start, end, released FROM holds WHERE reason = 'sos' AND clip_id IS NULL AND created > ?",
            (now - hours * 3600 - 86_400,)) if str(r[0]).isdigit()}
        return [_view(r) | {"hold": holds.get(r[0])} for r in rows]

    async def acknowledge(self, sos_id: int, by: str, *, now: int | None = None) -> tuple[dict[str, Any], bool]:
        """Mark a call acknowledged by `by`; returns (call, whether this was the first acknowledgement).
        Conflict if the call has ended."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE sos SET acked_by = ?, acked_at = ?, state = 'acknowledged' "
                                        "WHERE id = ? AND state = 'open'", (by, now, sos_id))
        call = await self.get(sos_id)
        if call["state"] in ENDED_STATES:
            raise _ended(call)
        return call, cursor.rowcount == 1

    async def end(self, sos_id: int, state: str, by: str, resolution: str = "", *,
                  now: int | None = None) -> dict[str, Any]:
        """End an open or acknowledged call as `state` (resolved or cancelled); Conflict if it had ended already."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE sos SET state = ?, ended_by = ?, ended_at = ?, resolution = ? "
                "WHERE id = ? AND state IN ('open', 'acknowledged')", (state, by, now, resolution, sos_id))
        call = await self.get(sos_id)
        if cursor.rowcount == 0:
            raise _ended(call)
        return call

    async def cancel(self, sos_id: int, *, resident_id: int | None, by: str) -> dict[str, Any]:
        """The one who raised a call takes it back (a false alarm): a resident their own call, the manager (with
        `resident_id` None) a call the manager raised. Forbidden for anyone else, Conflict once it has ended."""
        call = await self.get(sos_id)
        if call["resident_id"] != resident_id:
            raise Forbidden(f"only whoever raised SOS {sos_id} can cancel it; a responder resolves it instead")
        return await self.end(sos_id, "cancelled", by)

    async def hold(self, sos_id: int) -> dict[str, Any] | None:
        """The footage hold of a call (see hold_view), or None if it has none."""
        rows = list(await self.db.reader.execute_fetchall(_HOLD, (str(sos_id),)))
        return hold_view(*rows[0]) if rows else None

    async def release_hold(self, sos_id: int, *, now: int | None = None) -> dict[str, Any]:
        """The manager releases a call's footage hold; Conflict if it was released already."""
        now = int(time.time()) if now is None else now
        await self.get(sos_id)
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE holds SET released = ? WHERE reason = 'sos' AND ref = ? "
                                        "AND clip_id IS NULL AND released IS NULL", (now, str(sos_id)))
        hold = await self.hold(sos_id)
        if hold is None:
            raise NotFound(f"SOS {sos_id} holds no footage")
        if cursor.rowcount == 0:
            raise Conflict(f"the footage hold of SOS {sos_id} was already released")
        return hold

    async def due(self, now: int) -> list[tuple[str, dict[str, Any]]]:
        """Escalation steps that are due: ("webhook" | "peers", call)."""
        settings = self.config.sos
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_COLUMNS} FROM sos WHERE state = 'open' AND (webhook_at IS NULL OR escalated_at IS NULL) "
            "AND created > ?", (now - 86_400,))
        steps = []
        for call in map(_view, rows):
            if call["webhook_at"] is None and settings.webhook_url and now - call["created"] >= settings.ack_timeout:
                steps.append(("webhook", call))
            elif call["escalated_at"] is None and now - call["created"] >= settings.peer_escalation_after:
                steps.append(("peers", call))
        return steps

    async def begin_webhook(self, sos_id: int, *, now: int | None = None) -> bool:
        """Record that the webhook is being called, if the call is still open and unpaged; False otherwise (it was
        acknowledged or ended meanwhile)."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE sos SET webhook_at = ?, webhook_result = 'calling' "
                                        "WHERE id = ? AND state = 'open' AND webhook_at IS NULL", (now, sos_id))
        return cursor.rowcount == 1

    async def record(self, sos_id: int, step: str, result: str, *, event_id: str | None = None,
                     now: int | None = None) -> dict[str, Any]:
        """Remember that an escalation step ran."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            if step == "webhook":
                await conn.execute("UPDATE sos SET webhook_at = ?, webhook_result = ? WHERE id = ?",
                                   (now, result, sos_id))
            else:
                await conn.execute("UPDATE sos SET escalated_at = ?, event_id = ? WHERE id = ?",
                                   (now, event_id, sos_id))
        return await self.get(sos_id)


async def call_webhook(session: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> str:
    """POST the call to the webhook; returns a short result for the record (never raises)."""
    try:
        async with session.post(url, json=payload, timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)) as resp:
            return f"HTTP {resp.status}"
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return f"failed: {type(exc).__name__}: {exc}"[:300]


class Escalator:
    """Runs the escalation steps that are due (the periodic job `escalate`, every TICK seconds)."""

    def __init__(self, desk: SosDesk, engine: SyncEngine, publish: Any, config: Config,
                 location: dict[str, int] | None, session: aiohttp.ClientSession) -> None:
        self.desk, self.engine, self.publish, self.config = desk, engine, publish, config
        self.location, self.session = location, session
        self.published: dict[int, str] = {}   # SOS id -> event id published but not yet recorded (a failed write)

    async def run_due(self) -> None:
        """Run every step due now."""
        for step, call in await self.desk.due(int(time.time())):
            await _run_step(self.desk, self.engine, self.publish, self.config, self.location, self.session, step,
                            call, self.published)


async def _run_step(desk: SosDesk, engine: SyncEngine, publish: Any, config: Config,
                    location: dict[str, int] | None, session: aiohttp.ClientSession, step: str,
                    call: dict[str, Any], published: dict[int, str]) -> None:
    if step == "webhook":
        # Recorded before the call: a crash or a failing disk can cost one page, never page people in a loop.
        if not await desk.begin_webhook(call["id"]):
            return   # answered, cancelled or resolved since it was found due
        result = await call_webhook(session, config.sos.webhook_url, {
            "type": "sos", "building": config.node.name, "unit": call["unit"], "name": call["name"],
            "note": call["note"], "raised": call["created"], "unacknowledged_for": int(time.time()) - call["created"]})
        log.warning("SOS unacknowledged: webhook called", extra={"sos": call["id"], "result": result})
        call = await desk.record(call["id"], "webhook", result)
    else:
        if engine.publishing_held:   # stays due: it goes out once publishing resumes
            return
        event_id = published.get(call["id"])
        if event_id is None:
            if (await desk.get(call["id"]))["state"] != "open":
                return   # answered or ended since it was found due
            body: dict[str, Any] = {"building": config.node.name, "raised": call["created"]}
            if location:
                body["location"] = location
            event_id = published[call["id"]] = (await engine.publish(SOS, body, ttl=SOS_EVENT_TTL)).id
            log.warning("SOS unacknowledged: escalated to nearby nodes", extra={"sos": call["id"]})
        call = await desk.record(call["id"], "peers", "published", event_id=event_id)
        published.pop(call["id"], None)
    await publish("sos-escalated", {"sos": call, "stage": step}, RESPONDERS)
