"""The sharing desk: agency requests at this node, their matching clips, per-clip consent, bundles and their holds.

The flow (DESIGN section 6, docs/agencies.md):

    agency-request event ─► consider(): open | refused | elsewhere ─► owners see their matching clips
    owner consents ─► consent row + hold + audit, one transaction ─► builder: redact?, build_bundle ─► ready
    agency downloads ─► downloaded (withdrawal ends, hold period starts) ─► tick(): bundle deleted, hold released,
    clip purged once its retention has run out

Declines do not exist as records: an owner who does nothing leaves nothing. Every step that discloses, or undoes a
disclosure, is appended to the audit log in the same transaction as the change it records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import unicodedata
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import nacl.signing

from sync import Database, Migration

from node.camera.clips import ClipIndex, ClipNotFound, ClipRow
from node.errors import Conflict, NotFound
from node.safety.live import MANAGERS
from node.sharing.agencies import Agency, AgencyRefused, Registry
from node.sharing.audit import AuditLog
from node.sharing.events import DISCLOSURE_KIND, DISCLOSURE_TTL, REQUEST_KIND
from node.sharing.bundle import ORIGINAL, REDACTED, SUFFIX, build_bundle, sign_consent
from node.sharing.requests import Area, FootageRequest, Policy, RequestError, format_time, parse_area, parse_request

log = logging.getLogger("nnode.sharing")

LIVE = ("building", "ready", "failed", "downloaded")   # consent states that hold the clip and block a second one
WITHDRAWABLE = ("building", "ready", "failed")
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
]

_CONSENT_COLUMNS = ("id, request_id, clip_uid, clip_id, owner, choice, created, state, bundle_uid, bundle_size, "
                    "bundle_sha256, redaction, error, downloaded, downloads, release_at, ended")


def policy_from(config: Any) -> Policy:
    """The request policy of the [agencies] section."""
    a = config.agencies
    return Policy(min_window_s=a.min_window_minutes * 60, max_window_s=a.max_window_hours * 3600,
                  max_area_sq_mi=float(a.max_area_sq_mi), require_case_number=a.require_case_number,
                  max_expiry_days=a.max_expiry_days, max_age_days=a.max_age_days)


def _consent_view(row: Sequence[Any]) -> dict[str, Any]:
    names = [n.strip() for n in _CONSENT_COLUMNS.split(",")]
    view = dict(zip(names, row))
    view["can_withdraw"] = view["state"] in WITHDRAWABLE
    return view


class SharingDesk:
    """Requests, matching, consent, bundles, downloads and consent holds of one node."""

    def __init__(self, db: Database, key: nacl.signing.SigningKey, clips: ClipIndex, registry: Registry,
                 audit: AuditLog, config: Any, *, publish: Callable[..., Awaitable[Any]] | None = None,
                 notify: Callable[..., Awaitable[Any]] | None = None) -> None:
        self.db, self.key, self.clips, self.registry, self.audit = db, key, clips, registry, audit
        self.config = config
        self.policy = policy_from(config)
        self.node_key = key.verify_key.encode().hex()
        self.bundles_dir = config.node.data_dir / "bundles"
        self.cameras = {c.id: c for c in config.cameras.devices}
        self.publish = publish          # SyncEngine.publish (kind, body, ttl=)
        self.notify = notify            # Hub.publish (kind, data, audience)
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self.building: int | None = None  # the consent whose bundle is being built now
        self._considering = asyncio.Lock()  # one request at a time: the agency's post and its own relayed event
        self._announcing: set[asyncio.Task] = set()

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the bundle folder, drop half-written bundles, and queue the consents a restart interrupted."""
        self.bundles_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stray in self.bundles_dir.glob(".*"):
            stray.unlink(missing_ok=True)
        # A crash between a withdrawal (expiry, revocation, hold end) and deleting its bundle leaves the file.
        live = {r[0] for r in await self.db.reader.execute_fetchall(
            "SELECT bundle_uid FROM consents WHERE state IN ('building', 'ready', 'downloaded')")}
        for path in self.bundles_dir.glob(f"*{SUFFIX}"):
            if path.name.removesuffix(SUFFIX) not in live:
                path.unlink(missing_ok=True)
        rows = await self.db.reader.execute_fetchall("SELECT id FROM consents WHERE state = 'building' ORDER BY id")
        for (consent_id,) in rows:
            self._queue.put_nowait(consent_id)
        self._worker = asyncio.create_task(self._build_forever(), name="nnode-bundles")

    async def close(self) -> None:
        """Stop the builder (a bundle cut short is built again at the next start)."""
        for task in list(self._announcing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def idle(self) -> None:
        """Wait until every queued bundle is built (tests, the CLI)."""
        while self._queue.qsize() or self.building is not None:
            await asyncio.sleep(0.05)

    # -- requests -----------------------------------------------------------------------------------------------

    async def submit(self, document: Any, agency: Agency, credential: dict | None = None) -> tuple[dict, bool]:
        """A request posted by `agency`: checked, stored, published to peers; returns (view, created)."""
        request = parse_request(document, now=time.time(), policy=self.policy)
        if request.agency != agency.key:
            raise AgencyRefused("the request is signed by another agency key than the one that signed the call")
        if credential is not None and credential.get("agency") != agency.key:
            raise AgencyRefused("the credential is for another agency key than the one that signed the call")
        async with self._considering:  # one request id, one event: a second post of it waits and finds it
            known = await self._request_row(request.id)
            if known is not None:
                if json.loads(known["document"]) != request.document:
                    raise Conflict(f"request id {request.id} is already used by another request")
                return await self.agency_view(agency.key, request.id), False
            body = {"request": request.document} | ({"credential": credential} if credential else {})
            ttl = max(60, int(request.expires - time.time()))
            if self.publish is not None:
                await self.publish(REQUEST_KIND, body, ttl=ttl)
            await self._consider(request.document, credential, origin="agency", again=False)
        return await self.agency_view(agency.key, request.id), True

    async def consider(self, document: dict, credential: dict | None, *, origin: str,
                       again: bool = False) -> str:
        """Decide what a request is to this node (open, refused, elsewhere), store and log it; returns the status."""
        async with self._considering:
            return await self._consider(document, credential, origin=origin, again=again)

    async def _consider(self, document: dict, credential: dict | None, *, origin: str, again: bool) -> str:
        request_id = document.get("id") if isinstance(document, dict) else None
        before = await self._request_row(request_id) if isinstance(request_id, str) else None
        if not again and before is not None:
            return "known"
        status, refusal, request = "open", "", None
        try:
            request = parse_request(document, now=time.time(), policy=self.policy)
        except RequestError as exc:
            status, refusal = "refused", f"out of this node's policy: {exc}"
            try:  # what the request looks like without this node's limits
                request = parse_request(document, now=time.time(), policy=Policy(0, 10**9, 10**9, False, 10**5, 10**5))
            except RequestError:
                return "invalid"
        if not self.touches(request.area):
            status, refusal = "elsewhere", ""
        if credential is not None and (not isinstance(credential, dict) or credential.get("agency") != request.agency):
            credential = None  # a credential vouches only for the key it names
        async with self.db.write() as conn:
            agency = await self.registry.get(request.agency)
            if (agency is None or agency.source == "anchor") and credential and status != "elsewhere":
                with contextlib.suppress(AgencyRefused):
                    agency, new = await self.registry.accept(credential, conn=conn)
                    if new:
                        await self.audit.append("agency_registered", agency=agency.key, actor="trust anchor",
                                                detail={"name": agency.name, "anchor": agency.anchor or ""},
                                                conn=conn)
            if status == "open":
                problem = "this agency is not registered at this node" if agency is None else \
                    self.registry.problem(agency)
                if problem:
                    status, refusal = "refused", problem
            await conn.execute(
                "INSERT INTO agency_requests (id, agency, document, credential, case_number, urgency, start, end, "
                "expires, received, origin, status, refusal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET status = excluded.status, refusal = excluded.refusal, "
                "credential = COALESCE(excluded.credential, credential)",
                (request.id, request.agency, json.dumps(request.document), json.dumps(credential) if credential
                 else None, request.case_number, request.urgency, request.start, request.end, request.expires,
                 int(time.time()), origin, status, refusal))
            changed = before is None or (before["status"], before["refusal"]) != (status, refusal)
            if status == "open" and changed:
                await self.audit.append("request_received", agency=request.agency, request_id=request.id,
                                        actor=origin, detail={"case_number": request.case_number,
                                                              "urgency": request.urgency}, conn=conn)
            elif status == "refused" and changed and agency is not None:
                # Refusals of keys nobody registered are shown to the manager but not logged: anyone can make keys.
                await self.audit.append("request_refused", agency=request.agency, request_id=request.id,
                                        actor=origin, detail={"reason": _nfc(refusal)[:300]}, conn=conn)
        if status == "open" and changed:
            # In the background: the time the agency waits for its answer must not tell how much footage matched.
            task = asyncio.create_task(self._announce(request, agency), name="nnode-announce-request")
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)
        log.info("agency request", extra={"request": request.id, "status": status, "refusal": refusal})
        return status

    async def reconsider(self, agency_key: str) -> None:
        """Look again at this agency's refused requests (after the manager registered it)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT document, credential, origin FROM agency_requests WHERE agency = ? AND status = 'refused' "
            "AND expires > ?", (agency_key, time.time()))
        for document, credential, origin in rows:
            await self.consider(json.loads(document), json.loads(credential) if credential else None,
                                origin=origin, again=True)

    async def refuse_agency(self, agency_key: str, reason: str, conn: Any) -> list[str]:
        """After a revocation: refuse the agency's open requests and end its undownloaded consents (in `conn`)."""
        await conn.execute("UPDATE agency_requests SET status = 'refused', refusal = ? WHERE agency = ? "
                           "AND status = 'open'", (reason, agency_key))
        rows = await conn.execute_fetchall(
            "SELECT c.id, c.bundle_uid, c.request_id, c.clip_uid FROM consents c JOIN agency_requests r "
            "ON r.id = c.request_id WHERE r.agency = ? AND c.state IN ('building', 'ready', 'failed')", (agency_key,))
        for consent_id, bundle_uid, request_id, clip_uid in rows:
            await self._end(conn, consent_id, bundle_uid, "expired")
            await self.audit.append("bundle_expired", agency=agency_key, request_id=request_id, clip=clip_uid,
                                    detail={"reason": "agency revoked"}, conn=conn)
        return [(r[1], r[2]) for r in rows]

    def _location(self, camera: str) -> tuple[str, str] | None:
        config = self.cameras.get(camera)
        lat, lon = (config.latitude, config.longitude) if config and config.latitude else \
            (self.config.node.latitude, self.config.node.longitude)
        return (lat, lon) if lat else None

    def touches(self, area: Area) -> bool:
        """True if the area covers the building or one of its cameras."""
        places = [self._location(c) for c in self.cameras] + [self._location("upload")]
        return any(p and area.contains(float(p[0]), float(p[1])) for p in places)

    def matches(self, request: FootageRequest, clip: ClipRow) -> bool:
        """A clip matches when its camera is inside the area and its time overlaps the window."""
        place = self._location(clip.camera)
        return (clip.start < request.end and clip.end > request.start and place is not None
                and request.area.contains(float(place[0]), float(place[1])))

    async def _announce(self, request: FootageRequest, agency: Agency | None) -> None:
        if self.notify is None:
            return
        try:
            await self._tell_owners(request, agency)
        except Exception:
            log.exception("telling owners of a request failed", extra={"request": request.id})

    async def _tell_owners(self, request: FootageRequest, agency: Agency | None) -> None:
        data = {"id": request.id, "urgency": request.urgency, "case_number": request.case_number,
                "agency_name": agency.name if agency else ""}
        if request.urgency == "emergency":
            log.warning("emergency footage request", extra={"request": request.id, "agency": request.agency})
        await self.notify("agency-request", data, MANAGERS)
        place = self._location("upload")
        if place is None or not request.area.contains(float(place[0]), float(place[1])):
            return
        # Uploads are placed at the building: every one overlapping the window matches. One small query, so that
        # how long this takes says little about how much footage there is.
        rows = await self.db.reader.execute_fetchall(
            "SELECT DISTINCT owner FROM clips WHERE camera = 'upload' AND state = 'ready' AND start < ? AND end > ?",
            (request.end, request.start))
        for (owner,) in rows:
            await self.notify("agency-request", data, owner)

    async def _request_row(self, request_id: str) -> dict | None:
        rows = await self.db.reader.execute_fetchall(
            "SELECT id, agency, document, status, refusal, received, expires FROM agency_requests WHERE id = ?",
            (request_id,))
        if not rows:
            return None
        return dict(zip(("id", "agency", "document", "status", "refusal", "received", "expires"), rows[0]))

    async def _open_request(self, request_id: str) -> FootageRequest:
        row = await self._request_row(request_id)
        if row is None or row["status"] == "elsewhere":
            raise NotFound(f"no request {request_id!r} here")
        if row["status"] != "open":
            raise Conflict(f"request {request_id} is refused at this node: {row['refusal']}")
        if row["expires"] <= time.time():
            raise Conflict(f"request {request_id} expired on {format_time(row['expires'])}")
        return _parsed(row["document"])

    # -- owners -------------------------------------------------------------------------------------------------

    async def _candidates(self, request: FootageRequest, owner: str) -> list[ClipRow]:
        """`owner`'s ready clips ('building' or 'resident:N') that overlap the window inside the area."""
        if owner == "building":
            cameras = [c for c in await self.clips.usage() if c != "upload"]
            found = await self.clips.list(cameras=cameras, after=request.start, before=request.end, limit=1000)
        else:
            found = await self.clips.list(owner=owner, after=request.start, before=request.end, limit=1000)
        return [c for c in found if self.matches(request, c)]

    async def for_owner(self, owner: str, names: dict[str, Agency]) -> list[dict]:
        """Requests with `owner`'s matching clips ('building' for the manager, 'resident:N'), newest first."""
        statuses = ("open", "refused") if owner == "building" else ("open",)
        rows = await self.db.reader.execute_fetchall(
            f"SELECT document, status, refusal, received FROM agency_requests WHERE status IN "
            f"({', '.join('?' * len(statuses))}) AND expires > ? ORDER BY received DESC LIMIT {MAX_LISTED}",
            (*statuses, time.time()))
        out = []
        for document, status, refusal, received in rows:
            request = _parsed(document)
            clips = await self._candidates(request, owner) if status == "open" else []
            if owner != "building" and not clips:
                continue
            consents = await self._consents(request.id, [c.uid for c in clips])
            agency = names.get(request.agency)
            out.append(request.public() | {
                "agency": {"key": request.agency, "name": agency.name if agency else "",
                           "jurisdiction": agency.jurisdiction if agency else "",
                           "contact": agency.contact if agency else ""},
                "contact": request.contact, "status": status, "refusal": refusal, "received": received,
                "clips": [self._clip_view(c) | {"consent": consents.get(c.uid)} for c in clips]})
        return out

    def _clip_view(self, clip: ClipRow) -> dict[str, Any]:
        config = self.cameras.get(clip.camera)
        return {"uid": clip.uid, "camera": clip.camera,
                "camera_name": "Resident upload" if clip.is_upload else (config.name if config and config.name
                                                                         else clip.camera),
                "start": clip.start, "end": clip.end, "duration": clip.duration,
                "thumbnail": f"/api/clips/{clip.uid}/thumbnail", "video": f"/api/clips/{clip.uid}/video"}

    async def _consents(self, request_id: str, uids: Sequence[str]) -> dict[str, dict]:
        if not uids:
            return {}
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE request_id = ? AND clip_uid IN "
            f"({', '.join('?' * len(uids))}) AND state IN ({', '.join('?' * len(LIVE))})",
            (request_id, *uids, *LIVE))
        return {r[2]: _consent_view(r) for r in rows}

    async def consent(self, request_id: str, uid: str, *, owner: str, role: str, subject: str,
                      choice: Any = REDACTED) -> dict:
        """The owner says yes for one clip: a signed receipt, a hold and an audit entry, then the bundle is built."""
        if choice not in (REDACTED, ORIGINAL):
            raise RequestError(f"choice: expected {REDACTED!r} (faces and plates blurred) or {ORIGINAL!r}")
        request = await self._open_request(request_id)
        await self.registry.require(request.agency)
        clip = await self.clips.get(uid)
        if clip.owner != owner:
            raise ClipNotFound(f"clip {uid!r} not found")
        if not self.matches(request, clip):
            raise Conflict(f"clip {uid} does not match request {request_id} (place or time)")
        receipt = sign_consent(self.key, request_id=request_id, clip_sha256=clip.sha256, role=role,
                               subject=subject, choice=choice)
        bundle_uid = secrets.token_hex(16)
        async with self.db.write() as conn:
            # Checked again in the transaction: a revocation or refusal that landed meanwhile wins.
            if not await conn.execute_fetchall(
                    "SELECT 1 FROM agency_requests r JOIN agencies a ON a.key = r.agency WHERE r.id = ? AND "
                    "r.status = 'open' AND r.expires > ? AND a.revoked IS NULL", (request_id, time.time())):
                raise Conflict(f"request {request_id} is no longer open here (expired, refused or its agency revoked)")
            if await conn.execute_fetchall(
                    f"SELECT 1 FROM consents WHERE request_id = ? AND clip_uid = ? AND state IN "
                    f"({', '.join('?' * len(LIVE))})", (request_id, uid, *LIVE)):
                raise Conflict(f"clip {uid} is already shared for this request; withdraw first to change the choice")
            cursor = await conn.execute(
                "INSERT INTO consents (request_id, clip_uid, clip_id, owner, choice, receipt, created, state, "
                "bundle_uid) VALUES (?, ?, ?, ?, ?, ?, ?, 'building', ?)",
                (request_id, uid, clip.id, owner, choice, json.dumps(receipt), int(time.time()), bundle_uid))
            consent_id = cursor.lastrowid
            held = await conn.execute(
                "INSERT INTO holds (reason, ref, start, end, created, clip_id, camera, note) SELECT 'consent', ?, "
                "?, ?, ?, id, camera, ? FROM clips WHERE id = ? AND state = 'ready'",
                (bundle_uid, int(clip.start), int(clip.end) + 1, int(time.time()),
                 f"shared with the agency for case {request.case_number}"[:200], clip.id))
            if held.rowcount == 0:
                raise ClipNotFound(f"clip {uid!r} not found")
            await self.audit.append("consent", agency=request.agency, request_id=request_id, clip=uid,
                                    actor=role, detail={"choice": choice, "clip_sha256": clip.sha256}, conn=conn)
        self._queue.put_nowait(consent_id)
        return await self._consent_by_id(consent_id)

    async def withdraw(self, request_id: str, uid: str, *, owner: str, role: str) -> dict:
        """Withdraw a consent until the agency has downloaded the bundle (then Conflict)."""
        rows = await self.db.reader.execute_fetchall(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE request_id = ? AND clip_uid = ? AND owner = ? AND "
            f"state IN ({', '.join('?' * len(LIVE))})", (request_id, uid, owner, *LIVE))
        if not rows:
            raise NotFound(f"clip {uid} is not shared for request {request_id}")
        consent = _consent_view(rows[0])
        agency = (await self._request_row(request_id))["agency"]
        async with self.db.write() as conn:
            if not await self._end(conn, consent["id"], consent["bundle_uid"], "withdrawn", WITHDRAWABLE):
                raise Conflict("the agency has already downloaded this clip's bundle; it can no longer be withdrawn")
            await self.audit.append("withdrawal", agency=agency, request_id=request_id, clip=uid, actor=role,
                                    conn=conn)
        self._unlink(consent["bundle_uid"])
        await self.disclose(request_id)
        return await self._consent_by_id(consent["id"])

    async def _end(self, conn: Any, consent_id: int, bundle_uid: str, state: str,
                   allowed: Sequence[str] = WITHDRAWABLE) -> bool:
        cursor = await conn.execute(
            f"UPDATE consents SET state = ?, ended = ? WHERE id = ? AND state IN ({', '.join('?' * len(allowed))})",
            (state, int(time.time()), consent_id, *allowed))
        if cursor.rowcount == 0:
            return False
        await conn.execute("UPDATE holds SET released = ? WHERE reason = 'consent' AND ref = ? AND released IS NULL",
                           (int(time.time()), bundle_uid))
        return True

    async def _consent_by_id(self, consent_id: int) -> dict:
        rows = await self.db.reader.execute_fetchall(f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE id = ?",
                                                     (consent_id,))
        return _consent_view(rows[0])

    # -- bundles ------------------------------------------------------------------------------------------------

    def bundle_path(self, bundle_uid: str) -> Path:
        return self.bundles_dir / f"{bundle_uid}{SUFFIX}"

    def _unlink(self, bundle_uid: str) -> None:
        self.bundle_path(bundle_uid).unlink(missing_ok=True)

    async def _build_forever(self) -> None:
        while True:
            consent_id = await self._queue.get()
            self.building = consent_id
            try:
                await self._build(consent_id)
            except Exception:
                log.exception("building a bundle failed", extra={"consent": consent_id})
            finally:
                self.building = None

    async def _build(self, consent_id: int) -> None:
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.state, c.bundle_uid, c.clip_uid, c.choice, c.receipt, r.document FROM consents c "
            "JOIN agency_requests r ON r.id = c.request_id WHERE c.id = ?", (consent_id,))
        if not rows or rows[0][0] != "building":
            return
        _, bundle_uid, uid, choice, receipt, document = rows[0]
        request = _parsed(document)
        path = self.bundle_path(bundle_uid)
        path.unlink(missing_ok=True)  # a bundle a crash left before its row said so is built again
        try:
            clip = await self.clips.get(uid)
            place = self._location(clip.camera) or ("0", "0")
            camera = self.cameras.get(clip.camera)
            info, redaction = await asyncio.get_running_loop().run_in_executor(
                None, self._make, path, clip, camera, place, request, json.loads(receipt), choice)
        except Exception as exc:
            error = _nfc(str(exc) or type(exc).__name__)
            async with self.db.write() as conn:
                cursor = await conn.execute("UPDATE consents SET state = 'failed', error = ? WHERE id = ? AND "
                                            "state = 'building'", (error[:500], consent_id))
                if cursor.rowcount:
                    await self.audit.append("bundle_failed", agency=request.agency, request_id=request.id, clip=uid,
                                            detail={"error": error[:300]}, conn=conn)
            log.warning("bundle failed", extra={"consent": consent_id, "error": error})
            return
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE consents SET state = 'ready', bundle_size = ?, bundle_sha256 = ?, redaction = ? "
                "WHERE id = ? AND state = 'building'", (info.size, info.sha256, redaction, consent_id))
            if cursor.rowcount:
                await self.audit.append("bundle_built", agency=request.agency, request_id=request.id, clip=uid,
                                        detail={"bundle": bundle_uid, "choice": choice, "size": info.size,
                                                "sha256": info.sha256, "redaction": redaction or ""}, conn=conn)
        if not cursor.rowcount:  # withdrawn while it was being built
            path.unlink(missing_ok=True)
            return
        await self.disclose(request.id)
        if self.notify is not None:
            await self.notify("consent", {"request_id": request.id, "clip": uid, "state": "ready"}, MANAGERS)

    def _make(self, path: Path, clip: ClipRow, camera: Any, place: tuple[str, str], request: FootageRequest,
              receipt: dict, choice: str) -> tuple[Any, str | None]:
        """Redact if asked, then build the bundle (blocking; in an executor)."""
        from node.sharing.redact import redact_clip

        source, redaction, redacted = self.clips.path(clip.file), None, None
        try:
            if choice == REDACTED:
                redacted = self.bundles_dir / f".{path.stem}.redacted.mp4"
                result = redact_clip(source, redacted, privacy_masks=camera.privacy_masks if camera else ())
                source, redaction = result.path, result.method
            info = build_bundle(
                path, video_path=source, consent=receipt, node_signing_key=self.key,
                agency_verify_key=request.agency, request_id=request.id, case_number=request.case_number,
                camera_id=clip.camera, camera_name=self._clip_view(clip)["camera_name"], latitude=place[0],
                longitude=place[1], clip_start=clip.start, clip_end=clip.end, original_sha256=clip.sha256,
                original_size=clip.size, redaction_method=redaction)
            return info, redaction
        finally:
            if redacted is not None:
                redacted.unlink(missing_ok=True)

    async def disclose(self, request_id: str) -> None:
        """Tell peers (and so the agency, wherever it asks) how many bundles this node holds for the request."""
        if self.publish is None:
            return
        row = await self._request_row(request_id)
        (count,), = await self.db.reader.execute_fetchall(
            "SELECT COUNT(*) FROM consents WHERE request_id = ? AND state IN ('ready', 'downloaded')", (request_id,))
        ttl = max(60, int(row["expires"] - time.time()) + self.config.agencies.hold_days * 86400)
        body = {"request_id": request_id, "agency": row["agency"], "bundles": count}
        try:
            event = await self.publish(DISCLOSURE_KIND, body, ttl=min(ttl, DISCLOSURE_TTL))
            await self.note_disclosure(self.node_key, event.seq, body, event.ts)
        except Exception:
            log.exception("publishing a disclosure count failed", extra={"request": request_id})

    async def note_disclosure(self, author: str, seq: int, body: dict, at: int) -> None:
        """Remember a node's latest disclosure count for a request (from its signed event)."""
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO disclosures (request_id, node, agency, bundles, seq, at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (request_id, node) DO UPDATE SET bundles = excluded.bundles, seq = excluded.seq, "
                "at = excluded.at WHERE excluded.seq > disclosures.seq",
                (body["request_id"], author, body["agency"], body["bundles"], seq, at))

    # -- agencies -----------------------------------------------------------------------------------------------

    async def agency_view(self, agency_key: str, request_id: str,
                          urls: Callable[[str], Awaitable[str | None]] | None = None) -> dict:
        """One of this agency's requests as the agency sees it: its fields and the disclosures known here."""
        row = await self._request_row(request_id)
        if row is None or row["agency"] != agency_key:
            raise NotFound(f"no request {request_id!r} of this agency here")
        request = _parsed(row["document"])
        rows = await self.db.reader.execute_fetchall(
            "SELECT node, bundles, at FROM disclosures WHERE request_id = ? AND agency = ? AND bundles > 0 "
            "ORDER BY node", (request_id, agency_key))
        disclosures = [{"node": node, "bundles": bundles, "at": at,
                        "url": (await urls(node)) if urls else None} for node, bundles, at in rows]
        return request.public() | {"contact": request.contact, "status": row["status"], "refusal": row["refusal"],
                                   "disclosures": disclosures}

    async def agency_requests(self, agency_key: str, urls: Callable[[str], Awaitable[str | None]] | None = None
                              ) -> list[dict]:
        rows = await self.db.reader.execute_fetchall(
            f"SELECT id FROM agency_requests WHERE agency = ? ORDER BY received DESC LIMIT {MAX_LISTED}",
            (agency_key,))
        return [await self.agency_view(agency_key, r[0], urls) for r in rows]

    async def agency_bundles(self, agency_key: str) -> list[dict]:
        """Bundles on this node made for this agency that it may download."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.bundle_uid, c.request_id, r.case_number, c.bundle_size, c.bundle_sha256, c.created, "
            "c.downloaded FROM consents c JOIN agency_requests r ON r.id = c.request_id WHERE r.agency = ? AND "
            "c.state IN ('ready', 'downloaded') ORDER BY c.id", (agency_key,))
        return [{"id": r[0], "request_id": r[1], "case_number": r[2], "size": r[3], "sha256": r[4],
                 "created": r[5], "downloaded": r[6], "node": self.node_key,
                 "url": f"/api/agency/bundles/{r[0]}"} for r in rows]

    async def open_bundle(self, agency_key: str, bundle_uid: str) -> Path:
        """The bundle file for a download by its agency; the download is recorded first (NotFound otherwise)."""
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.id, c.request_id, c.clip_uid, c.state FROM consents c JOIN agency_requests r ON "
            "r.id = c.request_id WHERE c.bundle_uid = ? AND r.agency = ?", (bundle_uid, agency_key))
        if not rows or rows[0][3] not in ("ready", "downloaded") or not self.bundle_path(bundle_uid).is_file():
            raise NotFound(f"no bundle {bundle_uid!r} for this agency here")
        consent_id, request_id, uid, _ = rows[0]
        now = int(time.time())
        async with self.db.write() as conn:
            # A first download only while the request is open; once downloaded, again until the hold period ends.
            cursor = await conn.execute(
                "UPDATE consents SET state = 'downloaded', downloads = downloads + 1, "
                "downloaded = COALESCE(downloaded, ?), release_at = COALESCE(release_at, ?) "
                "WHERE id = ? AND (state = 'downloaded' OR (state = 'ready' AND "
                "(SELECT expires FROM agency_requests WHERE id = consents.request_id) > ?))",
                (now, now + self.config.agencies.hold_days * 86400, consent_id, now))
            if cursor.rowcount == 0:
                raise NotFound(f"no bundle {bundle_uid!r} for this agency here")  # withdrawn a moment ago
            await self.audit.append("download", agency=agency_key, request_id=request_id, clip=uid,
                                    actor="agency", detail={"bundle": bundle_uid}, conn=conn)
        return self.bundle_path(bundle_uid)

    # -- holds --------------------------------------------------------------------------------------------------

    def _retention_over(self, clip: ClipRow, now: float) -> bool:
        if clip.is_upload:
            return clip.created + self.config.cameras.upload_retention_days * 86400 <= now
        config = self.cameras.get(clip.camera)
        return clip.end + (config.retention_days if config else 7) * 86400 <= now

    async def tick(self, now: float | None = None) -> None:
        """End undownloaded consents of expired requests; after the hold period, delete bundles, release holds and
        purge what retention would already have purged."""
        now = time.time() if now is None else now
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.id, c.bundle_uid, c.request_id, c.clip_uid, r.agency FROM consents c JOIN agency_requests r "
            "ON r.id = c.request_id WHERE c.state IN ('building', 'ready', 'failed') AND r.expires <= ?", (now,))
        changed = set()
        for consent_id, bundle_uid, request_id, uid, agency in rows:
            async with self.db.write() as conn:
                ended = await self._end(conn, consent_id, bundle_uid, "expired")
                if ended:
                    await self.audit.append("bundle_expired", agency=agency, request_id=request_id, clip=uid,
                                            detail={"reason": "the request expired before the agency downloaded"},
                                            conn=conn)
            if ended:  # not if a download won the race: the agency has it, and the hold period runs
                self._unlink(bundle_uid)
                changed.add(request_id)
        rows = await self.db.reader.execute_fetchall(
            "SELECT c.id, c.bundle_uid, c.request_id, c.clip_uid, r.agency, c.state FROM consents c JOIN "
            "agency_requests r ON r.id = c.request_id WHERE (c.state = 'downloaded' AND c.release_at <= ?) "
            "OR c.state = 'closed'", (now,))
        for consent_id, bundle_uid, request_id, uid, agency, state in rows:
            if state == "downloaded":
                async with self.db.write() as conn:
                    await conn.execute("UPDATE consents SET state = 'closed' WHERE id = ?", (consent_id,))
                self._unlink(bundle_uid)
                changed.add(request_id)
            try:
                clip = await self.clips.get(uid)
            except ClipNotFound:
                clip = None
            if clip is not None and not self._retention_over(clip, now):
                continue  # held on until its own retention has run out
            async with self.db.write() as conn:
                # Releasing the hold, marking the clip for purging and logging both are one transaction: the log
                # never misses a purge (a crash after it is finished by the clip index's reconcile()).
                if not await self._end(conn, consent_id, bundle_uid, "purged", ("closed",)):
                    continue
                await self.audit.append("hold_released", agency=agency, request_id=request_id, clip=uid,
                                        detail={"bundle": bundle_uid}, conn=conn)
                # Not purged if something else holds it (SOS, the manager, another request): that hold decides.
                purging = clip is not None and await self.clips.mark_purging(clip, conn)
                if purging:
                    await self.audit.append("clip_purged", agency=agency, request_id=request_id, clip=uid,
                                            detail={"sha256": clip.sha256}, conn=conn)
            if purging:
                await self.clips.finish_purge(clip, "shared clip: hold period over")
        for request_id in changed:
            await self.disclose(request_id)

    # -- transparency -------------------------------------------------------------------------------------------

    async def transparency(self) -> dict:
        """What residents may read: the log's signed head, counts per agency and month, every request's fields."""
        agencies = {a.key: a for a in await self.registry.list()}
        names = {k: a.name for k, a in agencies.items()}
        rows = await self.db.reader.execute_fetchall(
            "SELECT r.document, r.status, r.received, "
            "(SELECT COUNT(*) FROM consents c WHERE c.request_id = r.id AND c.bundle_sha256 IS NOT NULL "
            " AND c.state NOT IN ('withdrawn', 'expired')), "
            "(SELECT COUNT(*) FROM consents c WHERE c.request_id = r.id AND c.downloaded IS NOT NULL) "
            "FROM agency_requests r WHERE r.status = 'open' OR (r.status = 'refused' AND r.agency IN "
            f"(SELECT key FROM agencies)) ORDER BY r.received DESC LIMIT {MAX_LISTED}")
        requests = []
        for document, status, received, disclosed, downloaded in rows:
            request = _parsed(document)
            requests.append(request.public() | {"agency_name": names.get(request.agency, ""), "status": status,
                                                "received": received, "disclosed": disclosed,
                                                "downloaded": downloaded})
        return {"node_key": self.node_key, "head": await self.audit.head(),
                "months": await self.audit.monthly(names), "requests": requests}



def _nfc(text: str) -> str:
    """Text from elsewhere (an OS error, a refusal) in the NFC form the signed log requires."""
    return unicodedata.normalize("NFC", text)


def _parsed(document: str) -> FootageRequest:
    """A stored request document (checked when it came in) as a FootageRequest, without the clock or policy."""
    doc = json.loads(document)
    window = doc["window"]
    from node.sharing.requests import parse_time
    return FootageRequest(id=doc["id"], agency=doc["agency"], case_number=doc.get("case_number", ""),
                          reason=doc["reason"], start=parse_time("window.start", window["start"]),
                          end=parse_time("window.end", window["end"]), area=parse_area(doc["area"]),
                          urgency=doc["urgency"], contact=doc["contact"],
                          expires=parse_time("expires", doc["expires"]), created=parse_time("created", doc["created"]),
                          document=doc)
