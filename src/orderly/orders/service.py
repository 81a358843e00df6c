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
from sqlalchemy.ext.asyncio import AsyncSession

from orderly import errors
from orderly.catalog import service as catalog_service
from orderly.core.crypto import FieldCipher
from orderly.core.jobs import enqueue
from orderly.core.telemetry import ORDER_EVENTS, get_logger
from orderly.ledger import service as ledger_service
from orderly.orders import repository
from orderly.orders.schemas import OrderCreate, OrderRead, ShippingAddress
from orderly.payments import service as payments_service
from orderly.payments.gateway import StripeGateway

log = get_logger(__name__)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "paid": ("pending",),
    "fulfilled": ("paid",),
    "cancelled": ("pending", "paid"),
    "refunded": ("paid", "fulfilled"),
}
EMAIL_TASK = "orders.send_order_email"
WAREHOUSE_TASK = "orders.notify_warehouse"
SETTLE_TASK = "orders.settle_card_payment"


def _address_context(order_id: uuid.UUID) -> str:
    return f"order.shipping_address:{order_id}"


def _read(values: dict[str, Any], cipher: FieldCipher | None) -> OrderRead:
    address = None
    if cipher is not None:
        plain = cipher.decrypt(values["shipping_address"], context=_address_context(values["id"]))
        address = ShippingAddress.model_validate_json(plain)
    return OrderRead(
        id=values["id"],
        user_id=values["user_id"],
        status=values["status"],
        items=values["items"],
        total_cents=values["total_cents"],
        currency=values["currency"],
        payment_method=values["payment_method"],
        shipping_address=address,
        created_at=values["created_at"],
        updated_at=values["updated_at"],
    )


def _merge_lines(data: OrderCreate) -> list[tuple[uuid.UUID, int]]:
    """One line per product (quantities of repeated products add up), in a stable order."""
    merged: dict[uuid.UUID, int] = {}
    for item in data.items:
        merged[item.product_id] = merged.get(item.product_id, 0) + item.quantity
    return sorted(merged.items())


async def place(
    session: AsyncSession, user_id: uuid.UUID, data: OrderCreate, cipher: FieldCipher
) -> OrderRead:
    """Reserve stock for every line and create a pending order, all or nothing.

    The confirmation e-mail is a job row in this same transaction: if the
    order rolls back, the e-mail never exists; if it commits, it will be sent.
    """
    order_id = uuid.uuid4()
    lines = _merge_lines(data)
    reserved = await catalog_service.reserve_for_order(session, order_id, lines)
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
        session,
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
    await enqueue(session, EMAIL_TASK, {"order_id": str(order_id), "kind": "confirmation"})
    ORDER_EVENTS.labels("placed").inc()
    log.info("order_placed", order_id=str(order_id), total_cents=total, lines=len(lines))
    return OrderRead(
        id=order_id,
        user_id=user_id,
        status="pending",
        items=[
            {"product_id": pid, "quantity": qty, "unit_price_cents": price}
            for (pid, qty), price in zip(lines, prices, strict=True)
        ],
        total_cents=total,
        currency=reserved[0].currency,
        shipping_address=data.shipping_address,
        created_at=stamps["created_at"],
        updated_at=stamps["updated_at"],
    )


async def get(
    session: AsyncSession,
    order_id: uuid.UUID,
    *,
    viewer_id: uuid.UUID,
    sees_all: bool,
    cipher: FieldCipher | None = None,
) -> OrderRead:
    """One order; another customer's order does not exist for the viewer (404)."""
    values = await repository.get_order(session, order_id)
    if values is None or not (sees_all or values["user_id"] == viewer_id):
        raise errors.NotFound("No such order.")
    return _read(values, cipher)


