"""A release that does not know the product blocks refreshes too (rolling deploy): they catch up.

The previous release's workers keep refreshing the summary while today's
release rolls out. Its refresh recomputes the per-day tables and moves the
watermark, but knows nothing of ``analytics_product_span`` (0008) nor of the
blocks' own watermark (0010): today's next refresh must still bring the blocks
up to date for those days, or the top products of any range that reads a block
stay short until the nightly rebuild.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from orderly.analytics import repository as repo
from orderly.analytics import service
from orderly.core.db import Database
from orderly.orders.schemas import OrderStatus
from tests.analytics.history import move, place


async def _older_release_refreshes(database: Database) -> None:
    """What 09d14c1's refresh did: the per-day tables, then only watermark and computed_at."""
    async with database.transaction() as tx:
        await repo.lock_state(tx)
        await repo.recompute_days(tx, None)
        await repo.recompute_products(tx, None)
        await repo.recompute_statuses(tx, None)
        await tx.execute("UPDATE analytics_state SET watermark = now(), computed_at = now()")
        await tx.commit()


async def _sell(conn: asyncpg.Connection, product_id: uuid.UUID, at: datetime) -> None:
    user_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO user_account (id, email, password_hash, role) "
        "VALUES ($1, $2, 'x', 'customer')",
        user_id,
        f"{user_id.hex[:12]}@example.test",
    )
    order = await place(conn, user_id=user_id, currency="USD", lines=[(product_id, 3, 500)], at=at)
    await move(conn, order, OrderStatus.paid, at=at, user_id=user_id)


@pytest.mark.parametrize("blocks_refreshed_before", [False, True], ids=["after-0010", "later"])
async def test_top_products_count_sales_an_older_release_refreshed(
    database: Database, raw_db: asyncpg.Connection, blocks_refreshed_before: bool
) -> None:
    product_id = uuid.uuid4()
    await raw_db.execute(
        """INSERT INTO product (id, sku, name, price_cents, currency, stock)
           VALUES ($1, 'TEA-1', 'Assam', 500, 'USD', 100)""",
        product_id,
    )
    if blocks_refreshed_before:  # today's release refreshed before: the blocks have a watermark
        async with database.transaction() as tx:
            await service.refresh(tx)
            await tx.commit()
    await _sell(raw_db, product_id, datetime.now(UTC))
    await _older_release_refreshes(database)

    async with database.transaction() as tx:
        await service.refresh(tx)
        await tx.commit()

    # Two aligned 16-day blocks around today: the top products come from the blocks alone.
    first = repo.block_start(datetime.now(UTC).date(), 4) - timedelta(days=16)
    async with database.transaction() as tx:
        summary = await service.summary(
            tx, currency="USD", first=first, last=first + timedelta(days=31)
        )
    assert [(p.product_id, p.units) for p in summary.top_products] == [(product_id, 3)]
