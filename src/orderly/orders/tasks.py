"""Order jobs: the customer's e-mails and the warehouse webhook.

Both are enqueued in the transaction that changed the order and rendered here,
in the worker, so the request path does no extra reads. Each sends at most
once per event key (notifications service), whatever the retries.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from orderly.accounts import service as accounts_service
from orderly.catalog import service as catalog_service
from orderly.config import Settings
from orderly.core.crypto import FieldCipher
from orderly.core.jobs import JobContext, RetryPolicy, enqueue, task
from orderly.core.telemetry import get_logger
from orderly.notifications import service as notifications
from orderly.notifications.mailer import Mailer
from orderly.notifications.schemas import EmailJob, WebhookJob
from orderly.notifications.webhooks import WebhookSender
from orderly.orders import repository
from orderly.orders import service as orders_service
from orderly.orders.repository import Order
from orderly.orders.schemas import OrderEmailKind

log = get_logger(__name__)

EMAIL_RETRY = RetryPolicy(max_attempts=12, base_delay=5.0, max_delay=1800.0)
WEBHOOK_RETRY = RetryPolicy(max_attempts=14, base_delay=5.0, max_delay=3600.0)

# Subject and opening line of each kind of order e-mail ({id}: the order id).
_WORDING: dict[OrderEmailKind, tuple[str, str]] = {
    OrderEmailKind.confirmation: (
        "We received your order {id}",
        "Thank you for your order {id}.",
    ),
    OrderEmailKind.payment: (
        "Payment received for order {id}",
        "We received the payment for your order {id}.",
    ),
    OrderEmailKind.cancellation: (
        "Your order {id} was cancelled",
        "Your order {id} was cancelled; any payment is refunded.",
    ),
    OrderEmailKind.refund: ("Your order {id} was refunded", "Your order {id} was refunded."),
}


class OrderEmail(BaseModel):
    """Payload of ``orders.send_order_email``."""

    model_config = ConfigDict(extra="forbid")

    order_id: uuid.UUID
    kind: OrderEmailKind


class OrderRef(BaseModel):
    """Payload of ``orders.notify_warehouse``."""

    model_config = ConfigDict(extra="forbid")

    order_id: uuid.UUID


def _money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def render_email(
    order: Order, kind: OrderEmailKind, name: str | None, products: dict[str, str]
) -> tuple[str, str]:
    """Subject and plain-text body of an order e-mail (*products* maps ids to names)."""
    subject, opening = _WORDING[kind]
    lines = [f"Hello {name}," if name else "Hello,", "", opening.format(id=order.id), ""]
    for item in order.items:
        unit = _money(item.unit_price_cents, order.currency)
        label = products.get(str(item.product_id), str(item.product_id))
        lines.append(f"  {item.quantity} x {label}  @ {unit}")
    total = _money(order.total_cents, order.currency)
    lines += ["", f"Total: {total}", "", "orderly", ""]
    return subject.format(id=order.id), "\n".join(lines)


@task(orders_service.SEND_ORDER_EMAIL, retry=EMAIL_RETRY, timeout=60)
async def send_order_email(ctx: JobContext, payload: dict[str, Any]) -> None:
    """E-mail the customer about their order (confirmation, payment or cancellation)."""
    job = OrderEmail.model_validate(payload)
    order = await repository.get_order(ctx.tx, job.order_id)
    if order is None:
        log.warning("order_email_skipped", order_id=str(job.order_id), reason="order not found")
        return
    contact = await accounts_service.contact(ctx.tx, order.user_id, ctx.resource(FieldCipher))
    products = await catalog_service.product_names(
        ctx.tx, [item.product_id for item in order.items]
    )
    subject, body = render_email(order, job.kind, contact.name, products)
    await notifications.send_email(
        ctx.tx,
        ctx.resource(Mailer),
        EmailJob(
            event_key=f"order:{job.order_id}:{job.kind}",
            to=contact.email,
            subject=subject,
            body=body,
        ),
        sender=ctx.resource(Settings).mail_from,
        attempt=ctx.attempt,
    )


@task(orders_service.NOTIFY_WAREHOUSE, retry=WEBHOOK_RETRY, timeout=60)
async def notify_warehouse(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Tell the warehouse a paid order is ready to ship (Standard Webhooks, signed)."""
    job = OrderRef.model_validate(payload)
    order = await repository.get_order(ctx.tx, job.order_id)
    if order is None:
        log.warning("warehouse_skipped", order_id=str(job.order_id), reason="order not found")
        return
    paid_at = await repository.paid_at(ctx.tx, job.order_id)
    if paid_at is None:
        log.warning("warehouse_skipped", order_id=str(job.order_id), reason="never paid")
        return
    address = orders_service.address_json(order, ctx.resource(FieldCipher))
    await notifications.deliver_webhook(
        ctx.tx,
        ctx.resource(WebhookSender),
        WebhookJob(
            event_key=f"order:{job.order_id}:paid",
            event_type="order.paid",
            data={
                "order_id": str(job.order_id),
                "items": [
                    {"product_id": str(i.product_id), "quantity": i.quantity} for i in order.items
                ],
                "total_cents": order.total_cents,
                "currency": order.currency,
                "shipping_address": address,
            },
            occurred_at=paid_at,
        ),
        attempt=ctx.attempt,
    )


class CardSettlement(BaseModel):
    """Payload the payments domain enqueues after a webhook recorded a charge."""

    model_config = ConfigDict(extra="ignore")

    reference: str


@task(orders_service.SETTLE_CARD_PAYMENT, retry=RetryPolicy(max_attempts=8, base_delay=2.0))
async def settle_card_payment(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Mark the order paid for a card charge Stripe confirmed after our request gave up."""
    job = CardSettlement.model_validate(payload)
    settled = await orders_service.settle_card_payment(ctx.tx, job.reference)
    log.info("card_payment_settled", reference=job.reference, changed=settled)


REENCRYPT_BATCH = 500


@task(orders_service.REENCRYPT_ADDRESSES, schedule="23 * * * *", timeout=300)
async def reencrypt_addresses(ctx: JobContext, payload: dict[str, Any]) -> None:
    """After a key rotation, move shipping addresses to the newest key, a batch at a time.

    Chains another job while a full batch was changed, so a rotation finishes
    quickly without one long transaction; hourly runs catch anything left.
    """
    batch = int(payload.get("batch", REENCRYPT_BATCH))
    changed = await orders_service.reencrypt_addresses(
        ctx.tx, ctx.resource(FieldCipher), batch=batch
    )
    log.info("addresses_reencrypted", rows=changed)
    if changed == batch:
        await enqueue(ctx.tx, orders_service.REENCRYPT_ADDRESSES, {"batch": batch})


TASKS = [send_order_email, notify_warehouse, settle_card_payment, reencrypt_addresses]
