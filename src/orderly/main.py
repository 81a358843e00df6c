"""The FastAPI application factory: lifespan, middleware, error handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import SecretStr

from orderly.api import ops, problems
from orderly.api.admission import AdmissionMiddleware
from orderly.api.deps import Runtime
from orderly.api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from orderly.api.router import mount_api, route_templates
from orderly.config import Settings
from orderly.console.endpoints import mount_console
from orderly.core.db import Database
from orderly.core.jobs import Task, Worker
from orderly.core.telemetry import configure_tracing, get_logger
from orderly.flags import lifecycle as progressive_delivery

log = get_logger(__name__)


def create_app(
    settings: Settings,
    *,
    database_url: str,
    run_worker: bool = False,
    tasks: Sequence[Task] | None = None,
) -> FastAPI:
    """Build the HTTP app; with ``run_worker`` it also runs a job worker in-process."""
    tracing = configure_tracing(settings.otlp_endpoint)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(
            database_url,
            pool_size=settings.db_pool_size,
            acquire_timeout=settings.db_acquire_timeout_seconds,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            application_name="orderly-serve" if run_worker else "orderly-api",
            direct_url=_secret(settings.database_direct_url),
        )
        runtime = await Runtime.start(settings, database)
        app.state.runtime = runtime
        delivery = await progressive_delivery.start(
            settings, database, http=True, drive_plans=run_worker
        )
        if runtime.limits.shared:
            app.state.lifecycle.extra_checks["redis"] = runtime.limits.ping
        worker_task: asyncio.Task[None] | None = None
        worker: Worker | None = None
        if run_worker:
            from orderly.worker import build_worker

            worker = build_worker(settings, database, tasks=tasks)
            worker_task = asyncio.create_task(worker.run(), name="orderly-worker")
        app.state.lifecycle.started = True
        log.info("api_started", worker=run_worker)
        try:
            yield
        finally:
            app.state.lifecycle.draining = True
            if worker is not None and worker_task is not None:
                worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            await delivery.stop()
            await runtime.close()
            log.info("api_stopped")

    app = FastAPI(
        title="orderly",
        version="0.1.0",
        summary="Orders, stock, payments and notifications, correct under concurrency.",
        lifespan=lifespan,
        # orderly instruments requests itself (api/middleware.py, and OpenTelemetry's
        # FastAPI instrumentor when ORDERLY_OTLP_ENDPOINT is set); FastAPI's own
        # telemetry would add a second span and a per-request check.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.lifecycle = ops.Lifecycle()
    problems.install(app)
    app.include_router(ops.router)
    mount_api(app)
    mount_console(app)
    app.state.route_templates = route_templates(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        AdmissionMiddleware,
        max_in_flight=settings.max_concurrent_requests,
        max_wait=settings.admission_timeout_seconds,
    )
    app.add_middleware(RequestContextMiddleware)
    if tracing:
        _instrument_http(app)
    return app


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _instrument_http(app: FastAPI) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls="livez,readyz,metrics", exclude_spans=["receive", "send"]
    )
