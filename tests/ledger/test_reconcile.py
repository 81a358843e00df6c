"""The periodic reconciliation job: run by a real worker, result visible as metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from orderly.core import jobs
from orderly.core.db import Database
from orderly.core.jobs import Worker, WorkerOptions
from orderly.core.telemetry import render_metrics
from orderly.ledger import service as ledger
from orderly.ledger import tasks as ledger_tasks
from orderly.worker import all_tasks
from tests.ledger.conftest import MakeUser


@pytest.fixture
async def worker(database: Database) -> AsyncIterator[Worker]:
    """An in-process worker running the ledger's tasks."""
    w = Worker(
        database,
        ledger_tasks.TASKS,
        options=WorkerOptions(batch_size=5, concurrency=4, heartbeat_timeout=timedelta(seconds=2)),
    )
    running = asyncio.create_task(w.run())
    await asyncio.wait_for(w.started.wait(), 10)
    yield w
    w.stop()
    await asyncio.wait_for(running, 30)


def _metric(name: str, **labels: str) -> float:
    value = ledger_tasks.REGISTRY.get_sample_value(name, labels)
    assert value is not None, name
    return value


async def _reconcile_once(database: Database) -> None:
    before = ledger_tasks.LEDGER_RECONCILED_AT._value.get()
    async with database.transaction() as tx:
        await jobs.enqueue(tx, ledger_tasks.RECONCILE)
        await tx.commit()
    deadline = time.monotonic() + 15
    while ledger_tasks.LEDGER_RECONCILED_AT._value.get() == before:
        assert time.monotonic() < deadline, "reconciliation did not run"
        await asyncio.sleep(0.05)


def test_reconciliation_is_a_scheduled_worker_task() -> None:
    task = next(t for t in all_tasks() if t.name == ledger_tasks.RECONCILE)
    assert task.schedule is not None


async def test_reconciliation_publishes_totals_and_violations(
    database: Database, worker: Worker, make_user: MakeUser, raw_db: asyncpg.Connection
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        posted = await ledger.grant_credits(
            tx, user_id=user, amount_cents=1200, transaction_id="g", reason="r"
        )
        await tx.commit()

    await _reconcile_once(database)
    assert _metric("orderly_ledger_violations", check="unbalanced_transaction") == 0
    assert _metric("orderly_ledger_total_cents", kind="wallet", currency="USD") == 1200
    assert _metric("orderly_ledger_total_cents", kind="credits_issued", currency="USD") == -1200

    async with raw_db.transaction():
        await raw_db.execute("SET LOCAL session_replication_role = replica")
        await raw_db.execute(
            """UPDATE ledger_entry SET amount_cents = 1
                WHERE transaction_id = $1 AND amount_cents > 0""",
            posted.transaction.id,
        )
    await _reconcile_once(database)
    assert _metric("orderly_ledger_violations", check="unbalanced_transaction") == 1
    assert _metric("orderly_ledger_violations", check="balance_mismatch") == 1
    assert b'orderly_ledger_violations{check="unbalanced_transaction"} 1.0' in render_metrics()
