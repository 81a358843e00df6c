"""ASGI middleware: request id, access log, metrics, security headers, body limit.

Pure ASGI (not ``BaseHTTPMiddleware``): it costs a few microseconds a request,
streams bodies, and keeps context variables intact for the handlers.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from typing import Any

import orjson
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orderly.core import request_scope
from orderly.core.telemetry import (
    HTTP_IN_FLIGHT,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    bound_context,
    get_logger,
)

log = get_logger("orderly.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
_DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# The ops console (/console): its own script, styles and forms only; no inline script or style.
_CONSOLE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _internal_error_body(request_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "https://orderly.dev/problems/internal_error",
            "title": "Internal error",
            "status": 500,
            "detail": "An unexpected error occurred. Quote the request id when reporting it.",
            "code": "internal_error",
            "request_id": request_id,
        }
    )


@functools.lru_cache(maxsize=2048)
def _request_counter(method: str, template: str, status: int) -> Any:
    # Labelled children looked up once per (method, route, status): ``labels()`` hashes
    # and locks on every call. Route templates and statuses are bounded sets.
    return HTTP_REQUESTS.labels(method, template, str(status))


@functools.lru_cache(maxsize=2048)
def _latency_histogram(method: str, template: str) -> Any:
    return HTTP_LATENCY.labels(method, template)


def _route_template(scope: Scope) -> str:
    """The matched route's full path template, or "unmatched" (bounded label cardinality)."""
    route = scope.get("route")
    if route is None:
        return "unmatched"
    app = scope.get("app")
    templates: dict[int, str] = getattr(getattr(app, "state", None), "route_templates", {})
    return templates.get(id(route)) or str(getattr(route, "path", "unmatched"))


class RequestContextMiddleware:
    """Outermost layer: binds the request id, records metrics and the access log.

    It also renders the 500 for any unhandled exception, so even that response
    carries the request id and no internals.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        authenticated = b"authorization" in headers or b"cookie" in headers
        secure = scope.get("scheme") == "https"
        state: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = request_id
                out.setdefault("X-Content-Type-Options", "nosniff")
                out.setdefault("X-Frame-Options", "DENY")
                out.setdefault("Referrer-Policy", "no-referrer")
                if authenticated:
                    out["Cache-Control"] = "no-store"
                if out.get("content-type", "").startswith("text/html"):
                    path = scope["path"]
                    csp = (
                        _DOCS_CSP
                        if path in ("/docs", "/redoc")
                        else _CONSOLE_CSP
                        if path.startswith("/console")
                        else _STRICT_CSP
                    )
                    out.setdefault("Content-Security-Policy", csp)
                if secure:
                    out.setdefault("Strict-Transport-Security", "max-age=63072000")
            await send(message)

        started = time.perf_counter()
        HTTP_IN_FLIGHT.inc()
        scope_token = request_scope.begin()
        with bound_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_headers)
            except Exception as exc:
                log.error(
                    "unhandled_exception", path=scope["path"], method=scope["method"], exc_info=exc
                )
                if not state["started"]:
                    await send_with_headers(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [(b"content-type", b"application/problem+json")],
                        }
                    )
                    await send(
                        {"type": "http.response.body", "body": _internal_error_body(request_id)}
                    )
                    state["status"] = 500
            finally:
                HTTP_IN_FLIGHT.dec()
                elapsed = time.perf_counter() - started
                template = _route_template(scope)
                method = scope["method"]
                status = state["status"]
                _request_counter(method, template, status).inc()
                _latency_histogram(method, template).observe(elapsed)
                request_scope.end(scope_token, method, template, status, elapsed)
                log.info(
                    "request",
                    method=method,
                    route=template,
                    path=scope["path"],
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )


class BodyLimitMiddleware:
    """Answer 413 for bodies over the limit, without reading them into memory.

    A declared ``Content-Length`` over the limit is refused before any byte is
    read; a chunked body is counted as it streams and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def _reject(self, send: Send) -> None:
        from orderly.api.problems import problem_response

        response = problem_response(
            413,
            "payload_too_large",
            f"The request body exceeds {self.max_body_bytes} bytes.",
            title="Payload too large",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body_bytes:
                    await self._reject(send)
                    return
        received = 0
        rejected = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    rejected = True
                    await self._reject(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise
            # The app saw the disconnect we simulated after answering 413; nothing to report.
