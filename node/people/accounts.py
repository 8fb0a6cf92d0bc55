"""Residents, invites, manager sign-in and sessions: who is calling, and how they came to hold a session.

Invite codes (80 bits) and one-time login links (256 bits) are random enough that a sha256 of them is safe to store;
the manager password, chosen by a person, is stored with scrypt (see passwords.py). A session is a random token in a
cookie; the database holds its sha256 only, so a copy of the database signs nobody in.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Sequence

import aiosqlite

from node.errors import BadRequest, Conflict, Forbidden, NotFound
from node.people.claim import CODE_ALPHABET, SESSION_TTL, normalise
from node.people.passwords import check_secret
from node.sql import inserted_id
from sync import Database, Migration

INVITE_LENGTH = 16            # Crockford base32 characters: 80 bits
INVITE_TTL = 7 * 86_400
LOGIN_LINK_TTL = 15 * 60
MAX_UNIT = 32
MAX_NAME = 80

COMPONENT = "accounts"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE residents (
            id INTEGER PRIMARY KEY,
            unit TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            created INTEGER NOT NULL,
            revoked INTEGER,
            on_call INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE invites (
            id INTEGER PRIMARY KEY,
            code_hash TEXT NOT NULL UNIQUE,
            role TEXT NOT NULL CHECK (role IN ('resident', 'manager')),
            unit TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            used INTEGER,
            revoked INTEGER,
            resident_id INTEGER REFERENCES residents(id)
        )""",
        "CREATE INDEX sessions_subject ON sessions (role, subject)",
    ]),
    (2, [
        # The language each account chose in the app, applied on every device it signs in on (no row: the
        # browser's language decides, then English).
        """CREATE TABLE account_languages (
            role TEXT NOT NULL CHECK (role IN ('resident', 'manager')),
            subject INTEGER NOT NULL,
            language TEXT NOT NULL,
            PRIMARY KEY (role, subject)
        )""",
    ]),
]

LANGUAGES = ("en", "es", "zh")   # the interface's languages (node/web/i18n.js has their catalogues)


def best_language(accept_language: str | None) -> str:
    """The interface language an Accept-Language header asks for first (es-MX is es, zh-Hans-CN is zh), else ""."""
    for part in (accept_language or "")[:1000].split(",")[:32]:
        tag, _, params = part.strip().partition(";")
        if params.strip().replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            continue
        base = tag.strip().lower().split("-")[0]
        if base in LANGUAGES:
            return base
    return ""


@dataclass(frozen=True)
class Session:
    """A live session: its row id, role, subject (manager or resident id) and the resident's details."""

    id: int
    role: str
    subject: int
    unit: str = ""
    name: str = ""
    on_call: bool = False
    language: str = ""   # the account's chosen language ("": none chosen)

    def public(self) -> dict[str, Any]:
        """What the web app is told about its own session."""
        return {"role": self.role, "unit": self.unit or None, "name": self.name or None, "on_call": self.on_call,
                "resident_id": self.subject if self.role == "resident" else None, "language": self.language or None}


@dataclass(frozen=True)
class Invite:
    """A freshly made invite or login link: its plaintext code is shown once and never stored."""

    id: int
    role: str
    unit: str
    name: str
    code: str
    expires: int


def digest(secret: str) -> str:
    """The stored form of a high-entropy secret (session token, invite code, login token)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_invite_code() -> str:
    """A random invite code grouped for reading, like ABCD-EFGH-JKMN-PQRS."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(INVITE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, INVITE_LENGTH, 4))


