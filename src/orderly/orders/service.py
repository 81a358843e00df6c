"""Order use cases: place, read, list, and every status transition.

The state machine (PRODUCT.md §5): pending → paid → fulfilled;
pending|paid → cancelled; paid|fulfilled → refunded. Any other change is an
IllegalTransition (409). Transitions are conditional updates, so concurrent
requests cannot both move the same order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from orderly import errors
from orderly.catalog import service as catalog_service
from orderly.core.crypto import FieldCipher
from orderly.core.db import Tx
from orderly.core.jobs import enqueue
from orderly.core.telemetry import ORDER_EVENTS, get_logger
from orderly.ledger import service as ledger_service
from orderly.orders import repository
from orderly.orders.repository import Order, OrderLine
from orderly.orders.schemas import (
    TRANSITIONS,
    OrderCreate,
    OrderEmailKind,
    OrderLineRead,
    OrderRead,
    OrderStatus,
    PaymentMethod,
    ShippingAddress,
)
from orderly.payments import service as payments_service
from orderly.payments.gateway import StripeGateway

log = get_logger(__name__)

# The orders domain's job names (tasks in orders/tasks.py); other domains import these.
SEND_ORDER_EMAIL = "orders.send_order_email"
NOTIFY_WAREHOUSE = "orders.notify_warehouse"
SETTLE_CARD_PAYMENT = "orders.settle_card_payment"
"""Enqueued by the payments domain when a Stripe webhook recorded a charge our request did not."""
REENCRYPT_ADDRESSES = "orders.reencrypt_addresses"


def _address_context(order_id: uuid.UUID) -> str:
    return f"order.shipping_address:{order_id}"


def _read(order: Order, cipher: FieldCipher | None) -> OrderRead:
    address = None
    if cipher is not None:
        plain = cipher.decrypt(order.shipping_address, context=_address_context(order.id))
        address = ShippingAddress.model_validate_json(plain)
    return OrderRead(
        id=order.id,
        user_id=order.user_id,
        status=order.status,
        items=[
            OrderLineRead(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price_cents=line.unit_price_cents,
            )
            for line in order.items
        ],
        total_cents=order.total_cents,
        currency=order.currency,
        payment_method=order.payment_method,
        shipping_address=address,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def _merge_lines(data: OrderCreate) -> list[tuple[uuid.UUID, int]]:
    """One line per product (quantities of repeated products add up), in a stable order."""
    merged: dict[uuid.UUID, int] = {}
    for item in data.items:
        merged[item.product_id] = merged.get(item.product_id, 0) + item.quantity
    return sorted(merged.items())


async def place(tx: Tx, user_id: uuid.UUID, data: OrderCreate, cipher: FieldCipher) -> OrderRead:
    """Reserve stock for every line and create a pending order, all or nothing.

    The confirmation e-mail is a job row in this same transaction: if the
    order rolls back, the e-mail never exists; if it commits, it will be sent.
    """
    order_id = uuid.uuid4()
    lines = _merge_lines(data)
    reserved = await catalog_service.reserve_for_order(tx, order_id, lines)
    currencies = {line.currency for line in reserved}
    if len(currencies) != 1:
        raise errors.InvalidInput("all items of an order must share one currency", field="items")
    by_product = {line.product_id: line for line in reserved}
    prices = [by_product[product_id].unit_price_cents for product_id, _ in lines]
    total = sum(price * quantity for price, (_, quantity) in zip(prices, lines, strict=True))
    address = cipher.encrypt(
        data.shipping_address.model_dump_json(), context=_address_context(order_id)
    )
    stamps = await repository.insert_order(
        tx,
        order_id=order_id,
        user_id=user_id,
        total_cents=total,
        currency=currencies.pop(),
        shipping_address=address,
        pii_key_id=cipher.current_key_id,
        product_ids=[product_id for product_id, _ in lines],
        quantities=[quantity for _, quantity in lines],
        unit_prices=prices,
    )
    await enqueue(
        tx, SEND_ORDER_EMAIL, {"order_id": str(order_id), "kind": OrderEmailKind.confirmation}
    )
    ORDER_EVENTS.labels("placed").inc()
    log.info("order_placed", order_id=str(order_id), total_cents=total, lines=len(lines))
    return OrderRead(
        id=order_id,
        user_id=user_id,
        status=OrderStatus.pending,
        items=[
            OrderLineRead(product_id=pid, quantity=qty, unit_price_cents=price)
            for (pid, qty), price in zip(lines, prices, strict=True)
        ],
        total_cents=total,
        currency=reserved[0].currency,
        shipping_address=data.shipping_address,
        created_at=stamps.created_at,
        updated_at=stamps.updated_at,
    )


async def get(
    tx: Tx,
    order_id: uuid.UUID,
    *,
    viewer_id: uuid.UUID,
    sees_all: bool,
    cipher: FieldCipher | None = None,
) -> OrderRead:
    """One order; another customer's order does not exist for the viewer (404)."""
    order = await repository.get_order(tx, order_id)
    if order is None or not (sees_all or order.user_id == viewer_id):
        raise errors.NotFound("No such order.")
    return _read(order, cipher)


