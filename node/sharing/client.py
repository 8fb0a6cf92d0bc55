"""The agency side of sharing: an HTTP client that signs every call to a node with the agency key (docs/agencies.md).

    async with AgencyClient("https://node.example", key) as client:
        request = await client.post_request(build_fields(case_number="C-42", reason="burglary", start=..., end=...,
                                                         circle=("40.7128", "-74.0060", 300), contact="...",
                                                         expires=time.time() + 30 * 86400))
        for bundle in await client.bundles():
            await client.download(bundle["id"], Path(bundle["id"] + ".nnbundle"))
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence, TypeVar

import aiohttp
import nacl.signing
from yarl import URL

from node.errors import NodeError
from node.sharing.agency_keys import AgencyKey, agency_key
from node.sharing.errors import RequestError
from node.sharing.requests import FORMAT_VERSION, format_time, sign_request
from sync import SyncError, canonical, check_descriptor
from sync import sign_request as sign_http

TAG = "nnode-agency"
CREDENTIAL_HEADER = "NNode-Agency-Credential"
DOWNLOAD_CHUNK = 64 * 1024
MAX_JSON = 16 * 1024 * 1024

_T = TypeVar("_T")


class AgencyClientError(NodeError):
    """A call to a node failed: the node's error text and HTTP status (0 when the node could not be reached)."""

    reason = "agency_client"

    def __init__(self, message: str, status: int = 0, where: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.where = where
        """The call that failed, like "POST https://node.example/api/agency/requests"."""


def _seconds(field: str, value: datetime | str | float | int) -> float:
    """POSIX seconds from a datetime (naive = local time), an ISO 8601 string or a number."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected a time, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{field}: expected an ISO 8601 time like 2026-11-20T21:00:00Z, got {value!r}") from None
    if isinstance(value, datetime):
        return value.timestamp()
    raise ValueError(f"{field}: expected a datetime, ISO 8601 string or POSIX seconds, got {value!r}")


def _degrees(value: str | float | int) -> str:
    """Degrees as the decimal string a request carries (numbers get at most 7 decimals)."""
    if isinstance(value, str):
        return value.strip()
    text = f"{float(value):.7f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def build_fields(*, case_number: str, reason: str, start: Any, end: Any, contact: str, expires: Any,
                 circle: Sequence[Any] | None = None, polygon: Sequence[Sequence[Any]] | None = None,
                 urgency: str = "normal") -> dict[str, Any]:
    """The fields of a request (all but v, id, created, agency and sig); times are datetimes, ISO or POSIX seconds."""
    if (circle is None) == (polygon is None):
        raise ValueError("area: give either a circle (lat, lon, radius_m) or a polygon of (lat, lon) points")
    area: dict[str, Any]
    if circle is not None:
        lat, lon, radius = circle
        area = {"circle": {"lat": _degrees(lat), "lon": _degrees(lon),
                           "radius_m": int(radius) if float(radius).is_integer() else radius}}
    else:
        assert polygon is not None  # exactly one of the two, checked above
        area = {"polygon": [[_degrees(lat), _degrees(lon)] for lat, lon in polygon]}
    return {"case_number": case_number, "reason": reason,
            "window": {"start": format_time(_seconds("start", start)), "end": format_time(_seconds("end", end))},
            "area": area, "urgency": urgency, "contact": contact, "expires": format_time(_seconds("expires", expires))}


def _normalise(url: URL) -> URL:
    """The URL as aiohttp sends it, so the signed @authority equals the Host header (no default port)."""
    if url.explicit_port is not None and url.is_default_port():
        url = url.with_port(None)
    return url.with_user(None)


class AgencyClient:
    """Signed calls to one node's agency API (RFC 9421, tag "nnode-agency"), as the agency holding `key`."""

    def __init__(self, base_url: str, key: AgencyKey | nacl.signing.SigningKey, *, session: aiohttp.ClientSession | None = None,
                 credential: dict[str, Any] | None = None, timeout: float = 30) -> None:
        url = URL(base_url.strip().rstrip("/"))
        if url.scheme not in ("http", "https") or not url.host:
            raise AgencyClientError(f"{base_url!r}: expected the node's address, like https://node.example")
        self.base = _normalise(url.with_query(None).with_fragment(None))
        self.keys = agency_key(key)
        """Both of the agency's keys (a bare signing key: a legacy one, which posts no request)."""
        self.key = self.keys.signing
        self.agency = key.verify_key.encode().hex()
        self.credential = _encode_credential(credential) if credential is not None else None
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10, timeout), sock_read=timeout)
        self._given = key
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> "AgencyClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client opened it."""
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The HTTP session (opened on first use when none was given)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    def url(self, path: str) -> URL:
        """The absolute URL of `path` on the node (path as sent: already percent-encoded)."""
        base_path = self.base.raw_path.rstrip("/")
        return self.base.with_path(base_path + path, encoded=True)

    def headers(self, method: str, url: URL, body: bytes | None = None) -> dict[str, str]:
        """Signature headers (and the credential, if any) for one call."""
        headers = sign_http(self.key, method, str(url), body, tag=TAG)
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.credential is not None:
            headers[CREDENTIAL_HEADER] = self.credential
        headers["Accept"] = "application/json"
        return headers

    async def _json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        url = self.url(path)
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        where = f"{method} {url}"
        try:
            async with self.session.request(method, url, data=data, headers=self.headers(method, url, data),
                                            timeout=self.timeout, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_JSON)
                await _check(resp, raw, where)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise AgencyClientError(f"cannot reach the node: {_describe(exc)}", 0, where) from exc
        try:
            value = json.loads(raw)
        except ValueError:
            raise AgencyClientError("the answer is not JSON", resp.status, where) from None
        if not isinstance(value, dict):
            raise AgencyClientError("the answer is not a JSON object", resp.status, where)
        return value

    async def post_request(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Sign and post a request (v, id and created filled in when missing); returns the request as stored."""
        fields = dict(fields)
        fields.setdefault("v", FORMAT_VERSION)
        fields.setdefault("id", secrets.token_hex(16))
        fields.setdefault("created", format_time(time.time()))
        try:
            document = sign_request(fields, self.keys if isinstance(self._given, AgencyKey) else self.key)
        except RequestError as exc:
            raise AgencyClientError(str(exc)) from None
        return _field(await self._json("POST", "/api/agency/requests", document), "request", dict)

    async def requests(self) -> list[Any]:
        """This agency's requests known to the node, each with its disclosures."""
        return _field(await self._json("GET", "/api/agency/requests"), "requests", list)

    async def request(self, request_id: str) -> dict[str, Any]:
        """One of this agency's requests."""
        return _field(await self._json("GET", f"/api/agency/requests/{_segment(request_id)}"), "request", dict)

    async def bundles(self) -> list[Any]:
        """The bundles this node made for this agency."""
        return _field(await self._json("GET", "/api/agency/bundles"), "bundles", list)

    async def download(self, bundle_id: str, dest_path: Path | str, *, expected_sha256: str | None = None) -> Path:
        """Stream a bundle into `dest_path` (through a temporary file; checked against `expected_sha256` if given)."""
        dest = Path(dest_path)
        part = dest.with_name(f".{dest.name}.part")
        url = self.url(f"/api/agency/bundles/{_segment(bundle_id)}")
        where = f"GET {url}"
        digest = hashlib.sha256()
        try:
            async with self.session.get(url, headers=self.headers("GET", url), timeout=self.timeout,
                                        allow_redirects=False) as resp:
                if resp.status >= 300:
                    await _check(resp, await resp.content.read(64 * 1024), where)
                # File work in the executor: the client may share its loop with other work (a test's node).
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(None, part.open, "wb")
                try:
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                        await loop.run_in_executor(None, out.write, chunk)
                        digest.update(chunk)
                    await loop.run_in_executor(None, _flush, out)
                finally:
                    out.close()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            part.unlink(missing_ok=True)
            raise AgencyClientError(f"download failed: {_describe(exc)}", 0, where) from exc
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise AgencyClientError(f"cannot write {part}: {exc.strerror or exc}", 0, where) from exc
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
            part.unlink(missing_ok=True)
            raise AgencyClientError(f"the download's sha256 {digest.hexdigest()[:16]}... is not the "
                                    f"{expected_sha256[:16]}... the node listed (cut short or altered)", 0, where)
        os.replace(part, dest)
        return dest

    async def node_key(self) -> str:
        """The node's key (hex), from its descriptor at /.well-known/nnode, signed over a fresh nonce of ours."""
        nonce = secrets.token_urlsafe(24)
        url = self.url("/.well-known/nnode").with_query(nonce=nonce)
        try:
            async with self.session.get(url, timeout=self.timeout, allow_redirects=False) as resp:
                raw = await resp.content.read(64 * 1024)
                await _check(resp, raw, f"GET {url}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise AgencyClientError(f"cannot reach the node: {_describe(exc)}", 0, f"GET {url}") from exc
        try:
            node: str = check_descriptor(json.loads(raw), nonce=nonce)["node"]  # checked to be a string
        except (ValueError, SyncError) as exc:
            raise AgencyClientError(f"not a node descriptor: {exc}", resp.status, f"GET {url}") from None
        return node


def _flush(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _encode_credential(credential: dict[str, Any]) -> str:
    """The credential header's value: base64url of the credential's canonical JSON, without padding."""
    try:
        return base64.urlsafe_b64encode(canonical(credential)).rstrip(b"=").decode()
    except (SyncError, TypeError, ValueError) as exc:
        raise AgencyClientError(f"the credential cannot be encoded canonically: {exc}") from None


def _segment(value: str) -> str:
    """An id as one path segment (ids are hex; anything else is refused before it reaches the URL)."""
    if not isinstance(value, str) or not value or not all(c.isalnum() or c in "-_" for c in value):
        raise AgencyClientError(f"{value!r}: not an id (letters, digits, - and _ only)")
    return value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "no answer in time"
    return str(exc) or exc.__class__.__name__


async def _check(resp: aiohttp.ClientResponse, raw: bytes, where: str) -> None:
    """Raise AgencyClientError with the node's error text unless the status is 2xx."""
    if 200 <= resp.status < 300:
        return
    message = None
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
    except ValueError:
        pass
    if message is None:
        text = raw.decode("utf-8", "replace").strip()
        message = text[:200] if text else f"HTTP {resp.status} {resp.reason or ''}".strip()
    raise AgencyClientError(message, resp.status, where)


def _field(body: dict[str, Any], name: str, kind: type[_T]) -> _T:
    value = body.get(name)
    if not isinstance(value, kind):
        raise AgencyClientError(f"the node's answer has no {name!r} {kind.__name__}")
    return value
