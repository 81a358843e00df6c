"""Admin routes over the job queue (PRODUCT.md §5 Jobs)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Path, Query

from orderly import errors
from orderly.api.auth import AdminUser, Origin
from orderly.api.deps import BIGINT_MAX, Page, Transaction, encode_cursor
from orderly.api.idempotency import IDEMPOTENT
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.jobs import service
from orderly.jobs.schemas import JobPage, JobRead, JobStatus

router = domain_router(prefix="/admin/jobs", tags=["jobs"])
JobId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="A job's id")]


@router.get("", responses=responses_for(errors.Forbidden, errors.Unauthorized))
async def list_jobs(
    tx: Transaction,
    user: AdminUser,
    page: Page,
    status: Annotated[JobStatus | None, Query()] = None,
) -> JobPage:
    """Unfinished jobs, newest first; ``failed`` = waiting for a retry, ``dead`` = out of tries."""
    after = page.integer("id")
    records = await service.list_jobs(tx, status=status, limit=page.limit + 1, after_id=after)
    shown = records[: page.limit]
    cursor = encode_cursor({"id": str(shown[-1].id)}) if len(records) > page.limit else None
    return JobPage(
        data=[JobRead(**dataclasses.asdict(record)) for record in shown], next_cursor=cursor
    )


@router.post(
    "/{job_id}/retry",
    response_model=JobRead,
    dependencies=[IDEMPOTENT],
    responses=responses_for(errors.NotFound, errors.Conflict, errors.Forbidden),
)
async def retry_job(job_id: JobId, tx: Transaction, user: AdminUser, origin: Origin) -> JobRead:
    """Re-queue a dead job now, with a fresh attempt budget (audited)."""
    context = origin.with_actor(user.id, user.role)
    record = await service.retry_dead_job(tx, job_id, context=context)
    return JobRead(**dataclasses.asdict(record))
