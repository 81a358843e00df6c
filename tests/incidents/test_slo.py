"""SLOs: figures agree with the request counters in /metrics; a fast burn opens one incident."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.incidents import repository, slo
from tests.support.accounts import signed_in
from tests.support.receivers import eventually
from tests.support.shop import create_product, order_body


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Every process flushes its counts often in tests (10 s at most in production).
    return settings.model_copy(update={"telemetry_flush_seconds": 0.2})


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """ASGI client that gets the 500 the app answers instead of the exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def v1_counts(client: httpx.AsyncClient) -> dict[str, float]:
    """/v1 requests in /metrics: all, 5xx, and POST /v1/orders (all, within 300 ms)."""
    text = (await client.get("/metrics")).text
    counts = {"total": 0.0, "bad": 0.0, "orders": 0.0, "orders_fast": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "orderly_http_requests_total" and labels["route"].startswith("/v1"):
                counts["total"] += sample.value
                counts["bad"] += sample.value if labels["status"].startswith("5") else 0
            is_order = labels.get("route") == "/v1/orders" and labels.get("method") == "POST"
            if sample.name == "orderly_http_request_duration_seconds_count" and is_order:
                counts["orders"] += sample.value
            if (
                sample.name == "orderly_http_request_duration_seconds_bucket"
                and is_order
                and float(labels["le"]) == slo.ORDER_LATENCY_SECONDS
            ):
                counts["orders_fast"] += sample.value
    return counts


async def test_slo_figures_agree_with_the_metrics_for_the_same_traffic(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    raw_db: asyncpg.Connection,
) -> None:
    before = await v1_counts(client)
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings, Role.customer)
    product = await create_product(client, staff.headers, stock=100)
    for _ in range(4):
        placed = await client.post(
            "/v1/orders", json=order_body((product["id"], 1)), headers=customer.headers
        )
        assert placed.status_code == 201, placed.text
    for _ in range(5):
        assert (await client.get("/v1/admin/incidents", headers=staff.headers)).status_code == 200
    missing = f"/v1/admin/incidents/{uuid.uuid4()}"
    assert (await client.get(missing, headers=staff.headers)).status_code == 404
    assert (await client.get("/v1/admin/incidents")).status_code == 401

    # Two real server errors: a personal-data ciphertext copied onto another row fails its
    # integrity check when read (tests/accounts/test_pii.py), and that answer is a 500.
    await raw_db.execute(
        """UPDATE user_account SET name = (SELECT name FROM user_account WHERE id = $1)
            WHERE id = $2""",
        staff.id,
        customer.id,
    )
    for _ in range(2):
        assert (await client.get("/v1/users/me", headers=customer.headers)).status_code == 500
    after = await v1_counts(client)
    seen = {key: after[key] - before[key] for key in after}
    assert seen["bad"] == 2
    assert seen["orders"] == 4

    async def report() -> slo.SloReport:
        async with database.transaction() as tx:
            return await slo.report(tx)

    async def flushed() -> bool:
        return (await report()).slos[0].total == seen["total"]

    await eventually(flushed, timeout=5)
    availability, latency = (await report()).slos
    assert (availability.total, availability.good) == (seen["total"], seen["total"] - 2)
    assert availability.sli == round(1 - 2 / seen["total"], 6)
    budget_spent = (2 / seen["total"]) / (1 - slo.OBJECTIVES["availability"])
    assert availability.error_budget_remaining == round(1 - budget_spent, 6)
    assert availability.burn_rates.m5 == round(budget_spent, 4)
    assert (latency.total, latency.good) == (seen["orders"], seen["orders_fast"])


async def test_a_fast_burn_opens_exactly_one_incident(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    now = int(datetime.now(UTC).timestamp())
    minute = datetime.fromtimestamp(now - now % 60, UTC)
    async with database.transaction() as tx:
        await repository.add_request_counts(
            tx, [(minute, "availability", "good", 950), (minute, "availability", "bad", 50)]
        )
        await tx.commit()
    async with database.transaction() as tx:
        current = await slo.report(tx)
    availability = current.slos[0]
    assert availability.burn_rates.h1 == availability.burn_rates.m5 == 50.0  # 5 % / 0.1 %
    assert availability.fast_burn is True
    assert current.slos[1].fast_burn is False  # no orders: nothing burns
    assert await slo.check_fast_burn(database) == 1
    assert await slo.check_fast_burn(database) == 0  # still burning: the same incident
    rows = await raw_db.fetch("SELECT source, status, title FROM incident")
    assert [(r["source"], r["status"]) for r in rows] == [("slo", "active")]
    assert "availability" in rows[0]["title"]


async def test_a_slow_burn_opens_nothing(database: Database, raw_db: asyncpg.Connection) -> None:
    now = int(datetime.now(UTC).timestamp())
    minute = datetime.fromtimestamp(now - now % 60, UTC)
    async with database.transaction() as tx:
        # 1 % errors: 10x the budget, under the 14.4x of a fast burn.
        await repository.add_request_counts(
            tx, [(minute, "availability", "good", 990), (minute, "availability", "bad", 10)]
        )
        await tx.commit()
    assert await slo.check_fast_burn(database) == 0
    assert await raw_db.fetchval("SELECT count(*) FROM incident") == 0
