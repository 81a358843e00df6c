"""Every query on the catalog tables.

Statements run on the transaction's own asyncpg connection (same transaction):
the order path is hot, and asyncpg's prepared statements cost a fraction of
SQLAlchemy's per-call compilation (MEASUREMENTS.md). All values are bound.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from orderly.core.db import Tx

_PRODUCT_COLUMNS = (
    "id, sku, name, description, price_cents, currency, stock, active, "
    "low_stock_threshold, created_at, updated_at"
)


@dataclass(frozen=True, slots=True)
class Product:
    """A product row."""

    id: uuid.UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    stock: int
    active: bool
    low_stock_threshold: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StockMovement:
    """One recorded change of a product's stock."""

    id: int
    product_id: uuid.UUID
    delta: int
    stock_after: int
    reason: str
    order_id: uuid.UUID | None
    created_at: datetime


def _product(row: asyncpg.Record) -> Product:
    return Product(**row)


def _movement(row: asyncpg.Record) -> StockMovement:
    return StockMovement(**row)


@dataclass(frozen=True, slots=True)
class ReservedLine:
    """A product line whose stock was just reserved."""

    product_id: uuid.UUID
    quantity: int
    unit_price_cents: int
    currency: str
    stock_after: int
    low_stock_threshold: int


async def insert_product(
    tx: Tx,
    *,
    product_id: uuid.UUID,
    sku: str,
    name: str,
    description: str,
    price_cents: int,
    currency: str,
    stock: int,
    low_stock_threshold: int,
) -> Product | None:
    """Insert a product; None when the sku is taken (the unique index decides, not a read)."""
    row = await tx.fetchrow(
        f"""INSERT INTO product (id, sku, name, description, price_cents, currency, stock,
                                 low_stock_threshold)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (sku) DO NOTHING
            RETURNING {_PRODUCT_COLUMNS}""",  # noqa: S608 - column list is a constant
        product_id,
        sku,
        name,
        description,
        price_cents,
        currency,
        stock,
        low_stock_threshold,
    )
    return _product(row) if row is not None else None


async def record_movement(
    tx: Tx,
    *,
    product_id: uuid.UUID,
    delta: int,
    stock_after: int,
    reason: str,
    actor_id: uuid.UUID | None,
    order_id: uuid.UUID | None = None,
) -> StockMovement:
    """Append one stock movement."""
    row = await tx.fetchrow(
        """INSERT INTO stock_movement (product_id, delta, stock_after, reason, order_id, actor_id)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, product_id, delta, stock_after, reason, order_id, created_at""",
        product_id,
        delta,
        stock_after,
        reason,
        order_id,
        actor_id,
    )
    assert row is not None
    return _movement(row)


async def get_product(tx: Tx, product_id: uuid.UUID) -> Product | None:
    """One product by id."""
    row = await tx.fetchrow(
        f"SELECT {_PRODUCT_COLUMNS} FROM product WHERE id = $1",  # noqa: S608 - constant columns
        product_id,
    )
    return _product(row) if row is not None else None


async def names(tx: Tx, product_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
    """(id, name) of the given products."""
    rows = await tx.fetch(
        "SELECT id, name FROM product WHERE id = ANY($1::uuid[])", list(product_ids)
    )
    return [(row["id"], row["name"]) for row in rows]


async def list_products(
    tx: Tx,
    *,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    include_inactive: bool,
) -> list[Product]:
    """Products oldest first, keyset-paginated on (created_at, id)."""
    return [
        _product(row)
        for row in await tx.fetch(
            f"""SELECT {_PRODUCT_COLUMNS} FROM product
                WHERE ($2::boolean OR active)
                  AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))
                ORDER BY created_at, id
                LIMIT $1""",  # noqa: S608 - constant columns
            limit,
            include_inactive,
            after[0] if after else None,
            after[1] if after else None,
        )
    ]


async def update_product(
    tx: Tx, product_id: uuid.UUID, changes: Mapping[str, object]
) -> Product | None:
    """Apply *changes* (validated column names only) and bump updated_at."""
    allowed = {"name", "description", "price_cents", "active", "low_stock_threshold"}
    columns = [name for name in changes if name in allowed]
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(columns))
    row = await tx.fetchrow(
        f"""UPDATE product SET {assignments}{", " if assignments else ""}updated_at = now()
            WHERE id = $1 RETURNING {_PRODUCT_COLUMNS}""",  # noqa: S608 - names from allowlist
        product_id,
        *(changes[name] for name in columns),
    )
    return _product(row) if row is not None else None


