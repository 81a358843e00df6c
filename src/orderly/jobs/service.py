"""Admin use cases over the job queue."""

from __future__ import annotations

from orderly import errors
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core import jobs
from orderly.core.db import Tx


async def list_jobs(
    tx: Tx, *, status: jobs.JobStatus | None, limit: int, after_id: int | None = None
) -> list[jobs.JobRecord]:
    """Unfinished jobs, newest first, optionally of one status, keyset-paginated by id."""
    return await jobs.list_jobs(tx, status=status, limit=limit, after_id=after_id)


async def queue_summary(tx: Tx) -> jobs.QueueStats:
    """Jobs per status and the age of the oldest due job (the console's overview)."""
    return await jobs.queue_stats(tx)


async def retry_dead_job(tx: Tx, job_id: int, *, context: AuditContext) -> jobs.JobRecord:
    """Re-queue a dead job now with a fresh attempt budget, audited; 404/409 otherwise."""
    if not await jobs.retry_dead(tx, job_id):
        if await jobs.get_job(tx, job_id) is None:
            raise errors.NotFound("No such job (finished jobs leave the queue).")
        raise errors.Conflict("Only dead jobs can be retried.")
    await audit.record(tx, context, "job.retried", target_type="job", target_id=str(job_id))
    record = await jobs.get_job(tx, job_id)
    assert record is not None  # re-queued in this very transaction
    return record