async def list_orders(
    tx: Tx,
    *,
    viewer_id: uuid.UUID,
    sees_all: bool,
    status: OrderStatus | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
    customer_id: uuid.UUID | None = None,
) -> tuple[list[OrderRead], tuple[datetime, uuid.UUID] | None]:
    """A page of the viewer's orders (staff: everyone's, or one *customer_id*'s), newest first."""
    rows = await repository.list_orders(
        tx,
        user_id=customer_id if sees_all else viewer_id,
        status=status,
        limit=limit + 1,
        after=after,
    )
    page = [_read(row, None) for row in rows[:limit]]
    more = len(rows) > limit
    return page, ((page[-1].created_at, page[-1].id) if more and page else None)


async def history(tx: Tx, order_id: uuid.UUID) -> list[repository.OrderEvent]:
    """The order's status changes, oldest first (staff views; the caller checked access)."""
    return await repository.events(tx, order_id)


async def load_for_change(
    tx: Tx, order_id: uuid.UUID, *, viewer_id: uuid.UUID, sees_all: bool
) -> Order:
    """Lock an order the viewer may change; the lock serialises concurrent transitions."""
    order = await repository.get_order(tx, order_id, for_update=True)
    if order is None or not (sees_all or order.user_id == viewer_id):
        raise errors.NotFound("No such order.")
    return order


async def transition(
    tx: Tx,
    order: Order,
    to_status: OrderStatus,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    payment_method: PaymentMethod | None = None,
) -> OrderStatus:
    """Apply a state-machine transition to a loaded order; IllegalTransition otherwise."""
    allowed = TRANSITIONS[to_status]
    if order.status not in allowed:
        raise errors.IllegalTransition(order.status, to_status)
    previous = await repository.transition(
        tx,
        order.id,
        allowed_from=allowed,
        to_status=to_status,
        actor_id=actor_id,
        reason=reason,
        payment_method=payment_method,
    )
    if previous is None:  # changed by someone else since it was loaded
        raise errors.IllegalTransition(order.status, to_status)
    order.status = to_status
    if payment_method is not None:
        order.payment_method = payment_method
    ORDER_EVENTS.labels(to_status).inc()
    log.info("order_transition", order_id=str(order.id), previous=previous, status=to_status)
    return previous


def payment_reference(order_id: uuid.UUID | str) -> str:
    """The key that ties an order to its one payment in the ledger and at Stripe."""
    return f"order:{order_id}"


def _require(order: Order, to_status: OrderStatus) -> None:
    if order.status not in TRANSITIONS[to_status]:
        raise errors.IllegalTransition(order.status, to_status)


async def pay_with_credits(tx: Tx, order: Order, *, actor_id: uuid.UUID) -> None:
    """Debit the wallet, credit revenue and mark the order paid, all in the caller's transaction.

    Short of credits raises InsufficientFunds with nothing written.
    """
    _require(order, OrderStatus.paid)
    await ledger_service.pay_from_wallet(
        tx,
        user_id=order.user_id,
        amount_cents=order.total_cents,
        currency=order.currency,
        reference=payment_reference(order.id),
        description=f"order {order.id}",
    )
    await mark_paid(tx, order, actor_id=actor_id, payment_method=PaymentMethod.credits)


async def pay_with_card(
    tx: Tx,
    gateway: StripeGateway,
    order: Order,
    *,
    payment_method: str,
    idempotency_key: str | None,
    actor_id: uuid.UUID,
) -> None:
    """Charge the card at Stripe (the order row is locked meanwhile) and mark the order paid.

    A decline raises CardDeclined; Stripe down raises Unavailable; nothing is
    written in either case. A charge whose recording fails here is settled
    later from Stripe's webhook (``orders.settle_card_payment``).
    """
    _require(order, OrderStatus.paid)
    await payments_service.pay_by_card(
        tx,
        gateway,
        reference=payment_reference(order.id),
        user_id=order.user_id,
        amount_cents=order.total_cents,
        currency=order.currency,
        payment_method=payment_method,
        idempotency_key=idempotency_key,
    )
    await mark_paid(tx, order, actor_id=actor_id, payment_method=PaymentMethod.card)


async def refund_payment(
    tx: Tx,
    gateway: StripeGateway | None,
    order: Order,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
) -> None:
    """Give a paid order's money back the way it came: credits to the wallet, or a card refund."""
    reference = payment_reference(order.id)
    method = order.payment_method
    if method == PaymentMethod.credits:
        await ledger_service.refund_to_wallet(
            tx, reference=reference, reason=reason, actor_id=actor_id
        )
    elif method == PaymentMethod.card:
        if gateway is None:
            raise errors.Unavailable("Card payments are not configured; cannot refund.")
        await payments_service.refund_card_payment(tx, gateway, reference=reference, reason=reason)
    ORDER_EVENTS.labels(f"refund_{method}").inc()


