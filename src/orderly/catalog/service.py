"""Catalog use cases: products, manual stock adjustments, reservations for orders."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from orderly import errors
from orderly.catalog import repository
from orderly.catalog.cache import product_cache
from orderly.catalog.repository import Product, ReservedLine
from orderly.catalog.schemas import (
    ProductCreate,
    ProductRead,
    ProductUpdate,
    StockAdjustmentCreate,
    StockMovementRead,
)
from orderly.core.db import Tx
from orderly.core.jobs import enqueue
from orderly.core.telemetry import get_logger

log = get_logger(__name__)
RECORD_INVENTORY = "catalog.record_inventory"
"""Job name: the low-stock alert (catalog/tasks.py)."""


def _read(product: Product) -> ProductRead:
    return ProductRead.model_validate(product, from_attributes=True)


def _invalidate_after_commit(tx: Tx, *product_ids: uuid.UUID) -> None:
    """Drop the products' cached reads once the change commits (one listener for all)."""

    def invalidate() -> None:
        for product_id in product_ids:
            product_cache.invalidate(product_id)

    tx.after_commit(invalidate)


async def create_product(tx: Tx, data: ProductCreate) -> ProductRead:
    """Create a product; a taken sku is a Conflict. The opening stock is a recorded movement."""
    row = await repository.insert_product(
        tx,
        product_id=uuid.uuid4(),
        sku=data.sku,
        name=data.name,
        description=data.description,
        price_cents=data.price_cents,
        currency=data.currency,
        stock=data.stock,
        low_stock_threshold=data.low_stock_threshold,
    )
    if row is None:
        raise errors.Conflict(f"A product with sku {data.sku!r} already exists.")
    if data.stock:
        await repository.record_movement(
            tx,
            product_id=row.id,
            delta=data.stock,
            stock_after=data.stock,
            reason="opening stock",
            actor_id=None,
        )
    log.info("product_created", product_id=str(row.id), sku=data.sku)
    return _read(row)


async def get_product(
    tx: Tx, product_id: uuid.UUID, *, include_inactive: bool = False
) -> ProductRead:
    """One product; inactive ones exist only for staff."""
    row = await repository.get_product(tx, product_id)
    if row is None or not (row.active or include_inactive):
        raise errors.NotFound("No such product.")
    return _read(row)


async def get_product_json(tx: Tx, product_id: uuid.UUID) -> bytes:
    """The public JSON of an active product, served from the process cache when fresh.

    *tx* is lazy: when the cache answers, the hottest public read takes no
    connection at all.
    """
    cached = product_cache.get(product_id)
    if cached is not None:
        return cached
    body = (await get_product(tx, product_id)).model_dump_json().encode()
    product_cache.put(product_id, body)
    return body


async def product_names(tx: Tx, product_ids: Sequence[uuid.UUID]) -> dict[str, str]:
    """Names of products by id (for messages; inactive products included)."""
    return {str(pid): name for pid, name in await repository.names(tx, product_ids)}


async def list_products(
    tx: Tx,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    include_inactive: bool = False,
) -> tuple[list[ProductRead], tuple[datetime, uuid.UUID] | None]:
    """A page of products and the keyset of its last row when more may follow."""
    rows = await repository.list_products(
        tx, limit=limit + 1, after=after, include_inactive=include_inactive
    )
    page = [_read(row) for row in rows[:limit]]
    more = len(rows) > limit
    return page, ((page[-1].created_at, page[-1].id) if more and page else None)


async def update_product(tx: Tx, product_id: uuid.UUID, data: ProductUpdate) -> ProductRead:
    """Change a product's descriptive fields (never its stock)."""
    changes = data.model_dump(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise errors.InvalidInput("fields may be omitted but not null", field="body")
    row = await repository.update_product(tx, product_id, changes)
    if row is None:
        raise errors.NotFound("No such product.")
    _invalidate_after_commit(tx, product_id)
    return _read(row)


async def adjust_stock(
    tx: Tx,
    product_id: uuid.UUID,
    data: StockAdjustmentCreate,
    *,
    actor_id: uuid.UUID | None,
) -> StockMovementRead:
    """Apply a manual stock change; stock never goes below zero (Conflict instead)."""
    if data.delta == 0:
        raise errors.InvalidInput("delta must not be zero", field="delta")
    applied, row = await repository.adjust_stock(tx, product_id, data.delta)
    if row is None:
        raise errors.NotFound("No such product.")
    if not applied:
        raise errors.Conflict(
            f"Stock is {row.stock}; removing {-data.delta} would make it negative."
        )
    movement = await repository.record_movement(
        tx,
        product_id=product_id,
        delta=data.delta,
        stock_after=row.stock,
        reason=data.reason,
        actor_id=actor_id,
    )
    _invalidate_after_commit(tx, product_id)
    stock = row.stock
    await _alert_if_crossed(tx, [(product_id, stock - data.delta, stock, row.low_stock_threshold)])
    log.info("stock_adjusted", product_id=str(product_id), delta=data.delta)
    return StockMovementRead.model_validate(movement, from_attributes=True)


async def reserve_for_order(
    tx: Tx, order_id: uuid.UUID, lines: Sequence[tuple[uuid.UUID, int]]
) -> list[ReservedLine]:
    """Reserve every line or raise OutOfStock naming the first short product.

    On OutOfStock the caller's transaction must roll back: lines that could be
    reserved were taken in it, and the rollback returns them.
    """
    product_ids = [product_id for product_id, _ in lines]
    reserved = await repository.reserve(
        tx, order_id, product_ids, [quantity for _, quantity in lines]
    )
    if len(reserved) != len(lines):
        got = {line.product_id for line in reserved}
        missing = next(pid for pid in product_ids if pid not in got)
        raise errors.OutOfStock(str(missing))
    # No cache invalidation here: stock in a product read is advisory (catalog/cache.py),
    # and at launch load (hundreds of orders a second over a hundred products) dropping
    # the entry on every sale would send most reads to the pool the orders are queueing for.
    await _alert_if_crossed(
        tx,
        [
            (r.product_id, r.stock_after + r.quantity, r.stock_after, r.low_stock_threshold)
            for r in reserved
        ],
    )
    return reserved


async def release_for_order(
    tx: Tx,
    order_id: uuid.UUID,
    lines: Sequence[tuple[uuid.UUID, int]],
    *,
    actor_id: uuid.UUID | None,
) -> None:
    """Give an order's reserved stock back (cancellation); product reads show it within the TTL."""
    await repository.release(
        tx,
        order_id,
        [product_id for product_id, _ in lines],
        [quantity for _, quantity in lines],
        "order cancelled",
        actor_id,
    )


async def _alert_if_crossed(tx: Tx, levels: Sequence[tuple[uuid.UUID, int, int, int]]) -> None:
    """Enqueue a low-stock alert for each product whose stock just fell under its threshold.

    Alerting on the crossing (not on every sale below it) sends one alert per
    episode; a restock above the threshold re-arms it.
    """
    for product_id, before, after, threshold in levels:
        if after < threshold <= before:
            await enqueue(
                tx,
                RECORD_INVENTORY,
                {"product_id": str(product_id)},
                dedupe_key=f"low-stock:{product_id}",
            )
