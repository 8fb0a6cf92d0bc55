"""Peer nodes: discovered ones wait as pending until approved; only approved peers may sync."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ._db import Database, Migration

MIGRATIONS: Sequence[Migration] = [
    (2, [
        """CREATE TABLE peers (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            url TEXT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'approved')),
            source TEXT NOT NULL,
            first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL,
            last_sync INTEGER,
            last_error TEXT,
            lag INTEGER
        )""",
    ]),
    # The coarse location a peer's signed descriptor gives ("lat_e6,lon_e6"), for maps.
    (3, ["ALTER TABLE peers ADD COLUMN location TEXT"]),
]

PENDING = "pending"
APPROVED = "approved"


@dataclass(frozen=True, slots=True)
class Peer:
    """A known peer node and what we last learned of it."""

    key: str
    name: str
    url: str | None
    state: str
    source: str
    first_seen: int
    last_seen: int
    last_sync: int | None
    last_error: str | None
    lag: int | None
    location: str | None = None

    @property
    def approved(self) -> bool:
        """True once a manager (or the trust list) approved it."""
        return self.state == APPROVED


class PeerStore:
    """The peers table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, state: str | None = None) -> list[Peer]:
        """All peers, or those in one state, by name then key."""
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        rows = await self.db.reader.execute_fetchall(
            f"SELECT key, name, url, state, source, first_seen, last_seen, last_sync, last_error, lag, location "
            "FROM peers "
            f"{where} ORDER BY name, key", args)
        return [Peer(*r) for r in rows]

    async def get(self, key: str) -> Peer | None:
        """One peer by key."""
        rows = list(await self.db.reader.execute_fetchall(
            "SELECT key, name, url, state, source, first_seen, last_seen, last_sync, last_error, lag, location "
            "FROM peers "
            "WHERE key = ?", (key,)))
        return Peer(*rows[0]) if rows else None

    async def is_approved(self, key: str) -> bool:
        """True if `key` is an approved peer."""
        rows = await self.db.reader.execute_fetchall("SELECT 1 FROM peers WHERE key = ? AND state = ?",
                                                     (key, APPROVED))
        return bool(rows)

    async def seen(self, key: str, *, name: str, url: str | None, source: str, approve: bool = False,
                   location: dict[str, int] | None = None) -> Peer:
        """Record a sighting (mDNS, config); a new peer is pending unless `approve`. Approval is never revoked here."""
        now = int(time.time())
        async with self.db.write() as conn:
            await conn.execute(
                "INSERT INTO peers (key, name, url, state, source, first_seen, last_seen, location) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET name = excluded.name, url = COALESCE(excluded.url, peers.url), "
                "location = COALESCE(excluded.location, peers.location), "
                "last_seen = excluded.last_seen, "
                "state = CASE WHEN excluded.state = 'approved' THEN 'approved' ELSE peers.state END",
                (key, name, url, APPROVED if approve else PENDING, source, now, now, _location(location)))
        peer = await self.get(key)
        assert peer is not None
        return peer

    async def approve(self, key: str, *, url: str | None = None) -> bool:
        """Approve a known peer (optionally setting its URL); False if no such peer."""
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE peers SET state = ?, url = COALESCE(?, url) WHERE key = ?",
                                        (APPROVED, url, key))
            return cursor.rowcount > 0

    async def remove(self, key: str) -> bool:
        """Forget a peer; it must be approved again if it reappears. False if no such peer."""
        async with self.db.write() as conn:
            cursor = await conn.execute("DELETE FROM peers WHERE key = ?", (key,))
            return cursor.rowcount > 0

    async def record_sync(self, key: str, *, error: str | None, lag: int | None = None,
                          lag_unknown: bool = False, problem: str | None = None) -> None:
        """Note the outcome of a sync round with `key` (`lag_unknown`: forget the last lag, none can be told;
        `problem`: the round worked but the peer misbehaved, shown where a failure's error would be)."""
        now = int(time.time())
        shown = None if problem is None else problem[:300]
        async with self.db.write() as conn:
            if error is None and lag_unknown:
                await conn.execute("UPDATE peers SET last_sync = ?, last_error = ?, lag = NULL WHERE key = ?",
                                   (now, shown, key))
            elif error is None:
                await conn.execute("UPDATE peers SET last_sync = ?, last_error = ?, lag = COALESCE(?, lag) "
                                   "WHERE key = ?", (now, shown, lag, key))
            else:
                await conn.execute("UPDATE peers SET last_error = ? WHERE key = ?", (error[:300], key))

    async def resolve(self, prefix: str) -> Peer:
        """The one peer whose key starts with `prefix` (at least 8 hex digits); LookupError otherwise."""
        prefix = prefix.lower()
        if len(prefix) < 8:
            raise LookupError("give at least 8 hex digits of the peer key")
        matches = [p for p in await self.list() if p.key.startswith(prefix)]
        if not matches:
            raise LookupError(f"no peer with a key starting {prefix}")
        if len(matches) > 1:
            raise LookupError(f"{len(matches)} peers have keys starting {prefix}; give more digits")
        return matches[0]


def _location(location: object) -> str | None:
    if (isinstance(location, dict) and type(location.get("lat_e6")) is int and type(location.get("lon_e6")) is int
            and abs(location["lat_e6"]) <= 90_000_000 and abs(location["lon_e6"]) <= 180_000_000):
        return f"{location['lat_e6']},{location['lon_e6']}"
    return None
