"""Card payment domain errors (mapped to HTTP by their ``OrderlyError`` ancestors)."""

from __future__ import annotations

from orderly import errors


class CardDeclined(errors.PaymentRequired):
    """The card issuer refused the payment; nothing was recorded."""

    code = "card_declined"
    title = "Card declined"

    def __init__(self, detail: str | None = None, *, decline_code: str | None = None) -> None:
        super().__init__(detail)
        self.decline_code = decline_code


class PaymentIncomplete(errors.PaymentRequired):
    """The payment needs a step we cannot take server-side (e.g. 3-D Secure)."""

    code = "payment_incomplete"
    title = "Payment incomplete"


class InvalidWebhookSignature(errors.Unauthorized):
    """A webhook delivery whose signature does not verify: it is not from Stripe."""

    title = "Invalid webhook signature"
