"""Warehouse webhooks against a real local HTTP receiver, per the Standard Webhooks spec."""

from __future__ import annotations

import base64
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import asyncpg
import pytest
from standardwebhooks import Webhook

from orderly.config import Settings
from orderly.core import jobs
from orderly.core.db import Database
from orderly.core.jobs import RetryPolicy
from orderly.core.outbound import Breakers, Timeouts
from orderly.core.telemetry import REGISTRY
from orderly.notifications import service, tasks
from orderly.notifications.webhooks import webhook_id_for
from tests.conftest import make_settings
from tests.support.receivers import HttpReceiver, eventually, running_worker

SHORT = Timeouts(connect=0.5, read=0.3, write=0.5, pool=0.5)


def _task(max_attempts: int) -> jobs.Task:
    return dataclasses.replace(
        tasks.deliver_webhook,
        retry=RetryPolicy(max_attempts=max_attempts, base_delay=0.1, max_delay=0.4),
    )


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    """A real HTTP server on 127.0.0.1."""
    server = HttpReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def secret() -> str:
    """A Standard Webhooks secret as ORDERLY_WAREHOUSE_WEBHOOK_SECRET carries it."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _settings(database_url: str, tmp_path: Path, url: str | None, secret: str) -> Settings:
    return make_settings(
        database_url, tmp_path, warehouse_webhook_url=url, warehouse_webhook_secret=secret
    )


def _resources(settings: Settings, breakers: Breakers | None = None) -> dict[type, object]:
    return {
        Settings: settings,
        **tasks.build_resources(settings, breakers or Breakers(), webhook_timeouts=SHORT),
    }


async def _enqueue(database: Database, event_key: str, order_id: str) -> int:
    async with database.transaction() as tx:
        job_id = await service.enqueue_webhook(
            tx,
            event_key=event_key,
            event_type="order.paid",
            data={"order_id": order_id, "items": [{"sku": "SKU-1", "quantity": 2}]},
        )
        await tx.commit()
    assert job_id is not None
    return job_id


async def _status(database: Database, job_id: int) -> str | None:
    async with database.transaction() as tx:
        record = await jobs.get_job(tx, job_id)
    return None if record is None else record.status


async def test_receiver_failing_three_times_gets_the_fourth_with_the_same_id(
    database: Database,
    database_url: str,
    raw_db: asyncpg.Connection,
    receiver: HttpReceiver,
    secret: str,
    tmp_path: Path,
) -> None:
    receiver.script = [500, 503, 502]
    settings = _settings(database_url, tmp_path, receiver.url, secret)
    order_id = str(uuid.uuid4())
    key = f"order:{order_id}:paid"
    async with running_worker(database, [_task(6)], _resources(settings)):
        job_id = await _enqueue(database, key, order_id)
        await eventually(lambda: _is_none(_status(database, job_id)))

    assert len(receiver.requests) == 4
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {webhook_id_for(key)}
    assert len({r.body for r in receiver.requests}) == 1  # byte-identical body on every attempt
    last = receiver.requests[-1]
    payload = Webhook(secret).verify(last.body, dict(last.headers))
    assert payload["type"] == "order.paid"
    assert payload["data"]["order_id"] == order_id
    row = await raw_db.fetchrow("SELECT * FROM notification WHERE event_key = $1", key)
    assert row is not None
    assert (row["channel"], row["response_status"], row["attempt"]) == ("webhook", 204, 4)
    assert row["message_id"] == webhook_id_for(key)


async def test_receiver_that_never_answers_ends_dead_and_admin_retry_delivers(
    database: Database,
    database_url: str,
    raw_db: asyncpg.Connection,
    receiver: HttpReceiver,
    secret: str,
    tmp_path: Path,
) -> None:
    receiver.default = "hang"
    settings = _settings(database_url, tmp_path, receiver.url, secret)
    key = "order:never:paid"
    async with running_worker(database, [_task(3)], _resources(settings)):
        job_id = await _enqueue(database, key, "never")
        await eventually(lambda: _eq(_status(database, job_id), "dead"))
        async with database.transaction() as tx:
            record = await jobs.get_job(tx, job_id)
        assert record is not None
        assert record.last_error is not None
        assert "timed out" in record.last_error
        assert len(receiver.requests) == 3
        assert await raw_db.fetchval("SELECT count(*) FROM notification") == 0

        receiver.default = 200  # the warehouse is back
        async with database.transaction() as tx:
            assert await jobs.retry_dead(tx, job_id)
            await tx.commit()
        await eventually(lambda: _is_none(_status(database, job_id)))

    assert len(receiver.requests) == 4
    assert {r.headers["webhook-id"] for r in receiver.requests} == {webhook_id_for(key)}
    last = receiver.requests[-1]
    Webhook(secret).verify(last.body, dict(last.headers))
    assert (
        await raw_db.fetchval("SELECT response_status FROM notification WHERE event_key = $1", key)
        == 200
    )


async def test_breaker_opens_after_repeated_failures_and_stops_the_hammering(
    database: Database,
    database_url: str,
    receiver: HttpReceiver,
    secret: str,
    tmp_path: Path,
) -> None:
    receiver.default = 503
    settings = _settings(database_url, tmp_path, receiver.url, secret)
    breakers = Breakers(threshold=2, ttl=60)
    async with running_worker(database, [_task(5)], _resources(settings, breakers)):
        job_id = await _enqueue(database, "order:down:paid", "down")
        await eventually(lambda: _eq(_status(database, job_id), "dead"))
        async with database.transaction() as tx:
            record = await jobs.get_job(tx, job_id)

    assert len(receiver.requests) == 2  # attempts 3–5 failed fast on the open circuit
    assert await breakers.state("webhook:warehouse") == "opened"
    gauge = REGISTRY.get_sample_value(
        "orderly_circuit_breaker_open", {"breaker": "webhook:warehouse"}
    )
    assert gauge == 1.0
    assert record is not None
    assert record.last_error is not None
    assert "webhook:warehouse is unavailable" in record.last_error


async def test_client_error_fails_the_attempt_without_opening_the_breaker(
    database: Database,
    database_url: str,
    receiver: HttpReceiver,
    secret: str,
    tmp_path: Path,
) -> None:
    receiver.script = [400, 400, 400]
    settings = _settings(database_url, tmp_path, receiver.url, secret)
    breakers = Breakers(threshold=2, ttl=60)
    async with running_worker(database, [_task(5)], _resources(settings, breakers)):
        job_id = await _enqueue(database, "order:picky:paid", "picky")
        await eventually(lambda: _is_none(_status(database, job_id)))
    assert len(receiver.requests) == 4
    assert await breakers.state("webhook:warehouse") == "closed"


async def test_unconfigured_receiver_is_skipped(
    database: Database, database_url: str, raw_db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path)
    async with running_worker(database, [_task(2)], _resources(settings)):
        job_id = await _enqueue(database, "order:nowhere:paid", "nowhere")
        await eventually(lambda: _is_none(_status(database, job_id)))
    assert await raw_db.fetchval("SELECT count(*) FROM notification") == 0


async def _is_none(value: Awaitable[object]) -> bool:
    return (await value) is None


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return (await value) == expected
