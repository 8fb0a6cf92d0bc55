"""The tables sync/ owns, migrated as the component "sync"."""

from __future__ import annotations

from ._db import Database
from ._peers import MIGRATIONS as PEER_MIGRATIONS
from ._store import MIGRATIONS as STORE_MIGRATIONS

SCHEMA_COMPONENT = "sync"
SCHEMA_MIGRATIONS = [*STORE_MIGRATIONS, *PEER_MIGRATIONS]


async def setup_schema(db: Database) -> int:
    """Create or upgrade the sync tables; returns the schema version reached."""
    return await db.migrate(SCHEMA_COMPONENT, SCHEMA_MIGRATIONS)
