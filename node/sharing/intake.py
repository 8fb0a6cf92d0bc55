"""Agency requests coming in: posted by an agency or relayed by a peer, checked, decided, stored and announced.

Each request is decided once for this node (open, refused with the reason, or elsewhere: its area misses the
building), and again when something changes the answer (the agency registered, a credential renewed, a revocation).
Owners hear about an open request in the background, so how long the agency waits says nothing about the footage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Awaitable, Callable

import aiosqlite

from node.camera.clips import UPLOAD_CAMERA
from node.errors import Conflict, NotFound
from node.safety.live import MANAGERS
from node.sharing.agencies import Agency, AgencyRefused, Registry
from node.sharing.audit import AuditLog, nfc
from node.sharing.events import ANY_POLICY, REQUEST_KIND
from node.sharing.matching import Places
from node.sharing.requests import FootageRequest, Policy, RequestError, parse_request, stored_request
from node.sharing.store import DeskStore

log = logging.getLogger("nnode.sharing")

Publish = Callable[..., Awaitable[Any]]
Urls = Callable[[str], Awaitable[str | None]]


class Intake:
    """This node's decisions on agency requests, and what the agency sees of them."""

    def __init__(self, store: DeskStore, registry: Registry, audit: AuditLog, places: Places, policy: Policy, *,
                 publish: Publish | None, notify: Publish | None) -> None:
        self.store, self.registry, self.audit, self.places = store, registry, audit, places
        self.policy = policy
        self.publish, self.notify = publish, notify
        self._considering = asyncio.Lock()  # one request at a time: the agency's post and its own relayed event
        self._announcing: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop telling owners about requests."""
        for task in list(self._announcing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def submit(self, document: Any, agency: Agency,
                     credential: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """A request posted by `agency`: checked, stored, published to peers; returns (view, created)."""
        request = parse_request(document, now=time.time(), policy=self.policy)
        if request.agency != agency.key:
            raise AgencyRefused("the request is signed by another agency key than the one that signed the call")
        if credential is not None and credential.get("agency") != agency.key:
            raise AgencyRefused("the credential is for another agency key than the one that signed the call")
        async with self._considering:  # one request id, one event: a second post of it waits and finds it
            known = await self.store.request(request.id)
            if known is not None:
                if json.loads(known["document"]) != request.document:
                    raise Conflict(f"request id {request.id} is already used by another request")
                return await self.agency_view(agency.key, request.id), False
            body = {"request": request.document} | ({"credential": credential} if credential else {})
            ttl = max(60, int(request.expires - time.time()))
            if self.publish is not None:
                await self.publish(REQUEST_KIND, body, ttl=ttl)
            await self._consider(request.document, credential, origin="agency", again=False)
        return await self.agency_view(agency.key, request.id), True

    async def consider(self, document: Any, credential: Any, *, origin: str, again: bool = False) -> str:
        """Decide what a request is to this node (open, refused, elsewhere), store and log it; returns the status."""
        async with self._considering:
            return await self._consider(document, credential, origin=origin, again=again)

    async def _consider(self, document: Any, credential: Any, *, origin: str, again: bool) -> str:
        request_id = document.get("id") if isinstance(document, dict) else None
        before = await self.store.request(request_id) if isinstance(request_id, str) else None
        if not again and before is not None:
            return "known"
        status, refusal = "open", ""
        try:
            request = parse_request(document, now=time.time(), policy=self.policy)
        except RequestError as exc:
            status, refusal = "refused", f"out of this node's policy: {exc}"
            try:  # what the request looks like without this node's limits, to store and show it refused
                request = parse_request(document, now=time.time(), policy=ANY_POLICY)
            except RequestError:
                return "invalid"
        if not self.places.touches(request.area):
            status, refusal = "elsewhere", ""
        if credential is not None and (not isinstance(credential, dict) or credential.get("agency") != request.agency):
            credential = None  # a credential vouches only for the key it names
        async with self.store.db.write() as conn:
            agency = await self._agency(conn, request, credential if status != "elsewhere" else None)
            if status == "open":
                problem = "this agency is not registered at this node" if agency is None else \
                    self.registry.problem(agency)
                if problem:
                    status, refusal = "refused", problem
            await self.store.save_request(conn, request, credential, origin=origin, status=status, refusal=refusal)
            changed = before is None or (before["status"], before["refusal"]) != (status, refusal)
            if changed:
                await self._log(conn, request, agency, origin, status, refusal)
        if status == "open" and changed:
            # In the background: the time the agency waits for its answer must not tell how much footage matched.
            task = asyncio.create_task(self._announce(request, agency), name="nnode-announce-request")
            self._announcing.add(task)
            task.add_done_callback(self._announcing.discard)
        log.info("agency request", extra={"request": request.id, "status": status, "refusal": refusal})
        return status

    async def _agency(self, conn: aiosqlite.Connection, request: FootageRequest,
                      credential: dict[str, Any] | None) -> Agency | None:
        """The requesting agency, registered here on the way if a trusted anchor's credential vouches for it."""
        agency = await self.registry.get(request.agency)
        if (agency is None or agency.source == "anchor") and credential:
            with contextlib.suppress(AgencyRefused):
                agency, new = await self.registry.accept(credential, conn=conn)
                if new:
                    await self.audit.append("agency_registered", agency=agency.key, actor="trust anchor",
                                            detail={"name": agency.name, "anchor": agency.anchor or ""}, conn=conn)
        return agency

    async def _log(self, conn: aiosqlite.Connection, request: FootageRequest, agency: Agency | None, origin: str,
                   status: str, refusal: str) -> None:
        """Append a decision that changed to the audit log."""
        if status == "open":
            await self.audit.append("request_received", agency=request.agency, request_id=request.id, actor=origin,
                                    detail={"case_number": request.case_number, "urgency": request.urgency},
                                    conn=conn)
        elif status == "refused" and agency is not None:
            # Refusals of keys nobody registered are shown to the manager but not logged: anyone can make keys.
            await self.audit.append("request_refused", agency=request.agency, request_id=request.id, actor=origin,
                                    detail={"reason": nfc(refusal)[:300]}, conn=conn)

    async def reconsider(self, agency_key: str) -> None:
        """Look again at this agency's refused requests (after the manager registered it)."""
        for document, credential, origin in await self.store.refused(agency_key, time.time()):
            await self.consider(document, credential, origin=origin, again=True)

    async def refuse_agency(self, agency_key: str, reason: str, conn: aiosqlite.Connection) -> list[tuple[str, str]]:
        """After a revocation: refuse the agency's open requests and end its undownloaded consents (in `conn`);
        returns the (bundle uid, request id) of each consent ended."""
        await self.store.refuse_all(conn, agency_key, reason)
        rows = await self.store.undelivered(conn, agency_key)
        for consent_id, bundle_uid, request_id, clip_uid, shown in rows:
            if not shown:  # still cooling off: the agency never learnt of it, and nothing is logged now either
                await self.store.forget(conn, consent_id, bundle_uid)
                continue
            await self.store.end(conn, consent_id, bundle_uid, "expired")
            await self.audit.append("bundle_expired", agency=agency_key, request_id=request_id, clip=clip_uid,
                                    detail={"reason": "agency revoked"}, conn=conn)
        return [(r[1], r[2]) for r in rows]

    async def _announce(self, request: FootageRequest, agency: Agency | None) -> None:
        if self.notify is None:
            return
        try:
            await self._tell_owners(self.notify, request, agency)
        except Exception:
            log.exception("telling owners of a request failed", extra={"request": request.id})

    async def _tell_owners(self, notify: Publish, request: FootageRequest, agency: Agency | None) -> None:
        data = {"id": request.id, "urgency": request.urgency, "case_number": request.case_number,
                "agency_name": agency.name if agency else ""}
        if request.urgency == "emergency":
            log.warning("emergency footage request", extra={"request": request.id, "agency": request.agency})
        await notify("agency-request", data, MANAGERS)
        if not self.places.covers(request.area, UPLOAD_CAMERA):
            return
        # Uploads are placed at the building: every one overlapping the window matches. One small query, so that
        # how long this takes says little about how much footage there is.
        for owner in await self.store.upload_owners(request.start, request.end):
            await notify("agency-request", data, owner)

    # -- the agency's view --------------------------------------------------------------------------------------

    async def agency_view(self, agency_key: str, request_id: str, urls: Urls | None = None) -> dict[str, Any]:
        """One of this agency's requests as the agency sees it: its fields and the disclosures known here."""
        row = await self.store.request(request_id)
        if row is None or row["agency"] != agency_key:
            raise NotFound(f"no request {request_id!r} of this agency here")
        request = stored_request(row["document"])
        disclosures = [{"node": node, "bundles": bundles, "at": at, "url": (await urls(node)) if urls else None}
                       for node, bundles, at in await self.store.disclosures(request_id, agency_key)]
        return request.public() | {"contact": request.contact, "status": row["status"], "refusal": row["refusal"],
                                   "disclosures": disclosures}

    async def agency_requests(self, agency_key: str, urls: Urls | None = None) -> list[dict[str, Any]]:
        """This agency's requests here, newest first, as the agency sees them."""
        return [await self.agency_view(agency_key, request_id, urls)
                for request_id in await self.store.agency_request_ids(agency_key)]
