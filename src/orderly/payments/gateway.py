"""The Stripe gateway: PaymentIntents and refunds through the official SDK's async API.

Why this shape: the SDK's ``StripeClient`` with an ``HTTPXClient`` and the
``*_async`` methods keeps the event loop free. Each HTTP attempt has explicit
connect/read timeouts and the whole call a deadline, so an unreachable Stripe
costs at most that deadline. Retries are the SDK's own (configured explicitly):
it retries only what Stripe declares safe (connection errors, 409, 5xx, or the
``Stripe-Should-Retry`` header) with exponential backoff and jitter, and it
resends our idempotency key, so a retried charge can never charge twice. A
circuit breaker (``core.outbound.Breakers``, state in
``orderly_circuit_breaker_open{breaker="stripe"}``) makes callers fail fast
while Stripe is down. Nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import stripe
from prometheus_client import Counter, Histogram
from stripe.params import PaymentIntentCreateParams

from orderly import errors
from orderly.config import Settings
from orderly.core.outbound import Breakers
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.errors import CardDeclined, PaymentIncomplete

log = get_logger(__name__)

BREAKER = "stripe"
STRIPE_REQUESTS = Counter(
    "orderly_stripe_requests_total",
    "Calls to Stripe by operation and outcome (ok, declined, invalid, conflict, "
    "unavailable, circuit_open).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
STRIPE_LATENCY = Histogram(
    "orderly_stripe_request_duration_seconds",
    "Time spent in calls to Stripe, retries included.",
    ["operation"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
    registry=REGISTRY,
)
# Client-side mistakes and card outcomes: they say nothing about Stripe's health.
_NOT_FAILURES: tuple[type[BaseException], ...] = (
    stripe.CardError,
    stripe.InvalidRequestError,
    stripe.IdempotencyError,
)


@dataclasses.dataclass(frozen=True)
class GatewayOptions:
    """Limits for calls to Stripe (seconds, counts)."""

    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    max_network_retries: int = 2
    # Worst case for a caller (a black-holed Stripe, every retry timing out); the
    # order row stays locked meanwhile, so this is kept well under the HTTP timeouts.
    deadline: float = 15.0
    breaker_threshold: int = 5
    breaker_ttl: float = 30.0
    # Stripe needs this for server-side confirmation; localstripe rejects the parameter.
    forbid_redirects: bool = True


@dataclasses.dataclass(frozen=True)
class IntentResult:
    """What we keep of a PaymentIntent."""

    id: str
    status: str
    amount_cents: int
    currency: str
    metadata: dict[str, str]


@dataclasses.dataclass(frozen=True)
class RefundResult:
    """What we keep of a Refund."""

    id: str
    status: str
    amount_cents: int


def _intent(resource: Any) -> IntentResult:
    obj: dict[str, Any] = resource.to_dict()
    return IntentResult(
        id=str(obj["id"]),
        status=str(obj["status"]),
        amount_cents=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        metadata={str(k): str(v) for k, v in dict(obj.get("metadata") or {}).items()},
    )


class StripeGateway:
    """Card payments at Stripe: create+confirm intents, refund, look up."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        breakers: Breakers | None = None,
        options: GatewayOptions | None = None,
    ) -> None:
        """A gateway with its own HTTP pool; *breakers* is the process's breaker registry."""
        self.options = options or GatewayOptions()
        self.breakers = breakers or Breakers()
        self.breakers.configure(
            BREAKER, threshold=self.options.breaker_threshold, ttl=self.options.breaker_ttl
        )
        timeout = httpx.Timeout(
            connect=self.options.connect_timeout,
            read=self.options.read_timeout,
            write=self.options.read_timeout,
            pool=self.options.connect_timeout,
        )
        self._http = stripe.HTTPXClient(timeout=timeout)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=self.options.max_network_retries,
        )

    @classmethod
    def from_settings(cls, settings: Settings, breakers: Breakers | None = None) -> StripeGateway:
        """The gateway for the configured Stripe account; Unavailable when none is configured."""
        if settings.stripe_api_key is None:
            raise errors.Unavailable("card payments are not configured")
        emulator = settings.stripe_api_base is not None  # PRODUCT.md: the base is for localstripe
        return cls(
            settings.stripe_api_key.get_secret_value(),
            api_base=settings.stripe_api_base,
            breakers=breakers,
            options=GatewayOptions(forbid_redirects=not emulator),
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run one SDK call under the breaker and the deadline; map failures to domain errors."""
        started = time.perf_counter()
        outcome = "ok"
        try:
            async with self.breakers.guard(BREAKER, ignore=_NOT_FAILURES):
                async with asyncio.timeout(self.options.deadline):
                    return await call()
        except stripe.CardError as exc:
            outcome = "declined"
            raise CardDeclined(
                exc.user_message or "Your card was declined.", decline_code=exc.code
            ) from None
        except stripe.IdempotencyError:
            outcome = "conflict"
            raise errors.Conflict(
                "this payment was already attempted with other details; use a new key"
            ) from None
        except stripe.InvalidRequestError as exc:
            outcome = "invalid"
            log.warning(
                "stripe_invalid_request", operation=operation, code=exc.code, param=exc.param
            )
            raise errors.InvalidInput(
                exc.user_message or "the payment details were refused", field=exc.param or None
            ) from None
        except errors.Unavailable:
            outcome = "circuit_open"
            raise  # not attempted
        except (stripe.StripeError, TimeoutError, httpx.HTTPError) as exc:
            outcome = "unavailable"
            log.warning("stripe_unavailable", operation=operation, error=type(exc).__name__)
            raise errors.Unavailable(
                "the payment provider is unreachable; try again later"
            ) from None
        finally:
            STRIPE_REQUESTS.labels(operation, outcome).inc()
            STRIPE_LATENCY.labels(operation).observe(time.perf_counter() - started)

    async def create_payment(
        self,
        *,
        amount_cents: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
        description: str | None = None,
    ) -> IntentResult:
        """Create and confirm a PaymentIntent; CardDeclined, PaymentIncomplete or Unavailable."""
        params: PaymentIntentCreateParams = {
            "amount": amount_cents,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "confirm": True,
            "metadata": dict(metadata),
        }
        if description:
            params["description"] = description
        if self.options.forbid_redirects:
            # Confirmed server-side: a redirect-based method could never be completed.
            params["automatic_payment_methods"] = {"enabled": True, "allow_redirects": "never"}
        intent = _intent(
            await self._call(
                "create_payment",
                lambda: self._client.v1.payment_intents.create_async(
                    params, {"idempotency_key": idempotency_key}
                ),
            )
        )
        if intent.status != "succeeded":
            raise PaymentIncomplete(f"the card payment is {intent.status.replace('_', ' ')}")
        return intent

    async def retrieve_payment(self, payment_intent_id: str) -> IntentResult:
        """The PaymentIntent as Stripe knows it now (for reconciliation)."""
        return _intent(
            await self._call(
                "retrieve_payment",
                lambda: self._client.v1.payment_intents.retrieve_async(payment_intent_id),
            )
        )

    async def refund(self, *, payment_intent_id: str, idempotency_key: str) -> RefundResult:
        """Refund a captured PaymentIntent in full."""
        refund = await self._call(
            "refund",
            lambda: self._client.v1.refunds.create_async(
                {"payment_intent": payment_intent_id}, {"idempotency_key": idempotency_key}
            ),
        )
        return RefundResult(str(refund["id"]), str(refund["status"]), int(refund["amount"]))

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        await self._http.close_async()  # type: ignore[no-untyped-call]
