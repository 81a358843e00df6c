"""Operational endpoints: liveness, readiness, Prometheus metrics (outside /v1)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from orderly.api.deps import Runtime
from orderly.core.db import Database
from orderly.core.jobs import queue_stats
from orderly.core.telemetry import QUEUE_DEPTH, QUEUE_OLDEST_AGE, get_logger, render_metrics

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)
CHECK_TIMEOUT = 2.0


@dataclass
class Lifecycle:
    """Process state that readiness reports: not ready while starting or draining."""

    started: bool = False
    draining: bool = False
    extra_checks: dict[str, Callable[[], Awaitable[Any]]] = field(default_factory=dict)


async def refresh_queue_metrics(database: Database) -> None:
    """Read the queue's depth and age into the gauges (raises if the database is down)."""
    async with database.transaction() as tx:
        stats = await queue_stats(tx)
    for status, count in stats.counts.items():
        QUEUE_DEPTH.labels(status).set(count)
    QUEUE_OLDEST_AGE.set(stats.oldest_due_age_seconds)


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and its event loop answers."""
    return {"status": "ok"}


async def _probe(name: str, check: Callable[[], Awaitable[Any]]) -> tuple[str, str]:
    """Run one readiness check within the timeout: ("name", "ok" | "unavailable")."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await check()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness_check_failed", check=name, error=type(exc).__name__)
        return name, "unavailable"
    return name, "ok"


async def check_dependencies(runtime: Runtime, lifecycle: Lifecycle) -> dict[str, str]:
    """Each dependency ("database", "queue", "redis" when shared) → "ok" | "unavailable"."""
    database = runtime.database
    probes: dict[str, Callable[[], Awaitable[Any]]] = {
        "database": lambda: database.ping(CHECK_TIMEOUT),
        "queue": lambda: refresh_queue_metrics(database),
        **lifecycle.extra_checks,
    }
    # Concurrently: during an outage every probe waits its full timeout.
    return dict(await asyncio.gather(*(_probe(name, c) for name, c in probes.items())))


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready to take traffic: started, not draining, database and queue answer."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:  # the lifespan has not built the runtime yet
        return JSONResponse(
            {"status": "starting", "checks": {}}, status_code=503, headers={"Retry-After": "5"}
        )
    checks = await check_dependencies(runtime, lifecycle)
    if not lifecycle.started:
        status = "starting"
    elif lifecycle.draining:
        status = "draining"
    elif any(value != "ok" for value in checks.values()):
        status = "degraded"
    else:
        status = "ready"
    code = 200 if status == "ready" else 503
    headers = {"Retry-After": "5"} if code == 503 else None
    return JSONResponse({"status": status, "checks": checks}, status_code=code, headers=headers)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format; queue gauges are refreshed on each scrape."""
    runtime: Runtime = request.app.state.runtime
    database = runtime.database
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await refresh_queue_metrics(database)
    except Exception as exc:  # noqa: BLE001 - metrics still render, with stale queue gauges
        log.warning("queue_metrics_unavailable", error=type(exc).__name__)
    return Response(render_metrics(), media_type="text/plain; version=0.0.4; charset=utf-8")