async def list_orders(
    session: AsyncSession,
    *,
    viewer_id: uuid.UUID,
    sees_all: bool,
    status: str | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> tuple[list[OrderRead], tuple[datetime, uuid.UUID] | None]:
    """A page of the viewer's orders (staff: everyone's), newest first."""
    rows = await repository.list_orders(
        session,
        user_id=None if sees_all else viewer_id,
        status=status,
        limit=limit + 1,
        after=after,
    )
    page = [_read(row, None) for row in rows[:limit]]
    more = len(rows) > limit
    return page, ((page[-1].created_at, page[-1].id) if more and page else None)


async def load_for_change(
    session: AsyncSession, order_id: uuid.UUID, *, viewer_id: uuid.UUID, sees_all: bool
) -> dict[str, Any]:
    """Lock an order the viewer may change; the lock serialises concurrent transitions."""
    values = await repository.get_order(session, order_id, for_update=True)
    if values is None or not (sees_all or values["user_id"] == viewer_id):
        raise errors.NotFound("No such order.")
    return values


async def transition(
    session: AsyncSession,
    values: dict[str, Any],
    to_status: str,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    payment_method: str | None = None,
) -> str:
    """Apply a state-machine transition to a loaded order; IllegalTransition otherwise."""
    allowed = TRANSITIONS[to_status]
    if values["status"] not in allowed:
        raise errors.IllegalTransition(values["status"], to_status)
    previous = await repository.transition(
        session,
        values["id"],
        allowed_from=allowed,
        to_status=to_status,
        actor_id=actor_id,
        reason=reason,
        payment_method=payment_method,
    )
    if previous is None:  # changed by someone else since it was loaded
        raise errors.IllegalTransition(values["status"], to_status)
    values["status"] = to_status
    if payment_method is not None:
        values["payment_method"] = payment_method
    ORDER_EVENTS.labels(to_status).inc()
    log.info("order_transition", order_id=str(values["id"]), previous=previous, status=to_status)
    return previous


def payment_reference(order_id: uuid.UUID | str) -> str:
    """The key that ties an order to its one payment in the ledger and at Stripe."""
    return f"order:{order_id}"


def _require(values: dict[str, Any], to_status: str) -> None:
    if values["status"] not in TRANSITIONS[to_status]:
        raise errors.IllegalTransition(values["status"], to_status)


async def pay_with_credits(
    session: AsyncSession, values: dict[str, Any], *, actor_id: uuid.UUID
) -> None:
    """Debit the wallet, credit revenue and mark the order paid, all in the caller's transaction.

    Short of credits raises InsufficientFunds with nothing written.
    """
    _require(values, "paid")
    await ledger_service.pay_from_wallet(
        session,
        user_id=values["user_id"],
        amount_cents=values["total_cents"],
        currency=values["currency"],
        reference=payment_reference(values["id"]),
        description=f"order {values['id']}",
    )
    await mark_paid(session, values, actor_id=actor_id, payment_method="credits")


async def pay_with_card(
    session: AsyncSession,
    gateway: StripeGateway,
    values: dict[str, Any],
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
    _require(values, "paid")
    await payments_service.pay_by_card(
        session,
        gateway,
        reference=payment_reference(values["id"]),
        user_id=values["user_id"],
        amount_cents=values["total_cents"],
        currency=values["currency"],
        payment_method=payment_method,
        idempotency_key=idempotency_key,
    )
    await mark_paid(session, values, actor_id=actor_id, payment_method="card")


async def refund_payment(
    session: AsyncSession,
    gateway: StripeGateway | None,
    values: dict[str, Any],
    *,
    actor_id: uuid.UUID | None,
    reason: str,
) -> None:
    """Give a paid order's money back the way it came: credits to the wallet, or a card refund."""
    reference = payment_reference(values["id"])
    method = values["payment_method"]
    if method == "credits":
        await ledger_service.refund_to_wallet(
            session, reference=reference, reason=reason, actor_id=actor_id
        )
    elif method == "card":
        if gateway is None:
            raise errors.Unavailable("Card payments are not configured; cannot refund.")
        await payments_service.refund_card_payment(
            session, gateway, reference=reference, reason=reason
        )
    ORDER_EVENTS.labels(f"refund_{method}").inc()


async def mark_paid(
    session: AsyncSession,
    values: dict[str, Any],
    *,
    actor_id: uuid.UUID | None,
    payment_method: str,
) -> None:
    """pending → paid, with the payment e-mail and the warehouse webhook in the same transaction."""
    await transition(
        session,
        values,
        "paid",
        actor_id=actor_id,
        reason=f"paid by {payment_method}",
        payment_method=payment_method,
    )
    order_id = str(values["id"])
    await enqueue(session, EMAIL_TASK, {"order_id": order_id, "kind": "payment"})
    await enqueue(session, WAREHOUSE_TASK, {"order_id": order_id})


async def cancel(
    session: AsyncSession,
    gateway: StripeGateway | None,
    values: dict[str, Any],
    *,
    actor_id: uuid.UUID | None,
) -> str:
    """pending|paid → cancelled: stock returns and a paid order is refunded, in one transaction.

    A card refund is made at Stripe before the commit; if the commit then
    fails, a retry refunds nothing twice (Stripe idempotency key, refund record).
    """
    previous = await transition(session, values, "cancelled", actor_id=actor_id, reason="cancelled")
    await catalog_service.release_for_order(
        session, values["id"], _lines(values["items"]), actor_id=actor_id
    )
    if previous == "paid":
        await refund_payment(session, gateway, values, actor_id=actor_id, reason="order cancelled")
    await enqueue(session, EMAIL_TASK, {"order_id": str(values["id"]), "kind": "cancellation"})
    return previous


async def refund(
    session: AsyncSession,
    gateway: StripeGateway | None,
    values: dict[str, Any],
    *,
    actor_id: uuid.UUID,
) -> str:
    """paid|fulfilled → refunded (staff): money back; unshipped stock returns to the shelf."""
    previous = await transition(session, values, "refunded", actor_id=actor_id, reason="refunded")
    if previous == "paid":
        await catalog_service.release_for_order(
            session, values["id"], _lines(values["items"]), actor_id=actor_id
        )
    await refund_payment(session, gateway, values, actor_id=actor_id, reason="order refunded")
    await enqueue(session, EMAIL_TASK, {"order_id": str(values["id"]), "kind": "refund"})
    return previous


async def settle_card_payment(session: AsyncSession, reference: str) -> bool:
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
    values = await repository.get_order(session, order_id, for_update=True)
    if values is None or values["status"] != "pending":
        return False
    await mark_paid(session, values, actor_id=None, payment_method="card")
    return True


async def fulfil_from_warehouse(session: AsyncSession, order_id: uuid.UUID) -> bool:
    """paid → fulfilled on the warehouse's word; a replay of the callback changes nothing.

    Returns True when this call made the transition.
    """
    values = await repository.get_order(session, order_id, for_update=True)
    if values is None:
        raise errors.NotFound("No such order.")
    if values["status"] == "fulfilled":
        return False
    await transition(session, values, "fulfilled", actor_id=None, reason="shipped by warehouse")
    return True


async def reencrypt_addresses(session: AsyncSession, cipher: FieldCipher, *, batch: int) -> int:
    """Re-seal one batch of shipping addresses under the newest key; returns rows changed."""
    rows = await repository.stale_addresses(session, cipher.current_key_id, batch)
    if not rows:
        return 0
    tokens = [
        cipher.encrypt(
            cipher.decrypt(row["shipping_address"], context=_address_context(row["id"])),
            context=_address_context(row["id"]),
        )
        for row in rows
    ]
    await repository.reseal_addresses(
        session, [row["id"] for row in rows], tokens, cipher.current_key_id
    )
    return len(rows)


def to_read(values: dict[str, Any], cipher: FieldCipher | None = None) -> OrderRead:
    """The API view of a loaded order."""
    return _read(values, cipher)


def _lines(items: Sequence[dict[str, Any]]) -> list[tuple[uuid.UUID, int]]:
    return [(uuid.UUID(str(item["product_id"])), int(item["quantity"])) for item in items]


def address_json(values: dict[str, Any], cipher: FieldCipher) -> dict[str, Any]:
    """The decrypted shipping address of a loaded order, as a dict (warehouse payloads)."""
    plain = cipher.decrypt(values["shipping_address"], context=_address_context(values["id"]))
    result: dict[str, Any] = orjson.loads(plain)
    return result
