"""Tasks used by the job-system tests; they record every attempt in ``test_job_run``."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from orderly.core.jobs import JobContext, JobFailed, RetryPolicy, task

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.4, max_delay=5)

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS test_job_run (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    attempt int NOT NULL,
    note text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


async def _record(ctx: JobContext, key: str, note: str) -> None:
    await ctx.tx.execute(
        "INSERT INTO test_job_run (key, attempt, note) VALUES ($1, $2, $3)",
        key,
        ctx.attempt,
        note,
    )


async def _record_now(url: str, key: str, attempt: int, note: str) -> None:
    """Record outside the job's transaction, so the row survives a failure or a kill."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO test_job_run (key, attempt, note) VALUES ($1, $2, $3)", key, attempt, note
        )
    finally:
        await conn.close()


@task("test.record", retry=FAST_RETRY)
async def record(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Succeeds at once, leaving one row."""
    await _record(ctx, payload["key"], "ran")


@task("test.flaky", retry=FAST_RETRY)
async def flaky(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Fails ``fail_times`` times, then succeeds."""
    await _record_now(payload["url"], payload["key"], ctx.attempt, "attempt")
    if ctx.attempt <= payload["fail_times"]:
        raise JobFailed(f"planned failure {ctx.attempt}")
    await _record(ctx, payload["key"], "ran")


@task("test.always_fails", retry=FAST_RETRY)
async def always_fails(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Never succeeds."""
    await _record_now(payload["url"], payload["key"], ctx.attempt, "attempt")
    raise JobFailed("receiver is down")


@task("test.slow", retry=RetryPolicy(max_attempts=5, base_delay=0.2), timeout=120)
async def slow(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Announces its start, sleeps, then records completion."""
    await _record_now(payload["url"], payload["key"], ctx.attempt, "started")
    await asyncio.sleep(payload["seconds"])
    await _record(ctx, payload["key"], "ran")


TEST_TASKS = [record, flaky, always_fails, slow]
