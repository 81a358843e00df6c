"""The OrderlyError tree: what went wrong, in domain terms — every domain error lives here.

Domain code raises these; ``orderly.api.problems`` maps each *kind* (the nearest
mapped ancestor in the MRO) to an HTTP status in one place, and documents each
error under that status in OpenAPI. Nothing here knows about HTTP. ``code`` is
the stable machine-readable string clients see in problem+json bodies.

The hierarchy (status as mapped by ``orderly.api.problems``; ``code`` in brackets)::

    OrderlyError                      500 [internal_error]
    ├── BadRequest                    400 [bad_request]        a malformed header (Idempotency-Key)
    ├── InvalidInput                  422 [validation_failed]
    ├── Unauthorized                  401 [unauthorized]
    │   └── InvalidWebhookSignature       inbound webhook (Stripe, warehouse) not from its sender
    ├── Forbidden                     403 [forbidden]
    ├── NotFound                      404 [not_found]
    ├── Conflict                      409 [conflict]
    │   ├── OutOfStock                    [out_of_stock]       catalog/orders
    │   ├── IllegalTransition             [conflict]           orders state machine
    │   └── TransactionIdReused           [conflict]           ledger idempotency
    ├── PaymentRequired               402 [payment_required]
    │   ├── InsufficientFunds             [insufficient_funds] ledger
    │   ├── CardDeclined                  [card_declined]      payments
    │   └── PaymentIncomplete             [payment_incomplete] payments (e.g. 3-D Secure)
    ├── PayloadTooLarge               413 [payload_too_large]
    ├── RateLimited                   429 [rate_limited]       + Retry-After
    ├── Overloaded                    503 [overloaded]         + Retry-After
    ├── Unavailable                   503 [service_unavailable]
    │   └── CircuitOpen                   a dependency's circuit breaker is open
    ├── IdempotencyKeyReused          422 [idempotency_key_reused]
    └── IdempotencyKeyInUse           409 [idempotency_key_in_use] + Retry-After

Exceptions that are *not* OrderlyErrors never reach a client as such (an
escaped one is a bug: 500, logged): they are internal signals between plumbing
and its caller — ``config.ConfigError`` (refuse to start),
``core.crypto.DecryptionError``, ``core.jobs.JobFailed`` (fail a job attempt),
``core.outbound.UpstreamError`` and ``notifications.webhooks.DeliveryFailed`` /
``ReceiverRejected`` (retry or give up an outbound call).
"""

from __future__ import annotations

from typing import ClassVar, Self


class OrderlyError(Exception):
    """Base of every expected failure; ``detail`` is safe to show to the caller."""

    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"
    #: A refusal whose side effects (an audit event, a revoked session) must still commit.
    commits_effects: bool = False

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)

    def committing_effects(self) -> Self:
        """Mark this refusal as one whose evidence the request's transaction commits.

        A failed login raises like any other error, yet its audit event and the
        login limiter's count must survive: the route commits, then answers.
        """
        self.commits_effects = True
        return self


class BadRequest(OrderlyError):
    """The request itself is malformed (a header with control characters, say)."""

    code = "bad_request"
    title = "Bad request"


class InvalidInput(OrderlyError):
    """The request is well-formed but breaks a rule the schema cannot express."""

    code = "validation_failed"
    title = "Validation failed"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Unauthorized(OrderlyError):
    """No valid credentials."""

    code = "unauthorized"
    title = "Authentication required"


class InvalidWebhookSignature(Unauthorized):
    """An inbound webhook (Stripe, the warehouse) whose signature or timestamp does not verify."""

    title = "Invalid webhook signature"


class Forbidden(OrderlyError):
    """Valid credentials, insufficient role."""

    code = "forbidden"
    title = "Forbidden"


class NotFound(OrderlyError):
    """The resource does not exist, or the caller may not know it exists."""

    code = "not_found"
    title = "Not found"


class Conflict(OrderlyError):
    """The request conflicts with the current state (duplicate, illegal transition)."""

    code = "conflict"
    title = "Conflict"


class PaymentRequired(OrderlyError):
    """The payment could not be taken."""

    code = "payment_required"
    title = "Payment required"


class RateLimited(OrderlyError):
    """Too many requests; ``retry_after`` seconds until the window allows more."""

    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class Overloaded(OrderlyError):
    """Shedding load to protect the system; retry later."""

    code = "overloaded"
    title = "Service overloaded"

    def __init__(self, retry_after: int = 5, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})
        self.retry_after = max(1, retry_after)


class PayloadTooLarge(OrderlyError):
    """The request body exceeds the configured limit."""

    code = "payload_too_large"
    title = "Payload too large"


class Unavailable(OrderlyError):
    """A dependency (database, payment provider, …) is down; safe to retry later."""

    code = "service_unavailable"
    title = "Service unavailable"


class CircuitOpen(Unavailable):
    """The dependency's circuit breaker is open: the call was not attempted."""

    title = "Dependency unavailable"

    def __init__(self, breaker: str) -> None:
        super().__init__(f"{breaker} is unavailable; try again later")
        self.breaker = breaker


# ---------------------------------------------------------------- catalog and orders


class OutOfStock(Conflict):
    """A line of an order cannot be reserved; nothing was reserved."""

    code = "out_of_stock"
    title = "Out of stock"

    def __init__(self, product_id: str) -> None:
        super().__init__(f"Not enough stock for product {product_id}; nothing was reserved.")
        self.product_id = product_id


class IllegalTransition(Conflict):
    """The order's state machine does not allow this change from its current status."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"An order that is {current} cannot become {target}.")
        self.current = current
        self.target = target


# ---------------------------------------------------------------- ledger


class InsufficientFunds(PaymentRequired):
    """The wallet holds less than the amount to pay; nothing was written."""

    code = "insufficient_funds"
    title = "Insufficient funds"


class TransactionIdReused(Conflict):
    """An idempotency key (transaction id, payment reference) was used with other values."""

    title = "Transaction id reused"


# ---------------------------------------------------------------- card payments


class CardDeclined(PaymentRequired):
    """The card issuer refused the payment; nothing was recorded."""

    code = "card_declined"
    title = "Card declined"

    def __init__(self, detail: str | None = None, *, decline_code: str | None = None) -> None:
        super().__init__(detail)
        self.decline_code = decline_code


class PaymentIncomplete(PaymentRequired):
    """The payment needs a step we cannot take server-side (e.g. 3-D Secure)."""

    code = "payment_incomplete"
    title = "Payment incomplete"


# ---------------------------------------------------------------- idempotency keys


class IdempotencyKeyReused(OrderlyError):
    """The Idempotency-Key was already used for a request with another body, method or path."""

    code = "idempotency_key_reused"
    title = "Idempotency key reused"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "This Idempotency-Key was used with a different request; use a new key."
        )


class IdempotencyKeyInUse(OrderlyError):
    """A request with the same Idempotency-Key is still being processed."""

    code = "idempotency_key_in_use"
    title = "Idempotency key in use"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "A request with this Idempotency-Key is still in progress; retry shortly.",
            headers={"Retry-After": "1"},
        )
