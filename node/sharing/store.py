"""The sharing desk's tables and every query on them: agency requests, per-clip consents and disclosure counts.

A consent holds its clip (a row in the clip index's `holds` table, reason 'consent', ref its bundle id) from the
moment it is given until its bundle is gone; taking and releasing that hold are written here, in the same
transaction as the consent's own change. Methods that take `conn` run inside the caller's write transaction, so the
audit entry the caller appends lands with the change it records.
"""

from __future__ import annotations

import json
import time
from typing import Any, Sequence

import aiosqlite

from node.camera.clips import ClipRow
from node.sharing.bundle import BundleInfo
from node.sharing.requests import FootageRequest
from sync import Database, Migration

LIVE = ("building", "ready", "failed", "downloaded")   # consent states that hold the clip and block a second one
WITHDRAWABLE = ("building", "ready", "failed")
DELIVERED = ("ready", "downloaded")
MAX_LISTED = 200

COMPONENT = "desk"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE agency_requests (
            id TEXT PRIMARY KEY,
            agency TEXT NOT NULL,
            document TEXT NOT NULL,
            credential TEXT,
            case_number TEXT NOT NULL,
            urgency TEXT NOT NULL,
            start REAL NOT NULL,
            end REAL NOT NULL,
            expires REAL NOT NULL,
            received INTEGER NOT NULL,
            origin TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'refused', 'elsewhere')),
            refusal TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX agency_requests_agency ON agency_requests (agency)",
        """CREATE TABLE consents (
            id INTEGER PRIMARY KEY,
            request_id TEXT NOT NULL REFERENCES agency_requests (id),
            clip_uid TEXT NOT NULL,
            clip_id INTEGER NOT NULL,
            owner TEXT NOT NULL,
            choice TEXT NOT NULL CHECK (choice IN ('redacted', 'original')),
            receipt TEXT NOT NULL,
            created INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('building', 'ready', 'failed', 'downloaded', 'withdrawn',
                                                 'expired', 'closed', 'purged')),
            bundle_uid TEXT NOT NULL UNIQUE,
            bundle_size INTEGER,
            bundle_sha256 TEXT,
            redaction TEXT,
            error TEXT NOT NULL DEFAULT '',
            downloaded INTEGER,
            downloads INTEGER NOT NULL DEFAULT 0,
            release_at INTEGER,
            ended INTEGER
        )""",
        "CREATE UNIQUE INDEX consents_live ON consents (request_id, clip_uid) "
        "WHERE state IN ('building', 'ready', 'failed', 'downloaded')",
        """CREATE TABLE disclosures (
            request_id TEXT NOT NULL,
            node TEXT NOT NULL,
            agency TEXT NOT NULL,
            bundles INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            at INTEGER NOT NULL,
            PRIMARY KEY (request_id, node)
        )""",
    ]),
    # The cooling-off period: a consent is invisible to the agency and to peers until `visible_at`; `shown` is
    # when it became visible (NULL while it cools off). Consents given before this migration were visible at once.
    (2, [
        "ALTER TABLE consents ADD COLUMN visible_at INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE consents ADD COLUMN shown INTEGER",
        "UPDATE consents SET shown = created",
        "CREATE INDEX consents_cooling ON consents (visible_at) WHERE shown IS NULL",
    ]),
    # The bundle's manifest `created`, so the agency's list shows the date `nnode verify` prints.
    (3, ["ALTER TABLE consents ADD COLUMN built TEXT"]),
    # The running requests (`listed`: /api/requests) by expiry, not a read of every request ever received.
    (4, ["CREATE INDEX agency_requests_expires ON agency_requests (expires)"]),
    # Range consents: one consent (clip_uid 'range-...', clip_id its first clip's) for several clips of one camera,
    # listed here in time order; each is held (ref: the consent's bundle id) as a one-clip consent's clip is.
    (5, [
        """CREATE TABLE consent_parts (
            consent_id INTEGER NOT NULL REFERENCES consents (id),
            position INTEGER NOT NULL,
            clip_uid TEXT NOT NULL,
            clip_id INTEGER NOT NULL,
            PRIMARY KEY (consent_id, position)
        )""",
        "ALTER TABLE consents ADD COLUMN camera TEXT",
        "ALTER TABLE consents ADD COLUMN range_start REAL",
        "ALTER TABLE consents ADD COLUMN range_end REAL",
    ]),
]