async def mark_paid(
    tx: Tx,
    order: Order,
    *,
    actor_id: uuid.UUID | None,
    payment_method: PaymentMethod,
) -> None:
    """pending → paid, with the payment e-mail and the warehouse webhook in the same transaction."""
    await transition(
        tx,
        order,
        OrderStatus.paid,
        actor_id=actor_id,
        reason=f"paid by {payment_method}",
        payment_method=payment_method,
    )
    order_id = str(order.id)
    await enqueue(tx, SEND_ORDER_EMAIL, {"order_id": order_id, "kind": OrderEmailKind.payment})
    await enqueue(tx, NOTIFY_WAREHOUSE, {"order_id": order_id})


async def cancel(
    tx: Tx,
    gateway: StripeGateway | None,
    order: Order,
    *,
    actor_id: uuid.UUID | None,
) -> OrderStatus:
    """pending|paid → cancelled: stock returns and a paid order is refunded, in one transaction.

    A card refund is made at Stripe before the commit; if the commit then
    fails, a retry refunds nothing twice (Stripe idempotency key, refund record).
    """
    previous = await transition(
        tx, order, OrderStatus.cancelled, actor_id=actor_id, reason="cancelled"
    )
    await catalog_service.release_for_order(tx, order.id, _lines(order.items), actor_id=actor_id)
    if previous == OrderStatus.paid:
        await refund_payment(tx, gateway, order, actor_id=actor_id, reason="order cancelled")
    await enqueue(
        tx, SEND_ORDER_EMAIL, {"order_id": str(order.id), "kind": OrderEmailKind.cancellation}
    )
    return previous


async def refund(
    tx: Tx,
    gateway: StripeGateway | None,
    order: Order,
    *,
    actor_id: uuid.UUID,
) -> OrderStatus:
    """paid|fulfilled → refunded (staff): money back; unshipped stock returns to the shelf."""
    previous = await transition(
        tx, order, OrderStatus.refunded, actor_id=actor_id, reason="refunded"
    )
    if previous == OrderStatus.paid:
        await catalog_service.release_for_order(
            tx, order.id, _lines(order.items), actor_id=actor_id
        )
    await refund_payment(tx, gateway, order, actor_id=actor_id, reason="order refunded")
    await enqueue(tx, SEND_ORDER_EMAIL, {"order_id": str(order.id), "kind": OrderEmailKind.refund})
    return previous


async def settle_card_payment(tx: Tx, reference: str) -> bool:
    """Mark an order paid after Stripe told us of a charge our request never recorded.

    Returns True when this call settled it; an order that moved on meanwhile
    (paid by this very request after all, or cancelled) is left as it is.
    """
    prefix = payment_reference("")
    if not reference.startswith(prefix):
        return False
    try:
        order_id = uuid.UUID(reference.removeprefix(prefix))
    except ValueError:
        return False
    order = await repository.get_order(tx, order_id, for_update=True)
    if order is None or order.status != OrderStatus.pending:
        return False
    await mark_paid(tx, order, actor_id=None, payment_method=PaymentMethod.card)
    return True


async def fulfil_from_warehouse(tx: Tx, order_id: uuid.UUID) -> bool:
    """paid → fulfilled on the warehouse's word; a replay of the callback changes nothing.

    Returns True when this call made the transition.
    """
    order = await repository.get_order(tx, order_id, for_update=True)
    if order is None:
        raise errors.NotFound("No such order.")
    if order.status == OrderStatus.fulfilled:
        return False
    await transition(tx, order, OrderStatus.fulfilled, actor_id=None, reason="shipped by warehouse")
    return True


async def reencrypt_addresses(tx: Tx, cipher: FieldCipher, *, batch: int) -> int:
    """Re-seal one batch of shipping addresses under the newest key; returns rows changed."""
    rows = await repository.stale_addresses(tx, cipher.current_key_id, batch)
    if not rows:
        return 0
    tokens = [
        cipher.encrypt(
            cipher.decrypt(row.shipping_address, context=_address_context(row.id)),
            context=_address_context(row.id),
        )
        for row in rows
    ]
    await repository.reseal_addresses(tx, [row.id for row in rows], tokens, cipher.current_key_id)
    return len(rows)


def to_read(order: Order, cipher: FieldCipher | None = None) -> OrderRead:
    """The API view of a loaded order."""
    return _read(order, cipher)


def _lines(items: Sequence[OrderLine]) -> list[tuple[uuid.UUID, int]]:
    return [(line.product_id, line.quantity) for line in items]


def address_json(order: Order, cipher: FieldCipher) -> dict[str, Any]:
    """The decrypted shipping address of a loaded order, as a dict (warehouse payloads)."""
    plain = cipher.decrypt(order.shipping_address, context=_address_context(order.id))
    result: dict[str, Any] = orjson.loads(plain)
    return result
