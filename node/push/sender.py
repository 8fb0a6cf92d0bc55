"""Web Push to subscribed devices: each live message that wakes someone is encrypted per device (RFC 8291,
aes128gcm, so the push service sees no content), signed with the node's VAPID key (RFC 8292) and POSTed to the
device's push service.

Messages are offered by the live hub as they are published and wait in a bounded queue; one task works through it,
with at most `push.concurrency` pushes in flight, each within `push.timeout`. Encryption and signing run in a thread.
A push service answering 404 or 410 has dropped the subscription: the device is forgotten. When pushes fail for want
of a network, the console says so: open pages still get everything over the live feed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from py_vapid import Vapid02
from pywebpush import WebPusher

from node.config import PushSection
from node.push.notices import Notice, notice_for
from node.push.store import Subscription, Subscriptions

log = logging.getLogger("nnode.push")

QUEUE_LIMIT = 200        # notices waiting to be pushed; beyond it the newest is dropped (and counted)
JWT_LIFETIME = 12 * 3600
MAX_ANSWER = 4096        # bytes of a push service's answer read (for the log)
VAPID_FILE = "vapid.pem"


def b64url(data: bytes) -> str:
    """Unpadded base64url, as Web Push writes keys."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_vapid(data_dir: Path) -> Vapid02:
    """The node's VAPID key (data_dir/vapid.pem, made on first use, mode 0600). Blocking: run it in a thread."""
    path = data_dir / VAPID_FILE
    if not path.exists():
        key = Vapid02()
        key.generate_keys()
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key.private_pem())
            out.flush()
            os.fsync(out.fileno())
        os.replace(path.with_suffix(".tmp"), path)
    os.chmod(path, 0o600)
    return Vapid02.from_file(str(path))


def public_key(key: Vapid02) -> str:
    """The VAPID public key as the browser's `applicationServerKey` (base64url of the uncompressed point)."""
    raw: bytes = key.public_key.public_bytes(serialization.Encoding.X962,
                                             serialization.PublicFormat.UncompressedPoint)
    return b64url(raw)


