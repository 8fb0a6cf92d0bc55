"""Agency bundles: one clip with its signed manifest and consent receipt, encrypted to one agency's key.

Layout (docs/bundles.md has it byte by byte):

    header  b"NNBUNDLE" | version (1 byte) | agency ed25519 public key (32)
            | random content key sealed to the request's X25519 encryption key (80)
            | secretstream header (24)                                                                = 145 bytes
    chunks  ciphertext length (u32 big-endian) + XChaCha20-Poly1305 secretstream ciphertext, repeated:
            the video in chunks tagged TAG_MESSAGE, then one chunk tagged TAG_FINAL holding
            manifest length (u32 big-endian) | canonical manifest JSON | ed25519 signature of it by the node key (64)

The header is the associated data of the first chunk, so no byte of the file can change unnoticed. The manifest
comes last because it carries the delivered file's sha256, computed while the video streams through once; the
verifier writes the video to a temporary file and keeps it only once every check has passed. Both sides use
constant memory whatever the clip's size. Everything here blocks: the app calls it in an executor.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import struct
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import nacl.bindings as sodium
import nacl.public
import nacl.signing

from node import __version__
from node.durable import sync_folder
from node.sharing.agency_keys import box_key, verify_key
from node.sharing.errors import ConsentError, SharingError
from node.sharing.manifest import (
    MANIFEST_CONTEXT,
    ORIGINAL,
    REDACTED,
    VERSION,
    consent_problem,
    gaps_between,
    range_digest,
    read_manifest,
    utc_iso,
)
from sync import EventRejected, canonical

MAGIC = b"NNBUNDLE"
SUFFIX = ".nnbundle"
"""File name suffix of bundles."""
CHUNK = 64 * 1024
"""Plaintext bytes per video chunk written by build_bundle."""
MIN_CHUNK = 1024
MAX_CHUNK = 1024 * 1024
"""Largest plaintext of one chunk the format allows; the verifier refuses a longer length field."""
MAX_MANIFEST = 64 * 1024
"""Largest manifest (canonical JSON bytes), consent receipt included."""

HEADER = struct.Struct(">8sB32s80s24s")
"""magic, version, agency ed25519 key, sealed content key, secretstream header."""
LENGTH = struct.Struct(">I")
SIG_BYTES = 64
ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


@dataclass(frozen=True)
class BundleInfo:
    """A bundle written by build_bundle."""

    path: Path
    sha256: str
    """sha256 of the bundle file (hex), for the audit log and the agency's download."""
    size: int
    manifest: dict[str, Any]


def build_bundle(out_path: Path | str, *, video_path: Path | str, consent: dict[str, Any] | None,
                 node_signing_key: nacl.signing.SigningKey, agency_verify_key: nacl.signing.VerifyKey | str,
                 encryption_key: nacl.public.PublicKey | str, request_id: str, case_number: str, camera_id: str, camera_name: str, latitude: str,
                 longitude: str, clip_start: float | datetime | str, clip_end: float | datetime | str,
                 original_sha256: str, original_size: int, redaction_method: str | None = None,
                 media_type: str = "video/mp4", chunk_size: int = CHUNK, bundle_id: str | None = None) -> BundleInfo:
    """Encrypt the clip at `video_path` and its signed manifest to the agency, into `out_path`: the content key
    is sealed to `encryption_key`, the X25519 key the agency's signed request names (the manifest names it too).

    The one code path that builds bundles: it refuses (ConsentError) unless `consent` is a receipt signed by this
    node's key for `request_id` and the original clip `original_sha256`. The file at `video_path` is delivered as
    the consent chose: the redacted version (`redaction_method` names how it was redacted) or, on explicit choice,
    the original, whose sha256 and size must then be `original_sha256` and `original_size`. Streams the video
    once in `chunk_size` pieces, in constant memory; writes a temporary file, fsyncs it, renames it. Blocking.
    """
    out_path = Path(out_path)
    node_key = node_signing_key.verify_key.encode().hex()
    problem = consent_problem(consent, node_key=node_key, request_id=request_id, clip_sha256=original_sha256)
    if problem or consent is None:
        raise ConsentError(f"refusing to build a bundle: {problem}")
    agency = verify_key(agency_verify_key, "agency key")
    box = box_key(encryption_key)
    kind = consent["choice"]
    manifest = {
        "format": VERSION, "bundle_id": bundle_id or secrets.token_hex(16), "created": "", "software": f"nnode {__version__}",
        "node_key": node_key, "agency_key": agency.encode().hex(), "encryption_key": box.encode().hex(),
        "request": {"id": request_id, "case_number": case_number},
        "camera": {"id": camera_id, "name": camera_name, "latitude": latitude, "longitude": longitude},
        "clip": {"start": utc_iso(clip_start), "end": utc_iso(clip_end),
                 "original": {"sha256": original_sha256, "size": original_size}},
        "delivered": {"kind": kind, "sha256": "0" * 64, "size": 1, "media_type": media_type,
                      "redaction": redaction_method if kind == REDACTED else None},
        "consent": consent,
    }
    if kind == ORIGINAL and redaction_method is not None:
        raise SharingError("cannot build the bundle: the consent chose the original, which has no redaction method")
    with _open_video(video_path) as source:
        return _seal(out_path, manifest, source, node_signing_key, agency, box, chunk_size)


