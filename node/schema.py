"""Every component's tables: each feature numbers its own migrations from 1; this module runs them all.

Each component (a module owning tables) has its own row in `schema_version`, so two features that each add a
migration never collide. `check_components` refuses a component listed twice, a version listed twice, or a gap,
before anything is applied. Databases written before per-component counters had one shared counter, "node", whose
versions 1-11 belonged to the components below in LEGACY order; `migrate_all` converts that row once.
"""

from __future__ import annotations

from typing import Sequence

from node import state
from node.camera import clips
from node.people import accounts, claim
from node.push import store as push
from node.safety import alerts, live, reports, sos
from node.sharing import agencies, audit, desk, heads
from sync import SCHEMA_COMPONENT, SCHEMA_MIGRATIONS, Database, DatabaseError, Migration, SchemaTooNew, setup_schema

Component = tuple[str, Sequence[Migration]]

COMPONENTS: list[Component] = [
    (state.COMPONENT, state.MIGRATIONS),
    (claim.COMPONENT, claim.MIGRATIONS),
    (accounts.COMPONENT, accounts.MIGRATIONS),
    (live.COMPONENT, live.MIGRATIONS),
    (reports.COMPONENT, reports.MIGRATIONS),
    (sos.COMPONENT, sos.MIGRATIONS),
    (alerts.COMPONENT, alerts.MIGRATIONS),
    (clips.COMPONENT, clips.MIGRATIONS),
    (agencies.COMPONENT, agencies.MIGRATIONS),
    (audit.COMPONENT, audit.MIGRATIONS),
    (desk.COMPONENT, desk.MIGRATIONS),
    (heads.COMPONENT, heads.MIGRATIONS),
    (push.COMPONENT, push.MIGRATIONS),
]

# The shared "node" counter's versions 1..11, in order: which component each one created (its version 1).
LEGACY = ["claim", "state", "accounts", "live", "reports", "sos", "alerts", "clips", "agencies", "audit", "desk"]


def check_components(components: Sequence[Component]) -> None:
    """Refuse duplicate components, duplicate versions and gaps: versions must run 1, 2, ... n per component."""
    seen: set[str] = set()
    for name, migrations in components:
        if name in seen:
            raise DatabaseError(f"component {name!r} is listed twice")
        seen.add(name)
        versions = [version for version, _ in migrations]
        if sorted(versions) != list(range(1, len(versions) + 1)):
            raise DatabaseError(f"component {name!r}: migration versions must be 1 to {len(versions)} with no "
                                f"duplicate or gap, got {versions}")


async def _convert_legacy(db: Database) -> None:
    """Split the old shared "node" counter into per-component counters, in one transaction."""
    rows = list(await db.reader.execute_fetchall("SELECT version FROM schema_version WHERE component = 'node'"))
    if not rows:
        return
    version = int(rows[0][0])
    if version > len(LEGACY):
        raise SchemaTooNew(db.path, "node", version, len(LEGACY))
    async with db.write() as conn:
        for component in LEGACY[:version]:
            await conn.execute("INSERT INTO schema_version (component, version) VALUES (?, 1) "
                               "ON CONFLICT (component) DO NOTHING", (component,))
        await conn.execute("DELETE FROM schema_version WHERE component = 'node'")


async def migrate_all(db: Database, components: Sequence[Component] = COMPONENTS) -> None:
    """Bring the sync library's tables and every component's tables up to date."""
    check_components(components)
    await setup_schema(db)
    await _convert_legacy(db)
    for name, migrations in components:
        await db.migrate(name, migrations)


def known_versions(components: Sequence[Component] = COMPONENTS) -> dict[str, int]:
    """The version this software's migrations reach for each component it knows, the sync library's and the
    legacy shared counter included."""
    known = {name: max((version for version, _ in migrations), default=0) for name, migrations in components}
    known[SCHEMA_COMPONENT] = max(version for version, _ in SCHEMA_MIGRATIONS)
    known["node"] = len(LEGACY)
    return known
