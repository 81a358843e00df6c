"""The worker composition root: every domain's tasks and the resources they share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.jobs import Task, Worker, WorkerOptions


def all_tasks() -> list[Task]:
    """Every task orderly knows, by domain."""
    from orderly.accounts import tasks as accounts
    from orderly.core import maintenance

    return [*maintenance.TASKS, *accounts.TASKS]


def build_resources(settings: Settings) -> dict[type[Any], Any]:
    """Shared objects tasks reach through ``JobContext.resource`` (mailer, HTTP clients…)."""
    return {Settings: settings}


def build_worker(
    settings: Settings, database: Database, *, tasks: Sequence[Task] | None = None
) -> Worker:
    """A worker for *tasks* (default: all of orderly's) on *database*."""
    return Worker(
        database,
        all_tasks() if tasks is None else tasks,
        options=WorkerOptions(
            batch_size=settings.worker_batch_size,
            concurrency=settings.worker_concurrency,
            heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
        ),
        resources=build_resources(settings),
    )
