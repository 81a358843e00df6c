"""Stripe's webhook: public, authenticated by its signature, applied once per event."""

from __future__ import annotations

from fastapi import APIRouter, Request

from orderly import errors
from orderly.api.auth import PUBLIC
from orderly.api.deps import AppSettings, Transaction
from orderly.api.problems import responses_for
from orderly.payments import service
from orderly.payments.errors import InvalidWebhookSignature

router = APIRouter(tags=["payments"])

# Enqueued (by name: jobs cross domains by name only) when a webhook records a
# payment our own request never recorded, so the orders domain settles the order.
RECONCILED_TASK = "orders.settle_card_payment"


@router.post(
    "/webhooks/stripe",
    dependencies=[PUBLIC],
    responses=responses_for(InvalidWebhookSignature, errors.NotFound),
)
async def stripe_webhook(
    request: Request, tx: Transaction, settings: AppSettings
) -> dict[str, str]:
    """Verify ``Stripe-Signature`` and apply the event; a redelivery changes nothing."""
    if settings.stripe_webhook_secret is None:
        raise errors.NotFound("No Stripe webhook is configured.")
    outcome = await service.handle_webhook(
        tx,
        payload=await request.body(),
        signature=request.headers.get("stripe-signature"),
        secret=settings.stripe_webhook_secret.get_secret_value(),
        notify_task=RECONCILED_TASK,
    )
    return {"event_id": outcome.event_id, "outcome": outcome.outcome}
