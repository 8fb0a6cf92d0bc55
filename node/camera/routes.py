"""HTTP handlers for cameras and clips: state, live view, snapshots, clip lists and playback, holds, uploads.

Who may see a camera is the manager's per-camera choice (`Cameras.access`); a camera or clip the caller may not
see answers 404 exactly like one that does not exist. A resident's uploaded clip is visible to its owner only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from datetime import datetime
from typing import Any

from aiohttp import BodyPartReader, web

from node.camera.clips import BUILDING, UPLOAD_CAMERA, ClipNotFound, ClipRow
from node.camera.manager import Camera, CameraNotFound
from node.camera.models import AccessBody, HoldBody
from node.camera.upload import UploadError, ingest_upload
from node.errors import BadRequest, TooLarge, Unavailable
from node.http import MANAGER, RESIDENT, Route, read_body, session_of
from node.keys import ACCOUNTS, CAMERAS, CLIPS, CONFIG

BOUNDARY = "nnode-live"
RECHECK_SECONDS = 15.0
"""How often an open live view re-checks that its viewer may still watch (revoked session or access)."""
MAX_UPLOAD_FIELDS = 5


def roles_of(request: web.Request) -> set[str]:
    """The caller's roles from their session: manager, or resident (+ responder when on call)."""
    session = session_of(request)
    roles = {session.role}
    if session.role == "resident" and session.on_call:
        roles.add("responder")
    return roles


def owner_of(request: web.Request) -> str | None:
    """The owner name of the caller's own uploads (residents only)."""
    session = session_of(request)
    return f"resident:{session.subject}" if session.role == "resident" else None


async def _camera(request: web.Request) -> Camera:
    cameras = request.app[CAMERAS]
    camera_id = request.match_info["camera"]
    if camera_id not in await cameras.visible(roles_of(request)):
        raise CameraNotFound(f"camera {camera_id[:40]!r} not found")
    return cameras.camera(camera_id)


async def _clip(request: web.Request) -> ClipRow:
    """A clip the caller may see: a building clip of a visible camera, or their own upload."""
    clip = await request.app[CLIPS].get(request.match_info["uid"][:40])
    if clip.owner == BUILDING:
        if clip.camera in await request.app[CAMERAS].visible(roles_of(request)):
            return clip
    elif clip.owner == owner_of(request):
        return clip
    raise ClipNotFound(f"clip {clip.uid!r} not found")


def clip_json(clip: ClipRow, names: dict[str, str]) -> dict[str, Any]:
    """A clip as the API shows it."""
    return {"uid": clip.uid, "camera": clip.camera, "camera_name": names.get(clip.camera, "your upload"),
            "kind": clip.kind, "start": clip.start, "end": clip.end, "duration": round(clip.duration, 3),
            "motion_score": clip.motion_score, "size": clip.size, "sha256": clip.sha256, "width": clip.width,
            "height": clip.height, "held": clip.held, "note": clip.note, "upload": clip.is_upload,
            "video": f"/api/clips/{clip.uid}/video", "thumbnail": f"/api/clips/{clip.uid}/thumbnail"
            if clip.thumbnail else None}


# -- cameras ----------------------------------------------------------------------------------------------------

async def list_cameras(request: web.Request) -> web.Response:
    """GET /api/cameras: the cameras the caller may see, with their state (the manager also sees who may)."""
    cameras = request.app[CAMERAS]
    roles = roles_of(request)
    states = cameras.states()
    out = []
    for camera_id in await cameras.visible(roles):
        camera = cameras.camera(camera_id)
        item = camera.config.public() | {"state": states[camera_id]}
        if "manager" in roles:
            item["access"] = await cameras.access(camera_id)
            item["source"] = camera.recorder.source.describe()
        out.append(item)
    usage = await request.app[CLIPS].usage()
    body: dict[str, Any] = {"ok": True, "cameras": out}
    if "manager" in roles:
        body["storage"] = {"disk_full": cameras.disk_full, "purged_bytes": cameras.purged_bytes,
                           "clip_bytes": {k: v for k, v in usage.items() if k != UPLOAD_CAMERA}}
    return web.json_response(body)


