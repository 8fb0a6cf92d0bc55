"""Periodic work, one way: every feature's recurring jobs run on the app's one apscheduler, through `Jobs`.

A feature's lifecycle adds its jobs to a `Jobs` group and closes the group when it stops: its jobs are removed and a
run in progress either finishes (database work) or is cancelled (network work that may wait on a slow remote), so
nothing a feature started outlives the resources it uses. A job that raises is logged with its name and runs again
at its next time; a run is never doubled (one instance per job, missed runs coalesced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger("nnode.periodic")

Job = Callable[[], Awaitable[object]]


def scheduler() -> AsyncIOScheduler:
    """The app's scheduler, on the running event loop."""
    return AsyncIOScheduler(event_loop=asyncio.get_running_loop(), job_defaults={"misfire_grace_time": None})


class Jobs:
    """One feature's periodic jobs on the shared scheduler; `close()` removes them and settles running ones."""

    def __init__(self, scheduler: AsyncIOScheduler, owner: str) -> None:
        self.scheduler = scheduler
        self.owner = owner
        self._ids: list[str] = []
        self._running: dict[asyncio.Task[object], bool] = {}   # a run in progress -> cancel it on close
        self._closed = False

    def every(self, seconds: float, job: Job, *, name: str, now: bool = False, cancel: bool = False) -> None:
        """Run `job` every `seconds` (first at once if `now`); `cancel`: a run in progress is cancelled on close."""
        job_id = f"{self.owner}.{name}"

        async def run() -> None:
            if self._closed:
                return
            task = asyncio.current_task()
            assert task is not None
            self._running[task] = cancel
            try:
                await job()
            except asyncio.CancelledError:
                if not self._closed:
                    raise
            except Exception:
                log.exception("periodic job failed", extra={"job": job_id})
            finally:
                self._running.pop(task, None)

        first = {"next_run_time": datetime.now(timezone.utc)} if now else {}   # an explicit None would pause it
        self.scheduler.add_job(run, "interval", seconds=seconds, id=job_id, name=job_id, max_instances=1,
                               coalesce=True, **first)
        self._ids.append(job_id)

    async def close(self) -> None:
        """Remove this group's jobs; wait for running database jobs, cancel running network ones. Safe twice."""
        if self._closed:
            return
        self._closed = True
        for job_id in self._ids:
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(job_id)
        running = list(self._running)
        for task, cancel in list(self._running.items()):
            if cancel:
                task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
