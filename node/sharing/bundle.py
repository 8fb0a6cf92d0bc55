"""Agency bundles: one clip with its signed manifest and consent receipt, encrypted to one agency's key.

Layout (docs/bundles.md has it byte by byte):

    header  b"NNBUNDLE" | version (1 byte) | agency ed25519 public key (32)
            | random content key sealed to the agency's X25519 key (80) | secretstream header (24)      = 145 bytes
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
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from sync import EventRejected, canonical, decode

from .. import __version__
from node.durable import sync_folder
from node.errors import NodeError

MAGIC = b"NNBUNDLE"
VERSION = 1
SUFFIX = ".nnbundle"
"""File name suffix of bundles."""
CHUNK = 64 * 1024
"""Plaintext bytes per video chunk written by build_bundle."""
MIN_CHUNK = 1024
MAX_CHUNK = 1024 * 1024
"""Largest plaintext of one chunk the format allows; the verifier refuses a longer length field."""
MAX_MANIFEST = 64 * 1024
"""Largest manifest (canonical JSON bytes), consent receipt included."""
MANIFEST_CONTEXT = b"nnode-bundle-manifest-v1:"
"""Prefix of the signed manifest bytes, so a manifest signature can never pass for another signed object's."""
CONSENT_CONTEXT = b"nnode-consent-v1:"
"""Prefix of the signed consent receipt bytes."""
REDACTED, ORIGINAL = "redacted", "original"
ROLES = ("manager", "resident")
MEDIA_FILES = {"video/mp4": "clip.mp4", "video/webm": "clip.webm"}
"""Media types a bundle may deliver, and the name `verify_bundle` gives the clip."""

_HEADER = struct.Struct(">8sB32s80s24s")
_LENGTH = struct.Struct(">I")
_SIG_BYTES = 64
_ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
_TAG_MESSAGE = sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL
_MAX_TEXT = 200
_MAX_SAFE_INT = 2**53 - 1
_HEX = {n: re.compile(f"[0-9a-f]{{{n}}}") for n in (32, 64, 128)}
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_DECIMAL = re.compile(r"-?\d{1,3}(\.\d{1,12})?")
_OUTPUTS = ("manifest.json", "manifest.sig", "report.txt")


class SharingError(NodeError):
    """A bundle cannot be built or checked: a bad argument or an unreadable or unwritable file."""

    status = 500
    reason = "sharing"


class ConsentError(SharingError):
    """No consent record, or one that does not match the clip and request or whose signature fails."""

    status = 403
    reason = "consent"


class VerifyError(SharingError):
    """A bundle failed verification; the message names the first check that failed."""

    status = 422
    reason = "bundle"


@dataclass(frozen=True)
class BundleInfo:
    """A bundle written by build_bundle."""

    path: Path
    sha256: str
    """sha256 of the bundle file (hex), for the audit log and the agency's download."""
    size: int
    manifest: dict


@dataclass(frozen=True)
class VerifyResult:
    """A bundle that passed every check, and what verify_bundle wrote."""

    clip: Path
    manifest: dict
    manifest_path: Path
    signature: str
    """The node's ed25519 signature of MANIFEST_CONTEXT + manifest.json's bytes (hex)."""
    report: str
    report_path: Path
    bundle_sha256: str
    bundle_size: int
    chunks: int
    checks: tuple[str, ...]


# -- values -----------------------------------------------------------------------------------------------------

