"""The agency registry: keys a manager registered, or that a configured trust anchor accredited, and revocations.

An agency may call the agency routes and have its requests looked at only while its key is in the registry and not
revoked. A trust anchor (`agencies.trust_anchors`: say a state's police accreditation body) signs credentials; a
node that trusts the anchor registers an agency on its first valid credential. A revocation is final: the same
credential presented again does not bring the agency back.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import aiosqlite
import nacl.exceptions
import nacl.signing

from node.errors import BadRequest, Conflict, Forbidden, NotFound
from node.sharing.requests import format_time, parse_time
from sync import Database, EventRejected, Migration, canonical

CREDENTIAL_CONTEXT = b"nnode-agency-credential-v1:"
CREDENTIAL_FIELDS = {"v", "agency", "name", "jurisdiction", "contact", "issued", "expires", "anchor", "sig"}
MAX_TEXT = 200
_HEX = re.compile(r"[0-9a-f]{64}")

COMPONENT = "agencies"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE agencies (
            key TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            jurisdiction TEXT NOT NULL DEFAULT '',
            contact TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL CHECK (source IN ('manager', 'anchor')),
            anchor TEXT,
            credential TEXT,
            expires INTEGER,
            added INTEGER NOT NULL,
            revoked INTEGER,
            revoke_reason TEXT NOT NULL DEFAULT ''
        )""",
    ]),
]


def cap_sender(key: str) -> str:
    """The CAP <sender> of an agency's alerts: its registered key as an address, so downstream consumers can tell a
    police alert from a manager's, and only that agency can update or cancel it."""
    return f"{key}@agency.nnode"


class AgencyRefused(Forbidden):
    """The key is not a registered agency here, is revoked, or its credential is not valid."""

    reason = "agency"


@dataclass(frozen=True)
class Agency:
    """One registry row."""

    key: str
    name: str
    jurisdiction: str
    contact: str
    source: str
    anchor: str | None
    expires: int | None
    added: int
    revoked: int | None
    revoke_reason: str

    def usable(self, now: float | None = None) -> str | None:
        """Why this agency may not act now, or None if it may."""
        if self.revoked:
            return f"agency {self.name!r} was revoked on {format_time(self.revoked)}" + \
                (f": {self.revoke_reason}" if self.revoke_reason else "")
        if self.expires is not None and self.expires <= (time.time() if now is None else now):
            return f"agency {self.name!r}'s credential expired on {format_time(self.expires)}"
        return None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"cap_sender": cap_sender(self.key)}


_COLUMNS = "key, name, jurisdiction, contact, source, anchor, expires, added, revoked, revoke_reason"


def _text(field: str, value: Any, *, required: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or any(ord(c) < 32 for c in value):
        raise BadRequest(f"{field}: expected text of at most {MAX_TEXT} characters without control characters")
    text = unicodedata.normalize("NFC", value)  # the signed audit log holds NFC text only
    if required and not text.strip():
        raise BadRequest(f"{field}: required")
    return text.strip()


def check_key(field: str, value: Any) -> str:
    """A 64-hex ed25519 public key, lower-cased; BadRequest otherwise."""
    if not isinstance(value, str) or not _HEX.fullmatch(value.strip().lower()):
        raise BadRequest(f"{field}: expected an ed25519 public key as 64 hex digits")
    key = value.strip().lower()
    try:
        nacl.signing.VerifyKey(bytes.fromhex(key))
    except (nacl.exceptions.CryptoError, ValueError):
        raise BadRequest(f"{field}: not a usable ed25519 public key") from None
    return key


def sign_credential(anchor_key: nacl.signing.SigningKey, *, agency: str, name: str, jurisdiction: str,
                    contact: str, days: int = 365, now: float | None = None) -> dict[str, Any]:
    """A credential for `agency`, signed by a trust anchor's key (`nnode agency credential`)."""
    issued = time.time() if now is None else now
    credential = {"v": 1, "agency": check_key("agency", agency), "name": _text("name", name, required=True),
                  "jurisdiction": _text("jurisdiction", jurisdiction), "contact": _text("contact", contact),
                  "issued": format_time(issued), "expires": format_time(issued + days * 86400),
                  "anchor": anchor_key.verify_key.encode().hex()}
    credential["sig"] = anchor_key.sign(CREDENTIAL_CONTEXT + canonical(credential)).signature.hex()
    return credential


def check_credential(credential: Any, anchors: Sequence[str], *, now: float | None = None) -> dict[str, Any]:
    """The credential's fields if an anchor in `anchors` signed it and it is in force; AgencyRefused otherwise."""
    if not isinstance(credential, dict) or set(credential) != CREDENTIAL_FIELDS:
        raise AgencyRefused("agency credential: expected a JSON object with the fields "
                            + ", ".join(sorted(CREDENTIAL_FIELDS)))
    if credential["v"] != 1:
        raise AgencyRefused(f"agency credential: version {credential['v']!r} is not 1")
    try:
        agency, anchor = check_key("agency", credential["agency"]), check_key("anchor", credential["anchor"])
        for field in ("name", "jurisdiction", "contact"):
            _text(field, credential[field], required=field == "name")
        issued = parse_time("issued", credential["issued"])
        expires = parse_time("expires", credential["expires"])
    except BadRequest as exc:
        raise AgencyRefused(f"agency credential: {exc}") from None
    if anchor not in anchors:
        raise AgencyRefused(f"agency credential: signed by {anchor[:16]}…, which is not a trust anchor of this node")
    body = {k: v for k, v in credential.items() if k != "sig"}
    try:
        nacl.signing.VerifyKey(bytes.fromhex(anchor)).verify(CREDENTIAL_CONTEXT + canonical(body),
                                                             bytes.fromhex(credential["sig"]))
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError, EventRejected):
        raise AgencyRefused("agency credential: the anchor's signature does not verify (forged or altered)") from None
    clock = time.time() if now is None else now
    if issued > clock + 300:
        raise AgencyRefused("agency credential: issued in the future")
    if expires <= clock:
        raise AgencyRefused(f"agency credential: expired on {credential['expires']}")
    return credential | {"agency": agency, "anchor": anchor, "_expires": int(expires)}


