"""Every query on the order tables; rows come back as :class:`Order` and friends."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from orderly.core.db import Tx
from orderly.orders.schemas import OrderStatus

_ORDER_SELECT = """
SELECT o.id, o.user_id, o.status, o.total_cents, o.currency, o.payment_method,
       o.shipping_address, o.created_at, o.updated_at,
       (SELECT json_agg(json_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                          'unit_price_cents', i.unit_price_cents)
                        ORDER BY i.product_id)
          FROM order_item i WHERE i.order_id = o.id) AS items
  FROM sales_order o"""


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order, priced when it was placed."""

    product_id: uuid.UUID
    quantity: int
    unit_price_cents: int


@dataclass(slots=True)
class Order:
    """An order row with its lines; ``shipping_address`` is still sealed.

    Not frozen: after a successful conditional transition the service updates
    ``status`` (and ``payment_method``) so the rest of the use case sees the
    order as it now is in this transaction.
    """

    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    total_cents: int
    currency: str
    payment_method: str | None
    shipping_address: str
    created_at: datetime
    updated_at: datetime
    items: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One status change in an order's history."""

    from_status: OrderStatus | None
    to_status: OrderStatus
    actor_id: uuid.UUID | None
    reason: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SealedAddress:
    """An order's shipping address as stored (for key rotation)."""

    id: uuid.UUID
    shipping_address: str


@dataclass(frozen=True, slots=True)
class Stamps:
    """The timestamps the database gave a new order."""

    created_at: datetime
    updated_at: datetime


def _order(row: asyncpg.Record) -> Order:
    return Order(
        id=row["id"],
        user_id=row["user_id"],
        status=OrderStatus(row["status"]),
        total_cents=row["total_cents"],
        currency=row["currency"],
        payment_method=row["payment_method"],
        shipping_address=row["shipping_address"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        items=tuple(
            OrderLine(
                product_id=uuid.UUID(item["product_id"]),
                quantity=item["quantity"],
                unit_price_cents=item["unit_price_cents"],
            )
            for item in row["items"] or ()
        ),
    )


async def insert_order(
    tx: Tx,
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
) -> Stamps:
    """Insert the order, its lines and its first status event in one round trip."""
    row = await tx.fetchrow(
        """WITH o AS (
              INSERT INTO sales_order (id, user_id, status, total_cents, currency,
                                       shipping_address, pii_key_id)
              VALUES ($1, $2, $10, $3, $4, $5, $6)
              RETURNING created_at, updated_at),
            i AS (
              INSERT INTO order_item (order_id, product_id, quantity, unit_price_cents)
              SELECT $1, * FROM unnest($7::uuid[], $8::int[], $9::bigint[])),
            e AS (
              INSERT INTO order_event (order_id, from_status, to_status, actor_id, reason)
              VALUES ($1, NULL, $10, $2, 'placed'))
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
        OrderStatus.pending,
    )
    assert row is not None
    return Stamps(created_at=row["created_at"], updated_at=row["updated_at"])


async def get_order(tx: Tx, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
    """One order with its lines; ``for_update`` locks the order row for a state change."""
    lock = " FOR UPDATE OF o" if for_update else ""
    row = await tx.fetchrow(f"{_ORDER_SELECT} WHERE o.id = $1{lock}", order_id)
    return _order(row) if row is not None else None


async def list_orders(
    tx: Tx,
    *,
    user_id: uuid.UUID | None,
    status: OrderStatus | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> list[Order]:
    """Orders newest first, keyset-paginated on (created_at, id), optionally one user's."""
    rows = await tx.fetch(
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
    return [_order(row) for row in rows]


async def transition(
    tx: Tx,
    order_id: uuid.UUID,
    *,
    allowed_from: Collection[OrderStatus],
    to_status: OrderStatus,
    actor_id: uuid.UUID | None,
    reason: str,
    payment_method: str | None = None,
) -> OrderStatus | None:
    """Move the order to *to_status* if it is in *allowed_from*; record the event.

    Returns the previous status, or None when the order was not in an allowed
    status (the conditional update makes concurrent transitions safe).
    """
    row = await tx.fetchrow(
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
    return OrderStatus(row["previous"]) if row is not None and row["previous"] is not None else None


async def events(tx: Tx, order_id: uuid.UUID) -> list[OrderEvent]:
    """The order's status history, oldest first."""
    rows = await tx.fetch(
        """SELECT from_status, to_status, actor_id, reason, created_at
             FROM order_event WHERE order_id = $1 ORDER BY id""",
        order_id,
    )
    return [
        OrderEvent(
            from_status=OrderStatus(row["from_status"]) if row["from_status"] else None,
            to_status=OrderStatus(row["to_status"]),
            actor_id=row["actor_id"],
            reason=row["reason"],
            created_at=row["created_at"],
        )
        for row in rows
    ]


async def paid_at(tx: Tx, order_id: uuid.UUID) -> datetime | None:
    """When the order became paid (stable across retries: webhook bodies must not change)."""
    value: datetime | None = await tx.fetchval(
        """SELECT created_at FROM order_event
            WHERE order_id = $1 AND to_status = $2 ORDER BY id LIMIT 1""",
        order_id,
        OrderStatus.paid,
    )
    return value


async def stale_addresses(tx: Tx, current_key_id: str, limit: int) -> list[SealedAddress]:
    """Orders whose address is sealed with an older key (locked, skipping busy rows)."""
    rows = await tx.fetch(
        """SELECT id, shipping_address FROM sales_order
            WHERE pii_key_id <> $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED""",
        current_key_id,
        limit,
    )
    return [SealedAddress(id=row["id"], shipping_address=row["shipping_address"]) for row in rows]


async def reseal_addresses(
    tx: Tx, order_ids: Sequence[uuid.UUID], tokens: Sequence[str], key_id: str
) -> None:
    """Store re-sealed addresses and the key id they are sealed with."""
    await tx.execute(
        """UPDATE sales_order o SET shipping_address = r.token, pii_key_id = $3
             FROM unnest($1::uuid[], $2::text[]) AS r(id, token) WHERE o.id = r.id""",
        list(order_ids),
        list(tokens),
        key_id,
    )
