"""Card payment states and webhook outcomes: one enum each for service, SQL and responses."""

from __future__ import annotations

from enum import StrEnum


class CardPaymentStatus(StrEnum):
    """A recorded card payment: ``succeeded`` once charged, ``refunded`` after a full refund."""

    succeeded = "succeeded"
    refunded = "refunded"


class StripeEventOutcome(StrEnum):
    """What applying a Stripe webhook event did (``stripe_event.outcome``, the webhook's answer)."""

    processing = "processing"
    """Claimed by a delivery whose transaction has not finished."""
    duplicate = "duplicate"
    ignored = "ignored"
    not_ours = "not_ours"
    duplicate_charge = "duplicate_charge"
    already_recorded = "already_recorded"
    reconciled = "reconciled"
    refund_recorded = "refund_recorded"