class Registry:
    """The `agencies` table."""

    def __init__(self, db: Database, anchors: Sequence[str] = ()) -> None:
        self.db = db
        self.anchors = tuple(anchors)

    async def get(self, key: str) -> Agency | None:
        rows = list(await self.db.reader.execute_fetchall(f"SELECT {_COLUMNS} FROM agencies WHERE key = ?", (key,)))
        return Agency(*rows[0]) if rows else None

    def problem(self, agency: Agency) -> str | None:
        """Why `agency` may not act now (revoked, credential expired, its anchor no longer trusted), or None."""
        if agency.source == "anchor" and agency.anchor not in self.anchors and not agency.revoked:
            return f"agency {agency.name!r} was accredited by {(agency.anchor or '')[:16]}…, which is no longer " \
                   "a trust anchor of this node"
        return agency.usable()

    async def require(self, key: str) -> Agency:
        """The agency with `key` if it may act now; AgencyRefused naming why not."""
        agency = await self.get(key)
        if agency is None:
            raise AgencyRefused(f"agency key {key[:16]}… is not registered at this node")
        problem = self.problem(agency)
        if problem:
            raise AgencyRefused(problem)
        return agency

    async def list(self) -> list[Agency]:
        rows = await self.db.reader.execute_fetchall(f"SELECT {_COLUMNS} FROM agencies ORDER BY added, key")
        return [Agency(*row) for row in rows]

    async def names(self) -> dict[str, str]:
        return {a.key: a.name for a in await self.list()}

    async def add(self, *, key: Any, name: Any, jurisdiction: Any = "", contact: Any = "",
                  conn: aiosqlite.Connection) -> Agency:
        """Register an agency by the manager's decision (Conflict if the key is known)."""
        key = check_key("key", key)
        name = _text("name", name, required=True)
        jurisdiction, contact = _text("jurisdiction", jurisdiction), _text("contact", contact)
        if await self.get(key) is not None:
            raise Conflict(f"agency key {key[:16]}… is already registered (revoked agencies stay revoked)")
        await conn.execute("INSERT INTO agencies (key, name, jurisdiction, contact, source, added) "
                           "VALUES (?, ?, ?, ?, 'manager', ?)", (key, name, jurisdiction, contact, int(time.time())))
        return Agency(key, name, jurisdiction, contact, "manager", None, None, int(time.time()), None, "")

    async def accept(self, credential: Any, *, conn: aiosqlite.Connection) -> tuple[Agency, bool]:
        """Register (or refresh) an agency from an anchor's credential; returns it and whether it is new."""
        fields = check_credential(credential, self.anchors)
        known = await self.get(fields["agency"])
        if known is not None and known.revoked:
            raise AgencyRefused(known.usable() or "revoked")
        if known is not None and known.source == "manager":
            return known, False
        text = json.dumps(credential, sort_keys=True)
        await conn.execute(
            "INSERT INTO agencies (key, name, jurisdiction, contact, source, anchor, credential, expires, added) "
            "VALUES (?, ?, ?, ?, 'anchor', ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET name = excluded.name, "
            "jurisdiction = excluded.jurisdiction, contact = excluded.contact, anchor = excluded.anchor, "
            "credential = excluded.credential, expires = excluded.expires",
            (fields["agency"], fields["name"], fields["jurisdiction"], fields["contact"], fields["anchor"], text,
             fields["_expires"], int(time.time())))
        agency = Agency(fields["agency"], fields["name"], fields["jurisdiction"], fields["contact"], "anchor",
                        fields["anchor"], fields["_expires"], known.added if known else int(time.time()), None, "")
        return agency, known is None

    async def revoke(self, key: str, reason: Any, *, conn: aiosqlite.Connection) -> Agency:
        """Revoke an agency for good (NotFound if unknown, Conflict if already revoked)."""
        agency = await self.get(key)
        if agency is None:
            raise NotFound(f"no agency with key {key[:16]}…")
        if agency.revoked:
            raise Conflict(f"agency {agency.name!r} is already revoked")
        reason = _text("reason", reason)
        now = int(time.time())
        await conn.execute("UPDATE agencies SET revoked = ?, revoke_reason = ? WHERE key = ?", (now, reason, key))
        return replace(agency, revoked=now, revoke_reason=reason)