def utc_iso(value: float | datetime | str) -> str:
    """A UTC time as ISO 8601 with milliseconds and Z, like 2025-05-01T12:00:00.000Z (POSIX seconds, aware datetime
    or such a string)."""
    if isinstance(value, str):
        if _ISO.fullmatch(value):
            return value
        raise SharingError(f"time {value!r} is not ISO 8601 UTC like 2025-05-01T12:00:00.000Z")
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SharingError("a naive datetime has no time zone: give an aware datetime or POSIX seconds")
        value = value.timestamp()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SharingError(f"time {value!r} is neither POSIX seconds, a datetime nor an ISO 8601 string")
    ms = round(value * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _decimal_in(value: Any, limit: int) -> bool:
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        return False
    try:
        return abs(Decimal(value)) <= limit
    except InvalidOperation:
        return False


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_TEXT


# What each kind of manifest value must be: a test and the words for the error message.
_KINDS: dict[str, tuple[Any, str]] = {
    "text": (_text, f"a non-empty string of at most {_MAX_TEXT} characters"),
    "text?": (lambda v: v is None or _text(v), f"null or a non-empty string of at most {_MAX_TEXT} characters"),
    "hex32": (lambda v: isinstance(v, str) and _HEX[32].fullmatch(v), "32 lowercase hex digits"),
    "hex64": (lambda v: isinstance(v, str) and _HEX[64].fullmatch(v), "64 lowercase hex digits"),
    "hex128": (lambda v: isinstance(v, str) and _HEX[128].fullmatch(v), "128 lowercase hex digits"),
    "iso": (lambda v: isinstance(v, str) and _ISO.fullmatch(v), "a UTC time like 2025-05-01T12:00:00.000Z"),
    "size": (lambda v: type(v) is int and 0 < v <= _MAX_SAFE_INT, "a positive integer"),
    "lat": (lambda v: _decimal_in(v, 90), 'a decimal string from -90 to 90, like "40.7128"'),
    "lon": (lambda v: _decimal_in(v, 180), 'a decimal string from -180 to 180, like "-74.0060"'),
    "kind": (lambda v: v in (REDACTED, ORIGINAL), f'"{REDACTED}" or "{ORIGINAL}"'),
    "role": (lambda v: v in ROLES, " or ".join(f'"{r}"' for r in ROLES)),
    "media": (lambda v: v in MEDIA_FILES, " or ".join(f'"{m}"' for m in MEDIA_FILES)),
    "format": (lambda v: type(v) is int and v == VERSION, f"{VERSION}"),
    "object": (lambda v: isinstance(v, dict), "an object"),
}

MANIFEST_FIELDS = {
    "format": "format", "bundle_id": "hex32", "created": "iso", "software": "text",
    "node_key": "hex64", "agency_key": "hex64",
    "request": {"id": "text", "case_number": "text"},
    "camera": {"id": "text", "name": "text", "latitude": "lat", "longitude": "lon"},
    "clip": {"start": "iso", "end": "iso", "original": {"sha256": "hex64", "size": "size"}},
    "delivered": {"kind": "kind", "sha256": "hex64", "size": "size", "media_type": "media", "redaction": "text?"},
    "consent": "object",
}
"""The manifest's fields (format 1): exactly these, of these kinds."""

CONSENT_FIELDS = {
    "v": "format", "request_id": "text", "clip_sha256": "hex64", "by": {"role": "role", "id": "text"},
    "choice": "kind", "at": "iso", "node_key": "hex64", "sig": "hex128",
}
"""The consent receipt's fields: exactly these, of these kinds."""


def _shape_problem(value: Any, schema: dict, path: str = "") -> str | None:
    """The first way `value` differs from `schema` (missing, unknown or ill-typed field), or None."""
    if not isinstance(value, dict):
        return f"{path or 'value'} is not an object"
    for name, kind in schema.items():
        where = f"{path}.{name}" if path else name
        if name not in value:
            return f"field {where} is missing"
        if isinstance(kind, dict):
            problem = _shape_problem(value[name], kind, where)
            if problem:
                return problem
        elif not _KINDS[kind][0](value[name]):
            return f"field {where} must be {_KINDS[kind][1]}, not {_short(value[name])}"
    unknown = sorted(set(value) - set(schema))
    if unknown:
        return f"unknown field {path + '.' if path else ''}{unknown[0]}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _manifest_problem(manifest: dict) -> str | None:
    """The first thing wrong with a manifest's fields, or None."""
    problem = _shape_problem(manifest, MANIFEST_FIELDS)
    if problem:
        return problem
    clip, delivered = manifest["clip"], manifest["delivered"]
    if clip["end"] < clip["start"]:
        return f"the clip ends ({clip['end']}) before it starts ({clip['start']})"
    if delivered["kind"] == REDACTED and delivered["redaction"] is None:
        return "a redacted clip must name its redaction method (delivered.redaction)"
    if delivered["kind"] == ORIGINAL and delivered["redaction"] is not None:
        return "the original clip is not redacted: delivered.redaction must be null"
    return None


# -- keys -------------------------------------------------------------------------------------------------------

def _verify_key(value: nacl.signing.VerifyKey | bytes | str, what: str) -> nacl.signing.VerifyKey:
    if isinstance(value, nacl.signing.VerifyKey):
        return value
    if isinstance(value, str):
        if not _HEX[64].fullmatch(value.lower()):
            raise SharingError(f"the {what} must be 64 hex digits (an ed25519 public key)")
        value = bytes.fromhex(value)
    if not isinstance(value, bytes) or len(value) != 32:
        raise SharingError(f"the {what} must be an ed25519 public key (32 bytes or 64 hex digits)")
    return nacl.signing.VerifyKey(value)


def _x25519_public(key: nacl.signing.VerifyKey) -> nacl.public.PublicKey:
    """The agency's X25519 key, derived from its ed25519 key (crypto_sign_ed25519_pk_to_curve25519)."""
    try:
        return nacl.public.PublicKey(sodium.crypto_sign_ed25519_pk_to_curve25519(key.encode()))
    except nacl.exceptions.CryptoError as exc:
        raise SharingError(f"agency key {key.encode().hex()} is not a usable ed25519 public key") from exc


def _x25519_private(key: nacl.signing.SigningKey) -> nacl.public.PrivateKey:
    """The agency's X25519 private key (crypto_sign_ed25519_sk_to_curve25519 of seed + public key)."""
    secret = key.encode() + key.verify_key.encode()
    return nacl.public.PrivateKey(sodium.crypto_sign_ed25519_sk_to_curve25519(secret))


def load_agency_key(path: Path | str) -> nacl.signing.SigningKey:
    """Read an agency's ed25519 private seed: 64 hex digits (surrounding whitespace allowed) or 32 raw bytes."""
    path = Path(path)
    try:
        if path.stat().st_size > 1024:
            raise SharingError(f"{path}: too large for an agency key file")
        data = path.read_bytes()
    except OSError as exc:
        raise SharingError(f"{path}: cannot read the agency key: {exc.strerror or exc}") from exc
    if len(data) == 32:
        return nacl.signing.SigningKey(data)
    text = data.decode("ascii", "replace").strip().lower()
    if _HEX[64].fullmatch(text):
        return nacl.signing.SigningKey(bytes.fromhex(text))
    raise SharingError(f"{path}: an agency key file holds the 32-byte ed25519 private seed, "
                       f"as 64 hex digits or 32 raw bytes (found {len(data)} bytes)")


def write_agency_key(path: Path | str) -> nacl.signing.SigningKey:
    """Generate an agency key into a new file (64 hex digits and a newline, mode 0600); refuse to overwrite."""
    path = Path(path)
    key = nacl.signing.SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SharingError(f"{path}: already exists; refusing to replace a key") from None
    except OSError as exc:
        raise SharingError(f"{path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "w") as handle:
        handle.write(key.encode().hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


# -- consent ----------------------------------------------------------------------------------------------------

def sign_consent(node_signing_key: nacl.signing.SigningKey, *, request_id: str, clip_sha256: str, role: str,
                 subject: str, choice: str = REDACTED, at: float | datetime | str | None = None) -> dict:
    """A consent receipt signed by the node key: who (role and opaque id) chose what, for which request and clip
    (the original's sha256), and when (default now)."""
    receipt = {"v": VERSION, "request_id": request_id, "clip_sha256": clip_sha256,
               "by": {"role": role, "id": subject}, "choice": choice,
               "at": utc_iso(time.time() if at is None else at),
               "node_key": node_signing_key.verify_key.encode().hex()}
    problem = _shape_problem(receipt | {"sig": "0" * 128}, CONSENT_FIELDS)
    if problem:
        raise ConsentError(f"cannot make a consent receipt: {problem}")
    signature = node_signing_key.sign(CONSENT_CONTEXT + canonical(receipt)).signature
    return receipt | {"sig": signature.hex()}


def _consent_problem(receipt: Any, *, node_key: str, request_id: Any, clip_sha256: Any) -> str | None:
    """The first reason `receipt` does not record consent for this node, request and clip, or None."""
    if receipt is None:
        return "there is no consent record"
    problem = _shape_problem(receipt, CONSENT_FIELDS)
    if problem:
        return f"consent receipt {problem}"
    if receipt["node_key"] != node_key:
        return f"the consent receipt is from node key {receipt['node_key']}, not {node_key}"
    body = {name: value for name, value in receipt.items() if name != "sig"}
    try:
        nacl.signing.VerifyKey(bytes.fromhex(node_key)).verify(CONSENT_CONTEXT + canonical(body),
                                                               bytes.fromhex(receipt["sig"]))
    except (nacl.exceptions.BadSignatureError, EventRejected):
        return "the consent receipt's signature does not verify with the node key (forged or altered)"
    if receipt["request_id"] != request_id:
        return f"the consent is for request {receipt['request_id']!r}, not {request_id!r}"
    if receipt["clip_sha256"] != clip_sha256:
        return f"the consent is for clip sha256 {receipt['clip_sha256']}, not {clip_sha256}"
    return None


def check_consent(receipt: Any, *, node_key: str, request_id: str, clip_sha256: str) -> None:
    """Raise ConsentError unless `receipt` is this node's signed consent for this request and original clip."""
    problem = _consent_problem(receipt, node_key=node_key, request_id=request_id, clip_sha256=clip_sha256)
    if problem:
        raise ConsentError(problem)


# -- building ---------------------------------------------------------------------------------------------------

def build_bundle(out_path: Path | str, *, video_path: Path | str, consent: dict | None,
                 node_signing_key: nacl.signing.SigningKey, agency_verify_key: nacl.signing.VerifyKey | str,
                 request_id: str, case_number: str, camera_id: str, camera_name: str, latitude: str,
                 longitude: str, clip_start: float | datetime | str, clip_end: float | datetime | str,
                 original_sha256: str, original_size: int, redaction_method: str | None = None,
                 media_type: str = "video/mp4", chunk_size: int = CHUNK) -> BundleInfo:
    """Encrypt the clip at `video_path` and its signed manifest to the agency's key, into `out_path`.

    The one code path that builds bundles: it refuses (ConsentError) unless `consent` is a receipt signed by this
    node's key for `request_id` and the original clip `original_sha256`. The file at `video_path` is delivered as
    the consent chose: the redacted version (`redaction_method` names how it was redacted) or, on explicit choice,
    the original, whose sha256 and size must then be `original_sha256` and `original_size`. Streams the video
    once in `chunk_size` pieces, in constant memory; writes a temporary file, fsyncs it, renames it. Blocking.
    """
    out_path, video_path = Path(out_path), Path(video_path)
    node_key = node_signing_key.verify_key.encode().hex()
    problem = _consent_problem(consent, node_key=node_key, request_id=request_id, clip_sha256=original_sha256)
    if problem:
        raise ConsentError(f"refusing to build a bundle: {problem}")
    agency = _verify_key(agency_verify_key, "agency key")
    if not (isinstance(chunk_size, int) and MIN_CHUNK <= chunk_size <= MAX_CHUNK):
        raise SharingError(f"chunk_size must be from {MIN_CHUNK} to {MAX_CHUNK} bytes")
    kind = consent["choice"]
    manifest = {
        "format": VERSION, "bundle_id": secrets.token_hex(16), "created": "", "software": f"nnode {__version__}",
        "node_key": node_key, "agency_key": agency.encode().hex(),
        "request": {"id": request_id, "case_number": case_number},
        "camera": {"id": camera_id, "name": camera_name, "latitude": latitude, "longitude": longitude},
        "clip": {"start": utc_iso(clip_start), "end": utc_iso(clip_end),
                 "original": {"sha256": original_sha256, "size": original_size}},
        "delivered": {"kind": kind, "sha256": "0" * 64, "size": 1, "media_type": media_type,
                      "redaction": redaction_method if kind == REDACTED else None},
        "consent": consent,
    }
    # Check every argument before streaming a possibly large clip (sha256 and size are filled in afterwards).
    draft = manifest | {"created": utc_iso(time.time())}
    problem = _manifest_problem(draft)
    try:
        canonical(draft)
    except EventRejected as exc:
        problem = problem or str(exc)
    if problem:
        raise SharingError(f"cannot build the bundle: {problem}")
    if kind == ORIGINAL and redaction_method is not None:
        raise SharingError("cannot build the bundle: the consent chose the original, which has no redaction method")
    if out_path.exists():
        raise SharingError(f"{out_path}: already exists; refusing to replace a bundle")
    tmp = out_path.with_name(f".{out_path.name}.part")
    try:
        with open(video_path, "rb", buffering=0) as source, \
                os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
            size, sha256 = _write_bundle(source, out, manifest, node_signing_key, agency, chunk_size)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, out_path)
        sync_folder(out_path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise SharingError(f"building {out_path} from {video_path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BundleInfo(out_path, sha256, size, manifest)


def _write_bundle(source: Any, out: Any, manifest: dict, node_signing_key: nacl.signing.SigningKey,
                  agency: nacl.signing.VerifyKey, chunk_size: int) -> tuple[int, str]:
    """Write header, video chunks and the final manifest chunk; fills in `manifest`; (bundle size, sha256)."""
    content_key = sodium.crypto_secretstream_xchacha20poly1305_keygen()
    sealed = nacl.public.SealedBox(_x25519_public(agency)).encrypt(content_key)
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    header = _HEADER.pack(MAGIC, VERSION, agency.encode(), sealed,
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
        sealed_chunk = push(state, data, ad, _TAG_MESSAGE)
        ad = None
        prefix = _LENGTH.pack(len(sealed_chunk))
        out.write(prefix)
        out.write(sealed_chunk)
        bundle.update(prefix)
        bundle.update(sealed_chunk)
        written += len(prefix) + len(sealed_chunk)
    delivered, original = manifest["delivered"], manifest["clip"]["original"]
    delivered["sha256"], delivered["size"] = video.hexdigest(), video_size
    if video_size == 0:
        raise SharingError("cannot build the bundle: the video file is empty")
    if delivered["kind"] == ORIGINAL and (delivered["sha256"], video_size) != (original["sha256"], original["size"]):
        raise SharingError("cannot build the bundle: the consent chose the original, but the video file is not the "
                           f"original clip (sha256 {delivered['sha256']}, {video_size} bytes)")
    manifest["created"] = utc_iso(time.time())
    body = canonical(manifest)
    if len(body) > MAX_MANIFEST:
        raise SharingError(f"cannot build the bundle: the manifest is {len(body)} bytes, over {MAX_MANIFEST}")
    signature = node_signing_key.sign(MANIFEST_CONTEXT + body).signature
    final = push(state, _LENGTH.pack(len(body)) + body + signature, ad, _TAG_FINAL)
    prefix = _LENGTH.pack(len(final))
    out.write(prefix)
    out.write(final)
    bundle.update(prefix)
    bundle.update(final)
    return written + len(prefix) + len(final), bundle.hexdigest()


# -- verifying --------------------------------------------------------------------------------------------------

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


def _open_content_key(header: bytes, agency_key: nacl.signing.SigningKey) -> bytes:
    _, _, recipient, sealed, _ = _HEADER.unpack(header)
    ours = agency_key.verify_key.encode()
    try:
        content_key = nacl.public.SealedBox(_x25519_private(agency_key)).decrypt(sealed)
    except nacl.exceptions.CryptoError:
        if recipient != ours:
            raise VerifyError(f"wrong key: this bundle was not made for this agency key (it is for agency key "
                              f"{recipient.hex()}; this key is {ours.hex()})") from None
        raise VerifyError("the sealed content key (bytes 41-120) does not open with this agency key, which the "
                          "header names: altered or corrupt") from None
    if recipient != ours:
        raise VerifyError("the header's agency key field (bytes 9-40) was altered: it does not name the key that "
                          "opens the bundle")
    if len(content_key) != sodium.crypto_secretstream_xchacha20poly1305_KEYBYTES:
        raise VerifyError("the sealed content key has the wrong length")
    return content_key


def _decrypt(source: Any, agency_key: nacl.signing.SigningKey, clip: Any) -> _Opened:
    """Check the header, open the content key and decrypt every chunk, writing the video to `clip`."""
    header = source.read(_HEADER.size)
    if len(header) < len(MAGIC) or header[:len(MAGIC)] != MAGIC:
        raise VerifyError(f"not a bundle: the file does not start with {MAGIC.decode()}")
    if len(header) < _HEADER.size:
        raise VerifyError(f"truncated: the file ends inside its {_HEADER.size}-byte header")
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
        prefix = source.read(_LENGTH.size)
        if not prefix:
            raise VerifyError(f"truncated: the file ends after chunk {index - 1} without its final chunk"
                              if index else "truncated: the file ends after its header")
        bundle.update(prefix)
        if len(prefix) < _LENGTH.size:
            raise VerifyError(f"truncated: the file ends inside chunk {index}'s length field (at byte {offset})")
        (length,) = _LENGTH.unpack(prefix)
        if not _ABYTES <= length <= MAX_CHUNK + _ABYTES:
            raise VerifyError(f"chunk {index} (at byte {offset}): its length field is altered or corrupt "
                              f"({length} bytes, at most {MAX_CHUNK + _ABYTES} allowed)")
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
        offset += _LENGTH.size + length
        index += 1
        if tag == _TAG_FINAL:
            break
        if tag != _TAG_MESSAGE:
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
    if len(plain) < _LENGTH.size + _SIG_BYTES:
        raise VerifyError("the final chunk is too short to hold a manifest and its signature")
    (length,) = _LENGTH.unpack(plain[:_LENGTH.size])
    if length > MAX_MANIFEST or _LENGTH.size + length + _SIG_BYTES != len(plain):
        raise VerifyError(f"the final chunk's manifest length ({length}) does not fit the chunk")
    return _Opened(plain[_LENGTH.size:_LENGTH.size + length], plain[-_SIG_BYTES:], video.hexdigest(), video_size,
                   index, bundle.hexdigest(), offset)


def _check_manifest(opened: _Opened, agency_key: nacl.signing.SigningKey, expected_node_key: str | None) -> dict:
    """Check the manifest, its signature, the consent receipt and the delivered video; the manifest."""
    try:
        manifest = decode(opened.manifest_bytes)
    except EventRejected as exc:
        raise VerifyError(f"the manifest is not canonical JSON: {exc}") from None
    node_key = manifest.get("node_key") if isinstance(manifest, dict) else None
    if not _KINDS["hex64"][0](node_key):
        raise VerifyError("the manifest names no node key (field node_key)")
    try:
        nacl.signing.VerifyKey(bytes.fromhex(node_key)).verify(MANIFEST_CONTEXT + opened.manifest_bytes,
                                                               opened.signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError):
        raise VerifyError(f"the manifest's signature does not verify with the node key it names ({node_key}): "
                          "forged or altered") from None
    if expected_node_key is not None and node_key != expected_node_key:
        raise VerifyError(f"signed by node key {node_key}, not the expected node key {expected_node_key}")
    problem = _manifest_problem(manifest)
    if problem:
        raise VerifyError(f"the manifest is malformed: {problem}")
    ours = agency_key.verify_key.encode().hex()
    if manifest["agency_key"] != ours:
        raise VerifyError(f"the manifest says the clip was disclosed to agency key {manifest['agency_key']}, not "
                          f"this key ({ours}): re-encrypted by someone else")
    problem = _consent_problem(manifest["consent"], node_key=node_key, request_id=manifest["request"]["id"],
                               clip_sha256=manifest["clip"]["original"]["sha256"])
    if problem:
        raise VerifyError(f"consent: {problem}")
    delivered = manifest["delivered"]
    if manifest["consent"]["choice"] != delivered["kind"]:
        raise VerifyError(f"consent: the owner chose the {manifest['consent']['choice']} clip, but the bundle "
                          f"delivers the {delivered['kind']} one")
    if opened.video_size != delivered["size"]:
        raise VerifyError(f"the video is {opened.video_size} bytes, the manifest says {delivered['size']}")
    if opened.video_sha256 != delivered["sha256"]:
        raise VerifyError(f"the video's sha256 is {opened.video_sha256}, the manifest says {delivered['sha256']}")
    return manifest


def _expected(value: nacl.signing.VerifyKey | bytes | str | None) -> str | None:
    return None if value is None else _verify_key(value, "expected node key").encode().hex()


def verify_bundle(bundle_path: Path | str, agency_signing_key: nacl.signing.SigningKey, out_dir: Path | str, *,
                  expected_node_key: nacl.signing.VerifyKey | bytes | str | None = None) -> VerifyResult:
    """Check a bundle offline and extract it into `out_dir` (new or empty): the clip, manifest.json (the signed
    bytes), manifest.sig (the signature in hex) and report.txt.

    Decrypts in constant memory. Checks, in this order: magic and version; the content key opens with this agency
    key; every chunk authenticates (the first also authenticates the header); the stream ends with its final chunk
    and nothing follows; the manifest's signature by the node key it names; that key is `expected_node_key` (if
    given); the manifest's fields; it names this agency key; the consent receipt (node key, signature, request,
    clip, choice); the delivered video's size and sha256. Raises VerifyError naming the first failure, and then
    leaves nothing in `out_dir`. An unreadable bundle or an unusable `out_dir` raise SharingError. Blocking.
    """
    bundle_path, out_dir = Path(bundle_path), Path(out_dir)
    expected = _expected(expected_node_key)
    try:
        source = open(bundle_path, "rb")
    except OSError as exc:
        raise SharingError(f"{bundle_path}: cannot read the bundle: {exc.strerror or exc}") from exc
    with source:
        created = not out_dir.exists()
        if not created and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise SharingError(f"{out_dir}: not an empty folder; give a new or empty folder for the verified clip")
        tmp = out_dir / ".clip.part"
        done: list[Path] = []
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            with open(tmp, "xb") as clip:
                opened = _decrypt(source, agency_signing_key, clip)
                manifest = _check_manifest(opened, agency_signing_key, expected)
                clip.flush()
                os.fsync(clip.fileno())
            clip_path = out_dir / MEDIA_FILES[manifest["delivered"]["media_type"]]
            os.replace(tmp, clip_path)
            done.append(clip_path)
            checks = _checks(opened, manifest, expected)
            report = _report(bundle_path, opened, manifest, clip_path, checks)
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
    return VerifyResult(clip_path, manifest, out_dir / "manifest.json", signature, report, out_dir / "report.txt",
                        opened.bundle_sha256, opened.bundle_size, opened.chunks, checks)


def _write_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _checks(opened: _Opened, manifest: dict, expected: str | None) -> tuple[str, ...]:
    delivered = manifest["delivered"]
    consent = manifest["consent"]
    return (
        f"format: {MAGIC.decode()} version {VERSION}",
        "the content key opens with this agency key, which the header names",
        f"all {opened.chunks} chunks authenticate (the first also covers the header); the stream ends with its "
        "final chunk and nothing follows",
        f"the manifest is signed by node key {manifest['node_key']}"
        + (" (the expected node key)" if expected else " (not compared: no --node-key given)"),
        "the manifest's fields are well-formed and name this agency key",
        f"the consent receipt is signed by the same node key for request {manifest['request']['id']!r} and the "
        f"original clip; its owner chose the {consent['choice']} clip, which is the one delivered",
        f"the delivered video matches the manifest: {delivered['size']} bytes, sha256 {delivered['sha256']}",
    )


def _report(bundle_path: Path, opened: _Opened, manifest: dict, clip_path: Path, checks: tuple[str, ...]) -> str:
    """The readable account of a verified bundle."""
    camera, clip, delivered = manifest["camera"], manifest["clip"], manifest["delivered"]
    request, consent = manifest["request"], manifest["consent"]
    original = clip["original"]
    redaction = (f"redaction   {delivered['redaction']}" if delivered["kind"] == REDACTED
                 else "redaction   none: the owner chose to share the original")
    lines = [
        "Neighborhood Node agency bundle: VERIFIED",
        "",
        f"bundle      {bundle_path} ({opened.bundle_size} bytes, sha256 {opened.bundle_sha256})",
        f"bundle id   {manifest['bundle_id']}, made {manifest['created']} by {manifest['software']}",
        f"signed by   node key {manifest['node_key']}",
        f"made for    agency key {manifest['agency_key']} (the key that opened it)",
        f"request     {request['id']}, case number {request['case_number']}",
        f"camera      {camera['name']} (id {camera['id']}) at latitude {camera['latitude']}, "
        f"longitude {camera['longitude']}",
        f"clip        {clip['start']} to {clip['end']} (UTC)",
        f"original    sha256 {original['sha256']}, {original['size']} bytes"
        + (" (delivered)" if delivered["kind"] == ORIGINAL else " (not delivered)"),
        f"delivered   the {delivered['kind']} clip, {delivered['media_type']}, {delivered['size']} bytes, "
        f"sha256 {delivered['sha256']}",
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