async def adjust_stock(tx: Tx, product_id: uuid.UUID, delta: int) -> tuple[bool, Product | None]:
    """Add *delta* to stock unless it would go negative: (applied, product or None)."""
    row = await tx.fetchrow(
        f"""WITH changed AS (
              UPDATE product SET stock = stock + $2, updated_at = now()
               WHERE id = $1 AND stock + $2 >= 0
           RETURNING {_PRODUCT_COLUMNS})
            SELECT true AS applied, * FROM changed
            UNION ALL
            SELECT false, {_PRODUCT_COLUMNS} FROM product
             WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed)""",  # noqa: S608
        product_id,
        delta,
    )
    if row is None:
        return False, None
    columns = dict(row.items())
    return bool(columns.pop("applied")), Product(**columns)


async def reserve(
    tx: Tx,
    order_id: uuid.UUID,
    product_ids: Sequence[uuid.UUID],
    quantities: Sequence[int],
) -> list[ReservedLine]:
    """Take stock for every line that has enough, recording movements; one round trip.

    Rows are locked in id order first, so concurrent multi-line orders cannot
    deadlock; the conditional update then re-checks stock on the locked row.
    The caller compares the result with what it asked for and rolls back the
    whole transaction when a line is missing (all or nothing).
    """
    rows = await tx.fetch(
        """WITH wanted AS (
              SELECT * FROM unnest($2::uuid[], $3::int[]) AS w(product_id, quantity)),
            locked AS (
              SELECT p.id FROM product p WHERE p.id = ANY($2::uuid[]) ORDER BY p.id FOR UPDATE),
            taken AS (
              UPDATE product p SET stock = p.stock - w.quantity, updated_at = now()
                FROM wanted w
               WHERE p.id = w.product_id AND p.id IN (SELECT id FROM locked)
                 AND p.active AND p.stock >= w.quantity
           RETURNING p.id, w.quantity, p.price_cents, p.currency, p.stock, p.low_stock_threshold),
            moved AS (
              INSERT INTO stock_movement (product_id, delta, stock_after, reason, order_id)
              SELECT id, -quantity, stock, 'order reserved', $1 FROM taken)
            SELECT * FROM taken""",
        order_id,
        list(product_ids),
        list(quantities),
    )
    return [
        ReservedLine(
            product_id=row["id"],
            quantity=row["quantity"],
            unit_price_cents=row["price_cents"],
            currency=row["currency"],
            stock_after=row["stock"],
            low_stock_threshold=row["low_stock_threshold"],
        )
        for row in rows
    ]


async def release(
    tx: Tx,
    order_id: uuid.UUID,
    product_ids: Sequence[uuid.UUID],
    quantities: Sequence[int],
    reason: str,
    actor_id: uuid.UUID | None,
) -> list[uuid.UUID]:
    """Return stock of an order's lines (id-ordered locks), recording movements."""
    rows = await tx.fetch(
        """WITH wanted AS (
              SELECT * FROM unnest($2::uuid[], $3::int[]) AS w(product_id, quantity)),
            locked AS (
              SELECT p.id FROM product p WHERE p.id = ANY($2::uuid[]) ORDER BY p.id FOR UPDATE),
            given AS (
              UPDATE product p SET stock = p.stock + w.quantity, updated_at = now()
                FROM wanted w
               WHERE p.id = w.product_id AND p.id IN (SELECT id FROM locked)
           RETURNING p.id, w.quantity, p.stock),
            moved AS (
              INSERT INTO stock_movement (product_id, delta, stock_after, reason, order_id,
                                          actor_id)
              SELECT id, quantity, stock, $4, $1, $5 FROM given)
            SELECT id FROM given""",
        order_id,
        list(product_ids),
        list(quantities),
        reason,
        actor_id,
    )
    return [row["id"] for row in rows]


async def movements_for_product(
    tx: Tx, product_id: uuid.UUID, limit: int = 100
) -> list[StockMovement]:
    """The most recent movements of a product, newest first."""
    rows = await tx.fetch(
        """SELECT id, product_id, delta, stock_after, reason, order_id, created_at
             FROM stock_movement WHERE product_id = $1 ORDER BY id DESC LIMIT $2""",
        product_id,
        limit,
    )
    return [_movement(row) for row in rows]
