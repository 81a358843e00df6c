"""Card payment use cases: charge, refund, and Stripe webhooks, each recorded exactly once.

Stripe is called before anything is written, so a decline or an outage leaves
the caller's transaction untouched. A success is recorded (``card_payment`` row
plus a ledger booking) in the caller's transaction. If our request dies after
Stripe charged (a timeout, a crash), nothing is lost: the client's retry reuses
the same Stripe idempotency key and gets the same PaymentIntent back, and the
``payment_intent.succeeded`` webhook records it too (whichever comes first wins,
the other is a no-op).
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

import stripe

from orderly import errors
from orderly.core import jobs
from orderly.core.db import Tx
from orderly.core.telemetry import get_logger
from orderly.ledger import service as ledger
from orderly.payments import repository as repo
from orderly.payments.gateway import IntentResult, StripeGateway
from orderly.payments.schemas import CardPaymentStatus, StripeEventOutcome

log = get_logger(__name__)

REFERENCE_KEY = "orderly_reference"
USER_KEY = "orderly_user_id"


@dataclasses.dataclass(frozen=True)
class CardPayment:
    """A card payment as recorded; ``created`` is False when it was already recorded."""

    id: uuid.UUID
    reference: str
    user_id: uuid.UUID | None
    payment_intent_id: str
    amount_cents: int
    currency: str
    status: CardPaymentStatus
    refund_id: str | None
    created: bool = True


@dataclasses.dataclass(frozen=True)
class WebhookOutcome:
    """What a webhook delivery did: ``duplicate`` deliveries do nothing."""

    event_id: str
    type: str
    outcome: StripeEventOutcome
    duplicate: bool = False


def _payment(row: repo.CardPaymentRow, *, created: bool) -> CardPayment:
    return CardPayment(
        id=row.id,
        reference=row.reference,
        user_id=row.user_id,
        payment_intent_id=row.payment_intent_id,
        amount_cents=row.amount_cents,
        currency=row.currency,
        status=row.status,
        refund_id=row.refund_id,
        created=created,
    )


def stripe_idempotency_key(reference: str, client_key: str | None, payment_method: str) -> str:
    """The key sent to Stripe: the same request retried maps to the same PaymentIntent."""
    material = f"{reference}\n{client_key or 'pm:' + payment_method}"
    return "orderly-pay-" + hashlib.sha256(material.encode()).hexdigest()


async def get_card_payment(tx: Tx, reference: str) -> CardPayment | None:
    """The card payment recorded for *reference*, if any."""
    row = await repo.find_by_reference(tx, reference)
    return _payment(row, created=False) if row is not None else None


async def pay_by_card(
    tx: Tx,
    gateway: StripeGateway,
    *,
    reference: str,
    user_id: uuid.UUID | None,
    amount_cents: int,
    currency: str,
    payment_method: str,
    idempotency_key: str | None = None,
    description: str | None = None,
) -> CardPayment:
    """Charge the card once per *reference* and record it in the caller's transaction.

    Raises CardDeclined / PaymentIncomplete (402), InvalidInput (bad payment
    method), Unavailable (Stripe down or circuit open) — all with nothing written.
    Lock the thing being paid (the order row) before calling, so two requests
    for one reference do not both reach Stripe.
    """
    existing = await repo.find_by_reference(tx, reference)
    if existing is not None:
        return _replay(existing, amount_cents, currency)
    intent = await gateway.create_payment(
        amount_cents=amount_cents,
        currency=currency,
        payment_method=payment_method,
        idempotency_key=stripe_idempotency_key(reference, idempotency_key, payment_method),
        metadata={REFERENCE_KEY: reference, USER_KEY: str(user_id) if user_id else ""},
        description=description,
    )
    if (intent.amount_cents, intent.currency) != (amount_cents, currency.upper()):
        raise errors.Conflict("the payment provider returned a payment for other values")
    recorded = await _record(tx, intent, reference=reference, user_id=user_id)
    if recorded.payment_intent_id != intent.id:
        # Another request recorded a different charge for this reference first: give this one back.
        log.error("duplicate_card_charge_refunded", reference=reference, payment_intent=intent.id)
        await gateway.refund(
            payment_intent_id=intent.id, idempotency_key=f"orderly-dup-{intent.id}"
        )
        raise errors.Conflict(f"{reference} is already paid")
    return recorded


def _replay(row: repo.CardPaymentRow, amount_cents: int, currency: str) -> CardPayment:
    if (row.amount_cents, row.currency) != (amount_cents, currency.upper()):
        raise errors.Conflict(f"{row.reference} was paid by card with other values")
    return _payment(row, created=False)


async def _record(
    tx: Tx, intent: IntentResult, *, reference: str, user_id: uuid.UUID | None
) -> CardPayment:
    """Insert the card payment and its ledger booking, or return what is already recorded."""
    row = await repo.insert_succeeded(
        tx,
        reference=reference,
        user_id=user_id,
        payment_intent_id=intent.id,
        amount_cents=intent.amount_cents,
        currency=intent.currency,
    )
    if row is None:
        existing = await repo.find_by_reference(tx, reference) or await repo.find_by_intent(
            tx, intent.id
        )
        assert existing is not None
        return _payment(existing, created=False)
    await ledger.record_card_payment(
        tx,
        reference=reference,
        user_id=user_id,
        amount_cents=intent.amount_cents,
        currency=intent.currency,
        description=f"card payment {intent.id}",
    )
    return _payment(row, created=True)


async def refund_card_payment(
    tx: Tx, gateway: StripeGateway, *, reference: str, reason: str | None = None
) -> CardPayment:
    """Refund the card payment for *reference* in full, once (a repeat returns the refund).

    Raises NotFound when nothing was paid by card under *reference*, Unavailable
    when Stripe cannot be reached (nothing written; safe to retry).
    """
    row = await repo.find_by_reference(tx, reference, for_update=True)
    if row is None:
        raise errors.NotFound(f"no card payment for {reference}")
    if row.status == CardPaymentStatus.refunded:
        return _payment(row, created=False)
    refund = await gateway.refund(
        payment_intent_id=row.payment_intent_id,
        idempotency_key=f"orderly-refund-{row.payment_intent_id}",
    )
    updated = await repo.mark_refunded(tx, row.id, refund.id)
    await ledger.record_card_refund(tx, reference=reference, reason=reason)
    return _payment(updated, created=True)


async def reconcile_intent(
    tx: Tx, gateway: StripeGateway, payment_intent_id: str
) -> CardPayment | None:
    """Record a PaymentIntent that succeeded at Stripe but not here (our call timed out).

    Returns the payment (``created`` True if this call recorded it), or None
    when the intent has not succeeded or is not one of ours.
    """
    intent = await gateway.retrieve_payment(payment_intent_id)
    return await record_succeeded_intent(tx, intent)


async def record_succeeded_intent(tx: Tx, intent: IntentResult) -> CardPayment | None:
    """Record a succeeded intent that carries our reference; idempotent."""
    reference = intent.metadata.get(REFERENCE_KEY)
    if intent.status != "succeeded" or not reference:
        return None
    raw_user = intent.metadata.get(USER_KEY) or None
    return await _record(
        tx, intent, reference=reference, user_id=uuid.UUID(raw_user) if raw_user else None
    )


# ---------------------------------------------------------------- webhooks


def verify_webhook(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event of a delivery whose ``Stripe-Signature`` verifies; InvalidWebhookSignature else."""
    try:
        event = stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError:
        raise errors.InvalidWebhookSignature("the Stripe signature does not verify") from None
    except ValueError:
        raise errors.InvalidWebhookSignature("the webhook payload is not a Stripe event") from None
    data: dict[str, Any] = event.to_dict()
    return data


