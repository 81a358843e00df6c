"""The job system on real PostgreSQL: transactional enqueue, retries, dead jobs, crashes."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from orderly.core import jobs
from orderly.core.db import Database
from orderly.core.jobs import Worker, WorkerOptions
from tests.support.tasks import CREATE_TABLE, TEST_TASKS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def runs(database: Database, raw_db: asyncpg.Connection) -> asyncpg.Connection:
    """The test_job_run table, created on demand (emptied with the rest after the test)."""
    await raw_db.execute(CREATE_TABLE)
    return raw_db


@pytest.fixture
async def worker(database: Database) -> AsyncIterator[Worker]:
    """An in-process worker running the test tasks."""
    w = Worker(
        database,
        TEST_TASKS,
        options=WorkerOptions(batch_size=5, concurrency=10, heartbeat_timeout=timedelta(seconds=2)),
    )
    running = asyncio.create_task(w.run())
    await asyncio.wait_for(w.started.wait(), 10)
    yield w
    w.stop()
    await asyncio.wait_for(running, 30)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Poll *check* until it holds (jobs are asynchronous by nature)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def count(conn: asyncpg.Connection, key: str, note: str = "ran") -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM test_job_run WHERE key = $1 AND note = $2", key, note
        )
    )


async def test_rolled_back_enqueue_never_runs_and_committed_runs_once(
    database: Database, runs: asyncpg.Connection, worker: Worker
) -> None:
    async with database.transaction() as tx:
        await jobs.enqueue(tx, "test.record", {"key": "rolled-back"})
        await tx.rollback()
    async with database.transaction() as tx:
        await jobs.enqueue(tx, "test.record", {"key": "committed"})
        await tx.commit()

    await eventually(lambda: _gt(count(runs, "committed"), 0))
    await asyncio.sleep(0.5)  # time for a duplicate run to show up, if there were one
    assert await count(runs, "committed") == 1
    assert await count(runs, "rolled-back") == 0
    assert await runs.fetchval("SELECT count(*) FROM pgqueuer") == 0


async def _gt(value: Awaitable[int], floor: int) -> bool:
    return (await value) > floor


async def test_flaky_job_is_retried_with_growing_delays(
    database: Database, database_url: str, runs: asyncpg.Connection, worker: Worker
) -> None:
    async with database.transaction() as tx:
        await jobs.enqueue(tx, "test.flaky", {"key": "flaky", "fail_times": 2, "url": database_url})
        await tx.commit()

    await eventually(lambda: _gt(count(runs, "flaky"), 0))
    attempts = await runs.fetch(
        "SELECT attempt, at FROM test_job_run WHERE key = 'flaky' AND note = 'attempt' ORDER BY id"
    )
    assert [row["attempt"] for row in attempts] == [1, 2, 3]
    scheduled = [
        float(row["delay"])
        for row in await runs.fetch(
            """SELECT EXTRACT(EPOCH FROM
                      (traceback->'additional_context'->>'retry_delay')::interval) AS delay
                 FROM pgqueuer_log WHERE traceback IS NOT NULL ORDER BY id"""
        )
    ]
    # Equal jitter with a 0.4 s base: the first retry waits 0.2–0.4 s, the second 0.4–0.8 s.
    assert len(scheduled) == 2
    assert 0.2 <= scheduled[0] <= 0.4 <= scheduled[1] <= 0.8
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert all(gap >= delay for gap, delay in zip(gaps, scheduled, strict=True))


async def test_job_that_always_fails_ends_dead_and_admin_retry_requeues_it(
    database: Database, database_url: str, runs: asyncpg.Connection, worker: Worker
) -> None:
    async with database.transaction() as tx:
        job_id = await jobs.enqueue(tx, "test.always_fails", {"key": "doomed", "url": database_url})
        await tx.commit()
    assert job_id is not None

    async def is_dead() -> bool:
        async with database.transaction() as tx:
            record = await jobs.get_job(tx, job_id)
        return record is not None and record.status == "dead"

    await eventually(is_dead)
    assert await count(runs, "doomed", "attempt") == 3
    async with database.transaction() as tx:
        (record,) = await jobs.list_jobs(tx, status="dead", limit=10)
        stats = await jobs.queue_stats(tx)
    assert record.id == job_id
    assert record.last_error is not None
    assert "receiver is down" in record.last_error
    assert stats.counts["dead"] == 1

    async with database.transaction() as tx:
        assert await jobs.retry_dead(tx, job_id)
        await tx.commit()
    await eventually(lambda: _gt(count(runs, "doomed", "attempt"), 3))
    async with database.transaction() as tx:
        assert not await jobs.retry_dead(tx, 999_999)


async def test_worker_killed_mid_job_loses_nothing(
    database: Database, database_url: str, runs: asyncpg.Connection
) -> None:
    async with database.transaction() as tx:
        await jobs.enqueue(tx, "test.slow", {"key": "crash", "seconds": 2, "url": database_url})
        await tx.commit()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.support.worker_process", database_url]
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        await eventually(lambda: _gt(count(runs, "crash", "started"), 0), timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    assert await count(runs, "crash") == 0

    second = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        # The dead worker's heartbeat goes stale after 2 s; the job is re-picked and finishes.
        await eventually(lambda: _gt(count(runs, "crash"), 0), timeout=30)
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        second.kill()
    assert await count(runs, "crash") == 1
    assert await count(runs, "crash", "started") == 2


async def test_sigterm_lets_the_running_job_finish(
    database: Database, database_url: str, runs: asyncpg.Connection
) -> None:
    async with database.transaction() as tx:
        await jobs.enqueue(tx, "test.slow", {"key": "graceful", "seconds": 1, "url": database_url})
        await tx.commit()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.worker_process", database_url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: _gt(count(runs, "graceful", "started"), 0), timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
    assert await count(runs, "graceful") == 1


async def test_dedupe_key_skips_a_second_pending_job(database: Database) -> None:
    async with database.transaction() as tx:
        first = await jobs.enqueue(tx, "test.record", {"key": "a"}, dedupe_key="once")
        second = await jobs.enqueue(tx, "test.record", {"key": "a"}, dedupe_key="once")
        await tx.commit()
    assert first is not None
    assert second is None


async def test_queue_stats_report_depth_and_age(database: Database) -> None:
    async with database.transaction() as tx:
        for _ in range(3):
            await jobs.enqueue(tx, "test.record", {"key": "x"})
        await jobs.enqueue(tx, "test.record", {"key": "later"}, delay=timedelta(hours=1))
        await tx.commit()
    await asyncio.sleep(0.05)
    async with database.transaction() as tx:
        stats = await jobs.queue_stats(tx)
    assert stats.counts["queued"] == 4
    assert stats.waiting == 4
    assert stats.oldest_due_age_seconds > 0