def _origin(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Status:
    """What the console and /metrics show about pushes since start."""

    sent: int = 0
    failed: int = 0
    gone: int = 0
    dropped: int = 0
    last_ok: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    offline: bool = False   # the last push could not reach its push service at all
    failures_by_reason: dict[str, int] = field(default_factory=dict)


class Pusher:
    """Push each waking live message to the devices it wakes."""

    def __init__(self, subscriptions: Subscriptions, settings: PushSection, vapid: Vapid02,
                 session: aiohttp.ClientSession) -> None:
        self.subscriptions = subscriptions
        self.settings = settings
        self.vapid = vapid
        self.public_key = public_key(vapid)
        self.session = session
        self.status = Status()
        # Messages waiting to be pushed: each becomes a notice per language as it is sent, so every device gets
        # it in its own account's language.
        self.queue: asyncio.Queue[tuple[str, dict[str, Any], str]] = asyncio.Queue(QUEUE_LIMIT)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._busy = 0

    def offer(self, kind: str, data: dict[str, Any], audience: str) -> None:
        """The live hub's listener: queue the message if it makes a notice (never blocks, never raises)."""
        try:
            notice = notice_for(kind, data, audience)
        except Exception:
            log.exception("could not make a push notice", extra={"kind": kind})
            return
        if notice is None:
            return
        try:
            self.queue.put_nowait((kind, data, audience))
        except asyncio.QueueFull:
            self.status.dropped += 1

    def start(self) -> None:
        """Start working through the queue."""
        self._task = asyncio.create_task(self._run(), name="nnode-webpush")

    async def close(self) -> None:
        """Stop (pushes in flight are cancelled; the open pages had the messages anyway)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def idle(self) -> None:
        """Wait until every queued notice has been pushed (for tests and shutdown)."""
        await self.queue.join()

    async def _run(self) -> None:
        while True:
            kind, data, audience = await self.queue.get()
            try:
                notices: dict[str, Notice | None] = {}
                sends = []
                for device in await self.subscriptions.recipients():
                    if device.language not in notices:
                        notices[device.language] = notice_for(kind, data, audience, device.language)
                    notice = notices[device.language]
                    if notice is not None and notice.wakes(device):
                        sends.append(self._push(notice, device))
                await asyncio.gather(*sends)
            except Exception:
                log.exception("pushing a notice failed", extra={"kind": kind})
            finally:
                self.queue.task_done()

    def _encrypt(self, notice: Notice, device: Subscription) -> tuple[bytes, dict[str, str]]:
        """The encrypted body and headers for one device (in a thread: elliptic-curve work)."""
        pusher = WebPusher({"endpoint": device.endpoint, "keys": {"p256dh": device.p256dh, "auth": device.auth}})
        body: bytes = pusher.encode(notice.payload(), "aes128gcm")["body"]
        claims = {"aud": _origin(device.endpoint), "exp": int(time.time()) + JWT_LIFETIME,
                  "sub": self.settings.contact}
        headers: dict[str, str] = dict(self.vapid.sign(claims))
        headers.update({"Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                        "TTL": str(notice.ttl), "Urgency": notice.urgency})
        return body, headers

    async def _push(self, notice: Notice, device: Subscription) -> None:
        async with self._slots:
            try:
                body, headers = await asyncio.to_thread(self._encrypt, notice, device)
            except Exception as exc:   # keys that passed the API's checks but are not a P-256 point
                log.warning("cannot encrypt for a device; forgetting it", extra={"device": device.id, "error": str(exc)})
                await self.subscriptions.forget(device.id)
                self._failed("bad keys", str(exc), offline=False)
                return
            try:
                timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
                async with self.session.post(device.endpoint, data=body, headers=headers, timeout=timeout,
                                             allow_redirects=False) as resp:
                    answer = (await resp.content.read(MAX_ANSWER)).decode(errors="replace")
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self._failed("unreachable", f"{_origin(device.endpoint)}: {exc.__class__.__name__}: {exc}",
                             offline=True)
                await self.subscriptions.delivered(device.id, False)
                return
        if status in (404, 410):
            self.status.gone += 1
            log.info("push service dropped a subscription; forgetting it", extra={"device": device.id})
            await self.subscriptions.forget(device.id)
        elif 200 <= status < 300:
            self.status.sent += 1
            self.status.last_ok = time.time()
            self.status.offline = False
            await self.subscriptions.delivered(device.id, True)
        else:
            self._failed(f"http {status}", f"{_origin(device.endpoint)} answered {status}: {answer[:200]}",
                         offline=False)
            await self.subscriptions.delivered(device.id, False)

    def _failed(self, reason: str, message: str, *, offline: bool) -> None:
        status = self.status
        status.failed += 1
        status.failures_by_reason[reason] = status.failures_by_reason.get(reason, 0) + 1
        status.last_error, status.last_error_at = message, time.time()
        if offline and not status.offline:
            log.warning("no internet: pushes can't be delivered, open pages still get alerts",
                        extra={"error": message})
        status.offline = offline

    async def describe(self) -> dict[str, Any]:
        """The console's view: counts, the last error, and what it means for residents."""
        status = self.status
        note = ("no internet: pushes can't be delivered, open pages still get alerts" if status.offline
                else "pushes are being delivered" if status.last_ok else "no push sent yet")
        return {"enabled": self.settings.enabled, "devices": await self.subscriptions.total(), "sent": status.sent,
                "failed": status.failed, "gone": status.gone, "dropped": status.dropped, "offline": status.offline,
                "last_ok": status.last_ok, "last_error": status.last_error or None,
                "last_error_at": status.last_error_at, "note": note}

    def metric_families(self) -> list[Metric]:
        """Counters for /metrics."""
        status = self.status
        failed = CounterMetricFamily("nnode_webpush_failed", "Web Push deliveries that failed since start, by reason.",
                                     labels=["reason"])
        for reason, count in sorted(status.failures_by_reason.items()):
            failed.add_metric([reason], count)
        return [
            CounterMetricFamily("nnode_webpush_sent", "Web Push deliveries accepted by a push service since start.",
                                value=status.sent),
            failed,
            CounterMetricFamily("nnode_webpush_gone", "Subscriptions forgotten because their push service said "
                                "they were gone (404/410).", value=status.gone),
            CounterMetricFamily("nnode_webpush_dropped", "Notices not pushed because the queue was full.",
                                value=status.dropped),
            GaugeMetricFamily("nnode_webpush_offline", "1 if the last push could not reach its push service.",
                              value=1 if status.offline else 0),
        ]
