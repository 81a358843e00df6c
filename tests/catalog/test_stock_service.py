"""Stock reservation at the service level: all or nothing, never negative, no deadlocks."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from orderly import errors
from orderly.catalog import service as catalog_service
from orderly.catalog.schemas import ProductCreate, StockAdjustmentCreate
from orderly.core.db import Database
from tests.factories import make_product


async def _reserve(database: Database, lines: list[tuple[uuid.UUID, int]]) -> bool:
    async with database.transaction() as tx:
        try:
            await catalog_service.reserve_for_order(tx, uuid.uuid4(), lines)
        except errors.OutOfStock:
            await tx.rollback()
            return False
        await tx.commit()
        return True


async def test_two_line_reservation_is_all_or_nothing(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    plenty = await make_product(database, stock=5)
    scarce = await make_product(database, stock=1)
    assert not await _reserve(database, [(plenty.id, 2), (scarce.id, 2)])
    stocks = await raw_db.fetch("SELECT id, stock FROM product")
    assert {row["id"]: row["stock"] for row in stocks} == {plenty.id: 5, scarce.id: 1}
    assert (
        await raw_db.fetchval("SELECT count(*) FROM stock_movement WHERE order_id IS NOT NULL") == 0
    )


async def test_opposite_order_multi_line_reservations_do_not_deadlock(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    a = await make_product(database, stock=100)
    b = await make_product(database, stock=100)
    results = await asyncio.gather(
        *[
            _reserve(database, [(a.id, 1), (b.id, 1)] if i % 2 else [(b.id, 1), (a.id, 1)])
            for i in range(40)
        ]
    )
    assert all(results)
    assert await raw_db.fetchval("SELECT sum(stock) FROM product") == 120


async def test_stock_adjustment_never_goes_below_zero(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    product = await make_product(database, stock=3)
    async with database.transaction() as tx:
        with pytest.raises(errors.Conflict):
            await catalog_service.adjust_stock(
                tx, product.id, StockAdjustmentCreate(delta=-4, reason="count"), actor_id=None
            )
        movement = await catalog_service.adjust_stock(
            tx, product.id, StockAdjustmentCreate(delta=-3, reason="damaged"), actor_id=None
        )
        await tx.commit()
    assert movement.stock_after == 0
    assert await raw_db.fetchval("SELECT stock FROM product WHERE id = $1", product.id) == 0
    reasons = await raw_db.fetch(
        "SELECT reason, delta FROM stock_movement WHERE product_id = $1 ORDER BY id", product.id
    )
    assert [(r["reason"], r["delta"]) for r in reasons] == [("opening stock", 3), ("damaged", -3)]


async def test_duplicate_sku_is_a_conflict(database: Database) -> None:
    data = ProductCreate(sku="DUP-1", name="x", price_cents=1, currency="EUR", stock=0)
    async with database.transaction() as tx:
        await catalog_service.create_product(tx, data)
        with pytest.raises(errors.Conflict):
            await catalog_service.create_product(tx, data)


async def test_falling_under_the_threshold_enqueues_one_alert(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    product = await make_product(database, stock=6, low_stock_threshold=5)
    assert await _reserve(database, [(product.id, 1)])  # 5: not under
    assert await raw_db.fetchval("SELECT count(*) FROM pgqueuer") == 0
    assert await _reserve(database, [(product.id, 1)])  # 4: crossed
    assert await _reserve(database, [(product.id, 1)])  # 3: already under, no second alert
    rows = await raw_db.fetch("SELECT entrypoint FROM pgqueuer")
    assert [row["entrypoint"] for row in rows] == ["catalog.record_inventory"]
