"""Housekeeping jobs for the job queue's own tables."""

from __future__ import annotations

from typing import Any

from orderly.core.jobs import QUEUE_LOG_TABLE, JobContext, RetryPolicy, task
from orderly.core.telemetry import get_logger

log = get_logger(__name__)
JOB_LOG_RETENTION_DAYS = 14
PRUNE_JOB_LOG = "jobs.prune_log"
"""Job name: trim the job log to its retention."""


@task(PRUNE_JOB_LOG, schedule="17 * * * *", retry=RetryPolicy(max_attempts=3))
async def prune_job_log(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Delete job-log rows past retention, in bounded batches so it never holds long locks."""
    days = int(payload.get("retention_days", JOB_LOG_RETENTION_DAYS))
    deleted = await ctx.tx.fetchval(
        f"""WITH doomed AS (
              SELECT id FROM {QUEUE_LOG_TABLE}
               WHERE created < NOW() - make_interval(days => $1) LIMIT 50000)
            , gone AS (DELETE FROM {QUEUE_LOG_TABLE} WHERE id IN (SELECT id FROM doomed)
                       RETURNING 1)
            SELECT count(*) FROM gone""",  # noqa: S608 - table name is a constant
        days,
    )
    log.info("job_log_pruned", deleted=deleted, retention_days=days)


TASKS = [prune_job_log]