async def set_access(request: web.Request) -> web.Response:
    """PUT /api/cameras/{camera}/access {residents, responders}: who besides the manager may see the camera."""
    body = await read_body(request, AccessBody)
    cameras = request.app[CAMERAS]
    access = await cameras.set_access(request.match_info["camera"], residents=body.residents,
                                      responders=body.responders)
    return web.json_response({"ok": True, "access": access})


async def snapshot(request: web.Request) -> web.Response:
    """GET /api/cameras/{camera}/snapshot: a current JPEG, privacy masks blacked out."""
    camera = await _camera(request)
    current = camera.recorder.preview()
    if current is None or time.time() - current[2] > 2.0:
        current = await request.app[CAMERAS].picture(camera, current[0] if current else 0)
    return web.Response(body=current[1], content_type="image/jpeg", headers={"Cache-Control": "no-store"})


async def live(request: web.Request) -> web.StreamResponse:
    """GET /api/cameras/{camera}/live: MJPEG (multipart/x-mixed-replace) for an <img>, privacy masks blacked out."""
    app = request.app
    camera = await _camera(request)
    cameras = app[CAMERAS]
    limit = app[CONFIG].cameras.live_viewers
    if camera.viewers >= limit:
        raise Unavailable(f"camera {camera.id} already has {limit} live viewers; try again later")
    response = web.StreamResponse(headers={
        "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}", "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})
    camera.viewers += 1  # counted before the first await, so viewers arriving together are counted too
    try:
        seq, _, _ = await cameras.picture(camera)  # fails with a clear 503 before the stream starts
        await response.prepare(request)
        cookie = request.cookies.get("nnode_session")
        recheck = time.monotonic() + RECHECK_SECONDS
        seq -= 1
        while not cameras.closing.is_set():
            try:
                seq, jpeg, _ = await cameras.picture(camera, seq, timeout=30.0)
            except Unavailable:
                break  # the camera is down: end the stream; the page retries
            await response.write(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
            if time.monotonic() > recheck:
                recheck = time.monotonic() + RECHECK_SECONDS
                session = await app[ACCOUNTS].session(cookie)
                if session is None:
                    break
                roles = {session.role} | ({"responder"} if session.role == "resident" and session.on_call else set())
                if camera.id not in await cameras.visible(roles):
                    break
    except ConnectionError:  # the viewer left
        pass
    finally:
        camera.viewers -= 1
    return response


# -- clips ------------------------------------------------------------------------------------------------------

def _float_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name}: expected a UTC time in seconds, got {raw[:40]!r}") from None
    if not 0 <= value < 1e11:
        raise BadRequest(f"{name}: out of range: {raw[:40]!r}")
    return value


async def list_clips(request: web.Request) -> web.Response:
    """GET /api/clips?camera=&before=&after=&limit=: clips the caller may see, newest first (their own uploads too)."""
    cameras = request.app[CAMERAS]
    visible = await cameras.visible(roles_of(request))
    wanted = request.query.get("camera")
    if wanted == UPLOAD_CAMERA:
        visible = []
    elif wanted:
        if wanted not in visible:
            raise CameraNotFound(f"camera {wanted[:40]!r} not found")
        visible = [wanted]
    owner = owner_of(request) if wanted in (None, "", UPLOAD_CAMERA) else None
    raw_limit = request.query.get("limit", "50")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 500:
        raise BadRequest(f"limit: expected a number from 1 to 500, got {raw_limit[:20]!r}")
    clips = await request.app[CLIPS].list(cameras=visible, owner=owner, before=_float_param(request, "before"),
                                          after=_float_param(request, "after"), limit=int(raw_limit))
    names = {c.id: c.name or c.id for c in cameras.configs.values()}
    return web.json_response({"ok": True, "clips": [clip_json(c, names) for c in clips]})


async def clip_detail(request: web.Request) -> web.Response:
    """GET /api/clips/{uid}: one clip and its holds."""
    clip = await _clip(request)
    names = {c.id: c.name or c.id for c in request.app[CAMERAS].configs.values()}
    holds = await request.app[CLIPS].holds(clip)
    return web.json_response({"ok": True, "clip": clip_json(clip, names) | {"holds": holds}})


async def clip_video(request: web.Request) -> web.FileResponse:
    """GET /api/clips/{uid}/video: the MP4 (moov first), with HTTP range requests for seeking."""
    clip = await _clip(request)
    return web.FileResponse(request.app[CLIPS].path(clip.file), headers={
        "Content-Type": "video/mp4", "Cache-Control": "private, max-age=86400",
        "Content-Disposition": f'inline; filename="{clip.camera}-{clip.uid}.mp4"'})


async def clip_thumbnail(request: web.Request) -> web.FileResponse:
    """GET /api/clips/{uid}/thumbnail: the clip's JPEG thumbnail."""
    clip = await _clip(request)
    if not clip.thumbnail:
        raise ClipNotFound(f"clip {clip.uid!r} has no thumbnail")
    return web.FileResponse(request.app[CLIPS].path(clip.thumbnail), headers={
        "Content-Type": "image/jpeg", "Cache-Control": "private, max-age=86400"})


async def hold_clip(request: web.Request) -> web.Response:
    """POST /api/clips/{uid}/hold {note?}: the manager keeps a building clip from retention and the disk guard."""
    clip = await _clip(request)
    if clip.owner != BUILDING:
        raise ClipNotFound(f"clip {clip.uid!r} not found")
    body = await read_body(request, HoldBody)
    await request.app[CLIPS].hold(clip, "manager", "manager", body.note)
    return web.json_response({"ok": True, "holds": await request.app[CLIPS].holds(clip)})


async def release_clip(request: web.Request) -> web.Response:
    """DELETE /api/clips/{uid}/hold: the manager releases their holds on a clip (SOS and consent holds stay)."""
    clip = await _clip(request)
    released = await request.app[CLIPS].release(clip, "manager")
    return web.json_response({"ok": True, "released": released, "holds": await request.app[CLIPS].holds(clip)})


async def delete_clip(request: web.Request) -> web.Response:
    """DELETE /api/clips/{uid}: the manager deletes a building clip, a resident their own upload (not if held)."""
    clip = await _clip(request)
    if clip.owner == BUILDING and "manager" not in roles_of(request):
        raise ClipNotFound(f"clip {clip.uid!r} not found")  # residents may watch a camera, not delete its clips
    await request.app[CLIPS].delete(clip, why=f"deleted by {'the manager' if clip.owner == BUILDING else 'owner'}")
    return web.json_response({"ok": True})


# -- resident uploads -------------------------------------------------------------------------------------------

def _recorded_at(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"recorded_at: expected an ISO 8601 time like 2026-11-20T21:15:00-05:00, "
                         f"got {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise BadRequest("recorded_at: give the time zone too (an offset like -05:00, or Z for UTC)")
    value = moment.timestamp()
    if not 946684800 <= value <= time.time() + 3600:
        raise BadRequest("recorded_at: the time is before 2000 or in the future")
    return value


async def upload_clip(request: web.Request) -> web.Response:
    """POST /api/uploads (multipart: clip, recorded_at?, note?): a resident uploads a clip of their own.

    The file is streamed to disk under the size limit, then decoded in full (a real type check), re-muxed (H.264)
    or encoded once into a browser-playable MP4 without audio or metadata, and stored private to its owner.
    """
    owner = owner_of(request)
    if owner is None:
        raise BadRequest("only residents upload clips; the building's own footage comes from its cameras")
    config = request.app[CONFIG].cameras
    limit = config.upload_max_mb << 20
    if request.content_type != "multipart/form-data":
        raise BadRequest("send the clip as multipart/form-data with a 'clip' file field")
    if request.content_length is not None and request.content_length > limit + 65536:
        raise TooLarge(f"the upload is {request.content_length} bytes; the limit is {config.upload_max_mb} MiB")
    cameras = request.app[CAMERAS]
    if cameras.receiving.locked():
        raise Unavailable("other residents' uploads are being received; try again in a minute")
    # Room for the largest upload and its stored copy, before a byte is received.
    async with cameras.receiving, cameras.reserve(2 * limit, for_upload=True):
        return await _store_upload(request, owner, limit)


async def _store_upload(request: web.Request, owner: str, limit: int) -> web.Response:

    config = request.app[CONFIG].cameras
    index = request.app[CLIPS]
    cameras = request.app[CAMERAS]
    loop = asyncio.get_running_loop()
    incoming = index.root / ".incoming"
    await loop.run_in_executor(None, lambda: incoming.mkdir(parents=True, exist_ok=True))
    fields: dict[str, str] = {}
    handle = await loop.run_in_executor(None, lambda: tempfile.NamedTemporaryFile(
        dir=incoming, suffix=".upload", delete=False))
    received = 0
    try:
        with handle:
            reader = await request.multipart()
            for _ in range(MAX_UPLOAD_FIELDS + 1):
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    raise BadRequest("unexpected nested multipart part (expected the fields clip, recorded_at, note)")
                if part.name == "clip":
                    if received:
                        raise BadRequest("send one clip per upload")
                    while chunk := await part.read_chunk(1 << 20):
                        received += len(chunk)
                        if received > limit:
                            raise TooLarge(f"the clip is over the limit of {config.upload_max_mb} MiB")
                        await loop.run_in_executor(None, handle.write, chunk)
                elif part.name in ("recorded_at", "note"):
                    value = await part.read_chunk(4096)
                    if len(value) >= 4096:
                        raise BadRequest(f"{part.name}: too long")
                    fields[part.name] = value.decode("utf-8", "replace")
                else:
                    raise BadRequest(f"unexpected form field {str(part.name)[:40]!r} (expected clip, recorded_at, "
                                     "note)")
            else:
                raise BadRequest(f"too many form fields (at most {MAX_UPLOAD_FIELDS})")
        if not received:
            raise BadRequest("no clip: add the video file as the 'clip' field")
        note = fields.get("note", "").strip()[:200]
        recorded = _recorded_at(fields["recorded_at"]) if fields.get("recorded_at", "").strip() else None
        async with cameras.uploading:  # one at a time: decoding is heavy
            row = await index.begin(camera=UPLOAD_CAMERA, owner=owner, kind="upload", start=time.time(),
                                    end=time.time(), note=note)
            try:
                clip = await loop.run_in_executor(None, lambda: ingest_upload(
                    handle.name, *index.reserved_paths(row), max_seconds=config.upload_max_seconds))
            except BaseException as exc:
                await index.abandon(row.id)
                if isinstance(exc, UploadError):
                    raise
                if isinstance(exc, OSError):
                    raise Unavailable(f"the upload could not be stored: {exc.strerror or exc}") from exc
                raise
        start = recorded if recorded is not None else clip.recorded_utc
        if start is None:
            start = time.time() - clip.duration
        row = await index.finish(row.id, start=start, end=start + clip.duration, duration=clip.duration,
                                 size=clip.size, sha256=clip.sha256, width=clip.width, height=clip.height)
    finally:
        handle.close()
        with contextlib.suppress(OSError):
            await loop.run_in_executor(None, os.unlink, handle.name)
    return web.json_response({"ok": True, "clip": clip_json(row, {})}, status=201)


def routes() -> list[Route]:
    """The camera and clip routes: each handler also checks the camera's own viewers (Cameras.visible)."""
    signed_in, manager = frozenset({RESIDENT, MANAGER}), frozenset({MANAGER})
    return [
        Route("GET", "/api/cameras", list_cameras, signed_in),
        Route("PUT", "/api/cameras/{camera}/access", set_access, manager, AccessBody),
        Route("GET", "/api/cameras/{camera}/snapshot", snapshot, signed_in),
        Route("GET", "/api/cameras/{camera}/live", live, signed_in),
        Route("GET", "/api/clips", list_clips, signed_in),
        Route("GET", "/api/clips/{uid}", clip_detail, signed_in),
        Route("GET", "/api/clips/{uid}/video", clip_video, signed_in),
        Route("GET", "/api/clips/{uid}/thumbnail", clip_thumbnail, signed_in),
        Route("POST", "/api/clips/{uid}/hold", hold_clip, manager, HoldBody),
        Route("DELETE", "/api/clips/{uid}/hold", release_clip, manager),
        Route("DELETE", "/api/clips/{uid}", delete_clip, signed_in),
        Route("POST", "/api/uploads", upload_clip, frozenset({RESIDENT})),
    ]
