"""Order actions as the routes expose them: load, change, refund, audit — one call each.

Kept apart from ``service`` (the state machine and its money movements) so
each module stays small; these compose service steps with the audit trail.
"""

from __future__ import annotations

import uuid

from orderly import errors
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core.db import Tx
from orderly.orders import service
from orderly.orders.schemas import OrderRead, OrderStatus
from orderly.payments.gateway import StripeGateway


async def pay_order(
    tx: Tx,
    gateway: StripeGateway | None,
    order_id: uuid.UUID,
    *,
    customer_id: uuid.UUID,
    card_payment_method: str | None,
    idempotency_key: str | None,
) -> OrderRead:
    """The customer pays their pending order: by card when a payment method is given."""
    order = await service.load_for_change(tx, order_id, viewer_id=customer_id, sees_all=False)
    if card_payment_method is None:
        await service.pay_with_credits(tx, order, actor_id=customer_id)
    else:
        if gateway is None:  # a shop without Stripe: a request it cannot serve, not an outage
            raise errors.InvalidInput(
                "Card payments are not available in this shop; pay with credits.", field="method"
            )
        await service.pay_with_card(
            tx,
            gateway,
            order,
            payment_method=card_payment_method,
            idempotency_key=idempotency_key,
            actor_id=customer_id,
        )
    return service.to_read(order)


async def cancel_order(
    tx: Tx,
    gateway: StripeGateway | None,
    order_id: uuid.UUID,
    *,
    context: AuditContext,
    sees_all: bool,
) -> OrderRead:
    """Cancel for the owner (or staff); audited when money moved back or staff acted."""
    assert context.actor_id is not None
    order = await service.load_for_change(
        tx, order_id, viewer_id=context.actor_id, sees_all=sees_all
    )
    previous = await service.cancel(tx, gateway, order, actor_id=context.actor_id)
    if previous == OrderStatus.paid or sees_all:
        await audit.record(
            tx,
            context,
            "order.cancelled",
            target_type="order",
            target_id=order_id,
            details={"previous_status": previous, "refunded": previous == OrderStatus.paid},
        )
    return service.to_read(order)


async def refund_order(
    tx: Tx,
    gateway: StripeGateway | None,
    order_id: uuid.UUID,
    *,
    context: AuditContext,
) -> OrderRead:
    """Staff refund of a paid or fulfilled order, audited."""
    assert context.actor_id is not None
    order = await service.load_for_change(tx, order_id, viewer_id=context.actor_id, sees_all=True)
    previous = await service.refund(tx, gateway, order, actor_id=context.actor_id)
    await audit.record(
        tx,
        context,
        "order.refunded",
        target_type="order",
        target_id=order_id,
        details={"previous_status": previous, "method": order.payment_method},
    )
    return service.to_read(order)


async def warehouse_shipped(
    tx: Tx, order_id: uuid.UUID, *, webhook_id: str, context: AuditContext
) -> bool:
    """Apply the warehouse's "shipped": fulfilled once, audited once; replays change nothing."""
    changed = await service.fulfil_from_warehouse(tx, order_id)
    if changed:
        await audit.record(
            tx,
            context,
            "order.fulfilled",
            target_type="order",
            target_id=order_id,
            details={"webhook_id": webhook_id},
        )
    return changed
