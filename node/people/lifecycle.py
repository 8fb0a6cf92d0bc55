"""The people feature's lifecycle: the claim code and the accounts of residents and the manager."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

from aiohttp import web

from node.identity import host_name, node_id
from node.keys import ACCOUNTS, CLAIMS, CONFIG, DB, KEY, SCHEDULER, SIGN_IN_LIMITER
from node.names import public_url
from node.people.accounts import Accounts
from node.people.claim import Claims
from node.periodic import Jobs
from sync import RateLimiter

CLAIM_CODE_CHECK = 300.0   # seconds between checks that an unclaimed node shows a fresh claim code


async def ctx(app: web.Application) -> AsyncIterator[None]:
    """Make the claim and account stores; keep a fresh claim code while the node is unclaimed."""
    db = app[DB]
    config = app[CONFIG]
    claim_file = Path(config.node.claim_file) if config.node.claim_file else None
    claims = app[CLAIMS] = Claims(db, host=host_name(node_id(app[KEY])), claim_file=claim_file)
    app[ACCOUNTS] = Accounts(db)
    # Codes and tokens are unguessable; this keeps scrypt (password sign-in) from being used to load the node.
    app[SIGN_IN_LIMITER] = RateLimiter(rate=10 / 60, burst=20)
    base = public_url(config)

    async def claim_code() -> None:
        await claims.ensure_code(base)
    await claim_code()
    jobs = Jobs(app[SCHEDULER], "people")
    jobs.every(CLAIM_CODE_CHECK, claim_code, name="claim-code")
    try:
        yield
    finally:
        await jobs.close()
