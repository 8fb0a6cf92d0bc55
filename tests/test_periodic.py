"""Periodic work on the one scheduler: jobs run, a failing job is logged and runs again, close settles runs."""

from __future__ import annotations

import asyncio
import logging

from node.periodic import Jobs, scheduler
from tests.conftest import wait_until


async def test_a_failing_job_is_logged_by_name_and_keeps_running(caplog):
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("disk on fire")
    sched = scheduler()
    sched.start()
    jobs = Jobs(sched, "test")
    try:
        with caplog.at_level(logging.ERROR, logger="nnode.periodic"):
            jobs.every(0.05, flaky, name="flaky", now=True)
            await wait_until(lambda: runs >= 3)
        failures = [r for r in caplog.records if r.getMessage() == "periodic job failed"]
        assert failures and failures[0].job == "test.flaky"
    finally:
        await jobs.close()
        sched.shutdown(wait=False)


async def test_close_waits_for_database_work_and_cancels_network_work():
    started = {"db": asyncio.Event(), "net": asyncio.Event()}
    release = asyncio.Event()
    finished: list[str] = []

    async def database_job() -> None:
        started["db"].set()
        await release.wait()
        finished.append("db")

    async def network_job() -> None:
        started["net"].set()
        await asyncio.Event().wait()   # a remote that never answers
        finished.append("net")
    sched = scheduler()
    sched.start()
    jobs = Jobs(sched, "test")
    jobs.every(3600, database_job, name="db", now=True)
    jobs.every(3600, network_job, name="net", now=True, cancel=True)
    await asyncio.wait_for(asyncio.gather(started["db"].wait(), started["net"].wait()), 20)
    closing = asyncio.create_task(jobs.close())
    await asyncio.sleep(0)
    assert not closing.done()          # the database job is still running: close waits for it
    release.set()
    await asyncio.wait_for(closing, 20)
    assert finished == ["db"]          # the network job was cancelled, the database job finished
    assert sched.get_jobs() == []      # and the group's jobs are gone from the scheduler
    await jobs.close()                 # safe twice
    sched.shutdown(wait=False)
