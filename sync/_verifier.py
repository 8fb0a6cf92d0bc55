"""Signature checks off the event loop.

Small batches run in a thread. Large ones (a pull) go to a worker process: PyNaCl releases the GIL inside each
check, but a thread must take it back between checks, and while the event loop parses the next batch that wait
starves it (measured here: 24,000 checks/s alone, about 200/s next to a busy Python thread). A process has no GIL
to share. See docs/sync.md, "Ingest pipeline".
"""

from __future__ import annotations

import asyncio
import struct
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ._verify_worker import check

# Batches at least this large go to the worker process (module attribute so tests can change it).
PROCESS_THRESHOLD = 256
_WORKER = Path(__file__).with_name("_verify_worker.py")


def verify_batch(items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
    """[(public key, signature + message)] -> which verify."""
    return [check(public, signed) for public, signed in items]


class Verifier:
    """Checks (public key, signed message) pairs in a thread or a worker process; `close()` is idempotent."""

    def __init__(self, use_process: bool = True) -> None:
        self.use_process = use_process
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnode-verify")
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def verify(self, items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        """Which items carry a valid signature."""
        if self.use_process and len(items) >= PROCESS_THRESHOLD and not self._closed:
            try:
                return await self._in_process(items)
            except (OSError, asyncio.IncompleteReadError, ConnectionError):
                await self._stop_process()  # a worker that died is replaced on the next batch
        return await asyncio.get_running_loop().run_in_executor(self._thread, verify_batch, items)

    async def _in_process(self, items: Sequence[tuple[bytes, bytes]]) -> list[bool]:
        async with self._lock:
            if self._proc is None or self._proc.returncode is not None:
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-I", str(_WORKER), stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE)
            assert self._proc.stdin is not None and self._proc.stdout is not None
            frame = [struct.pack(">I", len(items))]
            for public, signed in items:
                frame += [public, struct.pack(">I", len(signed)), signed]
            self._proc.stdin.write(b"".join(frame))
            await self._proc.stdin.drain()
            answer = await self._proc.stdout.readexactly(len(items))
            return [b == 1 for b in answer]

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def close(self) -> None:
        """Stop the worker process and the thread."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            await self._stop_process()
        await asyncio.to_thread(self._thread.shutdown, True)


__all__ = ["PROCESS_THRESHOLD", "Verifier", "verify_batch"]
