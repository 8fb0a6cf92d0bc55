"""LAN discovery over mDNS/DNS-SD: advertise `_nnode._tcp.local.` with the node key, browse for others."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable

import ifaddr
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

SERVICE_TYPE = "_nnode._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
FOUND_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
log = logging.getLogger("nnode.discovery")

Found = Callable[[str, str, str], Awaitable[None]]  # (key, name, url)


def local_addresses(interfaces: list[str]) -> list[str]:
    """IPv4 addresses to advertise: the given ones, or every non-loopback address of this host."""
    if interfaces:
        return interfaces
    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback]
    return found or ["127.0.0.1"]


def _instance_name(name: str, key: str) -> str:
    label = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:40] or "node"
    return f"{label}-{key[:12]}.{SERVICE_TYPE}"


class Discovery:
    """Advertises this node and reports every other node seen, until `close()` (idempotent)."""

    def __init__(self, *, key: str, name: str, port: int, interfaces: list[str], on_found: Found,
                 host: str = "") -> None:
        self.key = key
        self.host = host   # the host name its address records answer to (`<host>.local.`); empty: the instance
        self.name = name
        self.port = port
        self.addresses = local_addresses(interfaces)
        self.interfaces = interfaces
        self.on_found = on_found
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        """Register our service and start browsing."""
        self._zc = AsyncZeroconf(interfaces=self.interfaces or InterfaceChoice.All, ip_version=IPVersion.V4Only)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE, _instance_name(self.name, self.key),
            addresses=[socket.inet_aton(a) for a in self.addresses], port=self.port,
            server=f"{self.host}.local." if self.host else None,
            properties={"key": self.key, "v": "1", "name": self.name[:100]})
        await self._zc.async_register_service(self._info, allow_name_change=True)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            task = asyncio.get_running_loop().create_task(self._resolve(service_type, name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zc.zeroconf, RESOLVE_TIMEOUT_MS):
            return
        props = {k.decode(): (v or b"").decode("utf-8", "replace") for k, v in info.properties.items()}
        key = props.get("key", "")
        if not re.fullmatch(r"[0-9a-f]{64}", key) or key == self.key or not info.port:
            return
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if not addresses:
            return
        url = f"http://{addresses[0]}:{info.port}"
        # A node advertises while it starts, so its descriptor may not be served yet: retry for a while.
        for delay in FOUND_RETRY_DELAYS:
            try:
                await self.on_found(key, props.get("name", ""), url)
                return
            except Exception as exc:
                log.info("discovered node not added yet", extra={"peer": key, "url": url, "error": str(exc)})
            await asyncio.sleep(delay)

    async def close(self) -> None:
        """Unregister and stop browsing; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                with contextlib.suppress(Exception):
                    await self._zc.async_unregister_service(self._info)
            await self._zc.async_close()
