"""Outbound calls: the one httpx client factory, circuit breakers and safe retries.

Every call orderly makes to another service (SMTP, the warehouse, Stripe, the
recommender) goes through a named circuit breaker from :class:`Breakers`, so a
dependency that is down is not hammered and callers fail fast; the state of
each breaker is exported as ``orderly_circuit_breaker_open{breaker=…}`` and
every transition is logged. Retries with exponential backoff and jitter are
only for calls that are safe to repeat (idempotent methods, or requests that
carry an idempotency key); everything else fails at once and lets the job
system retry the whole task.

Breaker state lives in the process (purgatory's in-memory store): each API or
worker process decides for itself, which is how client-side breakers are meant
to work — a shared store would let one process's network trouble open the
circuit for all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.messages.events import ContextChanged
from purgatory.domain.model import OpenedState
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from orderly import errors
from orderly.core.telemetry import CIRCUIT_STATE, get_logger

log = get_logger(__name__)

T = TypeVar("T")

USER_AGENT = "orderly/0.1"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Statuses that mean "the dependency is unwell", not "your request is wrong".
FAILURE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class UpstreamError(Exception):
    """A dependency answered with a status that counts as its failure (5xx, 408, 429)."""

    def __init__(self, name: str, response: httpx.Response) -> None:
        super().__init__(f"{name} answered HTTP {response.status_code}")
        self.name = name
        self.response = response


# ---------------------------------------------------------------- client factory


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Explicit limits for every phase of an HTTP call, in seconds (never "wait forever")."""

    connect: float = 3.0
    read: float = 10.0
    write: float = 10.0
    pool: float = 3.0

    def as_httpx(self) -> httpx.Timeout:
        """The same limits as an ``httpx.Timeout``."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def http_client(
    *,
    timeouts: Timeouts | None = None,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    max_connections: int = 50,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The one way to build an outbound HTTP client: explicit timeouts, bounded pool, no redirects.

    Redirects are not followed because a signed webhook or a payment call must
    reach the URL the operator configured, not wherever a 30x points.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=(timeouts or Timeouts()).as_httpx(),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
        headers={"User-Agent": USER_AGENT, **dict(headers or {})},
        follow_redirects=False,
        transport=transport,
    )


# ---------------------------------------------------------------- circuit breakers


class Breakers:
    """Circuit breakers by dependency name, with their state in the metrics and the log."""

    def __init__(self, *, threshold: int = 5, ttl: float = 30.0) -> None:
        """*threshold* consecutive failures open a circuit; after *ttl* seconds calls probe it."""
        self.threshold = threshold
        self.ttl = ttl
        self._factory = AsyncCircuitBreakerFactory(default_threshold=threshold, default_ttl=ttl)
        self._factory.add_listener(self._on_event)
        self._overrides: dict[str, tuple[int, float]] = {}

    def configure(self, name: str, *, threshold: int, ttl: float) -> None:
        """Give the breaker *name* its own threshold and open time (before its first use)."""
        self._overrides[name] = (threshold, ttl)

    @asynccontextmanager
    async def guard(
        self, name: str, *, ignore: tuple[type[BaseException], ...] = ()
    ) -> AsyncIterator[None]:
        """Run the block through breaker *name*; raise ``errors.CircuitOpen`` while it is open.

        Any exception escaping the block counts as a failure of the dependency,
        except the *ignore* types (e.g. "the receiver rejected this payload") and
        cancellation, which say nothing about the dependency's health.
        """
        threshold, ttl = self._overrides.get(name, (self.threshold, self.ttl))
        breaker = await self._factory.get_breaker(
            name, threshold, ttl, exclude=[asyncio.CancelledError, *ignore]
        )
        try:
            async with breaker:
                yield
        except OpenedState:
            raise errors.CircuitOpen(name) from None

    async def state(self, name: str) -> str:
        """``closed``, ``opened`` or ``half-opened`` (``closed`` for a breaker never used)."""
        async with self._factory.uow as uow:
            context = await uow.contexts.get(name)
        return "closed" if context is None else str(context.state)

    def _on_event(self, name: str, kind: str, event: object) -> None:
        if kind == "circuit_breaker_created":
            CIRCUIT_STATE.labels(name).set(0)
        elif kind == "state_changed" and isinstance(event, ContextChanged):
            CIRCUIT_STATE.labels(name).set(0 if event.state == "closed" else 1)
            report = log.warning if event.state == "opened" else log.info
            report("circuit_state_changed", breaker=name, state=event.state)


# ---------------------------------------------------------------- retries


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    log.info(
        "outbound_retry",
        attempt=state.attempt_number,
        error=f"{type(error).__name__}: {error}" if error else None,
        next_wait_seconds=round(state.upcoming_sleep, 3),
    )


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    initial: float = 0.2,
    max_wait: float = 2.0,
    retry_on: tuple[type[BaseException], ...] = (httpx.TransportError, UpstreamError),
) -> T:
    """Run *call* up to *attempts* times with exponential backoff and jitter.

    Only for calls that are safe to repeat: a retried POST without an
    idempotency key could charge or ship twice. An open circuit is never retried.
    """
    retrying = AsyncRetrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential_jitter(multiplier=initial, max=max_wait, jitter=initial),
        retry=retry_if_exception_type(retry_on),
        before_sleep=_log_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


class Outbound:
    """One named dependency: an httpx client behind its breaker, retrying only safe calls."""

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        breakers: Breakers,
        *,
        attempts: int = 3,
        initial_backoff: float = 0.2,
        max_backoff: float = 2.0,
    ) -> None:
        """Calls count against breaker *name*; safe calls are tried up to *attempts* times."""
        self.name = name
        self.client = client
        self.breakers = breakers
        self.attempts = attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff

    async def request(
        self, method: str, url: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send one request; 5xx/408/429 and transport errors raise and count as failures.

        Other responses (2xx-4xx) are returned for the caller to judge. Retries
        happen only when *idempotent* is true, which defaults to whether the
        HTTP method is idempotent; pass ``True`` for a POST with an idempotency key.
        """
        safe = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent

        async def once() -> httpx.Response:
            async with self.breakers.guard(self.name):
                response = await self.client.request(method, url, **kwargs)
                if response.status_code in FAILURE_STATUSES:
                    await response.aread()
                    raise UpstreamError(self.name, response)
                return response

        return await with_retries(
            once,
            attempts=self.attempts if safe else 1,
            initial=self.initial_backoff,
            max_wait=self.max_backoff,
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self.client.aclose()