def _clean(value: Any, field: str, limit: int, *, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise BadRequest(f"field '{field}' must be a string")
    text = " ".join(value.split())
    if required and not text:
        raise BadRequest(f"field '{field}' is required")
    if len(text) > limit:
        raise BadRequest(f"field '{field}' must hold at most {limit} characters")
    return text


class Accounts:
    """Residents, invites, login links and sessions in the node's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- invites and login links -------------------------------------------------------------------------------

    async def invite(self, unit: Any, name: Any = "", *, now: int | None = None) -> Invite:
        """A one-time invite for a resident of `unit`."""
        now = int(time.time()) if now is None else now
        unit = _clean(unit, "unit", MAX_UNIT, required=True)
        name = _clean(name, "name", MAX_NAME, required=False)
        code = new_invite_code()
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO invites (code_hash, role, unit, name, created, expires) VALUES (?, 'resident', ?, ?, ?, ?)",
                (digest(normalise(code)), unit, name, now, now + INVITE_TTL))
        return Invite(inserted_id(cursor), "resident", unit, name, code, now + INVITE_TTL)

    async def login_link(self, *, now: int | None = None) -> Invite:
        """A one-time manager sign-in token (for `nnode admin-link`)."""
        now = int(time.time()) if now is None else now
        if not await self.db.reader.execute_fetchall("SELECT 1 FROM managers LIMIT 1"):
            raise Conflict("this node has no manager yet: claim it first with the code on its screen")
        token = secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "INSERT INTO invites (code_hash, role, created, expires) VALUES (?, 'manager', ?, ?)",
                (digest(token), now, now + LOGIN_LINK_TTL))
        return Invite(inserted_id(cursor), "manager", "", "", token, now + LOGIN_LINK_TTL)

    async def invites(self, *, now: int | None = None) -> list[dict[str, Any]]:
        """Every resident invite with its state: open, used, revoked or expired."""
        now = int(time.time()) if now is None else now
        rows = await self.db.reader.execute_fetchall(
            "SELECT id, unit, name, created, expires, used, revoked, resident_id FROM invites "
            "WHERE role = 'resident' ORDER BY id DESC")
        return [{"id": r[0], "unit": r[1], "name": r[2], "created": r[3], "expires": r[4], "resident_id": r[7],
                 "state": "revoked" if r[6] else "used" if r[5] else "expired" if r[4] <= now else "open"}
                for r in rows]

    async def revoke_invite(self, invite_id: int, *, now: int | None = None) -> None:
        """Make an unused invite unusable."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE invites SET revoked = ? WHERE id = ? AND role = 'resident' AND used IS NULL "
                "AND revoked IS NULL", (now, invite_id))
            if cursor.rowcount == 0:
                raise NotFound(f"no open invite {invite_id}")

    async def redeem(self, code: Any, name: Any = "", *, now: int | None = None) -> tuple[str, Session]:
        """Use a resident invite: creates the resident and a session; returns (token, session)."""
        now = int(time.time()) if now is None else now
        if not isinstance(code, str) or not code.strip():
            raise BadRequest("field 'code' is required: the invite code from your building's manager")
        name = _clean(name, "name", MAX_NAME, required=False)
        async with self.db.write() as conn:
            rows = list(await conn.execute_fetchall(
                "SELECT id, unit, name FROM invites WHERE code_hash = ? AND role = 'resident' AND used IS NULL "
                "AND revoked IS NULL AND expires > ?", (digest(normalise(code)), now)))
            if not rows:
                raise Forbidden("this invite code is wrong, used, revoked or expired; ask your building's manager "
                                "for a new one")
            invite_id, unit, invited_name = rows[0]
            cursor = await conn.execute("INSERT INTO residents (unit, name, created) VALUES (?, ?, ?)",
                                        (unit, name or invited_name, now))
            resident = inserted_id(cursor)
            await conn.execute("UPDATE invites SET used = ?, resident_id = ? WHERE id = ?", (now, resident, invite_id))
            token, session_id = await _insert_session(conn, "resident", resident, now)
        return token, Session(session_id, "resident", resident, unit, name or invited_name)

    # -- managers --------------------------------------------------------------------------------------------

    async def login_password(self, password: Any, *, now: int | None = None) -> tuple[str, Session]:
        """Sign the manager in with their password."""
        now = int(time.time()) if now is None else now
        if not isinstance(password, str) or not password:
            raise BadRequest("field 'password' is required")
        rows = await self.db.reader.execute_fetchall("SELECT id, password_hash FROM managers")
        for manager_id, stored in rows:
            if await asyncio.to_thread(check_secret, password, stored):
                async with self.db.write() as conn:
                    token, session_id = await _insert_session(conn, "manager", manager_id, now)
                return token, Session(session_id, "manager", manager_id)
        raise Forbidden("wrong password")

    async def login_token(self, token: Any, *, now: int | None = None) -> tuple[str, Session]:
        """Sign the manager in with a one-time link from `nnode admin-link`."""
        now = int(time.time()) if now is None else now
        if not isinstance(token, str) or not token:
            raise BadRequest("field 'token' is required")
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE invites SET used = ? WHERE code_hash = ? AND role = 'manager' AND used IS NULL "
                "AND revoked IS NULL AND expires > ?", (now, digest(token), now))
            if cursor.rowcount != 1:
                raise Forbidden("this sign-in link is wrong, used or expired; run `nnode admin-link` again")
            manager = list(await conn.execute_fetchall("SELECT id FROM managers ORDER BY id LIMIT 1"))[0][0]
            session_token, session_id = await _insert_session(conn, "manager", manager, now)
        return session_token, Session(session_id, "manager", manager)

    # -- sessions and residents ------------------------------------------------------------------------------

    async def session(self, token: str | None, *, now: int | None = None) -> Session | None:
        """The live session of `token`, or None (unknown, expired, revoked, or its resident was revoked)."""
        if not token or len(token) > 100:
            return None
        now = int(time.time()) if now is None else now
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT s.rowid, s.role, s.subject, r.unit, r.name, r.on_call, r.revoked, l.language FROM sessions s "
            "LEFT JOIN residents r ON s.role = 'resident' AND r.id = s.subject "
            "LEFT JOIN account_languages l ON l.role = s.role AND l.subject = s.subject "
            "WHERE s.token_hash = ? AND s.revoked IS NULL AND s.expires > ?", (digest(token), now)))
        if not rows:
            return None
        row_id, role, subject, unit, name, on_call, revoked, language = rows[0]
        if role == "resident" and (unit is None or revoked is not None):
            return None
        return Session(row_id, role, subject, unit or "", name or "", bool(on_call), language or "")

    async def set_language(self, session: Session, language: str | None) -> None:
        """Keep `language` as the caller's account's choice (None: forget it, the browser's language decides)."""
        if language is not None and language not in LANGUAGES:
            raise BadRequest(f"field 'language' must be one of {', '.join(LANGUAGES)} or null, got {language!r}")
        async with self.db.write() as conn:
            if language is None:
                await conn.execute("DELETE FROM account_languages WHERE role = ? AND subject = ?",
                                   (session.role, session.subject))
            else:
                await conn.execute(
                    "INSERT INTO account_languages (role, subject, language) VALUES (?, ?, ?) "
                    "ON CONFLICT (role, subject) DO UPDATE SET language = excluded.language",
                    (session.role, session.subject, language))

    async def revoke_session(self, session_id: int, *, now: int | None = None) -> None:
        """End one session."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE sessions SET revoked = ? WHERE rowid = ? AND revoked IS NULL",
                                        (now, session_id))
            if cursor.rowcount == 0:
                raise NotFound(f"no live session {session_id}")

    async def sessions(self, *, now: int | None = None) -> list[dict[str, Any]]:
        """Live sessions with who holds them."""
        now = int(time.time()) if now is None else now
        rows = await self.db.reader.execute_fetchall(
            "SELECT s.rowid, s.role, s.subject, s.created, s.expires, r.unit, r.name FROM sessions s "
            "LEFT JOIN residents r ON s.role = 'resident' AND r.id = s.subject "
            "WHERE s.revoked IS NULL AND s.expires > ? AND (s.role = 'manager' OR r.revoked IS NULL) "
            "ORDER BY s.rowid DESC", (now,))
        return [{"id": r[0], "role": r[1], "subject": r[2], "created": r[3], "expires": r[4],
                 "subject_name": "manager" if r[1] == "manager" else f"{r[5]} {r[6]}".strip()} for r in rows]

    async def residents(self, *, now: int | None = None) -> list[dict[str, Any]]:
        """Every resident with their live session count."""
        now = int(time.time()) if now is None else now
        rows = await self.db.reader.execute_fetchall(
            "SELECT r.id, r.unit, r.name, r.created, r.revoked, r.on_call, "
            "(SELECT COUNT(*) FROM sessions s WHERE s.role = 'resident' AND s.subject = r.id "
            " AND s.revoked IS NULL AND s.expires > ?) FROM residents r ORDER BY r.unit, r.id", (now,))
        return [{"id": r[0], "unit": r[1], "name": r[2], "created": r[3], "revoked": r[4], "on_call": bool(r[5]),
                 "sessions": r[6]} for r in rows]

    async def resident(self, resident_id: int) -> dict[str, Any]:
        """One resident, or NotFound."""
        for resident in await self.residents():
            if resident["id"] == resident_id:
                return resident
        raise NotFound(f"no resident {resident_id}")

    async def revoke_resident(self, resident_id: int, *, now: int | None = None) -> None:
        """Remove a resident: their sessions end at once and they leave the on-call list."""
        now = int(time.time()) if now is None else now
        async with self.db.write() as conn:
            cursor = await conn.execute(
                "UPDATE residents SET revoked = ?, on_call = 0 WHERE id = ? AND revoked IS NULL", (now, resident_id))
            if cursor.rowcount == 0:
                raise NotFound(f"no current resident {resident_id}")
            await conn.execute("UPDATE sessions SET revoked = ? WHERE role = 'resident' AND subject = ? "
                               "AND revoked IS NULL", (now, resident_id))

    async def set_on_call(self, resident_id: int, on_call: Any) -> None:
        """Put a resident on the SOS on-call list, or take them off."""
        if not isinstance(on_call, bool):
            raise BadRequest("field 'on_call' must be true or false")
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE residents SET on_call = ? WHERE id = ? AND revoked IS NULL",
                                        (int(on_call), resident_id))
            if cursor.rowcount == 0:
                raise NotFound(f"no current resident {resident_id}")


async def _insert_session(conn: aiosqlite.Connection, role: str, subject: int, now: int) -> tuple[str, int]:
    token = secrets.token_urlsafe(32)
    cursor = await conn.execute(
        "INSERT INTO sessions (token_hash, role, subject, created, expires) VALUES (?, ?, ?, ?, ?)",
        (digest(token), role, subject, now, now + SESSION_TTL))
    return token, inserted_id(cursor)