@dataclass(frozen=True)
class RangePart:
    """One clip of a range bundle: the file delivered (redacted or the original), when it was recorded, and the
    original's sha256 and size."""

    video_path: Path
    start: float | datetime | str
    end: float | datetime | str
    original_sha256: str
    original_size: int


def build_range_bundle(out_path: Path | str, *, parts: Sequence[RangePart], range_start: float | str,
                       range_end: float | str, consent: dict[str, Any] | None,
                       node_signing_key: nacl.signing.SigningKey, agency_verify_key: nacl.signing.VerifyKey | str,
                       encryption_key: nacl.public.PublicKey | str, request_id: str, case_number: str, camera_id: str, camera_name: str, latitude: str,
                       longitude: str, redaction_method: str | None = None, chunk_size: int = CHUNK,
                       bundle_id: str | None = None) -> BundleInfo:
    """Encrypt a range's clips (one camera, in time order) with one signed manifest to the agency's key.

    The parts travel one after another as the bundle's video; the manifest's `range` lists each part (recorded
    start and end, original and delivered sha256 and size) and the gaps between them, and `clip.original.sha256`
    is the range's digest (manifest.range_digest), which the one consent receipt must name. Otherwise as
    build_bundle: refuses without that consent, streams in constant memory, writes atomically. Blocking.
    """
    node_key = node_signing_key.verify_key.encode().hex()
    start, end = utc_iso(range_start), utc_iso(range_end)
    ordered = sorted(parts, key=lambda p: (utc_iso(p.start), utc_iso(p.end)))
    times = [(utc_iso(p.start), utc_iso(p.end)) for p in ordered]
    listed: list[dict[str, Any]] = [
        {"start": a, "end": b, "original": {"sha256": p.original_sha256, "size": p.original_size},
         "delivered": {"sha256": p.original_sha256, "size": p.original_size}} for (a, b), p in zip(times, ordered)]
    digest = range_digest(camera_id, start, end, [(a, b, p.original_sha256, p.original_size)
                                                  for (a, b), p in zip(times, ordered)])
    problem = consent_problem(consent, node_key=node_key, request_id=request_id, clip_sha256=digest)
    if problem or consent is None:
        raise ConsentError(f"refusing to build a bundle: {problem}")
    agency = verify_key(agency_verify_key, "agency key")
    box = box_key(encryption_key)
    kind = consent["choice"]
    total = sum(p.original_size for p in ordered)
    manifest = {
        "format": VERSION, "bundle_id": bundle_id or secrets.token_hex(16), "created": "",
        "software": f"nnode {__version__}", "node_key": node_key, "agency_key": agency.encode().hex(),
        "encryption_key": box.encode().hex(),
        "request": {"id": request_id, "case_number": case_number},
        "camera": {"id": camera_id, "name": camera_name, "latitude": latitude, "longitude": longitude},
        "clip": {"start": start, "end": end, "original": {"sha256": digest, "size": total}},
        "delivered": {"kind": kind, "sha256": "0" * 64, "size": total, "media_type": "video/mp4",
                      "redaction": redaction_method if kind == REDACTED else None},
        "consent": consent,
        "range": {"start": start, "end": end, "parts": listed,
                  "gaps": [{"start": a, "end": b} for a, b in gaps_between(start, end, times)]},
    }
    with _Concat([p.video_path for p in ordered]) as source:
        return _seal(Path(out_path), manifest, source, node_signing_key, agency, box, chunk_size)


