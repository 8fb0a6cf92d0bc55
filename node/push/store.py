"""The devices subscribed to Web Push (the `push_subscriptions` table): one row per device, bound to the session
that subscribed it, with what wakes it.

A subscription lives only as long as its session: a revoked or expired session, or a revoked resident, receives
nothing (the recipients' query joins the accounts' tables read-only, as the session lookup does); signing in again
on the device and subscribing binds it to the new session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from node.people.accounts import Session
from sync import Database, Migration

COMPONENT = "push"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE push_subscriptions (
            id INTEGER PRIMARY KEY,
            endpoint TEXT NOT NULL UNIQUE,
            p256dh TEXT NOT NULL,
            auth TEXT NOT NULL,
            session_id INTEGER NOT NULL,
            role TEXT NOT NULL,
            subject INTEGER NOT NULL,
            min_severity TEXT NOT NULL DEFAULT 'Severe',
            alerts INTEGER NOT NULL DEFAULT 1,
            reports INTEGER NOT NULL DEFAULT 0,
            created INTEGER NOT NULL,
            last_ok INTEGER,
            failures INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX push_by_subject ON push_subscriptions (role, subject)",
    ]),
    # The browser's language when the device subscribed: what its pushes are written in while the account has
    # chosen none (node/people/accounts.py's account_languages wins).
    (2, ["ALTER TABLE push_subscriptions ADD COLUMN language TEXT NOT NULL DEFAULT ''"]),
]

# CAP severities, least to most severe; "Unknown" ranks lowest (a subscriber asking for Minor gets it too).
SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")


def rank(severity: str) -> int:
    """The order of a CAP severity (unknown words rank as Unknown)."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscribed device and its choices, with its session's role and on-call flag as of the query."""

    id: int
    endpoint: str
    p256dh: str
    auth: str
    role: str
    subject: int
    on_call: bool
    min_severity: str
    alerts: bool
    reports: bool
    language: str = "en"   # the account's language, else the browser's when it subscribed, else English

    def public(self) -> dict[str, object]:
        """What the device's owner is told about it (never the keys)."""
        return {"id": self.id, "endpoint": self.endpoint, "min_severity": self.min_severity, "alerts": self.alerts,
                "reports": self.reports, "sos": self.role == "manager" or self.on_call}


_SELECT = ("SELECT p.id, p.endpoint, p.p256dh, p.auth, p.role, p.subject, COALESCE(r.on_call, 0), p.min_severity, "
           "p.alerts, p.reports, COALESCE(l.language, NULLIF(p.language, ''), 'en') "
           "FROM push_subscriptions p JOIN sessions s ON s.rowid = p.session_id "
           "LEFT JOIN residents r ON p.role = 'resident' AND r.id = p.subject "
           "LEFT JOIN account_languages l ON l.role = p.role AND l.subject = p.subject "
           "WHERE s.revoked IS NULL AND s.expires > ? AND (p.role != 'resident' OR (r.id IS NOT NULL AND "
           "r.revoked IS NULL))")


def _row(row: Sequence[object]) -> Subscription:
    return Subscription(int(str(row[0])), str(row[1]), str(row[2]), str(row[3]), str(row[4]), int(str(row[5])),
                        bool(row[6]), str(row[7]), bool(row[8]), bool(row[9]), str(row[10]))


class Subscriptions:
    """Add, list, forget and count subscribed devices."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, session: Session, endpoint: str, p256dh: str, auth: str, *, min_severity: str,
                   alerts: bool, reports: bool, language: str = "") -> int:
        """Subscribe a device for `session` (a device subscribing again, even after signing in anew, replaces its
        row); returns its id."""
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO push_subscriptions (endpoint, p256dh, auth, session_id, role, subject, min_severity, "
                "alerts, reports, created, language) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (endpoint) DO UPDATE SET language = excluded.language, "
                "p256dh = excluded.p256dh, auth = excluded.auth, session_id = excluded.session_id, "
                "role = excluded.role, subject = excluded.subject, min_severity = excluded.min_severity, "
                "alerts = excluded.alerts, reports = excluded.reports, failures = 0",
                (endpoint, p256dh, auth, session.id, session.role, session.subject, min_severity, int(alerts),
                 int(reports), int(time.time()), language))
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT id FROM push_subscriptions WHERE endpoint = ?", (endpoint,)))
        return int(rows[0][0])

    async def count_for(self, role: str, subject: int, *, besides: str = "") -> int:
        """How many devices `role` `subject` has subscribed (not counting the one at `besides`)."""
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT COUNT(*) FROM push_subscriptions WHERE role = ? AND subject = ? AND endpoint != ?",
            (role, subject, besides)))
        return int(rows[0][0])

    async def mine(self, session: Session) -> list[Subscription]:
        """The devices the caller (this resident or the manager) subscribed, on any of their sessions."""
        rows = await self.db.reader.execute_fetchall(
            _SELECT + " AND p.role = ? AND p.subject = ? ORDER BY p.id", (int(time.time()), session.role,
                                                                       session.subject))
        return [_row(row) for row in rows]

    async def recipients(self) -> list[Subscription]:
        """Every device whose session is still live."""
        rows = await self.db.reader.execute_fetchall(_SELECT + " ORDER BY p.id", (int(time.time()),))
        return [_row(row) for row in rows]

    async def delete(self, session: Session, endpoint: str) -> bool:
        """Unsubscribe one of the caller's own devices; False if they have none at `endpoint`."""
        async with self.db.write() as conn:
            cursor = await conn.execute("DELETE FROM push_subscriptions WHERE endpoint = ? AND role = ? AND "
                                        "subject = ?", (endpoint, session.role, session.subject))
        return cursor.rowcount > 0

    async def forget(self, subscription_id: int) -> None:
        """Drop a subscription the push service says is gone (404/410)."""
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM push_subscriptions WHERE id = ?", (subscription_id,))

    async def delivered(self, subscription_id: int, ok: bool) -> None:
        """Record one push's outcome for its device."""
        async with self.db.write() as conn:
            if ok:
                await conn.execute("UPDATE push_subscriptions SET last_ok = ?, failures = 0 WHERE id = ?",
                                   (int(time.time()), subscription_id))
            else:
                await conn.execute("UPDATE push_subscriptions SET failures = failures + 1 WHERE id = ?",
                                   (subscription_id,))

    async def total(self) -> int:
        """How many devices are subscribed."""
        rows = list(await self.db.reader.execute_fetchall("SELECT COUNT(*) FROM push_subscriptions"))
        return int(rows[0][0])
