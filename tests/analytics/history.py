"""Random order histories written as the services write them, with explicit timestamps.

The services stamp rows with the database clock; to lay out a history over
several days the rows are written here in the same shapes, at chosen
instants: orders with their lines and status events, ledger transactions for
credit and card money (``payment``/``refund``, ``card_payment``/``card_refund``
under the reference ``order:<id>``) and card payment records.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import asyncpg

from orderly.orders.schemas import TRANSITIONS, OrderStatus


@dataclasses.dataclass
class Placed:
    """What the generator knows about one order."""

    id: uuid.UUID
    currency: str
    total_cents: int
    status: OrderStatus
    method: str | None = None


async def place(
    conn: asyncpg.Connection,
    *,
    user_id: uuid.UUID,
    currency: str,
    lines: list[tuple[uuid.UUID, int, int]],
    at: datetime,
) -> Placed:
    """An order with its lines and its first event, stamped *at*."""
    order_id = uuid.uuid4()
    total = sum(quantity * price for _, quantity, price in lines)
    await conn.execute(
        """INSERT INTO sales_order (id, user_id, status, total_cents, currency, shipping_address,
                                    pii_key_id, created_at, updated_at)
           VALUES ($1, $2, 'pending', $3, $4, 'sealed', 'k1', $5, $5)""",
        order_id,
        user_id,
        total,
        currency,
        at,
    )
    await conn.executemany(
        "INSERT INTO order_item (order_id, product_id, quantity, unit_price_cents) "
        "VALUES ($1, $2, $3, $4)",
        [(order_id, pid, quantity, price) for pid, quantity, price in lines],
    )
    await _event(conn, order_id, None, OrderStatus.pending, at)
    return Placed(order_id, currency, total, OrderStatus.pending)


async def _event(
    conn: asyncpg.Connection,
    order_id: uuid.UUID,
    from_status: OrderStatus | None,
    to_status: OrderStatus,
    at: datetime,
) -> None:
    await conn.execute(
        """INSERT INTO order_event (order_id, from_status, to_status, reason, created_at)
           VALUES ($1, $2, $3, 'history', $4)""",
        order_id,
        from_status,
        to_status,
        at,
    )


async def _money(
    conn: asyncpg.Connection, order: Placed, kind: str, at: datetime, user_id: uuid.UUID
) -> None:
    await conn.execute(
        """INSERT INTO ledger_transaction (id, kind, external_id, user_id, amount_cents, currency,
                                           created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        uuid.uuid4(),
        kind,
        f"order:{order.id}",
        user_id,
        order.total_cents,
        order.currency,
        at,
    )


async def move(
    conn: asyncpg.Connection,
    order: Placed,
    to_status: OrderStatus,
    *,
    at: datetime,
    user_id: uuid.UUID,
    method: str = "credits",
) -> bool:
    """Apply one transition with its money, as the order service does; False if illegal."""
    if order.status not in TRANSITIONS[to_status]:
        return False
    previous = order.status
    await conn.execute(
        "UPDATE sales_order SET status = $2, updated_at = $3, payment_method = $4 WHERE id = $1",
        order.id,
        to_status,
        at,
        method if to_status == OrderStatus.paid else order.method,
    )
    await _event(conn, order.id, previous, to_status, at)
    if to_status == OrderStatus.paid:
        order.method = method
        if method == "card":
            await conn.execute(
                """INSERT INTO card_payment (id, reference, user_id, payment_intent_id,
                                             amount_cents, currency, status, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $6, 'succeeded', $7, $7)""",
                uuid.uuid4(),
                f"order:{order.id}",
                user_id,
                f"pi_{uuid.uuid4().hex}",
                order.total_cents,
                order.currency,
                at,
            )
        await _money(conn, order, "card_payment" if method == "card" else "payment", at, user_id)
    refunding = to_status == OrderStatus.refunded or (
        to_status == OrderStatus.cancelled and previous == OrderStatus.paid
    )
    if refunding:
        if order.method == "card":
            await conn.execute(
                "UPDATE card_payment SET status = 'refunded', updated_at = $2 WHERE reference = $1",
                f"order:{order.id}",
                at,
            )
        await _money(
            conn, order, "card_refund" if order.method == "card" else "refund", at, user_id
        )
    order.status = to_status
    return True
