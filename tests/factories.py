"""Test data factories: rows made through the real services or plain SQL, never mocks."""

from __future__ import annotations

import uuid

import asyncpg

from orderly.catalog import service as catalog_service
from orderly.catalog.schemas import ProductCreate
from orderly.catalog.schemas import ProductRead as Product
from orderly.core.db import Database


async def make_user_row(conn: asyncpg.Connection, role: str = "customer") -> uuid.UUID:
    """A bare user row, for service-level tests that need an owner (not a login)."""
    user_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO user_account (id, email, password_hash, role) VALUES ($1, $2, 'x', $3)",
        user_id,
        f"{user_id.hex[:12]}@example.test",
        role,
    )
    return user_id


async def make_product(
    database: Database,
    *,
    stock: int = 10,
    price_cents: int = 1250,
    currency: str = "EUR",
    low_stock_threshold: int = 0,
) -> Product:
    """A committed product with the given stock."""
    async with database.transaction() as tx:
        product = await catalog_service.create_product(
            tx,
            ProductCreate(
                sku=f"SKU-{uuid.uuid4().hex[:10]}",
                name="Test widget",
                price_cents=price_cents,
                currency=currency,
                stock=stock,
                low_stock_threshold=low_stock_threshold,
            ),
        )
        await tx.commit()
    return product
