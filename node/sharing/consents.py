"""The owners' side: requests with their matching clips, consent per clip, withdrawal, and the holds consent keeps.

A consent is a signed receipt, a hold on the clip and an audit entry, written in one transaction; its bundle is
then built in the background. It can be withdrawn until the agency downloads the bundle; after that the hold period
runs (config `agencies.hold_days`), then the bundle is deleted, the hold released, and the clip purged if its own
retention has run out. Declines do not exist as records: an owner who does nothing leaves nothing.

A consent first cools off (config `agencies.cooling_off_seconds`; not for emergency requests): until then the
agency cannot list or download its bundle, no disclosure count or audit entry mentions it, and a withdrawal erases
it. Once the period is over, `show()` logs the consent (and its bundle, if built) and tells peers the new count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import nacl.signing

from node.camera.clips import UPLOAD_CAMERA, ClipIndex, ClipNotFound, ClipRow
from node.errors import Conflict, NotFound
from node.sharing.agencies import Agency, Registry
from node.sharing.audit import AuditLog
from node.sharing.delivery import Delivery, built_detail
from node.sharing.manifest import ORIGINAL, REDACTED, sign_consent, utc_iso
from node.sharing.matching import Places
from node.sharing.ranges import RangePlan, plan_range
from node.sharing.requests import FootageRequest, RequestError, format_time, stored_request
from node.sharing.store import DeskStore

log = logging.getLogger("nnode.sharing")

MAX_COOLING_WAIT = 60.0   # seconds the visibility task sleeps at most before looking again (a changed clock)

BUILDING = "building"
"""The owner of the building's own cameras' clips (the manager decides for them)."""


def _range_detail(view: dict[str, Any]) -> dict[str, Any]:
    """A cooled range consent's audit detail: which camera and range (its clips are named by the digest)."""
    if view.get("range_start") is None:
        return {}
    return {"range": {"camera": view["camera"], "start": utc_iso(view["range_start"]),
                      "end": utc_iso(view["range_end"])}}


