"""Stripe's webhook: public, authenticated by its signature, applied once per event."""

from __future__ import annotations

from fastapi import Request

from orderly import errors
from orderly.api.auth import PUBLIC
from orderly.api.deps import AppSettings, Transaction
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.orders.service import SETTLE_CARD_PAYMENT
from orderly.payments import service

router = domain_router(tags=["payments"])


@router.post(
    "/webhooks/stripe",
    dependencies=[PUBLIC],
    responses=responses_for(errors.InvalidWebhookSignature, errors.NotFound),
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
        notify_task=SETTLE_CARD_PAYMENT,  # the orders domain settles the order
    )
    return {"event_id": outcome.event_id, "outcome": outcome.outcome}
