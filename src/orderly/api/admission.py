"""Admission control: a bounded number of requests in flight per process, bounded waits.

Under a connection storm (PRODUCT.md §9: 1,000 concurrent connections) the
scarce thing is not sockets but work in progress: every admitted request parses
its body, checks its token and then queues for one of the pool's few database
connections. Without a gate, hundreds of requests pile up inside the process,
each holding memory and adding event-loop latency to all the others, and the
ones at the back of the pool's queue time out late.

The gate admits ``max_in_flight`` requests at a time; the next ones wait in
FIFO order for at most ``max_wait`` seconds (and at most ``max_waiting`` of
them wait at all: many, since a refusal sends a closed-loop client straight
back). A request that cannot get in is answered with ``503 overloaded`` +
``Retry-After`` — before any body is read or token checked.
Behind the gate, the pool's own acquire timeout (``core.db``) bounds the wait
for a connection. Health and metrics endpoints bypass the gate so a saturated
process still reports its state (and a draining one its 503).
"""

from __future__ import annotations

import asyncio
import math

from starlette.types import ASGIApp, Receive, Scope, Send

from orderly.api.problems import problem_response
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

EXEMPT_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


class AdmissionMiddleware:
    """Pure ASGI gate in front of the app: bounded concurrency, bounded queueing."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_wait: float,
        max_waiting: int | None = None,
    ) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_wait = max_wait
        # Waiting is cheap (a suspended coroutine) and bounded in time; refusing at once is
        # not free and a closed-loop client comes straight back: a short queue turns
        # overload into a storm of 503s that starves the admitted requests of CPU.
        self.max_waiting = 32 * max_in_flight if max_waiting is None else max_waiting
        self._slots = asyncio.Semaphore(max_in_flight)
        self._waiting = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, queue or shed one request."""
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: never suspends
        elif self._waiting >= self.max_waiting or not await self._wait():
            await self._refuse(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._slots.release()

    async def _wait(self) -> bool:
        self._waiting += 1
        try:
            async with asyncio.timeout(self.max_wait):
                await self._slots.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.shed += 1
        if self.shed == 1 or self.shed % 1000 == 0:
            log.warning("admission_shedding", shed=self.shed, in_flight=self.max_in_flight)
        response = problem_response(
            503,
            "overloaded",
            "The service is at capacity; retry shortly.",
            title="Service overloaded",
            headers={"Retry-After": str(max(1, math.ceil(self.max_wait)))},
        )
        await response(scope, receive, send)
