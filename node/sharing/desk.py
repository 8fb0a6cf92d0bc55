"""The sharing desk: agency requests at this node, their matching clips, per-clip consent, bundles and their holds.

The flow (DESIGN section 6, docs/agencies.md):

    agency-request event ─► consider(): open | refused | elsewhere ─► owners see their matching clips
    owner consents ─► consent row + hold + audit, one transaction ─► builder: redact?, build_bundle ─► ready
    (a range of one camera: one consent row, its clips in consent_parts, one hold each ─► build_range_bundle)
    agency downloads ─► downloaded (withdrawal ends, hold period starts) ─► tick(): bundle deleted, hold released,
    clip purged once its retention has run out

Declines do not exist as records: an owner who does nothing leaves nothing. Every step that discloses, or undoes a
disclosure, is appended to the audit log in the same transaction as the change it records.

The desk composes its parts, each in its own module: `intake` (requests in, decided, announced; what the agency
sees of them), `consents` (the owners' side and the holds), `delivery` (the bundle queue, downloads, disclosure
counts), over one `store` (the tables) and `places` (where the cameras stand).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import nacl.signing

from node.camera.clips import ClipIndex
from node.sharing.agencies import Registry
from node.sharing.audit import AuditLog
from node.sharing.consents import Consents
from node.sharing.delivery import Delivery
from node.sharing.intake import Intake
from node.sharing.matching import Places
from node.sharing.requests import Policy, stored_request
from node.sharing.store import COMPONENT, MIGRATIONS, DeskStore
from sync import Database

__all__ = ["COMPONENT", "MIGRATIONS", "SharingDesk", "policy_from"]   # the tables are the store's (node/schema.py)


def policy_from(config: Any) -> Policy:
    """The request policy of the [agencies] section."""
    a = config.agencies
    return Policy(min_window_s=a.min_window_minutes * 60, max_window_s=a.max_window_hours * 3600,
                  max_area_sq_mi=float(a.max_area_sq_mi), require_case_number=a.require_case_number,
                  max_expiry_days=a.max_expiry_days, max_age_days=a.max_age_days)


class SharingDesk:
    """Requests, matching, consent, bundles, downloads and consent holds of one node.

    Its methods are its parts' (bound here, so handlers and the lifecycle need only the desk): from `intake`
    submit, consider, reconsider, refuse_agency, agency_view, agency_requests; from `consents` for_owner,
    consent, withdraw, tick, show; from `delivery` idle, disclose, agency_bundles, open_bundle, bundle_path; from
    `places` touches and matches; from `consents` also preview_range and consent_range (ranges.py).
    """

    def __init__(self, db: Database, key: nacl.signing.SigningKey, clips: ClipIndex, registry: Registry,
                 audit: AuditLog, config: Any, *, publish: Callable[..., Awaitable[Any]] | None = None,
                 notify: Callable[..., Awaitable[Any]] | None = None) -> None:
        self.db, self.key, self.clips, self.registry, self.audit = db, key, clips, registry, audit
        self.node_key = key.verify_key.encode().hex()
        self.store = DeskStore(db)
        self.places = Places(config)
        self.delivery = Delivery(self.store, key, clips, audit, self.places, config, publish=publish, notify=notify)
        self.intake = Intake(self.store, registry, audit, self.places, policy_from(config), publish=publish,
                             notify=notify)
        self.consents = Consents(self.store, key, clips, registry, audit, self.places, self.delivery,
                                 cooling_off=config.agencies.cooling_off_seconds)
        intake, consents, delivery = self.intake, self.consents, self.delivery
        self.submit, self.consider, self.reconsider = intake.submit, intake.consider, intake.reconsider
        self.refuse_agency, self.agency_view, self.agency_requests = (intake.refuse_agency, intake.agency_view,
                                                                      intake.agency_requests)
        self.for_owner, self.consent, self.withdraw, self.tick = (consents.for_owner, consents.consent,
                                                                  consents.withdraw, consents.tick)
        self.show = consents.show
        self.preview_range, self.consent_range = consents.preview, consents.consent_range
        self.idle, self.disclose, self.bundle_path = delivery.idle, delivery.disclose, delivery.path
        self.agency_bundles, self.open_bundle = delivery.agency_bundles, delivery.open_bundle
        self.note_disclosure = self.store.note_disclosure
        self.touches, self.matches = self.places.touches, self.places.matches

    async def start(self) -> None:
        """Start building bundles (those a restart interrupted first)."""
        await self.delivery.start()
        await self.consents.start()

    async def close(self) -> None:
        """Stop announcing requests and building bundles (a bundle cut short is built again at the next start)."""
        await self.intake.close()
        await self.consents.close()
        await self.delivery.close()

    async def transparency(self) -> dict[str, Any]:
        """What residents may read: the log's signed head, counts per agency and month, every request's fields."""
        names = {a.key: a.name for a in await self.registry.list()}
        requests = []
        for document, status, received, disclosed, downloaded in await self.store.public():
            request = stored_request(document)
            requests.append(request.public() | {"agency_name": names.get(request.agency, ""), "status": status,
                                                "received": received, "disclosed": disclosed,
                                                "downloaded": downloaded})
        return {"node_key": self.node_key, "head": await self.audit.head(),
                "months": await self.audit.monthly(names), "requests": requests}