class Consents:
    """Per-clip consent of one node's owners, and the holds it keeps."""

    def __init__(self, store: DeskStore, key: nacl.signing.SigningKey, clips: ClipIndex, registry: Registry,
                 audit: AuditLog, places: Places, delivery: Delivery, *, cooling_off: int = 0) -> None:
        self.store, self.key, self.clips, self.registry = store, key, clips, registry
        self.audit, self.places, self.delivery = audit, places, delivery
        self.cooling_off = cooling_off   # seconds a consent stays invisible to the agency and peers
        self._wake = asyncio.Event()
        self._shower: asyncio.Task[None] | None = None

    def cooling_off_for(self, request: FootageRequest) -> int:
        """The cooling-off period of consents to this request: none for an emergency."""
        return 0 if request.urgency == "emergency" else self.cooling_off

    async def for_owner(self, owner: str, agencies: dict[str, Agency]) -> list[dict[str, Any]]:
        """Requests with `owner`'s matching clips ('building' for the manager, 'resident:N'), newest first."""
        statuses = ("open", "refused") if owner == BUILDING else ("open",)
        out = []
        for document, status, refusal, received in await self.store.listed(statuses, time.time()):
            request = stored_request(document)
            clips = await self._candidates(request, owner) if status == "open" else []
            if owner != BUILDING and not clips:
                continue
            consents = await self.store.live(request.id, [c.uid for c in clips])
            ranges = await self.store.ranges(request.id, owner) if status == "open" else []
            agency = agencies.get(request.agency)
            out.append(request.public() | {
                "agency": {"key": request.agency, "name": agency.name if agency else "",
                           "jurisdiction": agency.jurisdiction if agency else "",
                           "contact": agency.contact if agency else ""},
                "contact": request.contact, "status": status, "refusal": refusal, "received": received,
                "cooling_off_seconds": self.cooling_off_for(request),
                "clips": [self.places.clip_view(c) | {"consent": consents.get(c.uid)} for c in clips],
                "ranges": [r | {"camera_name": self.places.camera_name_of(r["camera"])} for r in ranges]})
        return out

    async def _candidates(self, request: FootageRequest, owner: str) -> list[ClipRow]:
        """`owner`'s ready clips ('building' or 'resident:N') that overlap the window inside the area."""
        if owner == BUILDING:
            cameras = [c for c in await self.clips.usage() if c != UPLOAD_CAMERA]
            found = await self.clips.list(cameras=cameras, after=request.start, before=request.end, limit=1000)
        else:
            found = await self.clips.list(owner=owner, after=request.start, before=request.end, limit=1000)
        return [c for c in found if self.places.matches(request, c)]

    async def _open_request(self, request_id: str) -> FootageRequest:
        row = await self.store.request(request_id)
        if row is None or row["status"] == "elsewhere":
            raise NotFound(f"no request {request_id!r} here")
        if row["status"] != "open":
            raise Conflict(f"request {request_id} is refused at this node: {row['refusal']}")
        if row["expires"] <= time.time():
            raise Conflict(f"request {request_id} expired on {format_time(row['expires'])}")
        return stored_request(row["document"])

    async def consent(self, request_id: str, uid: str, *, owner: str, role: str, subject: str,
                      choice: Any = REDACTED) -> dict[str, Any]:
        """The owner says yes for one clip: a signed receipt, a hold and an audit entry, then the bundle is built."""
        if choice not in (REDACTED, ORIGINAL):
            raise RequestError(f"choice: expected {REDACTED!r} (faces and plates blurred) or {ORIGINAL!r}")
        request = await self._open_request(request_id)
        await self.registry.require(request.agency)
        clip = await self.clips.get(uid)
        if clip.owner != owner:
            raise ClipNotFound(f"clip {uid!r} not found")
        if not self.places.matches(request, clip):
            raise Conflict(f"clip {uid} does not match request {request_id} (place or time)")
        receipt = sign_consent(self.key, request_id=request_id, clip_sha256=clip.sha256, role=role,
                               subject=subject, choice=choice)
        async with self.store.db.write() as conn:
            # Checked again in the transaction: a revocation or refusal that landed meanwhile wins.
            if not await self.store.is_open(conn, request_id, time.time()):
                raise Conflict(f"request {request_id} is no longer open here (expired, refused or its agency revoked)")
            if await self.store.is_shared(conn, request_id, uid):
                raise Conflict(f"clip {uid} is already shared for this request; withdraw first to change the choice")
            cooling_off = self.cooling_off_for(request)
            consent_id = await self.store.add(conn, request, clip, owner=owner, choice=choice, receipt=receipt,
                                              bundle_uid=secrets.token_hex(16),
                                              visible_at=int(time.time()) + cooling_off)
            if consent_id is None:
                raise ClipNotFound(f"clip {uid!r} not found")
            if not cooling_off:
                await self.audit.append("consent", agency=request.agency, request_id=request_id, clip=uid,
                                        actor=role, detail={"choice": choice, "clip_sha256": clip.sha256},
                                        conn=conn)
        self.delivery.queue(consent_id)
        self._wake.set()
        return await self.store.consent(consent_id)

    async def plan(self, request_id: str, *, owner: str, camera: str, start: float | None,
                   end: float | None) -> tuple[FootageRequest, RangePlan]:
        """The range of `owner`'s matching clips of `camera` (the request's whole window by default)."""
        request = await self._open_request(request_id)
        return request, plan_range(request, await self._candidates(request, owner), camera=camera, start=start,
                                   end=end)

    async def preview(self, request_id: str, *, owner: str, camera: str, start: float | None,
                      end: float | None) -> dict[str, Any]:
        """What sharing the range would share (clips, footage, gaps), shown before confirming; records nothing."""
        _, plan = await self.plan(request_id, owner=owner, camera=camera, start=start, end=end)
        return plan.view(self.places.camera_name_of(camera))

    async def consent_range(self, request_id: str, *, owner: str, role: str, subject: str, camera: str,
                            start: float | None, end: float | None, choice: Any = REDACTED) -> dict[str, Any]:
        """The owner says yes for a range of one camera: one signed receipt naming every clip in it, one hold per
        clip and one audit entry, then one bundle of them all is built."""
        if choice not in (REDACTED, ORIGINAL):
            raise RequestError(f"choice: expected {REDACTED!r} (faces and plates blurred) or {ORIGINAL!r}")
        request, plan = await self.plan(request_id, owner=owner, camera=camera, start=start, end=end)
        await self.registry.require(request.agency)
        receipt = sign_consent(self.key, request_id=request_id, clip_sha256=plan.digest, role=role,
                               subject=subject, choice=choice)
        async with self.store.db.write() as conn:
            if not await self.store.is_open(conn, request_id, time.time()):
                raise Conflict(f"request {request_id} is no longer open here (expired, refused or its agency revoked)")
            if await self.store.is_shared(conn, request_id, plan.uid):
                raise Conflict("this range is already shared for this request; withdraw it first to change it")
            cooling_off = self.cooling_off_for(request)
            consent_id = await self.store.add_range(conn, request, plan.uid, plan.clips, (plan.start, plan.end),
                                                    owner=owner, choice=choice, receipt=receipt,
                                                    bundle_uid=secrets.token_hex(16),
                                                    visible_at=int(time.time()) + cooling_off)
            if consent_id is None:
                raise Conflict("a clip of the range was deleted meanwhile; look at the range again")
            if not cooling_off:
                await self.audit.append("consent", agency=request.agency, request_id=request_id, clip=plan.uid,
                                        actor=role, detail={"choice": choice, "clip_sha256": plan.digest,
                                                            "range": plan.detail()}, conn=conn)
        self.delivery.queue(consent_id)
        self._wake.set()
        return await self.store.consent(consent_id) | {"range": plan.view(self.places.camera_name_of(camera))}

    async def withdraw(self, request_id: str, uid: str, *, owner: str, role: str) -> dict[str, Any]:
        """Withdraw a consent until the agency has downloaded the bundle (then Conflict)."""
        consent = await self.store.owned(request_id, uid, owner)
        row = await self.store.request(request_id)
        if consent is None or row is None:
            raise NotFound(f"clip {uid} is not shared for request {request_id}")
        if consent["shown"] is None:
            async with self.store.db.write() as conn:
                forgotten = await self.store.forget(conn, consent["id"], consent["bundle_uid"])
            if forgotten:  # nothing logged, nothing published: the agency and peers never knew
                await self.delivery.unlink(consent["bundle_uid"])
                return consent | {"state": "withdrawn", "can_withdraw": False, "cooling_off": False,
                                  "ended": int(time.time()), "erased": True}
        async with self.store.db.write() as conn:
            if not await self.store.end(conn, consent["id"], consent["bundle_uid"], "withdrawn"):
                raise Conflict("the agency has already downloaded this clip's bundle; it can no longer be withdrawn")
            await self.audit.append("withdrawal", agency=row["agency"], request_id=request_id, clip=uid, actor=role,
                                    conn=conn)
        await self.delivery.unlink(consent["bundle_uid"])
        await self.delivery.disclose(request_id)
        return await self.store.consent(consent["id"])

    # -- the cooling-off period ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Show the agency, as each cooling-off period ends, the consents it may now see."""
        self._shower = asyncio.create_task(self._show_forever(), name="nnode-consents-cooled")

    async def close(self) -> None:
        """Stop showing consents (those due are shown at the next start or tick)."""
        if self._shower is not None:
            self._shower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._shower
            self._shower = None

    async def _show_forever(self) -> None:
        while True:
            self._wake.clear()   # before looking: a consent given meanwhile sets it again
            try:
                await self.show()
                due = await self.store.next_cooled()
            except Exception:
                log.exception("showing cooled consents failed")
                due = None
            wait = MAX_COOLING_WAIT if due is None else min(MAX_COOLING_WAIT, max(0.0, due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def show(self, now: float | None = None) -> None:
        """Make every consent whose cooling-off period is over visible: logged (consent, then its bundle as it
        stands) and counted to peers, as if it had been given now."""
        now = time.time() if now is None else now
        changed = set()
        for consent_id in await self.store.cooled(now):
            async with self.store.db.write() as conn:
                view = await self.store.show(conn, consent_id, int(now))
                if view is None:
                    continue   # withdrawn or ended meanwhile
                request = await self.store.request(view["request_id"])
                agency = request["agency"] if request else ""
                receipt = view["receipt"]
                await self.audit.append("consent", agency=agency, request_id=view["request_id"],
                                        clip=view["clip_uid"], actor=receipt["by"]["role"],
                                        detail={"choice": view["choice"], "clip_sha256": receipt["clip_sha256"]}
                                        | _range_detail(view), conn=conn)
                if view["state"] == "ready":
                    await self.audit.append("bundle_built", agency=agency, request_id=view["request_id"],
                                            clip=view["clip_uid"], detail=built_detail(
                                                view["bundle_uid"], view["choice"], view["bundle_size"],
                                                view["bundle_sha256"], view["redaction"]), conn=conn)
                elif view["state"] == "failed":
                    await self.audit.append("bundle_failed", agency=agency, request_id=view["request_id"],
                                            clip=view["clip_uid"], detail={"error": view["error"][:300]},
                                            conn=conn)
            changed.add(view["request_id"])
        for request_id in changed:
            await self.delivery.disclose(request_id)

    # -- holds --------------------------------------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """End undownloaded consents of expired requests; after the hold period, delete bundles, release holds and
        purge what retention would already have purged."""
        now = time.time() if now is None else now
        changed = await self._expire(now)   # first: a request that expired while a consent cooled off shows nothing
        await self.show(now)
        for consent_id, bundle_uid, request_id, uid, agency, state in await self.store.released(now):
            if state == "downloaded":
                async with self.store.db.write() as conn:
                    await self.store.close(conn, consent_id)
                await self.delivery.unlink(bundle_uid)
                changed.add(request_id)
            await self._release(consent_id, bundle_uid, request_id, uid, agency, now)
        for request_id in changed:
            await self.delivery.disclose(request_id)

    async def _expire(self, now: float) -> set[str]:
        """End the undownloaded consents of expired requests; the requests whose count changed."""
        changed = set()
        for consent_id, bundle_uid, request_id, uid, agency, shown in await self.store.expired(now):
            if not shown:  # the agency never learnt of it: it goes as a withdrawal within the period would
                async with self.store.db.write() as conn:
                    if await self.store.forget(conn, consent_id, bundle_uid):
                        await self.delivery.unlink(bundle_uid)
                continue
            async with self.store.db.write() as conn:
                ended = await self.store.end(conn, consent_id, bundle_uid, "expired")
                if ended:
                    await self.audit.append("bundle_expired", agency=agency, request_id=request_id, clip=uid,
                                            detail={"reason": "the request expired before the agency downloaded"},
                                            conn=conn)
            if ended:  # not if a download won the race: the agency has it, and the hold period runs
                await self.delivery.unlink(bundle_uid)
                changed.add(request_id)
        return changed

    async def _release(self, consent_id: int, bundle_uid: str, request_id: str, uid: str, agency: str,
                       now: float) -> None:
        """Release a closed consent's hold once the clip's own retention has run out, and purge the clip."""
        try:
            clip: ClipRow | None = await self.clips.get(uid)
        except ClipNotFound:
            clip = None
        if clip is not None and not self.places.retention_over(clip, now):
            return  # held on until its own retention has run out
        async with self.store.db.write() as conn:
            # Releasing the hold, marking the clip for purging and logging both are one transaction: the log
            # never misses a purge (a crash after it is finished by the clip index's reconcile()).
            if not await self.store.end(conn, consent_id, bundle_uid, "purged", ("closed",)):
                return
            await self.audit.append("hold_released", agency=agency, request_id=request_id, clip=uid,
                                    detail={"bundle": bundle_uid}, conn=conn)
            # Not purged if something else holds it (SOS, the manager, another request): that hold decides.
            purging = clip is not None and await self.clips.mark_purging(clip, conn)
            if purging and clip is not None:
                await self.audit.append("clip_purged", agency=agency, request_id=request_id, clip=uid,
                                        detail={"sha256": clip.sha256}, conn=conn)
        if purging and clip is not None:
            await self.clips.finish_purge(clip, "shared clip: hold period over")

