"""Checking a bundle offline, as an agency does (`nnode verify`): decrypt, check every signature and digest, and
extract the clip with its signed manifest and a readable report.

The checks run in the order the format allows (docs/bundles.md): magic and version, the content key, every chunk's
authentication (the first covers the header), the stream's end, the manifest's signature and fields, the consent
receipt, the delivered video. The first failure raises VerifyError naming it and where in the file it is, and
nothing is left in the output folder. Decrypts in constant memory; blocking.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from node.durable import sync_folder
from node.sharing.agency_keys import AgencyKey, agency_key, verify_key
from node.sharing.bundle import (
    ABYTES,
    HEADER,
    LENGTH,
    MAGIC,
    MAX_CHUNK,
    MAX_MANIFEST,
    SIG_BYTES,
    TAG_FINAL,
    TAG_MESSAGE,
)
from node.sharing.errors import SharingError, VerifyError
from node.sharing.manifest import (
    MANIFEST_CONTEXT,
    MEDIA_FILES,
    ORIGINAL,
    REDACTED,
    VERSION,
    Manifest,
    consent_problem,
    read_manifest,
)
from sync import EventRejected, decode

if TYPE_CHECKING:
    from node.sharing.joining import Joined

_OUTPUTS = ("manifest.json", "manifest.sig", "report.txt")
RANGE_FILE = "range.mp4"
"""The name `verify_bundle` gives a range bundle's parts joined."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class VerifyResult:
    """A bundle that passed every check, and what verify_bundle wrote."""

    clip: Path
    manifest: dict[str, Any]
    manifest_path: Path
    signature: str
    """The node's ed25519 signature of MANIFEST_CONTEXT + manifest.json's bytes (hex)."""
    report: str
    report_path: Path
    bundle_sha256: str
    bundle_size: int
    chunks: int
    checks: tuple[str, ...]
    parts: tuple[Path, ...] = ()
    """A range bundle's clips, each as delivered (part-001.mp4...); `clip` is then them joined (range.mp4)."""


@dataclass
class _Opened:
    """What decrypting a bundle gave: the final chunk's parts and figures about the video."""

    manifest_bytes: bytes
    signature: bytes
    video_sha256: str
    video_size: int
    chunks: int
    bundle_sha256: str
    bundle_size: int


def _open_content_key(header: bytes, agency_key: AgencyKey) -> bytes:
    _, _, recipient, sealed, _ = HEADER.unpack(header)
    ours = agency_key.verify_key.encode()
    try:
        content_key = nacl.public.SealedBox(agency_key.box).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        if recipient != ours:
            raise VerifyError(f"wrong key: this bundle was not made for this agency key (it is for agency key "
                              f"{recipient.hex()}; this key is {ours.hex()})") from None
        raise VerifyError(f"the sealed content key (bytes 41-120) does not open with this key file's encryption key "
                          f"({agency_key.encryption_key}): sealed to another key of this agency (a request posted "
                          "with another key file, or before its keys were separated), or altered") from None
    if recipient != ours:
        raise VerifyError("the header's agency key field (bytes 9-40) was altered: it does not name the key that "
                          "opens the bundle")
    if len(content_key) != sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES:
        raise VerifyError("the sealed content key has the wrong length")
    return content_key


