"""Paying orders over HTTP: credits under concurrency, cards at localstripe, refunds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from orderly.accounts.schemas import Role
from orderly.core.db import Database
from orderly.ledger import service as ledger_service
from orderly.main import create_app
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, SignedInUser, signed_in
from tests.support.shop import create_product, fund_wallet, order_body, pay_with_credits
from tests.support.stripe import (
    CARD_DECLINED,
    CARD_OK,
    TEST_API_KEY,
    free_port,
    localstripe_server,
    payment_method,
)


@pytest.fixture(scope="session")
def stripe_base() -> AsyncIterator[str]:
    """A real localstripe server for this module's card payments."""
    with localstripe_server() as url:
        yield url  # type: ignore[misc]


async def _client(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url, tmp_path, order_rate_limit="10000/minute", **CHEAP_HASHING, **overrides
    )
    app = create_app(settings, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            client.app_settings = settings  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def card_client(
    database: Database, database_url: str, tmp_path: Path, stripe_base: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with Stripe pointed at localstripe."""
    async for client in _client(
        database_url, tmp_path, stripe_api_key=TEST_API_KEY, stripe_api_base=stripe_base
    ):
        yield client


async def _people(
    client: httpx.AsyncClient, database: Database
) -> tuple[SignedInUser, SignedInUser, SignedInUser]:
    settings = client.app_settings  # type: ignore[attr-defined]
    staff = await signed_in(client, database, settings, Role.staff)
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    return staff, admin, customer


async def _orders(
    client: httpx.AsyncClient, customer: SignedInUser, product_id: str, n: int
) -> list[dict[str, Any]]:
    placed = []
    for _ in range(n):
        response = await client.post(
            "/v1/orders", json=order_body((product_id, 1)), headers=customer.headers
        )
        assert response.status_code == 201
        placed.append(response.json())
    return placed


async def _ledger_clean(database: Database) -> bool:
    async with database.transaction() as tx:
        report = await ledger_service.check_ledger(tx)
    return report.ok


async def test_fifty_concurrent_payments_from_a_wallet_funded_for_ten(
    client: httpx.AsyncClient, database: Database, raw_db: asyncpg.Connection
) -> None:
    client.app_settings = make_settings_from(client)  # type: ignore[attr-defined]
    staff, admin, customer = await _people(client, database)
    product = await create_product(client, staff.headers, stock=100, price_cents=700)
    orders = await _orders(client, customer, product["id"], 50)
    await fund_wallet(client, admin.headers, customer.id, 10 * 700)

    responses = await asyncio.gather(
        *[pay_with_credits(client, order["id"], customer.headers) for order in orders]
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10
    assert statuses.count(402) == 40
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {"insufficient_funds"}
    wallet = await client.get("/v1/wallet", headers=customer.headers)
    assert wallet.json()["balance_cents"] == 0
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order WHERE status = 'paid'") == 10
    assert await _ledger_clean(database)


async def test_twenty_retries_of_one_payment_debit_once(
    client: httpx.AsyncClient, database: Database, raw_db: asyncpg.Connection
) -> None:
    client.app_settings = make_settings_from(client)  # type: ignore[attr-defined]
    staff, admin, customer = await _people(client, database)
    product = await create_product(client, staff.headers, stock=10, price_cents=500)
    (order,) = await _orders(client, customer, product["id"], 1)
    await fund_wallet(client, admin.headers, customer.id, 5000)
    headers = {**customer.headers, "Idempotency-Key": f"pay-{order['id']}"}

    responses = await asyncio.gather(
        *[
            client.post(
                f"/v1/orders/{order['id']}/pay", json={"method": "credits"}, headers=headers
            )
            for _ in range(20)
        ]
    )
    assert {r.status_code for r in responses} <= {200, 409}
    assert any(r.status_code == 200 for r in responses)
    wallet = await client.get("/v1/wallet", headers=customer.headers)
    assert wallet.json()["balance_cents"] == 4500
    payments = await raw_db.fetchval(
        "SELECT count(*) FROM ledger_transaction WHERE kind = 'payment'"
    )
    assert payments == 1


async def test_cancelling_a_credits_paid_order_restores_the_balance_exactly(
    client: httpx.AsyncClient, database: Database, raw_db: asyncpg.Connection
) -> None:
    client.app_settings = make_settings_from(client)  # type: ignore[attr-defined]
    staff, admin, customer = await _people(client, database)
    product = await create_product(client, staff.headers, stock=3, price_cents=1999)
    (order,) = await _orders(client, customer, product["id"], 1)
    await fund_wallet(client, admin.headers, customer.id, 2500)
    assert (await pay_with_credits(client, order["id"], customer.headers)).status_code == 200
    assert (await client.get("/v1/wallet", headers=customer.headers)).json()["balance_cents"] == 501

    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert (await client.get("/v1/wallet", headers=customer.headers)).json()[
        "balance_cents"
    ] == 2500
    stock = await raw_db.fetchval(
        "SELECT stock FROM product WHERE id = $1", uuid.UUID(product["id"])
    )
    assert stock == 3
    assert await _ledger_clean(database)
    again = await pay_with_credits(client, order["id"], customer.headers)
    assert again.status_code == 409


async def test_short_of_credits_changes_nothing(
    client: httpx.AsyncClient, database: Database, raw_db: asyncpg.Connection
) -> None:
    client.app_settings = make_settings_from(client)  # type: ignore[attr-defined]
    staff, admin, customer = await _people(client, database)
    product = await create_product(client, staff.headers, stock=3, price_cents=1000)
    (order,) = await _orders(client, customer, product["id"], 1)
    await fund_wallet(client, admin.headers, customer.id, 999)
    response = await pay_with_credits(client, order["id"], customer.headers)
    assert response.status_code == 402
    assert response.json()["code"] == "insufficient_funds"
    status = await raw_db.fetchval(
        "SELECT status FROM sales_order WHERE id = $1", uuid.UUID(order["id"])
    )
    assert status == "pending"
    assert (
        await raw_db.fetchval("SELECT count(*) FROM ledger_transaction WHERE kind = 'payment'") == 0
    )
    assert (
        await raw_db.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint LIKE 'orders.notify%'"
        )
        == 0
    )


async def test_card_payment_decline_and_refund_at_localstripe(
    card_client: httpx.AsyncClient, database: Database, stripe_base: str, raw_db: asyncpg.Connection
) -> None:
    staff, _, customer = await _people(card_client, database)
    product = await create_product(card_client, staff.headers, stock=5, price_cents=4200)
    good, declined = await _orders(card_client, customer, product["id"], 2)

    ok = await card_client.post(
        f"/v1/orders/{good['id']}/pay",
        json={"method": "card", "payment_method": await payment_method(stripe_base, CARD_OK)},
        headers={**customer.headers, "Idempotency-Key": "card-1"},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "paid"
    assert ok.json()["payment_method"] == "card"

    no = await card_client.post(
        f"/v1/orders/{declined['id']}/pay",
        json={"method": "card", "payment_method": await payment_method(stripe_base, CARD_DECLINED)},
        headers=customer.headers,
    )
    assert no.status_code == 402
    assert no.json()["code"] == "card_declined"
    status = await raw_db.fetchval(
        "SELECT status FROM sales_order WHERE id = $1", uuid.UUID(declined["id"])
    )
    assert status == "pending"

    refunded = await card_client.post(f"/v1/orders/{good['id']}/refund", headers=staff.headers)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    card_status = await raw_db.fetchval(
        "SELECT status FROM card_payment WHERE reference = $1", f"order:{good['id']}"
    )
    assert card_status == "refunded"
    assert await _ledger_clean(database)


async def test_unreachable_stripe_fails_fast_and_opens_the_breaker(
    database: Database, database_url: str, tmp_path: Path, raw_db: asyncpg.Connection
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    async for client in _client(
        database_url, tmp_path, stripe_api_key=TEST_API_KEY, stripe_api_base=closed
    ):
        staff, _, customer = await _people(client, database)
        product = await create_product(client, staff.headers, stock=10)
        orders = await _orders(client, customer, product["id"], 6)
        started = time.monotonic()
        statuses = []
        for order in orders:
            response = await client.post(
                f"/v1/orders/{order['id']}/pay",
                json={"method": "card", "payment_method": "pm_unreachable"},
                headers=customer.headers,
            )
            statuses.append(response.status_code)
            assert response.headers["content-type"] == "application/problem+json"
        elapsed = time.monotonic() - started
        metrics = (await client.get("/metrics")).text
    assert set(statuses) <= {502, 503}
    assert elapsed < 60  # bounded by the timeouts, not hanging
    assert 'orderly_circuit_breaker_open{breaker="stripe"} 1.0' in metrics
    assert await raw_db.fetchval("SELECT count(*) FROM ledger_entry") == 0
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order WHERE status <> 'pending'") == 0


def make_settings_from(client: httpx.AsyncClient) -> Any:
    """The settings of the app behind the shared ``client`` fixture."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app.state.runtime.settings  # type: ignore[attr-defined]
