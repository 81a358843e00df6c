"""A wallet per currency over HTTP: an EUR shop end to end, and USD beside it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.ledger import service as ledger_service
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, signed_in
from tests.support.shop import create_product, order_body, pay_with_credits


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """A shop that sells in EUR."""
    return make_settings(
        database_url, tmp_path, currency="EUR", order_rate_limit="1000/minute", **CHEAP_HASHING
    )


async def _grant(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, object]
) -> httpx.Response:
    return await client.post("/v1/admin/credits", json=body, headers=headers)


async def test_an_eur_shop_end_to_end(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    product = await create_product(
        client, staff.headers, stock=100, price_cents=900, currency="EUR"
    )

    # No currency named: the shop's (EUR). A USD grant lands in a second wallet.
    grant = {"user_id": str(customer.id), "amount_cents": 5 * 900, "reason": "promo"}
    eur = await _grant(client, admin.headers, {**grant, "transaction_id": "eur-1"})
    assert eur.status_code == 201, eur.text
    assert eur.json()["currency"] == "EUR"
    usd = await _grant(
        client, admin.headers, {**grant, "transaction_id": "usd-1", "currency": "USD"}
    )
    assert usd.status_code == 201
    assert usd.json()["currency"] == "USD"

    wallets = (await client.get("/v1/wallets", headers=customer.headers)).json()
    assert wallets == {
        "data": [
            {"balance_cents": 4500, "currency": "EUR"},
            {"balance_cents": 4500, "currency": "USD"},
        ]
    }
    none_yet = await client.get("/v1/wallet?currency=GBP", headers=customer.headers)
    assert none_yet.json() == {"balance_cents": 0, "currency": "GBP"}
    assert (
        await client.get("/v1/wallet?currency=usd", headers=customer.headers)
    ).status_code == 422

    orders = []
    for _ in range(30):
        placed = await client.post(
            "/v1/orders", json=order_body((product["id"], 1)), headers=customer.headers
        )
        assert placed.status_code == 201, placed.text
        orders.append(placed.json())
    responses = await asyncio.gather(
        *[pay_with_credits(client, order["id"], customer.headers) for order in orders]
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 5
    assert statuses.count(402) == 25
    assert {r.json()["code"] for r in responses if r.status_code == 402} == {"insufficient_funds"}

    assert (await client.get("/v1/wallet", headers=customer.headers)).json() == {
        "balance_cents": 0,
        "currency": "EUR",
    }
    # The USD wallet paid for nothing.
    usd_wallet = await client.get("/v1/wallet?currency=USD", headers=customer.headers)
    assert usd_wallet.json()["balance_cents"] == 4500
    statement = await client.get(
        "/v1/wallet/transactions?currency=EUR&limit=100", headers=customer.headers
    )
    kinds = [line["kind"] for line in statement.json()["data"]]
    assert kinds.count("payment") == 5
    assert kinds.count("grant") == 1
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order WHERE status = 'paid'") == 5
    async with database.transaction() as tx:
        report = await ledger_service.check_ledger(tx)
    assert report.ok, report.violations