_CONSENT_NAMES = ("id", "request_id", "clip_uid", "clip_id", "owner", "choice", "created", "state", "bundle_uid",
                  "bundle_size", "bundle_sha256", "redaction", "error", "downloaded", "downloads", "release_at",
                  "ended", "visible_at", "shown", "camera", "range_start", "range_end")
_CONSENT_COLUMNS = ", ".join(_CONSENT_NAMES)
_REQUEST_NAMES = ("id", "agency", "document", "status", "refusal", "received", "expires")
_AGENCY_CONSENT = ("SELECT c.id, c.bundle_uid, c.request_id, c.clip_uid, r.agency, c.shown IS NOT NULL "
                   "FROM consents c JOIN agency_requests r ON r.id = c.request_id")
_SHOWN = "c.shown IS NOT NULL"   # what the agency and peers may learn of: consents past their cooling-off period


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def consent_view(row: Sequence[Any]) -> dict[str, Any]:
    """A consent row as the owners' pages show it."""
    view = dict(zip(_CONSENT_NAMES, row))
    view["can_withdraw"] = view["state"] in WITHDRAWABLE
    # Within the cooling-off period a withdrawal leaves no trace the agency or any peer can see.
    view["cooling_off"] = view["shown"] is None and view["state"] in WITHDRAWABLE
    return view


