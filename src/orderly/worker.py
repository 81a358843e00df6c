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
    from orderly.analytics import tasks as analytics
    from orderly.catalog import tasks as catalog
    from orderly.core import idempotency, maintenance
    from orderly.ledger import tasks as ledger
    from orderly.notifications import tasks as notifications
    from orderly.orders import tasks as orders

    return [
        *maintenance.TASKS,
        *accounts.TASKS,
        *idempotency.TASKS,
        *notifications.TASKS,
        *catalog.TASKS,
        *orders.TASKS,
        *ledger.TASKS,
        *analytics.TASKS,
    ]


def build_resources(settings: Settings) -> dict[type[Any], Any]:
    """Shared objects tasks reach through ``JobContext.resource`` (mailer, HTTP clients…)."""
    from orderly.core.crypto import FieldCipher
    from orderly.core.outbound import Breakers
    from orderly.notifications import tasks as notifications

    breakers = Breakers()  # one registry per process: every outbound dependency's circuit
    return {
        Settings: settings,
        FieldCipher: FieldCipher(settings.encryption_key_list),
        Breakers: breakers,
        **notifications.build_resources(settings, breakers),
    }


class DeliveringWorker(Worker):
    """A worker that also drives release plans, guards and SLO checks (flags/lifecycle.py)."""

    settings: Settings

    async def run(self) -> None:
        """Run the queue; beside it, the flag runtime (if the process has none) and the driver."""
        from orderly.flags import client
        from orderly.flags import lifecycle as progressive_delivery

        if client.runtime() is not None:  # `orderly serve`: the app's lifespan drives
            await super().run()
            return
        delivery = await progressive_delivery.start(
            self.settings, self.database, http=False, drive_plans=True
        )
        try:
            await super().run()
        finally:
            await delivery.stop()


def build_worker(
    settings: Settings, database: Database, *, tasks: Sequence[Task] | None = None
) -> Worker:
    """A worker for *tasks* (default: all of orderly's) on *database*."""
    worker = DeliveringWorker(
        database,
        all_tasks() if tasks is None else tasks,
        options=WorkerOptions(
            batch_size=settings.worker_batch_size,
            concurrency=settings.worker_concurrency,
            heartbeat_timeout=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
        ),
        resources=build_resources(settings),
    )
    worker.settings = settings
    return worker
