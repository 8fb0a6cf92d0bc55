"""First-boot claim: a one-time code proves physical possession and makes its holder the node's manager.

The running node keeps one code at a time: in its database only as an scrypt hash (single use, expiring), the code
itself in memory, printed on the console with a terminal QR (stdout, which systemd connects to the attached screen
and not to the journal) and shown as a QR on the setup page to the device's own screen (requests from loopback),
never to the rest of the LAN. A headless unit also writes it, while unclaimed, to the configured `node.claim_file`
(mode 0600; rewritten when the code renews, removed once claimed), which the appliance copies to its boot partition
for a manager to read on a PC, and `nnode claim-code` asks the running node for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import secrets
import sys
import time
from pathlib import Path
from typing import Sequence

import segno

from node.durable import write_private
from node.people.passwords import check_secret, hash_secret
from sync import Database, Migration

log = logging.getLogger("nnode.claim")

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_LENGTH = 12                                   # 60 bits
CODE_TTL = 24 * 3600
SESSION_TTL = 30 * 86_400
MIN_PASSWORD = 12
# A code is renewed this long before it expires: longer than the lifecycle's check interval (300 s), so neither the
# console nor the claim file ever shows an expired code while the node runs.
RENEW_BEFORE = 600

COMPONENT = "claim"   # its own migration counter (node/schema.py)
MIGRATIONS: Sequence[Migration] = [
    (1, [
        """CREATE TABLE claim_codes (
            id INTEGER PRIMARY KEY,
            code_hash TEXT NOT NULL,
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            used INTEGER
        )""",
        """CREATE TABLE managers (
            id INTEGER PRIMARY KEY,
            password_hash TEXT NOT NULL,
            created INTEGER NOT NULL
        )""",
        """CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            subject INTEGER NOT NULL,
            created INTEGER NOT NULL,
            expires INTEGER NOT NULL,
            revoked INTEGER
        )""",
    ]),
]


class ClaimError(Exception):
    """A claim attempt failed; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def new_code() -> str:
    """A random code, grouped for reading aloud, like ABCD-EFGH-JKMN."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def normalise(code: str) -> str:
    """Accept what people type: any case, spaces or dashes, O for 0 and I/L for 1."""
    cleaned = code.upper().replace("-", "").replace(" ", "").replace("O", "0").replace("I", "1").replace("L", "1")
    return "-".join(cleaned[i:i + 4] for i in range(0, len(cleaned), 4))


def setup_url(base: str, code: str | None = None) -> str:
    """The setup page's address at the node's configured address `base`; the code rides in the fragment."""
    url = f"{base}/setup"
    return f"{url}#code={code}" if code else url


class Claims:
    """Claim codes, the manager account and sessions, in the node's database."""

    def __init__(self, db: Database, *, host: str = "", claim_file: Path | None = None) -> None:
        self.db = db
        self.host = host                  # this unit's host name (nnode-XXXX), for the banner and the file
        self.claim_file = claim_file
        self.current: str | None = None   # the live code's plaintext, in memory (and in claim_file) only
        self.current_expires = 0

    async def claimed(self) -> bool:
        """True once a manager exists."""
        rows = await self.db.reader.execute_fetchall("SELECT 1 FROM managers LIMIT 1")
        return bool(rows)

    async def issue(self, *, now: int | None = None) -> str:
        """Replace any earlier code with a new one; returns its plaintext (kept in memory)."""
        now = int(time.time()) if now is None else now
        code = new_code()
        stored = await asyncio.to_thread(hash_secret, code)
        async with self.db.write() as conn:
            await conn.execute("UPDATE claim_codes SET used = ? WHERE used IS NULL", (now,))
            await conn.execute("INSERT INTO claim_codes (code_hash, created, expires) VALUES (?, ?, ?)",
                               (stored, now, now + CODE_TTL))
        self.current, self.current_expires = code, now + CODE_TTL
        return code

    async def ensure_code(self, base: str) -> None:
        """While unclaimed, keep an unexpired code, show it on the console and write it to the claim file; once
        claimed, leave no claim file behind."""
        if await self.claimed():
            await self._forget_file()
            return
        if self.current and self.current_expires > time.time() + RENEW_BEFORE:
            return
        code = await self.issue()
        if self.claim_file is not None:
            await asyncio.to_thread(write_private, self.claim_file,
                                    card(code, base, self.host, self.current_expires).encode())
        print_banner(code, base, self.host)

    async def _forget_file(self) -> None:
        if self.claim_file is not None:
            await asyncio.to_thread(self.claim_file.unlink, missing_ok=True)

    async def claim(self, code: str, password: str, *, now: int | None = None) -> str:
        """Use the code to become the manager; returns a new session token."""
        now = int(time.time()) if now is None else now
        if len(password) < MIN_PASSWORD:
            raise ClaimError(f"the manager password must have at least {MIN_PASSWORD} characters", 400)
        if await self.claimed():
            raise ClaimError("this node is already claimed", 409)
        rows = await self.db.reader.execute_fetchall(
            "SELECT id, code_hash FROM claim_codes WHERE used IS NULL AND expires > ?", (now,))
        match = None
        for row_id, stored in rows:
            if await asyncio.to_thread(check_secret, normalise(code), stored):
                match = row_id
        if match is None:
            raise ClaimError("the claim code is wrong, used or expired; read the current one on the "
                             "node's screen", 403)
        password_hash = await asyncio.to_thread(hash_secret, password)
        token = secrets.token_urlsafe(32)
        async with self.db.write() as conn:
            cursor = await conn.execute("UPDATE claim_codes SET used = ? WHERE id = ? AND used IS NULL", (now, match))
            if cursor.rowcount != 1:
                raise ClaimError("the claim code was just used", 409)
            cursor = await conn.execute("INSERT INTO managers (password_hash, created) VALUES (?, ?)",
                                        (password_hash, now))
            await conn.execute("INSERT INTO sessions (token_hash, role, subject, created, expires) "
                               "VALUES (?, 'manager', ?, ?, ?)",
                               (_token_hash(token), cursor.lastrowid, now, now + SESSION_TTL))
        self.current = None
        await self._forget_file()
        log.info("node claimed by its manager")
        return token