def _decrypt(source: BinaryIO, agency_key: AgencyKey, clip: BinaryIO) -> _Opened:
    """Check the header, open the content key and decrypt every chunk, writing the video to `clip`."""
    header = source.read(HEADER.size)
    if len(header) < len(MAGIC) or header[:len(MAGIC)] != MAGIC:
        raise VerifyError(f"not a bundle: the file does not start with {MAGIC.decode()}")
    if len(header) < HEADER.size:
        raise VerifyError(f"truncated: the file ends inside its {HEADER.size}-byte header")
    if header[8] != VERSION:
        raise VerifyError(f"unsupported bundle format version {header[8]} (this nnode reads version {VERSION})")
    content_key = _open_content_key(header, agency_key)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header[-24:], content_key)
    pull = sodium.crypto_secretstream_xchacha20poly1305_pull
    bundle = hashlib.sha256(header)
    video = hashlib.sha256()
    video_size = 0
    offset = len(header)
    ad: bytes | None = header
    index = 0
    while True:
        prefix = source.read(LENGTH.size)
        if not prefix:
            raise VerifyError(f"truncated: the file ends after chunk {index - 1} without its final chunk"
                              if index else "truncated: the file ends after its header")
        bundle.update(prefix)
        if len(prefix) < LENGTH.size:
            raise VerifyError(f"truncated: the file ends inside chunk {index}'s length field (at byte {offset})")
        (length,) = LENGTH.unpack(prefix)
        if not ABYTES <= length <= MAX_CHUNK + ABYTES:
            raise VerifyError(f"chunk {index} (at byte {offset}): its length field is altered or corrupt "
                              f"({length} bytes, at most {MAX_CHUNK + ABYTES} allowed)")
        sealed = source.read(length)
        bundle.update(sealed)
        if len(sealed) < length:
            raise VerifyError(f"chunk {index} (at byte {offset}): the file ends inside this chunk "
                              "(truncated, or its length field altered)")
        try:
            plain, tag = pull(state, sealed, ad)
        except nacl.exceptions.CryptoError:
            raise VerifyError(f"chunk {index} (at byte {offset}) fails authentication (altered or corrupt)") from None
        ad = None
        offset += LENGTH.size + length
        index += 1
        if tag == TAG_FINAL:
            break
        if tag != TAG_MESSAGE:
            raise VerifyError(f"chunk {index - 1} carries an unknown tag {tag}")
        video.update(plain)
        video_size += len(plain)
        clip.write(plain)
    extra = 0
    while rest := source.read(MAX_CHUNK):
        extra += len(rest)
    if extra:
        raise VerifyError(f"{extra} extra byte{'s' if extra > 1 else ''} after the final chunk (chunk {index - 1}, "
                          f"which ends at byte {offset}): appended or altered")
    if len(plain) < LENGTH.size + SIG_BYTES:
        raise VerifyError("the final chunk is too short to hold a manifest and its signature")
    (length,) = LENGTH.unpack(plain[:LENGTH.size])
    if length > MAX_MANIFEST or LENGTH.size + length + SIG_BYTES != len(plain):
        raise VerifyError(f"the final chunk's manifest length ({length}) does not fit the chunk")
    return _Opened(plain[LENGTH.size:LENGTH.size + length], plain[-SIG_BYTES:], video.hexdigest(), video_size,
                   index, bundle.hexdigest(), offset)


