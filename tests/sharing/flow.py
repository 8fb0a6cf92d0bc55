"""Helpers for tests of the sharing flow: an agency client over raw HTTP, clips put in a node's index, requests."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import nacl.public
import nacl.signing

from node.durable import sha256_file
from node.keys import CLIPS
from node.sharing.agency_keys import AgencyKey
from node.sharing.requests import format_time
from node.sharing.requests import sign_request as sign_document
from sync import canonical, sign_request
from tests.firmware.tools import need

HERE = ("40.7128", "-74.0060")            # building B
NEAR = ("40.7140", "-74.0060")            # 133 m north of B
FAR = ("40.7500", "-74.0060")             # 4 km north: building A


def make_video(folder: Path, name: str = "clip.mp4", seconds: int = 2) -> Path:
    """A real small H.264 MP4 (ffmpeg's test picture)."""
    need("ffmpeg")
    path = folder / name
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                    f"testsrc2=size=320x240:rate=10:duration={seconds}", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path


async def add_clip(node, video: Path, *, start: float, camera: str = "yard", owner: str = "building",
                   seconds: float = 2.0):
    """Put a ready clip into the node's index, as a camera (or an upload) would have."""
    index = node.app[CLIPS]
    row = await index.begin(camera=camera, owner=owner, kind="upload" if camera == "upload" else "motion",
                            start=start, end=start + seconds)
    size, digest = await asyncio.to_thread(_copy_and_hash, video, index.path(row.file))
    return await index.finish(row.id, start=start, end=start + seconds, duration=seconds, size=size, sha256=digest,
                              width=320, height=240, thumbnail=False)


def _copy_and_hash(source: Path, target: Path) -> tuple[int, str]:
    """Copy a video into the clip folder; its (size, SHA-256), as the index records them."""
    shutil.copyfile(source, target)
    return sha256_file(target)


def request_fields(*, centre: tuple[str, str] = HERE, radius: int = 300, start: float | None = None,
                   minutes: int = 40, urgency: str = "normal", expires_in: float = 7 * 86400,
                   case_number: str = "2026-004512") -> dict[str, Any]:
    """The fields of a 40-minute request around `centre` that ended 10 minutes ago."""
    now = time.time()
    start = now - (minutes + 10) * 60 if start is None else start
    return {"v": 1, "id": secrets.token_hex(16), "case_number": case_number, "reason": "burglary at 12 Elm St",
            "window": {"start": format_time(start), "end": format_time(start + minutes * 60)},
            "area": {"circle": {"lat": centre[0], "lon": centre[1], "radius_m": radius}}, "urgency": urgency,
            "contact": "Det. R. Diaz, +1 212 555 0100", "expires": format_time(now + expires_in),
            "created": format_time(now)}


class Agency:
    """An agency's side: its key, and calls signed with it (RFC 9421, tag nnode-agency)."""

    def __init__(self, key: nacl.signing.SigningKey | None = None, credential: dict | None = None) -> None:
        self.key = key or nacl.signing.SigningKey.generate()
        self.keys = AgencyKey(self.key, nacl.public.PrivateKey.generate())
        """Its signing key and its separate encryption key (which its requests name and its bundles open with)."""
        self.credential = credential
        self.session = aiohttp.ClientSession()

    @property
    def id(self) -> str:
        return self.key.verify_key.encode().hex()

    async def close(self) -> None:
        await self.session.close()

    def headers(self, method: str, url: str, body: bytes | None) -> dict[str, str]:
        headers = sign_request(self.key, method, url, body, tag="nnode-agency")
        if body:
            headers["Content-Type"] = "application/json"
        if self.credential:
            headers["NNode-Agency-Credential"] = base64.urlsafe_b64encode(canonical(self.credential)).decode()\
                .rstrip("=")
        return headers

    async def call(self, method: str, url: str, body: Any = None, *, raw: bool = False) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        async with self.session.request(method, url, data=data, headers=self.headers(method, url, data)) as resp:
            payload = await resp.read()
            if raw:
                return resp.status, payload
            try:
                return resp.status, json.loads(payload)
            except ValueError:
                return resp.status, payload

    async def ask(self, node_url: str, fields: dict) -> tuple[int, Any]:
        """Sign a request with the agency key and post it."""
        return await self.call("POST", node_url + "/api/agency/requests", sign_document(fields, self.keys))