class _Concat:
    """The parts' files read one after another, each one's sha256 and size noted on the way."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths, self.index = list(paths), 0
        self.handle: Any = None
        self.digests: list[tuple[str, int]] = []
        self._hash, self._size = hashlib.sha256(), 0

    def __enter__(self) -> _Concat:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def read(self, size: int) -> bytes:
        while self.index < len(self.paths):
            if self.handle is None:
                self.handle = _open_video(self.paths[self.index])
            data = self.handle.read(size)
            if data:
                self._hash.update(data)
                self._size += len(data)
                return bytes(data)
            self.handle.close()
            self.handle = None
            self.digests.append((self._hash.hexdigest(), self._size))
            self._hash, self._size = hashlib.sha256(), 0
            self.index += 1
        return b""

    def fill(self, parts: list[dict[str, Any]]) -> None:
        """Put each part's delivered sha256 and size into the manifest's parts."""
        for part, (sha256, size) in zip(parts, self.digests, strict=True):
            if size == 0:
                raise SharingError("cannot build the bundle: a part's video file is empty")
            part["delivered"] = {"sha256": sha256, "size": size}


def _open_video(path: Path | str) -> Any:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise SharingError(f"cannot read the video {path}: {exc.strerror or exc}") from exc


def _seal(out_path: Path, manifest: dict[str, Any], source: Any, node_signing_key: nacl.signing.SigningKey,
          agency: nacl.signing.VerifyKey, box: nacl.public.PublicKey, chunk_size: int) -> BundleInfo:
    """Check the consent and the draft manifest, then stream `source` and the final manifest into `out_path`
    (atomically). Every bundle is written here, and nothing is without the consent its manifest names."""
    problem = consent_problem(manifest["consent"], node_key=manifest["node_key"], request_id=manifest["request"]["id"],
                              clip_sha256=manifest["clip"]["original"]["sha256"])
    if problem:
        raise ConsentError(f"refusing to build a bundle: {problem}")
    if not (isinstance(chunk_size, int) and MIN_CHUNK <= chunk_size <= MAX_CHUNK):
        raise SharingError(f"chunk_size must be from {MIN_CHUNK} to {MAX_CHUNK} bytes")
    if not re.fullmatch(r"[0-9a-f]{32}", manifest["bundle_id"]):
        raise SharingError(f"bundle_id: expected 32 lowercase hex digits, got {manifest['bundle_id']!r}")
    # Check every argument before streaming a possibly large clip (sha256 and size are filled in afterwards).
    draft = manifest | {"created": utc_iso(time.time())}
    _, problem = read_manifest(draft)
    try:
        canonical(draft)
    except EventRejected as exc:
        problem = problem or str(exc)
    if problem:
        raise SharingError(f"cannot build the bundle: {problem}")
    if out_path.exists():
        raise SharingError(f"{out_path}: already exists; refusing to replace a bundle")
    tmp = out_path.with_name(f".{out_path.name}.part")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            size, sha256 = _write_bundle(source, out, manifest, node_signing_key, agency, box, chunk_size)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
        sync_folder(out_path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SharingError(f"building {out_path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BundleInfo(out_path, sha256, size, manifest)


def _write_bundle(source: Any, out: Any, manifest: dict[str, Any], node_signing_key: nacl.signing.SigningKey,
                  agency: nacl.signing.VerifyKey, box: nacl.public.PublicKey, chunk_size: int) -> tuple[int, str]:
    """Write header, video chunks and the final manifest chunk; fills in `manifest`; (bundle size, sha256)."""
    content_key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    sealed = nacl.public.SealedBox(box).encrypt(content_key)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = HEADER.pack(MAGIC, VERSION, agency.encode(), sealed,
                          sodium.crypto_secretstream_xchacha20poly1305_init_push(state, content_key))
    push = sodium.crypto_secretstream_xchacha20poly1305_push
    bundle = hashlib.sha256(header)
    out.write(header)
    written = len(header)
    video = hashlib.sha256()
    video_size = 0
    ad: bytes | None = header  # the first chunk authenticates the header
    while data := source.read(chunk_size):
        video.update(data)
        video_size += len(data)
        sealed_chunk = push(state, data, ad, TAG_MESSAGE)
        ad = None
        prefix = LENGTH.pack(len(sealed_chunk))
        out.write(prefix)
        out.write(sealed_chunk)
        bundle.update(prefix)
        bundle.update(sealed_chunk)
        written += len(prefix) + len(sealed_chunk)
    delivered, original = manifest["delivered"], manifest["clip"]["original"]
    delivered["sha256"], delivered["size"] = video.hexdigest(), video_size
    if video_size == 0:
        raise SharingError("cannot build the bundle: the video file is empty")
    if "range" in manifest:
        source.fill(manifest["range"]["parts"])
        _, problem = read_manifest(manifest | {"created": utc_iso(time.time())})
        if problem:
            raise SharingError(f"cannot build the bundle: {problem}")
    elif delivered["kind"] == ORIGINAL and (delivered["sha256"], video_size) != (original["sha256"], original["size"]):
        raise SharingError("cannot build the bundle: the consent chose the original, but the video file is not the "
                           f"original clip (sha256 {delivered['sha256']}, {video_size} bytes)")
    manifest["created"] = utc_iso(time.time())
    body = canonical(manifest)
    if len(body) > MAX_MANIFEST:
        raise SharingError(f"cannot build the bundle: the manifest is {len(body)} bytes, over {MAX_MANIFEST}")
    signature = node_signing_key.sign(MANIFEST_CONTEXT + body).signature
    final = push(state, LENGTH.pack(len(body)) + body + signature, ad, TAG_FINAL)
    prefix = LENGTH.pack(len(final))
    out.write(prefix)
    out.write(final)
    bundle.update(prefix)
    bundle.update(final)
    return written + len(prefix) + len(final), bundle.hexdigest()

