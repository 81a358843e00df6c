"""The summary equals a direct recomputation from the raw rows, for random histories.

Hypothesis lays out orders, credit and card payments, cancels, refunds and
fulfilments over several UTC days in two currencies, with incremental
refreshes at random moments in between (each as of its moment in the
history), then one last refresh now. Whatever the history, every figure of the
summary must equal what this file computes straight from the orders and the
ledger. The recomputation lives here only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderly.analytics import service
from orderly.core.db import Database
from orderly.orders.schemas import OrderStatus
from tests.analytics.history import Placed, move, place
from tests.support.db import truncate_all

CURRENCIES = ("USD", "EUR")
PRICES = (1250, 399, 10_000)

line = st.tuples(st.integers(0, len(PRICES) - 1), st.integers(1, 3))
action = st.one_of(
    st.tuples(st.just("place"), st.integers(0, 1), st.lists(line, min_size=1, max_size=3)),
    st.tuples(st.just("pay"), st.integers(0, 50), st.sampled_from(["credits", "card"])),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("refund"), st.integers(0, 50)),
    st.tuples(st.just("fulfil"), st.integers(0, 50)),
    st.tuples(st.just("refresh")),
)
# Minutes between consecutive steps: mostly close together, sometimes a day or more apart.
gap = st.one_of(st.integers(0, 90), st.integers(600, 2 * 24 * 60))
history = st.lists(st.tuples(gap, action), min_size=1, max_size=40)


def _day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


async def _setup(conn: asyncpg.Connection) -> tuple[uuid.UUID, dict[str, list[uuid.UUID]]]:
    user_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO user_account (id, email, password_hash, role) "
        "VALUES ($1, $2, 'x', 'customer')",
        user_id,
        f"{user_id.hex[:12]}@example.test",
    )
    products: dict[str, list[uuid.UUID]] = {}
    for currency in CURRENCIES:
        products[currency] = []
        for index, price in enumerate(PRICES):
            product_id = uuid.uuid4()
            await conn.execute(
                """INSERT INTO product (id, sku, name, price_cents, currency, stock)
                   VALUES ($1, $2, $3, $4, $5, 100)""",
                product_id,
                # Equal revenue ties are broken by sku: give ties a chance (same price).
                f"{currency}-{index}",
                f"Product {index}",
                price,
                currency,
            )
            products[currency].append(product_id)
    return user_id, products


async def _expected(
    conn: asyncpg.Connection, currency: str, first: date, last: date
) -> dict[str, Any]:
    """The summary computed directly from sales_order, order_item, order_event and the ledger."""
    money = await conn.fetch(
        """SELECT kind, external_id, amount_cents, created_at FROM ledger_transaction
            WHERE currency = $1 AND external_id LIKE 'order:%'""",
        currency,
    )
    events = await conn.fetch(
        """SELECT e.to_status, e.created_at FROM order_event e
             JOIN sales_order o ON o.id = e.order_id WHERE o.currency = $1""",
        currency,
    )
    orders = await conn.fetch(
        "SELECT status, created_at FROM sales_order WHERE currency = $1", currency
    )
    items = await conn.fetch(
        """SELECT i.order_id, i.product_id, i.quantity, i.unit_price_cents, p.sku, p.name
             FROM order_item i JOIN product p ON p.id = i.product_id"""
    )
    lines: dict[uuid.UUID, list[asyncpg.Record]] = defaultdict(list)
    for item in items:
        lines[item["order_id"]].append(item)

    gross: Counter[date] = Counter()
    refunds: Counter[date] = Counter()
    units: Counter[uuid.UUID] = Counter()
    revenue: Counter[uuid.UUID] = Counter()
    names: dict[uuid.UUID, tuple[str, str]] = {}
    for row in money:
        day = _day(row["created_at"])
        if not first <= day <= last:
            continue
        incoming = row["kind"] in ("payment", "card_payment")
        (gross if incoming else refunds)[day] += row["amount_cents"]
        sign = 1 if incoming else -1
        for item in lines[uuid.UUID(row["external_id"].removeprefix("order:"))]:
            pid = item["product_id"]
            units[pid] += sign * item["quantity"]
            revenue[pid] += sign * item["quantity"] * item["unit_price_cents"]
            names[pid] = (item["sku"], item["name"])
    counted: Counter[tuple[str, date]] = Counter()
    for row in events:
        day = _day(row["created_at"])
        if first <= day <= last:
            counted[(row["to_status"], day)] += 1
    statuses = Counter(row["status"] for row in orders if first <= _day(row["created_at"]) <= last)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    paid = sum(counted[("paid", d)] for d in days)
    total_gross = sum(gross[d] for d in days)
    total_refunds = sum(refunds[d] for d in days)
    best = sorted(names, key=lambda pid: (-revenue[pid], names[pid][0]))[:10]
    return {
        "totals": {
            "gross_cents": total_gross,
            "refunds_cents": total_refunds,
            "net_cents": total_gross - total_refunds,
            "orders_paid": paid,
            "orders_cancelled": sum(counted[("cancelled", d)] for d in days),
            "orders_refunded": sum(counted[("refunded", d)] for d in days),
            "average_order_cents": total_gross // paid if paid else 0,
        },
        "by_day": [
            (d, gross[d], refunds[d], gross[d] - refunds[d], counted[("paid", d)]) for d in days
        ],
        "orders_by_status": dict(sorted(statuses.items())),
        "top_products": [
            (pid, names[pid][0], names[pid][1], units[pid], revenue[pid]) for pid in best
        ],
    }


def _actual(summary: service.Summary) -> dict[str, Any]:
    t = summary.totals
    return {
        "totals": {
            "gross_cents": t.gross_cents,
            "refunds_cents": t.refunds_cents,
            "net_cents": t.net_cents,
            "orders_paid": t.orders_paid,
            "orders_cancelled": t.orders_cancelled,
            "orders_refunded": t.orders_refunded,
            "average_order_cents": t.average_order_cents,
        },
        "by_day": [
            (d.day, d.gross_cents, d.refunds_cents, d.net_cents, d.orders_paid)
            for d in summary.by_day
        ],
        "orders_by_status": summary.orders_by_status,
        "top_products": [
            (p.product_id, p.sku, p.name, p.units, p.revenue_cents) for p in summary.top_products
        ],
    }


async def _run(
    url: str,
    start_minute: int,
    steps: list[tuple[int, tuple[Any, ...]]],
    window: tuple[int, int] = (0, 9),
) -> None:
    await truncate_all(url)
    conn = await asyncpg.connect(url)
    database = Database(url, pool_size=1)
    try:
        user_id, products = await _setup(conn)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        moment = today - timedelta(days=7, minutes=-start_minute)
        orders: list[Placed] = []
        for minutes, step in steps:
            moment = min(moment + timedelta(minutes=minutes), datetime.now(UTC))
            kind = step[0]
            if kind == "place":
                currency = CURRENCIES[step[1]]
                merged: dict[int, int] = {}
                for index, quantity in step[2]:
                    merged[index] = merged.get(index, 0) + quantity
                order_lines = [
                    (products[currency][index], quantity, PRICES[index])
                    for index, quantity in merged.items()
                ]
                orders.append(
                    await place(
                        conn, user_id=user_id, currency=currency, lines=order_lines, at=moment
                    )
                )
            elif kind == "refresh":
                async with database.transaction() as tx:
                    await service.refresh(tx, as_of=moment)
                    await tx.commit()
            elif orders:
                order = orders[step[1] % len(orders)]
                target = {
                    "pay": OrderStatus.paid,
                    "cancel": OrderStatus.cancelled,
                    "refund": OrderStatus.refunded,
                    "fulfil": OrderStatus.fulfilled,
                }[kind]
                method = step[2] if kind == "pay" else "credits"
                await move(conn, order, target, at=moment, user_id=user_id, method=method)
        async with database.transaction() as tx:
            await service.refresh(tx)
            await tx.commit()

        first_day = (today - timedelta(days=8)).date()
        last_day = today.date() + timedelta(days=1)
        ranges = [
            (first_day, last_day),
            (first_day + timedelta(days=3), today.date()),
            # Any sub-range: the top products add up aligned blocks of days of every shape.
            (first_day + timedelta(days=min(window)), first_day + timedelta(days=max(window))),
        ]
        for currency in CURRENCIES:
            for first, last in ranges:
                async with database.transaction() as tx:
                    summary = await service.summary(tx, currency=currency, first=first, last=last)
                assert _actual(summary) == await _expected(conn, currency, first, last), (
                    currency,
                    first,
                    last,
                )
    finally:
        await database.dispose()
        await conn.close()


@pytest.fixture
def _leaves_an_empty_database(database_url: str) -> Iterator[None]:
    """The last example's rows would otherwise meet the next test in this database."""
    yield
    asyncio.run(truncate_all(database_url))


@pytest.mark.usefixtures("_leaves_an_empty_database")
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    start_minute=st.integers(0, 24 * 60 - 1),
    steps=history,
    window=st.tuples(st.integers(0, 9), st.integers(0, 9)),
)
def test_summary_equals_a_recomputation_from_raw_rows(
    database_url: str,
    start_minute: int,
    steps: list[tuple[int, tuple[Any, ...]]],
    window: tuple[int, int],
) -> None:
    asyncio.run(_run(database_url, start_minute, steps, window))