def _check_manifest(opened: _Opened, agency_key: AgencyKey,
                    expected_node_key: str | None) -> tuple[dict[str, Any], Manifest]:
    """Check the manifest, its signature, the consent receipt and the delivered video; the manifest as sent and
    as read."""
    try:
        raw = decode(opened.manifest_bytes)
    except EventRejected as exc:
        raise VerifyError(f"the manifest is not canonical JSON: {exc}") from None
    node_key = raw.get("node_key") if isinstance(raw, dict) else None
    if not isinstance(node_key, str) or not _HEX64.fullmatch(node_key):
        raise VerifyError("the manifest names no node key (field node_key)")
    try:
        nacl.signing.VerifyKey(bytes.fromhex(node_key)).verify(MANIFEST_CONTEXT + opened.manifest_bytes,
                                                               opened.signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError):
        raise VerifyError(f"the manifest's signature does not verify with the node key it names ({node_key}): "
                          "forged or altered") from None
    if expected_node_key is not None and node_key != expected_node_key:
        raise VerifyError(f"signed by node key {node_key}, not the expected node key {expected_node_key}")
    manifest, problem = read_manifest(raw)
    if manifest is None:
        raise VerifyError(f"the manifest is malformed: {problem}")
    ours = agency_key.verify_key.encode().hex()
    if manifest.agency_key != ours:
        raise VerifyError(f"the manifest says the clip was disclosed to agency key {manifest.agency_key}, not "
                          f"this key ({ours}): re-encrypted by someone else")
    if manifest.encryption_key is not None and manifest.encryption_key != agency_key.encryption_key:
        raise VerifyError(f"the manifest says the bundle was sealed to encryption key {manifest.encryption_key}, not "
                          f"this key file's ({agency_key.encryption_key}): re-encrypted by someone else")
    problem = consent_problem(manifest.consent, node_key=node_key, request_id=manifest.request.id,
                              clip_sha256=manifest.clip.original.sha256)
    if problem:
        raise VerifyError(f"consent: {problem}")
    delivered = manifest.delivered
    if manifest.consent["choice"] != delivered.kind:
        raise VerifyError(f"consent: the owner chose the {manifest.consent['choice']} clip, but the bundle "
                          f"delivers the {delivered.kind} one")
    if opened.video_size != delivered.size:
        raise VerifyError(f"the video is {opened.video_size} bytes, the manifest says {delivered.size}")
    if opened.video_sha256 != delivered.sha256:
        raise VerifyError(f"the video's sha256 is {opened.video_sha256}, the manifest says {delivered.sha256}")
    return raw, manifest


def _expected(value: nacl.signing.VerifyKey | bytes | str | None) -> str | None:
    return None if value is None else verify_key(value, "expected node key").encode().hex()


def verify_bundle(bundle_path: Path | str, agency_signing_key: AgencyKey | nacl.signing.SigningKey,
                  out_dir: Path | str, *,
                  expected_node_key: nacl.signing.VerifyKey | bytes | str | None = None,
                  expected_from: str = "given on the command line", replace: bool = False) -> VerifyResult:
    """Check a bundle offline and extract it into `out_dir` (new or empty): the clip, manifest.json (the signed
    bytes), manifest.sig (the signature in hex) and report.txt.

    Decrypts in constant memory. Checks, in this order: magic and version; the content key opens with this agency
    key; every chunk authenticates (the first also authenticates the header); the stream ends with its final chunk
    and nothing follows; the manifest's signature by the node key it names; that key is `expected_node_key` (if
    given); the manifest's fields; it names this agency key; the consent receipt (node key, signature, request,
    clip, choice); the delivered video's size and sha256. Raises VerifyError naming the first failure, and then
    leaves nothing in `out_dir`. An unreadable bundle or an unusable `out_dir` raise SharingError. Blocking.
    `expected_from` says in the report where the expected key came from (given, pinned on a date, first contact).
    With `replace`, `out_dir` may hold files: those this writes are replaced (only once every check passed), the
    others are left alone.
    """
    bundle_path, out_dir = Path(bundle_path), Path(out_dir)
    keys = agency_key(agency_signing_key)
    expected = _expected(expected_node_key)
    try:
        source = open(bundle_path, "rb")
    except OSError as exc:
        raise SharingError(f"{bundle_path}: cannot read the bundle: {exc.strerror or exc}") from exc
    with source:
        created = not out_dir.exists()
        if not created and not out_dir.is_dir():
            raise SharingError(f"{out_dir}: not a folder; give a new or empty folder for the verified clip")
        if not created and not replace and any(out_dir.iterdir()):
            raise SharingError(f"{out_dir}: not an empty folder; give a new or empty folder for the verified clip "
                               "(or --force to replace what an earlier run wrote there)")
        tmp = out_dir / ".clip.part"
        if replace:
            tmp.unlink(missing_ok=True)   # left by a run cut short
        done: list[Path] = []
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as clip:
                opened = _decrypt(source, keys, clip)
                raw, manifest = _check_manifest(opened, keys, expected)
                clip.flush()
                os.fsync(clip.fileno())
            clip_path, parts, joined = _extract(tmp, out_dir, manifest, done)
            checks = _checks(opened, manifest, expected, expected_from)
            report = _report(bundle_path, opened, manifest, clip_path, checks) + _range_report(manifest, joined)
            signature = opened.signature.hex()
            for name, data in zip(_OUTPUTS, (opened.manifest_bytes, (signature + "\n").encode(), report.encode())):
                _write_file(out_dir / name, data)
                done.append(out_dir / name)
            sync_folder(out_dir)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            for path in done:
                path.unlink(missing_ok=True)
            if created and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            if isinstance(exc, OSError):
                raise SharingError(f"verifying {bundle_path} into {out_dir}: {exc.strerror or exc}") from exc
            raise
    return VerifyResult(clip_path, raw, out_dir / "manifest.json", signature, report, out_dir / "report.txt",
                        opened.bundle_sha256, opened.bundle_size, opened.chunks, checks, parts)


