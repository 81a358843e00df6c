"""The summary over HTTP: shape, defaults, validation, roles, CSV, pre-computation, EXPLAIN."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from orderly.accounts.schemas import Role
from orderly.analytics import repository
from orderly.config import Settings
from orderly.core.db import Database
from tests.support.accounts import signed_in
from tests.support.shop import create_product, fund_wallet, order_body, pay_with_credits

ORDER_TABLES = ("sales_order", "order_item", "order_event", "ledger_transaction", "card_payment")


async def test_precomputed_summary_and_refresh(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    product = await create_product(client, staff.headers, stock=50, price_cents=1000)
    await fund_wallet(client, admin.headers, customer.id, 10_000)

    assert (await client.get("/v1/analytics/summary")).status_code == 401
    assert (await client.get("/v1/analytics/summary", headers=customer.headers)).status_code == 403
    refused = await client.post("/v1/admin/analytics/refresh", headers=staff.headers)
    assert refused.status_code == 403

    first = await client.post("/v1/admin/analytics/refresh", headers=admin.headers)
    assert first.status_code == 200, first.text
    placed = await client.post(
        "/v1/orders", json=order_body((product["id"], 2)), headers=customer.headers
    )
    assert (
        await pay_with_credits(client, placed.json()["id"], customer.headers)
    ).status_code == 200

    # Pre-computed: the paid order is absent until the next refresh.
    before = (await client.get("/v1/analytics/summary", headers=staff.headers)).json()
    assert before["totals"]["gross_cents"] == 0
    assert before["computed_at"] == first.json()["computed_at"]

    second = await client.post("/v1/admin/analytics/refresh", headers=admin.headers)
    body = (await client.get("/v1/analytics/summary", headers=staff.headers)).json()
    today = datetime.now(UTC).date()
    assert body["computed_at"] == second.json()["computed_at"]
    assert (body["currency"], body["from"], body["to"]) == (
        "USD",
        (today - timedelta(days=29)).isoformat(),
        today.isoformat(),
    )
    assert body["totals"] == {
        "gross_cents": 2000,
        "refunds_cents": 0,
        "net_cents": 2000,
        "orders_paid": 1,
        "orders_cancelled": 0,
        "orders_refunded": 0,
        "average_order_cents": 2000,
    }
    assert len(body["by_day"]) == 30
    assert body["by_day"][-1] == {
        "day": today.isoformat(),
        "gross_cents": 2000,
        "refunds_cents": 0,
        "net_cents": 2000,
        "orders_paid": 1,
    }
    assert body["orders_by_status"] == {"paid": 1}
    assert body["top_products"] == [
        {
            "product_id": product["id"],
            "sku": product["sku"],
            "name": product["name"],
            "units": 2,
            "revenue_cents": 2000,
        }
    ]
    eur = (await client.get("/v1/analytics/summary?currency=EUR", headers=staff.headers)).json()
    assert eur["totals"]["gross_cents"] == 0

    csv = await client.get(
        f"/v1/analytics/summary.csv?from={today}&to={today}", headers=staff.headers
    )
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines() == [
        "day,currency,gross_cents,refunds_cents,net_cents,orders_paid",
        f"{today},USD,2000,0,2000,1",
    ]


async def test_invalid_ranges_are_422(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    for query in (
        "from=2026-02-10&to=2026-02-01",
        "from=2026-02-30",
        "to=yesterday",
        "currency=usd",
        "from=1900-01-01&to=2026-01-01",
    ):
        response = await client.get(f"/v1/analytics/summary?{query}", headers=staff.headers)
        assert response.status_code == 422, query
        assert response.json()["code"] == "validation_failed"


async def test_the_summary_query_reads_no_order_table(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    # A small dataset so the planner has rows to choose among, then EXPLAIN the real query.
    await raw_db.execute(
        """INSERT INTO analytics_day
           SELECT c, d::date, 100, 0, 1, 0, 0
             FROM unnest(ARRAY['USD', 'EUR']) c, generate_series('2026-01-01'::date,
                                                                   '2026-12-31', '1 day') d"""
    )
    await raw_db.execute("ANALYZE")
    plan = await raw_db.fetchval(
        "EXPLAIN (FORMAT JSON) " + repository.SUMMARY_SQL,
        *repository.summary_args(
            "USD", datetime(2026, 3, 1).date(), datetime(2026, 3, 30).date(), 10
        ),
    )
    text = json.dumps(plan)
    assert "analytics_day" in text
    assert "analytics_product_span" in text  # the top products add up roll-up blocks
    for table in ORDER_TABLES:
        assert f'"{table}"' not in text, table