async def handle_webhook(
    tx: Tx,
    *,
    payload: bytes,
    signature: str | None,
    secret: str,
    notify_task: str | None = None,
) -> WebhookOutcome:
    """Verify and apply one Stripe event, exactly once per event id.

    ``payment_intent.succeeded`` records a payment we did not record ourselves
    (and enqueues *notify_task* with its reference, so the orders domain can
    mark the order paid); ``charge.refunded`` records a refund made outside
    orderly. Other events are acknowledged and ignored.
    """
    event = verify_webhook(payload, signature, secret)
    event_id, event_type = str(event["id"]), str(event["type"])
    if not await repo.claim_event(tx, event_id, event_type):
        return WebhookOutcome(event_id, event_type, StripeEventOutcome.duplicate, duplicate=True)
    obj: dict[str, Any] = event.get("data", {}).get("object", {})
    outcome = StripeEventOutcome.ignored
    if event_type == "payment_intent.succeeded":
        outcome = await _on_intent_succeeded(tx, obj, notify_task)
    elif event_type == "charge.refunded":
        outcome = await _on_charge_refunded(tx, obj)
    await repo.set_event_outcome(tx, event_id, outcome)
    log.info("stripe_event", event_id=event_id, type=event_type, outcome=outcome)
    return WebhookOutcome(event_id, event_type, outcome)


async def _on_intent_succeeded(
    tx: Tx, obj: dict[str, Any], notify_task: str | None
) -> StripeEventOutcome:
    intent = IntentResult(
        id=str(obj["id"]),
        status=str(obj.get("status", "succeeded")),
        amount_cents=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        metadata={str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
    )
    payment = await record_succeeded_intent(tx, intent)
    if payment is None:
        return StripeEventOutcome.not_ours
    if payment.payment_intent_id != intent.id:
        # Two charges for one reference (say, two racing requests with different
        # keys): the second is not ours to keep. Flag it loudly for a refund.
        log.error(
            "duplicate_card_charge",
            reference=payment.reference,
            recorded=payment.payment_intent_id,
            payment_intent=intent.id,
        )
        return StripeEventOutcome.duplicate_charge
    if not payment.created:
        return StripeEventOutcome.already_recorded
    if notify_task:
        await jobs.enqueue(
            tx,
            notify_task,
            {"reference": payment.reference, "payment_intent_id": payment.payment_intent_id},
        )
    return StripeEventOutcome.reconciled


async def _on_charge_refunded(tx: Tx, obj: dict[str, Any]) -> StripeEventOutcome:
    intent_id = obj.get("payment_intent")
    row = await repo.find_by_intent(tx, str(intent_id), for_update=True) if intent_id else None
    if row is None:
        return StripeEventOutcome.not_ours
    if row.status == CardPaymentStatus.refunded:
        return StripeEventOutcome.already_recorded
    refunds = (obj.get("refunds") or {}).get("data") or [{}]
    await repo.mark_refunded(tx, row.id, str(refunds[0].get("id") or "external"))
    await ledger.record_card_refund(tx, reference=row.reference, reason="refunded at Stripe")
    return StripeEventOutcome.refund_recorded
