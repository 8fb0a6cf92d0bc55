"""Delivering consented clips: the bundle build queue, the agency's downloads, and the counts disclosed to peers.

Consents are built one at a time, in the background and in an executor (redaction and encryption block); a consent
withdrawn while its bundle is built loses the bundle. A restart builds again what a crash cut short. The number of
bundles held for a request is published as a signed disclosure event, so the agency learns where to download.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import nacl.public
import nacl.signing

from node.camera.clips import ClipIndex, ClipRow
from node.errors import NotFound
from node.safety.live import MANAGERS
from node.sharing.agency_keys import verify_key, x25519_public
from node.sharing.audit import AuditLog, nfc
from node.sharing.bundle import SUFFIX, BundleInfo, RangePart, build_bundle, build_range_bundle
from node.sharing.events import DISCLOSURE_KIND, DISCLOSURE_TTL
from node.sharing.manifest import REDACTED, utc_iso
from node.sharing.matching import Places
from node.sharing.ranges import is_range
from node.sharing.requests import FootageRequest, stored_request
from node.sharing.store import DeskStore

log = logging.getLogger("nnode.sharing")

Publish = Callable[..., Awaitable[Any]]


def built_detail(bundle_uid: str, choice: str, size: int, sha256: str, redaction: str | None) -> dict[str, Any]:
    """The detail of a `bundle_built` audit entry."""
    return {"bundle": bundle_uid, "choice": choice, "size": size, "sha256": sha256, "redaction": redaction or ""}


def sealed_to(request: FootageRequest) -> nacl.public.PublicKey | str:
    """The X25519 key a request's bundles are sealed to: the one it names, or, for a request stored before keys
    were separated, the conversion of the agency's signing key (which its old key file opens)."""
    if request.encryption_key is not None:
        return request.encryption_key
    return x25519_public(verify_key(request.agency, "agency key"))


