"""Job bodies for the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from orderly.core.jobs import JobStatus as JobStatus  # the queue's states, re-exported


class JobRead(BaseModel):
    """A job that has not finished (finished jobs leave the queue)."""

    id: int
    task: str
    status: JobStatus
    attempts: int
    payload: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    run_after: datetime
    last_error: str | None


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    data: list[JobRead]
    next_cursor: str | None
