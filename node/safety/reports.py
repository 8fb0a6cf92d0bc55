"""Residents' reports, after Nextdoor's anti-profiling design, and their moderation.

The form asks what happened first. Describing a person needs at least two details other than race or ethnicity,
and race alone is refused, because a description that fits half the neighborhood helps nobody and hurts many.
The free text is screened with the same rule (node/safety/fairness.py): a race or ethnicity word about a person
with too few other details is refused with the reason; with enough, the report is held for the manager's review, and
so is any report that describes a person while `reports.hold_person_reports` is on. A held report is seen by its
reporter and the manager only, with why it was held, until the manager lets it into the building.
A report stays in the building (residents see it, without the reporter's identity) unless the manager shares it
with the neighborhood, as a signed `report` event with neither the reporter nor the photo, or hides it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import struct
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from node.errors import BadRequest, NotFound, TooLarge
from node.safety.fairness import screen
from node.sql import inserted_id
from sync import Database, Event, Migration, require_fields

REPORT = "report"
REPORT_TTL = 30 * 86_400
CATEGORIES = ("suspicious-activity", "crime", "safety-hazard", "lost-and-found", "other")
PERSON_DETAILS = ("clothing", "hair", "age", "height", "build", "shoes", "features", "vehicle")
RACE = "race"
MIN_PERSON_DETAILS = 2
MAX_WHAT, MIN_WHAT = 2000, 10
MAX_FIELD = 200
PHOTO_MAX_SIDE = 1600      # photos are scaled down to this and re-encoded, which also drops their metadata (GPS)
MAX_PHOTO_PIXELS = 50_000_000   # read from the header before decoding: a small file can claim a huge image

COMPONENT = "reports"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            resident_id INTEGER,
            manager INTEGER,
            created INTEGER NOT NULL,
            category TEXT NOT NULL,
            what TEXT NOT NULL,
            place TEXT NOT NULL DEFAULT '',
            happened TEXT NOT NULL DEFAULT '',
            person TEXT,
            photo TEXT,
            status TEXT NOT NULL DEFAULT 'building' CHECK (status IN ('building', 'shared', 'hidden')),
            reviewed INTEGER,
            event_id TEXT
        )""",
    ]),
    (2, [
        # Held: seen only by the reporter and the manager, with the reason, until the manager decides.
        "ALTER TABLE reports ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE reports ADD COLUMN held_reason TEXT NOT NULL DEFAULT ''",
    ]),
]


def _text(fields: dict[str, Any], name: str, limit: int) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"field '{name}' must be text")
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"field '{name}' must hold at most {limit} characters")
    return value


def check_person(person: dict[str, str]) -> dict[str, str] | None:
    """Apply the description rule to a person's details; returns the cleaned description or None (no person)."""
    if not any(person.values()):
        return None
    details = [name for name in PERSON_DETAILS if person.get(name)]
    if len(details) < MIN_PERSON_DETAILS:
        if person.get(RACE):
            raise BadRequest("race or ethnicity alone does not describe a person: add at least two other details "
                             "(clothing, hair, age, height, build, shoes, distinguishing features or vehicle), or "
                             "leave the person out")
        raise BadRequest(f"describing a person needs at least {MIN_PERSON_DETAILS} details (clothing, hair, age, "
                         "height, build, shoes, distinguishing features or vehicle)")
    return {name: value for name, value in person.items() if value}


