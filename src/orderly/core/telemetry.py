"""Logs, metrics and traces: one place that configures all three.

Logs are structlog JSON lines on stdout with the request id and trace id bound
through context variables; a processor scrubs anything that looks like a
secret. Metrics live in one Prometheus registry owned by this module. Traces
use OpenTelemetry and are exported by OTLP only when an endpoint is configured.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import orjson
import structlog
from opentelemetry import trace
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest

SERVICE_NAME = "orderly"

# ---------------------------------------------------------------- metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the output and nobody graphs them
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "orderly_http_requests_total",
    "HTTP requests by route template, method and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "orderly_http_request_duration_seconds",
    "HTTP request latency by route template and method.",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
HTTP_IN_FLIGHT = Gauge(
    "orderly_http_requests_in_flight", "HTTP requests being served.", registry=REGISTRY
)
DB_POOL = Gauge(
    "orderly_db_pool_connections",
    "Database pool connections by state.",
    ["state"],
    registry=REGISTRY,
)
DB_POOL_WAIT = Histogram(
    "orderly_db_pool_wait_seconds",
    "Time spent waiting for a pooled database connection.",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "orderly_queue_depth", "Jobs waiting to run, by status.", ["status"], registry=REGISTRY
)
QUEUE_OLDEST_AGE = Gauge(
    "orderly_queue_oldest_job_age_seconds",
    "Age of the oldest job that is due and not yet picked.",
    registry=REGISTRY,
)
JOB_OUTCOMES = Counter(
    "orderly_job_outcomes_total",
    "Job executions by task and outcome (succeeded, retried, dead).",
    ["task", "outcome"],
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "orderly_job_duration_seconds",
    "Job execution time by task.",
    ["task"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "orderly_circuit_breaker_open",
    "1 when the circuit breaker for a dependency is open (or half-open), else 0.",
    ["breaker"],
    registry=REGISTRY,
)
CACHE_EVENTS = Counter(
    "orderly_cache_events_total",
    "Cache lookups by cache and result (hit, miss).",
    ["cache", "result"],
    registry=REGISTRY,
)
ORDER_EVENTS = Counter(
    "orderly_order_events_total",
    "Orders placed and order status transitions, by resulting status.",
    ["event"],
    registry=REGISTRY,
)
LOAD_SHED = Counter(
    "orderly_load_shed_total",
    "Requests refused with 503 overloaded to protect the system, by what was shed.",
    ["what"],
    registry=REGISTRY,
)


def render_metrics() -> bytes:
    """Prometheus text exposition of every orderly metric."""
    return _generate_latest(REGISTRY)


def start_metrics_server(host: str, port: int) -> None:
    """Serve ``/metrics`` from a background thread (processes without an HTTP API)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=REGISTRY)


# ---------------------------------------------------------------- logging

_SECRET_KEYS = re.compile(
    r"pass(word)?|secret|token|authorization|api[_-]?key|cookie|encryption|private",
    re.IGNORECASE,
)
_SAFE_KEYS = frozenset(
    {
        "event",
        "level",
        "timestamp",
        "request_id",
        "method",
        "route",
        "path",
        "status",
        "duration_ms",
        "trace_id",
        "span_id",
        "logger",
        "job_id",
        "task",
        "order_id",
        "user_id",
    }
)
_URL_CREDENTIALS = re.compile(r"(://[^:/@\s]+):[^@\s]+@")


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact values under secret-looking keys and passwords embedded in URLs."""
    for key, value in list(event.items()):
        if key in _SAFE_KEYS:  # the access log's own fields: nothing to redact, skip the regex
            if key == "path" and isinstance(value, str) and "://" in value:
                event[key] = _URL_CREDENTIALS.sub(r"\1:[redacted]@", value)
            continue
        if _SECRET_KEYS.search(key):
            event[key] = "[redacted]"
        elif isinstance(value, str) and "://" in value:
            event[key] = _URL_CREDENTIALS.sub(r"\1:[redacted]@", value)
    return event


def _add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


def _orjson_text(value: Any, **_: Any) -> str:
    # orjson renders a log line several times faster than the stdlib's json.
    return orjson.dumps(value, default=str).decode()


def configure_logging(level: str = "INFO", *, json: bool = True) -> None:
    """Route structlog and the standard library through one JSON renderer on stdout."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        _scrub,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_text)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log duplicates ours (ours has the request id and route template).
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("uvicorn.error", "pgqueuer", "asyncio", "httpx", "aiosmtplib", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    logging.getLogger("uvicorn.error").handlers[:] = []
    logging.getLogger("uvicorn.error").propagate = True


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """A structlog logger; context variables (request id, job id) are merged in."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


@contextmanager
def bound_context(**values: Any) -> Iterator[None]:
    """Bind log context for a block (a request, a job) and restore it afterwards."""
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def current_request_id() -> str | None:
    """The request id bound for the current request or job, if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value is not None else None


# ---------------------------------------------------------------- tracing

_tracing_enabled = False


def configure_tracing(otlp_endpoint: str | None, *, service: str = SERVICE_NAME) -> bool:
    """Export traces by OTLP/HTTP when an endpoint is configured; return whether tracing is on.

    Without an endpoint no SDK provider is installed: spans stay no-ops, so
    the request path pays nothing for traces nobody collects.
    """
    global _tracing_enabled
    if _tracing_enabled or not otlp_endpoint:
        return _tracing_enabled
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=5)))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument()
    # Every repository's SQL goes through asyncpg, so one instrumentor traces all of it.
    AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
    _tracing_enabled = True
    return True


def tracer(name: str = SERVICE_NAME) -> trace.Tracer:
    """The tracer for orderly's own spans."""
    return trace.get_tracer(name)