def _token_hash(token: str) -> str:
    # Session tokens are 256 random bits: a fast hash is enough, and a stolen database holds no usable token.
    return hashlib.sha256(token.encode()).hexdigest()


def qr_svg(data: str) -> bytes:
    """An SVG QR code of `data`."""
    out = io.BytesIO()
    segno.make(data, error="m").save(out, kind="svg", scale=6, border=2, dark="#000", light="#fff")
    return out.getvalue()


def terminal_qr(data: str) -> str:
    """A QR code of `data` drawn with block characters, for a terminal."""
    qr = io.StringIO()
    segno.make(data, error="m").terminal(out=qr, compact=True)
    return qr.getvalue()


def card(code: str, base: str, host: str, expires: int) -> str:
    """The claim card's text: which unit, the code, until when, and where to type it."""
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
    unit = f"Neighborhood Node {host} ({host}.local)" if host else "Neighborhood Node"
    return (f"{unit} is not claimed yet.\nClaim code: {code}\nValid until: {until}\n"
            f"Open {setup_url(base)} and type the code; it works once.\n")


def print_banner(code: str, base: str, host: str = "") -> None:
    """The console banner: the unit's host name, the code in text and a terminal QR of the setup link carrying it."""
    unit = f"Neighborhood Node {host} ({host}.local)" if host else "Neighborhood Node"
    print(f"\n{unit} is not claimed yet.\nClaim code: {code}  (valid 24 h; open "
          f"{setup_url(base)} or scan:)\n{terminal_qr(setup_url(base, code))}", file=sys.stdout, flush=True)