class Delivery:
    """Bundles of one node: built from consents, downloaded by their agency, counted to peers."""

    def __init__(self, store: DeskStore, key: nacl.signing.SigningKey, clips: ClipIndex, audit: AuditLog,
                 places: Places, config: Any, *, publish: Publish | None, notify: Publish | None) -> None:
        self.store, self.key, self.clips, self.audit, self.places = store, key, clips, audit, places
        self.node_key = key.verify_key.encode().hex()
        self.hold_days = config.agencies.hold_days
        self.folder: Path = config.node.data_dir / "bundles"
        self.publish = publish          # SyncEngine.publish (kind, body, ttl=)
        self.notify = notify            # Hub.publish (kind, data, audience)
        self._queue: asyncio.Queue[int] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.building: int | None = None  # the consent whose bundle is being built now

    # -- the queue ----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the bundle folder, drop half-written bundles, and queue the consents a restart interrupted."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stray in self.folder.glob(".*"):
            stray.unlink(missing_ok=True)
        # A crash between a withdrawal (expiry, revocation, hold end) and deleting its bundle leaves the file.
        live = await self.store.live_bundles()
        for path in self.folder.glob(f"*{SUFFIX}"):
            if path.name.removesuffix(SUFFIX) not in live:
                path.unlink(missing_ok=True)
        for consent_id in await self.store.building():
            self._queue.put_nowait(consent_id)
        self._worker = asyncio.create_task(self._build_forever(), name="nnode-bundles")

    async def close(self) -> None:
        """Stop the builder (a bundle cut short is built again at the next start)."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    def queue(self, consent_id: int) -> None:
        """Build this consent's bundle once those queued before it are built."""
        self._queue.put_nowait(consent_id)

    async def idle(self) -> None:
        """Wait until every queued bundle is built (tests, the CLI)."""
        await self._queue.join()

    def path(self, bundle_uid: str) -> Path:
        """Where a bundle's file is (or will be)."""
        return self.folder / f"{bundle_uid}{SUFFIX}"

    async def unlink(self, bundle_uid: str) -> None:
        """Delete a bundle's file, if there is one (in a thread: a file system call)."""
        await asyncio.to_thread(self.path(bundle_uid).unlink, missing_ok=True)

    async def _build_forever(self) -> None:
        while True:
            consent_id = await self._queue.get()
            self.building = consent_id
            try:
                await self._build(consent_id)
            except Exception:
                log.exception("building a bundle failed", extra={"consent": consent_id})
            finally:
                self.building = None
                self._queue.task_done()

    async def _build(self, consent_id: int) -> None:
        job = await self.store.job(consent_id)
        if job is None:
            return
        bundle_uid, uid, choice, receipt, document = job
        request = stored_request(document)
        path = self.path(bundle_uid)
        await asyncio.to_thread(path.unlink, missing_ok=True)  # one a crash left before its row said so is rebuilt
        try:
            loop = asyncio.get_running_loop()
            if is_range(uid):
                view = await self.store.consent(consent_id)
                clips = [await self.clips.get(part) for part in await self.store.parts(consent_id)]
                info, redaction = await loop.run_in_executor(None, self._make_range, path, clips, request, receipt,
                                                             choice, (view["range_start"], view["range_end"]))
            else:
                clip = await self.clips.get(uid)
                info, redaction = await loop.run_in_executor(None, self._make, path, clip, request, receipt, choice)
        except Exception as exc:
            await self._failed(consent_id, request, uid, nfc(str(exc) or type(exc).__name__))
            return
        async with self.store.db.write() as conn:
            built = await self.store.ready(conn, consent_id, info, redaction)
            # Still cooling off: logged when it becomes visible (Consents.show), or never if withdrawn before.
            if built and await self.store.is_shown(conn, consent_id):
                await self.audit.append("bundle_built", agency=request.agency, request_id=request.id, clip=uid,
                                        detail=built_detail(bundle_uid, choice, info.size, info.sha256, redaction),
                                        conn=conn)
        if not built:  # withdrawn while it was being built
            await asyncio.to_thread(path.unlink, missing_ok=True)
            return
        await self.disclose(request.id)
        if self.notify is not None:
            await self.notify("consent", {"request_id": request.id, "clip": uid, "state": "ready"}, MANAGERS)

    async def _failed(self, consent_id: int, request: FootageRequest, uid: str, error: str) -> None:
        async with self.store.db.write() as conn:
            if await self.store.failed(conn, consent_id, error) and await self.store.is_shown(conn, consent_id):
                await self.audit.append("bundle_failed", agency=request.agency, request_id=request.id, clip=uid,
                                        detail={"error": error[:300]}, conn=conn)
        log.warning("bundle failed", extra={"consent": consent_id, "error": error})

    def _make(self, path: Path, clip: ClipRow, request: FootageRequest, receipt: dict[str, Any],
              choice: str) -> tuple[BundleInfo, str | None]:
        """Redact if asked, then build the bundle (blocking; in an executor)."""
        # Imported here: redaction loads OpenCV, PyAV and numpy (most of a second), and every CLI command reaches
        # this module through node.keys; only building a bundle needs them.
        from node.sharing.redact import redact_clip

        camera = self.places.cameras.get(clip.camera)
        place = self.places.location(clip.camera) or ("0", "0")
        source, redaction, redacted = self.clips.path(clip.file), None, None
        try:
            if choice == REDACTED:
                redacted = self.folder / f".{path.stem}.redacted.mp4"
                result = redact_clip(source, redacted, privacy_masks=camera.privacy_masks if camera else ())
                source, redaction = result.path, result.method
            info = build_bundle(
                path, video_path=source, consent=receipt, node_signing_key=self.key,
                agency_verify_key=request.agency, encryption_key=sealed_to(request), request_id=request.id,
                case_number=request.case_number,
                camera_id=clip.camera, camera_name=self.places.camera_name(clip), latitude=place[0],
                longitude=place[1], clip_start=clip.start, clip_end=clip.end, original_sha256=clip.sha256,
                original_size=clip.size, redaction_method=redaction, bundle_id=path.stem)
            return info, redaction
        finally:
            if redacted is not None:
                redacted.unlink(missing_ok=True)

    def _make_range(self, path: Path, clips: list[ClipRow], request: FootageRequest, receipt: dict[str, Any],
                    choice: str, span: tuple[float, float]) -> tuple[BundleInfo, str | None]:
        """Redact each clip if asked, check that the parts join, then build one bundle of them (blocking)."""
        from node.sharing.joining import join_videos
        from node.sharing.redact import redact_clip

        camera = self.places.cameras.get(clips[0].camera)
        place = self.places.location(clips[0].camera) or ("0", "0")
        made: list[Path] = []
        methods: list[str] = []
        try:
            parts = []
            for n, clip in enumerate(clips):
                source = self.clips.path(clip.file)
                if choice == REDACTED:
                    made.append(self.folder / f".{path.stem}.{n}.redacted.mp4")
                    result = redact_clip(source, made[-1], privacy_masks=camera.privacy_masks if camera else ())
                    source = result.path
                    methods += [result.method] if result.method not in methods else []
                parts.append(RangePart(source, clip.start, clip.end, clip.sha256, clip.size))
            # The agency's `nnode verify` joins the parts by stream copy; refuse here a range it could not join.
            made.append(self.folder / f".{path.stem}.joined.mp4")
            join_videos([p.video_path for p in parts], made[-1])
            redaction = "; ".join(methods)[:200] if methods else None
            info = build_range_bundle(
                path, parts=parts, range_start=span[0], range_end=span[1], consent=receipt,
                node_signing_key=self.key, agency_verify_key=request.agency, encryption_key=sealed_to(request),
                request_id=request.id,
                case_number=request.case_number, camera_id=clips[0].camera,
                camera_name=self.places.camera_name(clips[0]), latitude=place[0], longitude=place[1],
                redaction_method=redaction, bundle_id=path.stem)
            return info, redaction
        finally:
            for temporary in made:
                temporary.unlink(missing_ok=True)

    # -- downloads ----------------------------------------------------------------------------------------------

    async def agency_bundles(self, agency_key: str) -> list[dict[str, Any]]:
        """Bundles on this node made for this agency that it may download."""
        # Times as the manifest and `nnode verify` spell them (ISO 8601 UTC with milliseconds); `created` is the
        # manifest's own (a bundle built before it was kept: when it was consented to).
        return [{"id": r[0], "request_id": r[1], "case_number": r[2], "size": r[3], "sha256": r[4],
                 "created": r[7] or utc_iso(r[5]), "downloaded": None if r[6] is None else utc_iso(r[6]),
                 "node": self.node_key,
                 "url": f"/api/agency/bundles/{r[0]}"} for r in await self.store.agency_bundles(agency_key)]

    async def open_bundle(self, agency_key: str, bundle_uid: str) -> Path:
        """The bundle file for a download by its agency; the download is recorded first (NotFound otherwise)."""
        found = await self.store.agency_bundle(agency_key, bundle_uid)
        if found is None or found[3] not in ("ready", "downloaded") or \
                not await asyncio.to_thread(self.path(bundle_uid).is_file):
            raise NotFound(f"no bundle {bundle_uid!r} for this agency here")
        consent_id, request_id, uid, _ = found
        now = int(time.time())
        async with self.store.db.write() as conn:
            if not await self.store.downloaded(conn, consent_id, now, now + self.hold_days * 86400):
                raise NotFound(f"no bundle {bundle_uid!r} for this agency here")  # withdrawn a moment ago
            await self.audit.append("download", agency=agency_key, request_id=request_id, clip=uid,
                                    actor="agency", detail={"bundle": bundle_uid}, conn=conn)
        return self.path(bundle_uid)

    # -- disclosures --------------------------------------------------------------------------------------------

    async def disclose(self, request_id: str) -> None:
        """Tell peers (and so the agency, wherever it asks) how many bundles this node holds for the request."""
        if self.publish is None:
            return
        row = await self.store.request(request_id)
        if row is None:
            return
        count = await self.store.delivered(request_id)
        if count == await self.store.disclosed(self.node_key, request_id):
            return  # nothing new to say: an event anyway would tell peers that something happened here
        ttl = max(60, int(row["expires"] - time.time()) + self.hold_days * 86400)
        body = {"request_id": request_id, "agency": row["agency"], "bundles": count}
        try:
            event = await self.publish(DISCLOSURE_KIND, body, ttl=min(ttl, DISCLOSURE_TTL))
            await self.store.note_disclosure(self.node_key, event.seq, body, event.ts)
        except Exception:
            log.exception("publishing a disclosure count failed", extra={"request": request_id})