def _extract(tmp: Path, out_dir: Path, manifest: Manifest,
             done: list[Path]) -> tuple[Path, tuple[Path, ...], Joined | str | None]:
    """Put the checked video in place: the clip, or a range's parts (each checked against its sha256 and size)
    and them joined into range.mp4 (or why they could not be joined: the parts then stand alone)."""
    if manifest.range is None:
        clip_path = out_dir / MEDIA_FILES[manifest.delivered.media_type]
        os.replace(tmp, clip_path)
        done.append(clip_path)
        return clip_path, (), None
    from node.sharing.joining import JoinError, join_videos  # loads PyAV: only range bundles need it

    parts = []
    with open(tmp, "rb") as video:
        for n, part in enumerate(manifest.range.parts, 1):
            path = out_dir / f"part-{n:03d}.mp4"
            done.append(path)
            sha256, size = _copy_part(video, path, part.delivered.size)
            if (sha256, size) != (part.delivered.sha256, part.delivered.size):
                raise VerifyError(f"range part {n}: its video is {size} bytes with sha256 {sha256}, the manifest "
                                  f"says {part.delivered.size} bytes with sha256 {part.delivered.sha256}")
            parts.append(path)
    tmp.unlink()
    joined: Joined | str
    try:
        joined = join_videos(parts, out_dir / RANGE_FILE)
        done.append(joined.path)
    except JoinError as exc:
        joined = str(exc)
    return (joined.path if not isinstance(joined, str) else parts[0]), tuple(parts), joined


def _copy_part(video: BinaryIO, path: Path, size: int) -> tuple[str, int]:
    """Copy the next `size` bytes of `video` into `path`; their (sha256, how many there were)."""
    digest, copied = hashlib.sha256(), 0
    with open(path, "wb") as out:
        while copied < size and (data := video.read(min(MAX_CHUNK, size - copied))):
            digest.update(data)
            out.write(data)
            copied += len(data)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest(), copied


