"""RFC 9457 problem+json: the one place where errors become HTTP.

Every error a client sees has ``{type, title, status, detail, code,
request_id}`` (plus ``errors`` for validation). A 500 never carries a
traceback, SQL, a path or a secret: the details go to the log, keyed by the
request id the client receives.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from orderly import errors
from orderly.core.telemetry import current_request_id, get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://orderly.dev/problems/"

STATUS_BY_KIND: dict[type[errors.OrderlyError], int] = {
    errors.InvalidInput: 422,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PaymentRequired: 402,
    errors.PayloadTooLarge: 413,
    errors.RateLimited: 429,
    errors.Overloaded: 503,
    errors.Unavailable: 503,
    errors.IdempotencyKeyReused: 422,
    errors.IdempotencyKeyInUse: 409,
}

_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    503: "service_unavailable",
}


class FieldError(BaseModel):
    """One invalid field of a 422."""

    field: str
    message: str


class Problem(BaseModel):
    """The problem+json body (documented in OpenAPI for every error response)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    request_id: str | None = None
    errors: list[FieldError] | None = None


def status_for(error: errors.OrderlyError) -> int:
    """The HTTP status for a domain error: the nearest mapped ancestor wins."""
    for kind in type(error).__mro__:
        if kind in STATUS_BY_KIND:
            return STATUS_BY_KIND[kind]
    return 500


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    field_errors: list[dict[str, str]] | None = None,
) -> Response:
    """Render one problem+json response with the current request id."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
    }
    if field_errors is not None:
        body["errors"] = field_errors
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def responses_for(*kinds: type[errors.OrderlyError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the domain errors a route may raise."""
    documented: dict[int | str, dict[str, Any]] = {}
    for kind in kinds:
        status = STATUS_BY_KIND.get(kind, 500)
        documented[status] = {
            "model": Problem,
            "content": {PROBLEM_JSON: {}},
            "description": kind.title,
        }
    return documented


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _orderly_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.OrderlyError)
    return error_response(exc)


def error_response(exc: errors.OrderlyError) -> Response:
    """The problem+json response for a domain error (also stored by idempotency keys)."""
    field_errors = None
    if isinstance(exc, errors.InvalidInput):
        field_errors = [{"field": exc.field or "body", "message": exc.detail}]
    return problem_response(
        status_for(exc),
        exc.code,
        exc.detail,
        title=exc.title,
        headers=exc.headers,
        field_errors=field_errors,
    )


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    field_errors = []
    for item in exc.errors():
        message = str(item.get("msg", "invalid"))
        field = _field_name(tuple(item.get("loc", ())))
        if item.get("type") == "json_invalid":
            message, field = "request body is not valid JSON", "body"
        elif item.get("type") == "extra_forbidden":
            message = "unknown field"
        field_errors.append({"field": field, "message": message})
    return problem_response(
        422,
        "validation_failed",
        "The request is invalid; see errors.",
        title="Validation failed",
        field_errors=field_errors,
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODE_BY_STATUS.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    return problem_response(exc.status_code, code, detail, headers=dict(exc.headers or {}))


async def _unhandled(_: Request, exc: Exception) -> Response:
    log.error("unhandled_exception", exc_info=exc)
    return problem_response(
        500,
        "internal_error",
        "An unexpected error occurred. Quote the request id when reporting it.",
        title="Internal error",
    )


def install(app: FastAPI) -> None:
    """Register every error handler on *app*."""
    app.add_exception_handler(errors.OrderlyError, _orderly_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
