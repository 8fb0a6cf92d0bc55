"""The disclosure audit log: every agency request, consent, bundle, download, withdrawal, hold release and purge.

Entries form a hash chain. Entry n holds `prev`, the hash of entry n-1 (64 zeros for entry 1), and its own `hash`,
the sha256 of its canonical JSON (RFC 8785, sync/_canonical) without `hash` and `sig`; `sig` is the node key's
ed25519 signature of HEAD_CONTEXT + hash. Changing, deleting or reordering any stored entry breaks the chain from
that point, and `verify_entries` names the first entry that does not hold.

The chain alone cannot stop whoever holds the node key (a thief of the appliance, or its manager) from rewriting
history and re-hashing and re-signing every entry after the change. So the signed head (seq, hash) is published to
peer nodes as an event: a rewritten log no longer matches a head the neighbours kept, and a truncated log ends
before one of them. Residents read the log; peers hold the evidence that it was not quietly changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Sequence

import aiosqlite
import nacl.exceptions
import nacl.signing

from node.errors import NodeError
from sync import Database, Migration, SyncError, canonical

COMPONENT = "audit"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            action TEXT NOT NULL,
            agency TEXT NOT NULL DEFAULT '',
            request_id TEXT NOT NULL DEFAULT '',
            clip TEXT NOT NULL DEFAULT '',
            actor TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}',
            prev TEXT NOT NULL,
            hash TEXT NOT NULL,
            sig TEXT NOT NULL
        )""",
        "CREATE INDEX audit_by_agency ON audit (agency)",
        "CREATE INDEX audit_by_at ON audit (at)",
    ]),
]

ACTIONS = frozenset({"agency_registered", "agency_revoked", "request_received", "request_refused",
                     "consent", "withdrawal", "bundle_built", "bundle_failed", "download",
                     "hold_released", "clip_purged", "bundle_expired"})
HEAD_CONTEXT = b"nnode-audit-v1:"
GENESIS = "0" * 64
FIELDS = ("seq", "at", "action", "agency", "request_id", "clip", "actor", "detail", "prev", "hash", "sig")
_TEXT = ("agency", "request_id", "clip", "actor")
_COLUMNS = ", ".join(FIELDS)
# monthly() column -> the action it counts
_MONTHLY = {"requests": "request_received", "consents": "consent", "bundles": "bundle_built",
            "downloads": "download", "withdrawals": "withdrawal"}