class DeskStore:
    """The desk's rows in the node's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- requests -----------------------------------------------------------------------------------------------

    async def request(self, request_id: str) -> dict[str, Any] | None:
        """One stored request's row (id, agency, document, status, refusal, received, expires), or None."""
        rows = list(await self.db.reader.execute_fetchall(
            f"SELECT {', '.join(_REQUEST_NAMES)} FROM agency_requests WHERE id = ?", (request_id,)))
        return dict(zip(_REQUEST_NAMES, rows[0])) if rows else None

    async def save_request(self, conn: aiosqlite.Connection, request: FootageRequest, credential: dict[str, Any] | None,
                           *, origin: str, status: str, refusal: str) -> None:
        """Store a request, or its new status and refusal (a credential, once known, is kept)."""
        await conn.execute(
            "INSERT INTO agency_requests (id, agency, document, credential, case_number, urgency, start, end, "
            "expires, received, origin, status, refusal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, refusal = excluded.refusal, "
            "credential = COALESCE(excluded.credential, credential)",
            (request.id, request.agency, json.dumps(request.document), json.dumps(credential) if credential
             else None, request.case_number, request.urgency, request.start, request.end, request.expires,
             int(time.time()), origin, status, refusal))

    async def refused(self, agency_key: str, now: float) -> list[tuple[dict[str, Any], dict[str, Any] | None, str]]:
        """This agency's refused requests still running: (document, credential, origin)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT document, credential, origin FROM agency_requests WHERE agency = ? AND status = 'refused' "
            "AND expires > ?", (agency_key, now))
        return [(json.loads(d), json.loads(c) if c else None, o) for d, c, o in rows]

    async def refuse_all(self, conn: aiosqlite.Connection, agency_key: str, reason: str) -> None:
        """Refuse every open request of this agency."""
        await conn.execute("UPDATE agency_requests SET status = 'refused', refusal = ? WHERE agency = ? "
                           "AND status = 'open'", (reason, agency_key))

    async def is_open(self, conn: aiosqlite.Connection, request_id: str, now: float) -> bool:
        """Whether the request is open, unexpired and its agency unrevoked (in the caller's transaction)."""
        return bool(await conn.execute_fetchall(
            "SELECT 1 FROM agency_requests r JOIN agencies a ON a.key = r.agency WHERE r.id = ? AND "
            "r.status = 'open' AND r.expires > ? AND a.revoked IS NULL", (request_id, now)))

    async def listed(self, statuses: Sequence[str], now: float) -> list[tuple[Any, ...]]:
        """Running requests of these statuses, newest first: (document, status, refusal, received)."""
        rows = await self.db.reader.execute_fetchall(
            f"SELECT document, status, refusal, received FROM agency_requests WHERE status IN ({_marks(statuses)}) "
            f"AND expires > ? ORDER BY received DESC LIMIT {MAX_LISTED}", (*statuses, now))
        return [tuple(r) for r in rows]

    async def agency_request_ids(self, agency_key: str) -> list[str]:
        """The ids of this agency's requests, newest first."""
        rows = await self.db.reader.execute_fetchall(
            f"SELECT id FROM agency_requests WHERE agency = ? ORDER BY received DESC LIMIT {MAX_LISTED}",
            (agency_key,))
        return [r[0] for r in rows]

    async def public(self) -> list[tuple[Any, ...]]:
        """What the transparency page lists: (document, status, received, bundles disclosed, downloaded) of open
        requests and of refused ones from registered agencies, newest first."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT r.document, r.status, r.received, "
            f"(SELECT COUNT(*) FROM consents c WHERE c.request_id = r.id AND c.bundle_sha256 IS NOT NULL AND {_SHOWN} "
            " AND c.state NOT IN ('withdrawn', 'expired')), "
            "(SELECT COUNT(*) FROM consents c WHERE c.request_id = r.id AND c.downloaded IS NOT NULL) "
            "FROM agency_requests r WHERE r.status = 'open' OR (r.status = 'refused' AND r.agency IN "
            f"(SELECT key FROM agencies)) ORDER BY r.received DESC LIMIT {MAX_LISTED}")
        return [tuple(r) for r in rows]

    async def upload_owners(self, start: float, end: float) -> list[str]:
        """Residents with a ready upload overlapping the window (uploads are placed at the building)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT DISTINCT owner FROM clips WHERE camera = 'upload' AND state = 'ready' AND start < ? AND end > ?",
            (end, start))
        return [r[0] for r in rows]

    # -- consents -----------------------------------------------------------------------------------------------

    async def consent(self, consent_id: int) -> dict[str, Any]:
        """One consent's view."""
        rows = list(await self.db.reader.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE id = ?", (consent_id,)))
        return consent_view(rows[0])

    async def live(self, request_id: str, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The live consents for these clips of a request, by clip uid."""
        if not uids:
            return {}
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE request_id = ? AND clip_uid IN ({_marks(uids)}) "
            f"AND state IN ({_marks(LIVE)})", (request_id, *uids, *LIVE))
        return {r[2]: consent_view(r) for r in rows}

    async def owned(self, request_id: str, uid: str, owner: str) -> dict[str, Any] | None:
        """The owner's live consent for this clip and request, or None."""
        rows = list(await self.db.reader.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE request_id = ? AND clip_uid = ? AND owner = ? AND "
            f"state IN ({_marks(LIVE)})", (request_id, uid, owner, *LIVE)))
        return consent_view(rows[0]) if rows else None

    async def is_shared(self, conn: aiosqlite.Connection, request_id: str, uid: str) -> bool:
        """Whether the clip already has a live consent for the request (in the caller's transaction)."""
        return bool(await conn.execute_fetchall(
            f"SELECT 1 FROM consents WHERE request_id = ? AND clip_uid = ? AND state IN ({_marks(LIVE)})",
            (request_id, uid, *LIVE)))

    async def add(self, conn: aiosqlite.Connection, request: FootageRequest, clip: ClipRow, *, owner: str,
                  choice: str, receipt: dict[str, Any], bundle_uid: str, visible_at: int) -> int | None:
        """Record a consent and hold its clip; its id, or None if the clip is no longer ready (nothing written
        that the caller's transaction keeps: the caller then raises). It is shown to the agency from
        `visible_at` (at once if that is now)."""
        now = int(time.time())
        cursor = await conn.execute(
            "INSERT INTO consents (request_id, clip_uid, clip_id, owner, choice, receipt, created, state, "
            "bundle_uid, visible_at, shown) VALUES (?, ?, ?, ?, ?, ?, ?, 'building', ?, ?, ?)",
            (request.id, clip.uid, clip.id, owner, choice, json.dumps(receipt), now, bundle_uid, visible_at,
             now if visible_at <= now else None))
        held = await conn.execute(
            "INSERT INTO holds (reason, ref, start, end, created, clip_id, camera, note) SELECT 'consent', ?, "
            "?, ?, ?, id, camera, ? FROM clips WHERE id = ? AND state = 'ready'",
            (bundle_uid, int(clip.start), int(clip.end) + 1, now,
             f"shared with the agency for case {request.case_number}"[:200], clip.id))
        return cursor.lastrowid if held.rowcount else None

    async def add_range(self, conn: aiosqlite.Connection, request: FootageRequest, uid: str, clips: Sequence[ClipRow],
                        span: tuple[float, float], *, owner: str, choice: str, receipt: dict[str, Any],
                        bundle_uid: str, visible_at: int) -> int | None:
        """Record a range consent over `clips` (one camera, in time order) and hold each of them; its id, or None
        if one of them is no longer ready (the caller then raises, and its transaction keeps nothing)."""
        now = int(time.time())
        cursor = await conn.execute(
            "INSERT INTO consents (request_id, clip_uid, clip_id, owner, choice, receipt, created, state, "
            "bundle_uid, visible_at, shown, camera, range_start, range_end) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'building', ?, ?, ?, ?, ?, ?)",
            (request.id, uid, clips[0].id, owner, choice, json.dumps(receipt), now, bundle_uid, visible_at,
             now if visible_at <= now else None, clips[0].camera, span[0], span[1]))
        consent_id = cursor.lastrowid
        note = f"shared with the agency for case {request.case_number}"[:200]
        for position, clip in enumerate(clips):
            await conn.execute("INSERT INTO consent_parts (consent_id, position, clip_uid, clip_id) "
                               "VALUES (?, ?, ?, ?)", (consent_id, position, clip.uid, clip.id))
            held = await conn.execute(
                "INSERT INTO holds (reason, ref, start, end, created, clip_id, camera, note) SELECT 'consent', ?, "
                "?, ?, ?, id, camera, ? FROM clips WHERE id = ? AND state = 'ready'",
                (bundle_uid, int(clip.start), int(clip.end) + 1, now, note, clip.id))
            if not held.rowcount:
                return None
        return consent_id

    async def parts(self, consent_id: int) -> list[str]:
        """A range consent's clip uids, in time order (none for a one-clip consent)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT clip_uid FROM consent_parts WHERE consent_id = ? ORDER BY position", (consent_id,))
        return [r[0] for r in rows]

    async def ranges(self, request_id: str, owner: str) -> list[dict[str, Any]]:
        """The owner's live range consents for a request, with how many clips each holds."""
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS}, (SELECT COUNT(*) FROM consent_parts p WHERE p.consent_id = consents.id) "
            f"FROM consents WHERE request_id = ? AND owner = ? AND range_start IS NOT NULL AND "
            f"state IN ({_marks(LIVE)}) ORDER BY range_start", (request_id, owner, *LIVE))
        return [consent_view(r[:-1]) | {"clips": r[-1]} for r in rows]

    async def end(self, conn: aiosqlite.Connection, consent_id: int, bundle_uid: str, state: str,
                  allowed: Sequence[str] = WITHDRAWABLE) -> bool:
        """Move a consent in one of the `allowed` states to `state` and release its hold; False if it was not."""
        cursor = await conn.execute(
            f"UPDATE consents SET state = ?, ended = ? WHERE id = ? AND state IN ({_marks(allowed)})",
            (state, int(time.time()), consent_id, *allowed))
        if cursor.rowcount == 0:
            return False
        await conn.execute("UPDATE holds SET released = ? WHERE reason = 'consent' AND ref = ? AND released IS NULL",
                           (int(time.time()), bundle_uid))
        return True

    async def forget(self, conn: aiosqlite.Connection, consent_id: int, bundle_uid: str) -> bool:
        """Erase a consent still in its cooling-off period, and its hold, as if it had never been given; False if
        it was shown to the agency meanwhile (or is gone)."""
        if not await conn.execute_fetchall(
                f"SELECT 1 FROM consents WHERE id = ? AND shown IS NULL AND state IN ({_marks(WITHDRAWABLE)})",
                (consent_id, *WITHDRAWABLE)):
            return False
        await conn.execute("DELETE FROM consent_parts WHERE consent_id = ?", (consent_id,))
        await conn.execute("DELETE FROM consents WHERE id = ?", (consent_id,))
        await conn.execute("DELETE FROM holds WHERE reason = 'consent' AND ref = ?", (bundle_uid,))
        return True

    async def cooled(self, now: float) -> list[int]:
        """Consents whose cooling-off period is over and which the agency cannot see yet, oldest first."""
        rows = await self.db.reader.execute_fetchall(
            f"SELECT id FROM consents WHERE shown IS NULL AND visible_at <= ? AND state IN ({_marks(WITHDRAWABLE)}) "
            "ORDER BY id", (now, *WITHDRAWABLE))
        return [r[0] for r in rows]

    async def next_cooled(self) -> int | None:
        """When the next consent still cooling off becomes visible, or None."""
        rows = list(await self.db.reader.execute_fetchall(
            f"SELECT MIN(visible_at) FROM consents WHERE shown IS NULL AND state IN ({_marks(WITHDRAWABLE)})",
            WITHDRAWABLE))
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def show(self, conn: aiosqlite.Connection, consent_id: int, now: int) -> dict[str, Any] | None:
        """Make a cooled consent visible to the agency; its view and receipt, or None if it was not cooling off."""
        cursor = await conn.execute(
            f"UPDATE consents SET shown = ? WHERE id = ? AND shown IS NULL AND state IN ({_marks(WITHDRAWABLE)})",
            (now, consent_id, *WITHDRAWABLE))
        if cursor.rowcount == 0:
            return None
        rows = list(await conn.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS}, receipt FROM consents WHERE id = ?", (consent_id,)))
        return consent_view(rows[0][:-1]) | {"receipt": json.loads(rows[0][-1])}

    async def is_shown(self, conn: aiosqlite.Connection, consent_id: int) -> bool:
        """Whether the agency may see this consent (in the caller's transaction)."""
        return bool(await conn.execute_fetchall("SELECT 1 FROM consents WHERE id = ? AND shown IS NOT NULL",
                                                (consent_id,)))

    async def close(self, conn: aiosqlite.Connection, consent_id: int) -> None:
        """A downloaded consent whose hold period is over: its bundle goes, its hold waits for the clip."""
        await conn.execute("UPDATE consents SET state = 'closed' WHERE id = ?", (consent_id,))

    async def undelivered(self, conn: aiosqlite.Connection,
                          agency_key: str) -> list[tuple[int, str, str, str, bool]]:
        """This agency's consents not yet downloaded: (id, bundle uid, request id, clip uid, shown)."""
        rows = await conn.execute_fetchall(
            f"{_AGENCY_CONSENT} WHERE r.agency = ? AND c.state IN ({_marks(WITHDRAWABLE)})",
            (agency_key, *WITHDRAWABLE))
        return [(r[0], r[1], r[2], r[3], bool(r[5])) for r in rows]

    async def expired(self, now: float) -> list[tuple[Any, ...]]:
        """Consents not downloaded whose request has expired: (id, bundle uid, request id, clip uid, agency,
        shown)."""
        rows = await self.db.reader.execute_fetchall(
            f"{_AGENCY_CONSENT} WHERE c.state IN ({_marks(WITHDRAWABLE)}) AND r.expires <= ?", (*WITHDRAWABLE, now))
        return [tuple(r) for r in rows]

    async def released(self, now: float) -> list[tuple[Any, ...]]:
        """Downloaded consents whose hold period is over, and closed ones whose clip is still held:
        (id, bundle uid, request id, clip uid, agency, state)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.id, c.bundle_uid, c.request_id, c.clip_uid, r.agency, c.state FROM consents c JOIN "
            "agency_requests r ON r.id = c.request_id WHERE (c.state = 'downloaded' AND c.release_at <= ?) "
            "OR c.state = 'closed'", (now,))
        return [tuple(r) for r in rows]

    # -- bundles ------------------------------------------------------------------------------------------------

    async def live_bundles(self) -> set[str]:
        """The bundle ids whose files should exist (being built, ready or downloaded)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT bundle_uid FROM consents WHERE state IN ('building', 'ready', 'downloaded')")
        return {r[0] for r in rows}

    async def building(self) -> list[int]:
        """Consents whose bundle is still to be built, oldest first."""
        rows = await self.db.reader.execute_fetchall("SELECT id FROM consents WHERE state = 'building' ORDER BY id")
        return [r[0] for r in rows]

    async def job(self, consent_id: int) -> tuple[str, str, str, dict[str, Any], str] | None:
        """What building a consent's bundle needs, if it is still to be built: (bundle uid, clip uid, choice,
        receipt, request document)."""
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT c.state, c.bundle_uid, c.clip_uid, c.choice, c.receipt, r.document FROM consents c "
            "JOIN agency_requests r ON r.id = c.request_id WHERE c.id = ?", (consent_id,)))
        if not rows or rows[0][0] != "building":
            return None
        _, bundle_uid, uid, choice, receipt, document = rows[0]
        return bundle_uid, uid, choice, json.loads(receipt), document

    async def failed(self, conn: aiosqlite.Connection, consent_id: int, error: str) -> bool:
        """A bundle could not be built; False if the consent was withdrawn meanwhile."""
        cursor = await conn.execute("UPDATE consents SET state = 'failed', error = ? WHERE id = ? AND "
                                    "state = 'building'", (error[:500], consent_id))
        return bool(cursor.rowcount)

    async def ready(self, conn: aiosqlite.Connection, consent_id: int, info: BundleInfo,
                    redaction: str | None) -> bool:
        """A bundle was built; False if the consent was withdrawn meanwhile."""
        cursor = await conn.execute(
            "UPDATE consents SET state = 'ready', bundle_size = ?, bundle_sha256 = ?, redaction = ?, built = ? "
            "WHERE id = ? AND state = 'building'",
            (info.size, info.sha256, redaction, info.manifest.get("created"), consent_id))
        return bool(cursor.rowcount)

    async def delivered(self, request_id: str) -> int:
        """How many bundles this node holds for the request (ready or downloaded)."""
        rows = list(await self.db.reader.execute_fetchall(
            f"SELECT COUNT(*) FROM consents c WHERE request_id = ? AND {_SHOWN} AND state IN ({_marks(DELIVERED)})",
            (request_id, *DELIVERED)))
        return int(rows[0][0])

    async def agency_bundles(self, agency_key: str) -> list[tuple[Any, ...]]:
        """Bundles for this agency it may download: (uid, request id, case number, size, sha256, created,
        downloaded, the manifest's created)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.bundle_uid, c.request_id, r.case_number, c.bundle_size, c.bundle_sha256, c.created, "
            "c.downloaded, c.built FROM consents c JOIN agency_requests r ON r.id = c.request_id WHERE r.agency = ? AND "
            f"{_SHOWN} AND c.state IN ({_marks(DELIVERED)}) ORDER BY c.id", (agency_key, *DELIVERED))
        return [tuple(r) for r in rows]

    async def agency_bundle(self, agency_key: str, bundle_uid: str) -> tuple[int, str, str, str] | None:
        """One of this agency's bundles: (consent id, request id, clip uid, state), or None."""
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT c.id, c.request_id, c.clip_uid, c.state FROM consents c JOIN agency_requests r ON "
            f"r.id = c.request_id WHERE c.bundle_uid = ? AND r.agency = ? AND {_SHOWN}", (bundle_uid, agency_key)))
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None

    async def downloaded(self, conn: aiosqlite.Connection, consent_id: int, now: int, release_at: int) -> bool:
        """Record a download: a first one only while the request is open, again until the hold period ends."""
        cursor = await conn.execute(
            "UPDATE consents SET state = 'downloaded', downloads = downloads + 1, "
            "downloaded = COALESCE(downloaded, ?), release_at = COALESCE(release_at, ?) "
            "WHERE id = ? AND (state = 'downloaded' OR (state = 'ready' AND "
            "(SELECT expires FROM agency_requests WHERE id = consents.request_id) > ?))",
            (now, release_at, consent_id, now))
        return bool(cursor.rowcount)

    # -- disclosures --------------------------------------------------------------------------------------------

    async def note_disclosure(self, author: str, seq: int, body: dict[str, Any], at: int) -> None:
        """Keep a node's latest disclosure count for a request (a later seq replaces an earlier one)."""
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO disclosures (request_id, node, agency, bundles, seq, at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id, node) DO UPDATE SET bundles = excluded.bundles, seq = excluded.seq, "
                "at = excluded.at WHERE excluded.seq > disclosures.seq",
                (body["request_id"], author, body["agency"], body["bundles"], seq, at))

    async def disclosed(self, node: str, request_id: str) -> int:
        """The count a node last disclosed for the request (0 if none)."""
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT bundles FROM disclosures WHERE request_id = ? AND node = ?", (request_id, node)))
        return int(rows[0][0]) if rows else 0

    async def disclosures(self, request_id: str, agency_key: str) -> list[tuple[str, int, int]]:
        """The nodes that disclosed bundles for the request: (node, bundles, at)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT node, bundles, at FROM disclosures WHERE request_id = ? AND agency = ? AND bundles > 0 "
            "ORDER BY node", (request_id, agency_key))
        return [(r[0], r[1], r[2]) for r in rows]
