"""The OrderlyError tree: what went wrong, in domain terms.

Domain code raises these; ``orderly.api.problems`` maps each *kind* to an HTTP
status in one place. Nothing here knows about HTTP. ``code`` is the stable
machine-readable string clients see in problem+json bodies.
"""

from __future__ import annotations

from typing import ClassVar


class OrderlyError(Exception):
    """Base of every expected failure; ``detail`` is safe to show to the caller."""

    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)


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
