"""Every query on the order tables (asyncpg on the session's connection; values bound)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from orderly.core.db import raw_connection

_ORDER_SELECT = """
SELECT o.id, o.user_id, o.status, o.total_cents, o.currency, o.payment_method,
       o.shipping_address, o.created_at, o.updated_at,
       (SELECT json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                          'unit_price_cents', i.unit_price_cents)
                        ORDER BY i.product_id)
          FROM order_item i WHERE i.order_id = o.id) AS items
  FROM sales_order o"""


def _decode(row: asyncpg.Record) -> dict[str, Any]:
    values = dict(row)
    items = values["items"]
    # SQLAlchemy's asyncpg dialect installs a json codec on its connections (objects come
    # back decoded); a plain asyncpg connection returns text.
    values["items"] = orjson.loads(items) if isinstance(items, str) else (items or [])
    return values


async def insert_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    total_cents: int,
    currency: str,
    shipping_address: str,
    pii_key_id: str,
    product_ids: Sequence[uuid.UUID],
    quantities: Sequence[int],
    unit_prices: Sequence[int],
) -> asyncpg.Record:
    """Insert the order, its lines and its first status event in one round trip."""
    conn = await raw_connection(session)
    row = await conn.fetchrow(
        """WITH o AS (
              INSERT INTO sales_order (id, user_id, status, total_cents, currency,
                                       shipping_address, pii_key_id)
              VALUES ($1, $2, 'pending', $3, $4, $5, $6)
              RETURNING created_at, updated_at),
            i AS (
              INSERT INTO order_item (order_id, product_id, quantity, unit_price_cents)
              SELECT $1, * FROM unnest($7::uuid[], $8::int[], $9::bigint[])),
            e AS (
              INSERT INTO order_event (order_id, from_status, to_status, actor_id, reason)
              VALUES ($1, NULL, 'pending', $2, 'placed'))
            SELECT created_at, updated_at FROM o""",
        order_id,
        user_id,
        total_cents,
        currency,
        shipping_address,
        pii_key_id,
        list(product_ids),
        list(quantities),
        list(unit_prices),
    )
    assert row is not None
    return row


async def get_order(
    session: AsyncSession, order_id: uuid.UUID, *, for_update: bool = False
) -> dict[str, Any] | None:
    """One order with its lines; ``for_update`` locks the order row for a state change."""
    conn = await raw_connection(session)
    lock = " FOR UPDATE OF o" if for_update else ""
    row = await conn.fetchrow(f"{_ORDER_SELECT} WHERE o.id = $1{lock}", order_id)
    return _decode(row) if row is not None else None


async def list_orders(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[dict[str, Any]]:
    """Orders newest first, keyset-paginated on (created_at, id), optionally one user's."""
    conn = await raw_connection(session)
    rows = await conn.fetch(
        f"""{_ORDER_SELECT}
            WHERE ($2::uuid IS NULL OR o.user_id = $2)
              AND ($3::text IS NULL OR o.status = $3)
              AND ($4::timestamptz IS NULL OR (o.created_at, o.id) < ($4, $5::uuid))
            ORDER BY o.created_at DESC, o.id DESC
            LIMIT $1""",
        limit,
        user_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
    )
    return [_decode(row) for row in rows]


async def transition(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    allowed_from: Sequence[str],
    to_status: str,
    actor_id: uuid.UUID | None,
    reason: str,
    payment_method: str | None = None,
) -> str | None:
    """Move the order to *to_status* if it is in *allowed_from*; record the event.

    Returns the previous status, or None when the order was not in an allowed
    status (the conditional update makes concurrent transitions safe).
    """
    conn = await raw_connection(session)
    row = await conn.fetchrow(
        """WITH changed AS (
              UPDATE sales_order o SET status = $3, updated_at = now(),
                     payment_method = COALESCE($6, o.payment_method)
                FROM (SELECT id, status FROM sales_order WHERE id = $1 FOR UPDATE) old
               WHERE o.id = old.id AND old.status = ANY($2::text[])
           RETURNING old.status AS previous),
            e AS (
              INSERT INTO order_event (order_id, from_status, to_status, actor_id, reason)
              SELECT $1, previous, $3, $4, $5 FROM changed)
            SELECT previous FROM changed""",
        order_id,
        list(allowed_from),
        to_status,
        actor_id,
        reason,
        payment_method,
    )
    return str(row["previous"]) if row is not None and row["previous"] is not None else None


async def events(session: AsyncSession, order_id: uuid.UUID) -> list[asyncpg.Record]:
    """The order's status history, oldest first."""
    conn = await raw_connection(session)
    return list(
        await conn.fetch(
            """SELECT from_status, to_status, actor_id, reason, created_at
                 FROM order_event WHERE order_id = $1 ORDER BY id""",
            order_id,
        )
    )


async def paid_at(session: AsyncSession, order_id: uuid.UUID) -> datetime | None:
    """When the order became paid (stable across retries: webhook bodies must not change)."""
    conn = await raw_connection(session)
    value: datetime | None = await conn.fetchval(
        """SELECT created_at FROM order_event
            WHERE order_id = $1 AND to_status = 'paid' ORDER BY id LIMIT 1""",
        order_id,
    )
    return value


async def stale_addresses(
    session: AsyncSession, current_key_id: str, limit: int
) -> list[asyncpg.Record]:
    """Orders whose address is sealed with an older key (locked, skipping busy rows)."""
    conn = await raw_connection(session)
    return list(
        await conn.fetch(
            """SELECT id, shipping_address FROM sales_order
                WHERE pii_key_id <> $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED""",
            current_key_id,
            limit,
        )
    )


async def reseal_addresses(
    session: AsyncSession, order_ids: Sequence[uuid.UUID], tokens: Sequence[str], key_id: str
) -> None:
    """Store re-sealed addresses and the key id they are sealed with."""
    conn = await raw_connection(session)
    await conn.execute(
        """UPDATE sales_order o SET shipping_address = r.token, pii_key_id = $3
             FROM unnest($1::uuid[], $2::text[]) AS r(id, token) WHERE o.id = r.id""",
        list(order_ids),
        list(tokens),
        key_id,
    )
