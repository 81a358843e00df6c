"""RFC 9457 problem+json: the one place where errors become HTTP.

Every error a client sees has ``{type, title, status, detail, code,
request_id}`` (plus ``errors`` for validation). A 500 never carries a
traceback, SQL, a path or a secret: the details go to the log, keyed by the
request id the client receives.
"""

from __future__ import annotations

import copy
import re
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from orderly import errors
from orderly.core.telemetry import current_request_id, get_logger

log = get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://orderly.dev/problems/"

STATUS_BY_KIND: dict[type[errors.OrderlyError], int] = {
    errors.BadRequest: 400,
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


def status_for_kind(kind: type[errors.OrderlyError]) -> int:
    """The HTTP status of an error class: its nearest mapped ancestor in the MRO wins."""
    for ancestor in kind.__mro__:
        if ancestor in STATUS_BY_KIND:
            return STATUS_BY_KIND[ancestor]
    return 500


def status_for(error: errors.OrderlyError) -> int:
    """The HTTP status for a domain error: the nearest mapped ancestor wins."""
    return status_for_kind(type(error))


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


PROBLEM_REF = "#/components/schemas/Problem"


def _example(kind: type[errors.OrderlyError], status: int) -> dict[str, Any]:
    """An OpenAPI example of the problem+json body *kind* produces."""
    body = {
        "type": TYPE_BASE + kind.code,
        "title": kind.title,
        "status": status,
        "detail": (kind.__doc__ or kind.title).strip().splitlines()[0],
        "code": kind.code,
        "request_id": "0f3c2d5e9b8a4c1d8e7f6a5b4c3d2e1f",
    }
    if issubclass(kind, errors.InvalidInput):
        body["errors"] = [{"field": "body", "message": body["detail"]}]
    return {"summary": f"{kind.title} ({kind.code})", "value": body}


def responses_for(*kinds: type[errors.OrderlyError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for the domain errors a route may raise.

    Each kind is documented under the status it really gets (:func:`status_for_kind`
    walks the MRO, so ``OutOfStock`` is a 409 and ``CardDeclined`` a 402), as
    ``application/problem+json`` with the :class:`Problem` schema; kinds sharing
    a status are listed together, each with its ``code`` and an example.
    """
    by_status: dict[int, list[type[errors.OrderlyError]]] = {}
    for kind in kinds:
        group = by_status.setdefault(status_for_kind(kind), [])
        if kind not in group:
            group.append(kind)
    documented: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        documented[status] = {
            "description": "; ".join(f"{kind.title} (`{kind.code}`)" for kind in group),
            "content": {
                PROBLEM_JSON: {
                    "schema": {"$ref": PROBLEM_REF},
                    "examples": {kind.__name__: _example(kind, status) for kind in group},
                }
            },
        }
    return documented


def with_problems(
    declared: dict[int | str, dict[str, Any]], *kinds: type[errors.OrderlyError]
) -> dict[int | str, dict[str, Any]]:
    """*declared* responses plus the problem+json answers of *kinds* (declared entries kept).

    A status the route already documents keeps its description; the kinds it
    lacks join its examples. Used by ``api/routing.py`` to document what a
    route's declarations (auth, idempotency, rate limits, load shedding) answer.
    """
    merged = dict(declared)
    for status, answer in responses_for(*kinds).items():
        existing = merged.get(status) or merged.get(str(status))
        if existing is None:
            merged[status] = answer
            continue
        examples = existing.get("content", {}).get(PROBLEM_JSON, {}).get("examples")
        if examples is None:
            continue
        for name, example in answer["content"][PROBLEM_JSON]["examples"].items():
            if name not in examples:
                examples[name] = example
                existing["description"] = f"{existing['description']}; {example['summary']}"
    return merged


def _document_problems(app: FastAPI) -> None:
    """Make /openapi.json tell the truth about errors: every one is problem+json.

    Adds :class:`Problem` to the components (``responses_for`` refers to it) and
    replaces FastAPI's default 422 (``HTTPValidationError`` as application/json,
    which this API never sends) with the problem+json body it does send; a route
    that declares its own 422 (``idempotency_key_reused``) and takes input also
    lists ``validation_failed`` there.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(problem.pop("$defs", {}))
        components["Problem"] = problem
        invalid = responses_for(errors.InvalidInput)[422]
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422")
                if answer is None:
                    continue
                examples = answer.get("content", {}).get(PROBLEM_JSON, {}).get("examples")
                if examples is None:  # FastAPI's default
                    operation["responses"]["422"] = copy.deepcopy(invalid)
                elif "InvalidInput" not in examples and (
                    "requestBody" in operation or operation.get("parameters")
                ):
                    examples["InvalidInput"] = _example(errors.InvalidInput, 422)
                    answer["description"] = f"{invalid['description']}; {answer['description']}"
        if "HTTPValidationError" in components and "HTTPValidationError" not in str(
            schema.get("paths")
        ):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# pydantic names union members and wrapped validators in error locations; clients need fields.
_SCHEMA_TAG = re.compile(
    r"^((constrained|function|lax|strict|nullable|json-or-python)[-\[].*"
    r"|none|bool|int|float|str|list\[.*\]|dict\[.*\])$"
)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [
        str(p)
        for p in loc
        if p not in ("body", "query", "path", "header") and not _SCHEMA_TAG.match(str(p))
    ]
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
    field_errors: list[dict[str, str]] = []
    for item in exc.errors():
        message = str(item.get("msg", "invalid"))
        field = _field_name(tuple(item.get("loc", ())))
        if item.get("type") == "json_invalid":
            message, field = "request body is not valid JSON", "body"
        elif item.get("type") == "extra_forbidden":
            message = "unknown field"
        elif item.get("type") == "string_nul":
            where = str((item.get("ctx") or {}).get("where", ""))
            field = ".".join(p for p in (field if field != "body" else "", where) if p) or "body"
            message = "must not contain NUL characters"
        if item.get("type") == "none_required" and any(e["field"] == field for e in field_errors):
            continue  # the `null` branch of an optional field: its real error is already listed
        field_errors.append({"field": field, "message": message})
    return problem_response(
        422,
        "validation_failed",
        "The request is invalid; see errors.",
        title="Validation failed",
        field_errors=field_errors,
    )


def _allowed_methods(request: Request) -> str | None:
    """The methods of the resource the path named: every route sharing the template matched.

    FastAPI builds one route per method, so the 405 of the first route whose path
    matched lists only its own method; ``Allow`` must list them all.
    """
    routes = [r for r in request.app.router.routes if isinstance(r, BaseRoute)]
    template = next(
        (
            getattr(route, "path", None)
            for route in routes
            if getattr(route, "methods", None) and route.matches(request.scope)[0] is Match.PARTIAL
        ),
        None,
    )
    methods: set[str] = set()
    for route in routes:
        if template is not None and getattr(route, "path", None) == template:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods)) or None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a body that is not even text (invalid UTF-8): bad JSON, like any.
        return problem_response(
            422,
            "validation_failed",
            "The request is invalid; see errors.",
            title="Validation failed",
            field_errors=[{"field": "body", "message": "request body is not valid JSON"}],
        )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        if allowed:
            headers["Allow"] = allowed
    code = _CODE_BY_STATUS.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    return problem_response(exc.status_code, code, detail, headers=headers)


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
    _document_problems(app)