class AuditError(NodeError):
    """The audit log does not verify; the message names the entry and what is wrong."""

    status = 500
    reason = "audit"

    def __init__(self, message: str, disagreeing: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.disagreeing = tuple(disagreeing)   # the sources whose copies of the heads the log contradicts


def entry_hash(entry: dict[str, Any]) -> str:
    """sha256 hex of canonical(entry without "hash" and "sig")."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k not in ("hash", "sig")})).hexdigest()


def _entry(row: Sequence[Any]) -> dict[str, Any]:
    entry = dict(zip(FIELDS, row))
    entry["detail"] = json.loads(entry["detail"])
    return entry


def nfc(text: str) -> str:
    """Text from elsewhere (an OS error, a refusal) in the NFC form the signed log requires."""
    return unicodedata.normalize("NFC", text)


class AuditLog:
    """The node's append-only audit log in the `audit` table, signed by the node key."""

    def __init__(self, db: Database, key: nacl.signing.SigningKey) -> None:
        self.db = db
        self.key = key
        self.clock = time.time  # tests replace it to write entries in other months

    async def append(self, action: str, *, agency: str = "", request_id: str = "", clip: str = "", actor: str = "",
                     detail: dict[str, Any] | None = None, conn: aiosqlite.Connection | None = None) -> dict[str, Any]:
        """Append one entry (inside the caller's write transaction `conn` if given) and return it."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        fields = {"agency": agency, "request_id": request_id, "clip": clip, "actor": actor}
        for name, value in fields.items():
            if type(value) is not str:
                raise ValueError(f"{name}: expected text, got {type(value).__name__}")
        detail = {} if detail is None else detail
        if type(detail) is not dict:
            raise ValueError(f"detail: expected an object, got {type(detail).__name__}")
        try:
            detail_text = canonical(detail, path="detail").decode()
        except SyncError as exc:
            raise ValueError(str(exc)) from exc
        if conn is None:
            async with self.db.write() as own:
                return await self._append(own, action, fields, detail, detail_text)
        return await self._append(conn, action, fields, detail, detail_text)

    async def _append(self, conn: aiosqlite.Connection, action: str, fields: dict[str, Any], detail: dict[str, Any],
                      detail_text: str) -> dict[str, Any]:
        # Read the previous entry in the same transaction as the insert, so no other writer slips in between.
        row = await (await conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")).fetchone()
        seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
        entry = {"seq": seq, "at": int(self.clock()), "action": action, **fields, "detail": detail, "prev": prev}
        entry["hash"] = entry_hash(entry)
        entry["sig"] = self.key.sign(HEAD_CONTEXT + entry["hash"].encode()).signature.hex()
        await conn.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})",
                           [detail_text if k == "detail" else entry[k] for k in FIELDS])
        return entry

    async def head(self) -> dict[str, Any] | None:
        """The last entry's {"seq", "hash", "at", "sig"}, or None while the log is empty."""
        row = await (await self.db.reader.execute(
            "SELECT seq, hash, at, sig FROM audit ORDER BY seq DESC LIMIT 1")).fetchone()
        return None if row is None else {"seq": row[0], "hash": row[1], "at": row[2], "sig": row[3]}

    async def entries(self, *, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Full entries with seq > after, oldest first, at most `limit`."""
        rows = await (await self.db.reader.execute(
            f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))).fetchall()
        return [_entry(row) for row in rows]

    async def count(self) -> int:
        """How many entries the log holds."""
        row = await (await self.db.reader.execute("SELECT COUNT(*) FROM audit")).fetchone()
        return int(row[0]) if row else 0

    async def monthly(self, names: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Counts per UTC month and agency (requests, consents, bundles, downloads, withdrawals), newest month first."""
        names = names or {}
        sums = ", ".join(f"SUM(action = '{action}')" for action in _MONTHLY.values())
        rows = await (await self.db.reader.execute(
            f"SELECT strftime('%Y-%m', at, 'unixepoch') AS month, agency, {sums} FROM audit WHERE agency != '' "
            "GROUP BY month, agency ORDER BY month DESC, agency")).fetchall()
        return [{"month": row[0], "agency": row[1], "name": names.get(row[1], ""),
                 **{column: row[2 + i] for i, column in enumerate(_MONTHLY)}} for row in rows]


class _Checker:
    """Checks entries one at a time from seq 1, keeping only the previous entry and the heads to compare.

    Each head may name its `source` (whose copy it is: "peer b (3f2a…)"); a head that disagrees with the log is
    remembered against its source, and once the whole log is read the first disagreement (the lowest entry) is
    raised, saying how many sources' copies disagree. A fault in the chain itself is raised at once.
    """

    def __init__(self, node_key: str, heads: Iterable[dict[str, Any]]) -> None:
        try:
            self.key = nacl.signing.VerifyKey(bytes.fromhex(node_key))
        except (ValueError, TypeError, nacl.exceptions.CryptoError) as exc:
            raise ValueError(f"node key: expected 64 hex digits of an ed25519 public key ({exc})") from exc
        self.heads: dict[int, dict[str, set[str]]] = {}   # entry seq -> hash -> sources holding it
        self.sources: set[str] = set()
        try:
            for head in heads:
                seq, digest, source = int(head["seq"]), str(head["hash"]), str(head.get("source", ""))
                self.sources.add(source)
                held = self.heads.setdefault(seq, {})
                held.setdefault(digest, set()).add(source)
                if len(held) > 1:
                    # The node signed two different heads for one entry: only a rewrite makes that possible.
                    raise AuditError(f"entry {seq}: two different heads were published for it (history rewritten)"
                                     + _held_by(held.values()), disagreeing=sorted(self.sources - {""}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"heads: expected objects with an integer seq and a hash ({exc!r})") from exc
        # source -> what is wrong with the log by its copy: (0 rewritten / 1 truncated, entry, message)
        self.bad: dict[str, tuple[int, int, str]] = {}
        self.count = 0
        self.last: dict[str, Any] | None = None

    def check(self, entry: dict[str, Any]) -> None:
        expected = self.count + 1
        seq = entry.get("seq") if isinstance(entry, dict) else None
        if type(seq) is not int:
            raise AuditError(f"entry {expected}: malformed (no integer seq)")
        if seq > expected:
            raise AuditError(f"entry {expected} is missing (the log goes on with entry {seq})")
        if seq != expected:
            raise AuditError(f"entry {seq}: out of order after entry {self.count}")
        if set(entry) != set(FIELDS) or type(entry["at"]) is not int or type(entry["detail"]) is not dict \
                or not all(type(entry[k]) is str for k in (*_TEXT, "action", "prev", "hash", "sig")):
            raise AuditError(f"entry {seq}: malformed (fields or their types are not those of an audit entry)")
        try:
            content = entry_hash(entry)
        except SyncError as exc:
            raise AuditError(f"entry {seq}: malformed ({exc})") from exc
        if content != entry["hash"]:
            raise AuditError(f"entry {seq}: hash does not match its content (altered)")
        if entry["prev"] != (self.last["hash"] if self.last else GENESIS):
            raise AuditError(f"entry {seq}: prev does not link to entry {seq - 1}" if seq > 1
                             else f"entry {seq}: prev is not the start of a log")
        try:
            self.key.verify(HEAD_CONTEXT + entry["hash"].encode(), bytes.fromhex(entry["sig"]))
        except (ValueError, nacl.exceptions.CryptoError) as exc:
            raise AuditError(f"entry {seq}: signature does not verify") from exc
        for digest, sources in self.heads.get(seq, {}).items():
            if digest != entry["hash"]:
                for source in sources:
                    self.bad.setdefault(source, (0, seq, f"entry {seq} differs from the head published to peers "
                                                         "(history rewritten)"))
        if entry["action"] not in ACTIONS:
            raise AuditError(f"entry {seq}: unknown action {entry['action']!r}")
        self.count = seq
        self.last = entry

    def result(self) -> dict[str, Any]:
        beyond: dict[str, int] = {}
        for seq, held in self.heads.items():
            if seq > self.count:
                for source in set().union(*held.values()):
                    beyond[source] = max(beyond.get(source, 0), seq)
        for source, seq in beyond.items():
            if source not in self.bad:
                self.bad[source] = (1, seq, f"published head {seq} is beyond the log's last entry {self.count} "
                                            "(history truncated)")
        if self.bad:
            *_, problem = min(self.bad.values())
            named = sorted(self.bad) if any(self.bad) else []
            copies = f"; {len(self.bad)} of {len(self.sources)} copies disagree: {', '.join(named)}" if named else ""
            raise AuditError(problem + copies, disagreeing=named)
        head = None if self.last is None else {k: self.last[k] for k in ("seq", "hash", "at", "sig")}
        return {"entries": self.count, "head": head, "heads_checked": len(self.heads)}


def _held_by(groups: Iterable[set[str]]) -> str:
    named = [", ".join(sorted(g)) for g in groups if any(g)]
    return f" (held by: {'; '.join(named)})" if named else ""


def verify_entries(entries: Iterable[dict[str, Any]], node_key: str, *,
                   heads: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Check a whole log from seq 1 (links, hashes, signatures, published heads); AuditError at the first fault."""
    checker = _Checker(node_key, heads)
    for entry in entries:
        checker.check(entry)
    return checker.result()


def _verify_file(db_path: Path, node_key: str, heads: Iterable[dict[str, Any]]) -> dict[str, Any]:
    checker = _Checker(node_key, heads)
    try:
        conn = sqlite3.connect(Path(db_path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise AuditError(f"{db_path}: cannot open the database read-only: {exc}") from exc
    try:
        conn.execute("PRAGMA query_only = ON")
        for row in conn.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq"):  # the cursor streams rows
            try:
                entry = _entry(row)
            except (ValueError, TypeError) as exc:
                raise AuditError(f"entry {row[0]}: detail is not JSON (altered)") from exc
            checker.check(entry)
    except sqlite3.Error as exc:
        raise AuditError(f"{db_path}: cannot read the audit table: {exc}") from exc
    finally:
        conn.close()
    return checker.result()


async def verify_database(db_path: Path, node_key: str, heads: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """Verify the audit table of a database file, opened read-only and read in a thread, as verify_entries does."""
    return await asyncio.to_thread(_verify_file, db_path, node_key, list(heads))
