"""How every ``/v1`` route runs: one unit of work per request, and declared cross-cutting rules.

:class:`OrderlyRoute` opens the request's :class:`~orderly.core.db.Tx` (lazy: no
connection until the first statement), runs FastAPI's handler, finishes an
idempotency claim in the same transaction and commits — once, before the
response is sent. Any exception rolls back. Handlers never commit.

Cross-cutting behaviour is declared on the route, never hand-wired into a
handler (order matters: a replay must not spend rate quota or queue room)::

    @router.post("/orders", dependencies=[IDEMPOTENT, rate_limited(...), SHED_ORDERS])
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from orderly import errors
from orderly.accounts.schemas import Principal
from orderly.api import problems
from orderly.api.auth import authenticated
from orderly.api.deps import AppRuntime, Transaction, get_runtime
from orderly.api.idempotency import Claim, Replay, storable
from orderly.config import Settings
from orderly.core.telemetry import LOAD_SHED


class OrderlyRoute(APIRoute):
    """An API route whose request is one transaction, committed before the response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler in the request's unit of work."""
        handler = super().get_route_handler()

        async def unit_of_work(request: Request) -> Response:
            runtime = await get_runtime(request)
            async with runtime.database.transaction() as tx:
                request.state.tx = tx
                try:
                    response = await handler(request)
                except Replay as replay:
                    return replay.response
                except errors.OrderlyError as error:
                    if error.commits_effects:  # the refusal's evidence is kept
                        await tx.commit()
                        raise
                    claim: Claim | None = getattr(request.state, "idempotency", None)
                    if claim is None or not storable(error):
                        raise
                    # Undo what the attempt wrote, then keep its refusal for replays.
                    await tx.rollback()
                    response = problems.error_response(error)
                    await claim.record_refusal(tx, response)
                else:
                    claim = getattr(request.state, "idempotency", None)
                    if claim is not None:
                        await claim.finish(tx, response)
                await tx.commit()
            for name, value in getattr(request.state, "extra_headers", {}).items():
                response.headers.setdefault(name, value)
            return response

        return unit_of_work


def domain_router(**options: Any) -> APIRouter:
    """A domain's router: every route on it runs as an :class:`OrderlyRoute`."""
    return APIRouter(route_class=OrderlyRoute, **options)


def add_headers(request: Request, headers: dict[str, str]) -> None:
    """Headers the route adds to whatever answer the request gets (e.g. RateLimit-*)."""
    extra: dict[str, str] = getattr(request.state, "extra_headers", None) or {}
    extra.update(headers)
    request.state.extra_headers = extra


def rate_limited(scope: str, limit: Callable[[Settings], str]) -> Any:
    """Route dependency: at most ``limit(settings)`` requests per user in *scope* (else 429)."""

    async def enforce(
        request: Request,
        runtime: AppRuntime,
        principal: Annotated[Principal, Depends(authenticated)],
    ) -> None:
        status = await runtime.limits.limiter.enforce(
            limit(runtime.settings), scope, str(principal.id)
        )
        add_headers(request, status.headers())

    return Depends(enforce)


async def _shed_orders(runtime: AppRuntime, tx: Transaction) -> None:
    """Refuse new orders while the job queue is over its limit (503 before any work)."""
    monitor = runtime.queue_monitor
    if await monitor.depth(tx) >= runtime.settings.max_queue_depth:
        LOAD_SHED.labels("orders").inc()
        raise errors.Overloaded(5, "The order queue is full; retry shortly.")
    monitor.note_enqueued(1)


SHED_ORDERS = Depends(_shed_orders)
"""Route dependency: backpressure from the job queue (``ORDERLY_MAX_QUEUE_DEPTH``)."""