def _range_report(manifest: Manifest, joined: Joined | str | None) -> str:
    """The report's account of a range bundle: the range, each part (and where it starts in range.mp4), each gap."""
    r = manifest.range
    if r is None or joined is None:
        return ""
    offsets = joined.offsets if not isinstance(joined, str) else ()
    lines = ["", f"range       {r.start} to {r.end} (UTC): {len(r.parts)} clips, {len(r.gaps)} gaps"]
    for n, part in enumerate(r.parts, 1):
        at = f", at {offsets[n - 1]:.1f} s in {RANGE_FILE}" if offsets else ""
        lines.append(f"  part {n:3d}  {part.start} to {part.end}: part-{n:03d}.mp4, {part.delivered.size} bytes, "
                     f"sha256 {part.delivered.sha256} (checked){at}; original sha256 {part.original.sha256}")
    for n, gap in enumerate(r.gaps, 1):
        lines.append(f"  gap  {n:3d}  {gap.start} to {gap.end}: nothing recorded")
    if not isinstance(joined, str):
        lines.append(f"joined      {RANGE_FILE}: the {len(r.parts)} parts back to back by stream copy, {joined.frames} "
                     f"pictures, {joined.duration:.1f} s (the gaps are not in the video; the times above are)")
    else:
        lines.append(f"joined      not: {joined}; play the parts one by one")
    return "\n".join(lines) + "\n"


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _checks(opened: _Opened, manifest: Manifest, expected: str | None, expected_from: str) -> tuple[str, ...]:
    delivered = manifest.delivered
    return (
        f"format: {MAGIC.decode()} version {VERSION}",
        "the content key opens with this key file's encryption key"
        + (f" ({manifest.encryption_key}, which the manifest names)" if manifest.encryption_key else
           " (converted from the signing key: a bundle made before the keys were separated)")
        + "; the header names this agency key",
        f"all {opened.chunks} chunks authenticate (the first also covers the header); the stream ends with its "
        "final chunk and nothing follows",
        f"the manifest is signed by node key {manifest.node_key}"
        + (f" (the expected node key, {expected_from})" if expected else " (not compared: no --node-key given)"),
        "the manifest's fields are well-formed and name this agency key",
        f"the consent receipt is signed by the same node key for request {manifest.request.id!r} and the "
        f"original clip; its owner chose the {manifest.consent['choice']} clip, which is the one delivered",
        f"the delivered video matches the manifest: {delivered.size} bytes, sha256 {delivered.sha256}",
        *((f"the range's {len(manifest.range.parts)} parts are in time order within {manifest.range.start} to "
           f"{manifest.range.end}, its {len(manifest.range.gaps)} gaps are exactly what they leave uncovered, and its "
           "digest (of every original's time, sha256 and size) is the clip the consent receipt names",
           f"each of the {len(manifest.range.parts)} parts matches its sha256 and size in the manifest")
          if manifest.range is not None else ()),
    )


def _report(bundle_path: Path, opened: _Opened, manifest: Manifest, clip_path: Path, checks: tuple[str, ...]) -> str:
    """The readable account of a verified bundle."""
    m, camera, clip, delivered = manifest, manifest.camera, manifest.clip, manifest.delivered
    consent = manifest.consent
    redaction = (f"redaction   {delivered.redaction}" if delivered.kind == REDACTED
                 else "redaction   none: the owner chose to share the original")
    lines = [
        "Neighborhood Node agency bundle: VERIFIED",
        "",
        f"bundle      {bundle_path} ({opened.bundle_size} bytes, sha256 {opened.bundle_sha256})",
        f"bundle id   {m.bundle_id}, made {m.created} by {m.software}",
        f"signed by   node key {m.node_key}",
        f"made for    agency key {m.agency_key}, sealed to encryption key "
        f"{m.encryption_key or '(converted from the agency key)'} (the key that opened it)",
        f"request     {m.request.id}, case number {m.request.case_number}",
        f"camera      {camera.name} (id {camera.id}) at latitude {camera.latitude}, longitude {camera.longitude}",
        f"clip        {clip.start} to {clip.end} (UTC)",
        f"original    sha256 {clip.original.sha256}, {clip.original.size} bytes"
        + (" (delivered)" if delivered.kind == ORIGINAL else " (not delivered)"),
        f"delivered   the {delivered.kind} clip, {delivered.media_type}, {delivered.size} bytes, "
        f"sha256 {delivered.sha256}",
        redaction,
        f"consent     {consent['by']['role']} {consent['by']['id']} chose the {consent['choice']} clip at "
        f"{consent['at']} (receipt signed by the node key)",
        f"written     {clip_path.name}, manifest.json (the signed bytes), manifest.sig, report.txt in "
        f"{clip_path.parent}",
        "",
        "checks passed, in order:",
        *(f"  {n}. {check}" for n, check in enumerate(checks, 1)),
    ]
    return "\n".join(lines) + "\n"