def check_report(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate a report's fields (what happened first); returns them cleaned, or raises BadRequest naming one."""
    what = _text(fields, "what", MAX_WHAT)
    if len(what) < MIN_WHAT:
        raise BadRequest(f"field 'what': say what happened first, in at least {MIN_WHAT} characters")
    category = fields.get("category") or "other"
    if category not in CATEGORIES:
        raise BadRequest(f"field 'category' must be one of {', '.join(CATEGORIES)}")
    happened = _text(fields, "when", 40)
    if happened:
        try:
            datetime.fromisoformat(happened)
        except ValueError:
            raise BadRequest(f"field 'when' must be a date and time like 2026-11-23T21:40, got {happened!r}") \
                from None
    person = check_person({name: _text(fields, f"person_{name}", MAX_FIELD) for name in (*PERSON_DETAILS, RACE)})
    where = _text(fields, "where", MAX_FIELD)
    texts = {"what": what, "where": where} | {f"person_{k}": v for k, v in (person or {}).items() if k != RACE}
    screening = screen(texts, person)
    if refusal := screening.refusal():
        raise BadRequest(refusal)
    return {"category": category, "what": what, "where": where, "when": happened, "person": person,
            "screening": screening}


def validate_report_event(body: Any) -> None:
    """A shared report as it travels between nodes: the same rules, and no reporter identity."""
    require_fields(body, {"category": str, "what": str, "where": str, "when": str, "created": int},
                   {"person": dict})
    fields = {k: body[k] for k in ("category", "what", "where", "when")}
    person = body.get("person") or {}
    if set(person) - {*PERSON_DETAILS, RACE} or not all(isinstance(v, str) for v in person.values()):
        raise ValueError(f"field 'person' may hold only text details among {', '.join((*PERSON_DETAILS, RACE))}")
    fields.update({f"person_{k}": v for k, v in person.items()})
    try:
        check_report(fields)
    except BadRequest as exc:
        raise ValueError(str(exc)) from exc


def report_message(event: Event) -> dict[str, Any]:
    """A neighborhood report event as the web app shows it."""
    body = event.body_value()
    return {"id": event.id, "source": "neighborhood", "created": body["created"], "category": body["category"],
            "what": body["what"], "where": body["where"], "when": body["when"], "person": body.get("person"),
            "has_photo": False, "status": "shared", "mine": False}


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from a JPEG, PNG or WebP header, without decoding; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "PNG", width, height
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        chunk = data[12:16]
        if chunk == b"VP8 " and len(data) >= 30:
            width, height = struct.unpack("<HH", data[26:30])
            return "WebP", width & 0x3FFF, height & 0x3FFF
        if chunk == b"VP8L" and len(data) >= 25:
            bits = int.from_bytes(data[21:25], "little")
            return "WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X" and len(data) >= 30:
            return "WebP", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        at = 2
        while at + 9 < len(data):
            if data[at] != 0xFF:
                return None
            marker = data[at + 1]
            if marker == 0xFF:          # fill byte
                at += 1
                continue
            length = struct.unpack(">H", data[at + 2:at + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):   # a start-of-frame segment
                height, width = struct.unpack(">HH", data[at + 5:at + 9])
                return "JPEG", width, height
            at += 2 + length
    return None


def _reencode_photo(data: bytes) -> bytes:
    import cv2
    import numpy as np

    size = image_size(data)
    if size is None:
        raise BadRequest("field 'photo': not an image this node can read (JPEG, PNG or WebP)")
    kind, width, height = size
    if width * height > MAX_PHOTO_PIXELS or not width or not height:
        raise BadRequest(f"field 'photo': a {kind} of {width}x{height} pixels is larger than this node accepts "
                         f"({MAX_PHOTO_PIXELS // 1_000_000} megapixels)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadRequest("field 'photo': not an image this node can read (JPEG, PNG or WebP)")
    height, width = image.shape[:2]
    scale = PHOTO_MAX_SIDE / max(height, width)
    if scale < 1:
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise BadRequest("field 'photo': could not be re-encoded")
    return encoded.tobytes()


class Reports:
    """The building's reports and their photos."""

    def __init__(self, db: Database, media: Path, *, hold_person_reports: bool = True) -> None:
        self.db = db
        self.media = media
        self.hold_person_reports = hold_person_reports
        self.moderation = asyncio.Lock()   # held while a decision is made: two quick "share" clicks publish once
        self.decoding = asyncio.Semaphore(1)   # one photo decoded at a time: each may need a lot of memory

    async def add(self, fields: dict[str, Any], photo: bytes | None, *, resident_id: int | None,
                  manager: int | None = None, now: int | None = None) -> dict[str, Any]:
        """Store a validated report (and its re-encoded photo); returns it as its reporter sees it."""
        now = int(time.time()) if now is None else now
        report = check_report(fields)
        held = report["screening"].hold_reason(hold_people=self.hold_person_reports)
        name = None
        if photo:
            async with self.decoding:
                encoded = await asyncio.to_thread(_reencode_photo, photo)
            name = f"{secrets.token_hex(12)}.jpg"
            await asyncio.to_thread(_write_atomic, self.media / name, encoded)
        try:
            async with self.db.write() as conn:
                cursor = await conn.execute(
                    "INSERT INTO reports (resident_id, manager, created, category, what, place, happened, person, "
                    "photo, held, held_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (resident_id, manager, now, report["category"], report["what"], report["where"], report["when"],
                     json.dumps(report["person"]) if report["person"] else None, name, int(bool(held)), held))
        except BaseException:
            if name:
                with contextlib.suppress(FileNotFoundError):
                    (self.media / name).unlink()
            raise
        return await self.get(inserted_id(cursor), resident_id=resident_id, manager=manager is not None)

    async def list(self, *, resident_id: int | None, manager: bool, limit: int = 200) -> list[dict[str, Any]]:
        """Reports the caller may see: the manager all (unreviewed first), residents those not hidden and their own."""
        args: tuple[int | None, ...]
        if manager:
            where, args = "", ()
            order = "(r.reviewed IS NULL) DESC, r.id DESC"
        else:
            where, args = "WHERE (r.status != 'hidden' AND r.held = 0) OR r.resident_id = ?", (resident_id,)
            order = "r.id DESC"
        rows = await self.db.reader.execute_fetchall(
            "SELECT r.id, r.resident_id, r.created, r.category, r.what, r.place, r.happened, r.person, r.photo, "
            f"r.status, r.reviewed, r.event_id, p.unit, p.name, r.manager, r.held, r.held_reason FROM reports r "
            f"LEFT JOIN residents p ON p.id = r.resident_id {where} ORDER BY {order} LIMIT ?", (*args, limit))
        return [self._view(row, resident_id=resident_id, manager=manager) for row in rows]

    async def get(self, report_id: int, *, resident_id: int | None, manager: bool) -> dict[str, Any]:
        """One report the caller may see, or NotFound."""
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT r.id, r.resident_id, r.created, r.category, r.what, r.place, r.happened, r.person, r.photo, "
            "r.status, r.reviewed, r.event_id, p.unit, p.name, r.manager, r.held, r.held_reason FROM reports r "
            "LEFT JOIN residents p ON p.id = r.resident_id WHERE r.id = ?", (report_id,)))
        if not rows or (not manager and (rows[0][9] == "hidden" or rows[0][15]) and rows[0][1] != resident_id):
            raise NotFound(f"no report {report_id}")
        return self._view(rows[0], resident_id=resident_id, manager=manager)

    @staticmethod
    def _view(row: Sequence[Any], *, resident_id: int | None, manager: bool) -> dict[str, Any]:
        report = {"id": row[0], "source": "building", "created": row[2], "category": row[3], "what": row[4],
                  "where": row[5], "when": row[6], "person": json.loads(row[7]) if row[7] else None,
                  "has_photo": bool(row[8]), "status": row[9], "held": bool(row[15]),
                  "mine": not manager and resident_id is not None and row[1] == resident_id}
        if manager or report["mine"]:
            report["held_reason"] = row[16]   # why it waits (or waited) for review: the manager's and the reporter's
        if manager:
            report.update({"queue": row[10] is None, "event": row[11],
                           "reporter": {"unit": row[12], "name": row[13]} if row[1] is not None
                           else {"unit": None, "name": "manager"}})
        return report

    async def photo_path(self, report_id: int, *, resident_id: int | None, manager: bool) -> Path:
        """The file of a report's photo, if the caller may see the report."""
        await self.get(report_id, resident_id=resident_id, manager=manager)
        rows = list(await self.db.reader.execute_fetchall("SELECT photo FROM reports WHERE id = ?", (report_id,)))
        if not rows or not rows[0][0]:
            raise NotFound(f"report {report_id} has no photo")
        return self.media / str(rows[0][0])

    def event_body(self, report: dict[str, Any]) -> dict[str, Any]:
        """What a shared report says to the neighborhood: the report without who made it or its photo."""
        body = {"category": report["category"], "what": report["what"], "where": report["where"],
                "when": report["when"], "created": report["created"]}
        if report["person"]:
            body["person"] = report["person"]
        return body

    async def set_status(self, report_id: int, status: str, *, event_id: str | None = None,
                         now: int | None = None) -> None:
        """Record a moderation decision."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            # Any decision ends the hold: shared or restored it is the building's to see, hidden it stays hidden.
            cursor = await conn.execute(
                "UPDATE reports SET status = ?, reviewed = ?, event_id = ?, held = 0 WHERE id = ?",
                (status, now, event_id, report_id))
            if cursor.rowcount == 0:
                raise NotFound(f"no report {report_id}")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


async def read_limited(part: Any, limit: int, field: str) -> bytes:
    """Read a multipart part, refusing more than `limit` bytes."""
    chunks, size = [], 0
    while chunk := await part.read_chunk(65536):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"field '{field}' is over the limit of {_size(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


def _size(limit: int) -> str:
    return f"{limit / (1024 * 1024):g} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"
