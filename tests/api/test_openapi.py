"""/openapi.json documents every domain error under the status it really gets, as problem+json."""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import pytest

from orderly import errors
from orderly.api.problems import PROBLEM_JSON, responses_for, status_for_kind

DOMAIN_ERRORS = [
    kind
    for _, kind in inspect.getmembers(errors, inspect.isclass)
    if issubclass(kind, errors.OrderlyError) and kind is not errors.OrderlyError
]


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    """The document the running app serves."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def codes(document: dict[str, Any], method: str, path: str, status: int) -> set[str]:
    """The problem ``code`` values a route documents for *status*."""
    answer = document["paths"][path][method]["responses"][str(status)]
    content = answer["content"][PROBLEM_JSON]
    assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
    return {example["value"]["code"] for example in content["examples"].values()}


@pytest.mark.parametrize("kind", DOMAIN_ERRORS, ids=lambda kind: kind.__name__)
def test_every_domain_error_has_a_real_status(kind: type[errors.OrderlyError]) -> None:
    """No domain error falls through to 500, and responses_for uses the same status."""
    status = status_for_kind(kind)
    assert status < 500 or issubclass(kind, errors.Unavailable | errors.Overloaded)
    documented = responses_for(kind)
    assert list(documented) == [status]


def test_the_order_routes_document_their_real_errors(openapi: dict[str, Any]) -> None:
    """409 out_of_stock on placing, 402 insufficient_funds and card_declined on paying."""
    assert "out_of_stock" in codes(openapi, "post", "/v1/orders", 409)
    assert {"validation_failed", "idempotency_key_reused"} <= codes(
        openapi, "post", "/v1/orders", 422
    )
    assert {"insufficient_funds", "card_declined"} <= codes(
        openapi, "post", "/v1/orders/{order_id}/pay", 402
    )
    assert "conflict" in codes(openapi, "post", "/v1/orders/{order_id}/pay", 409)


def test_no_route_documents_a_domain_error_as_500(openapi: dict[str, Any]) -> None:
    """A 5xx means a bug or an outage: only 503 may be documented, and errors are problem+json."""
    problem = openapi["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                where = f"{method.upper()} {path} {status}"
                assert status not in {"500", "default"}, where
                if int(status) >= 400:
                    assert set(answer["content"]) == {PROBLEM_JSON}, where


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
    ]


def test_every_route_documents_what_its_declarations_answer(openapi: dict[str, Any]) -> None:
    """Derived from the route's dependencies (api/routing.py), so no route can forget one."""
    for method, path, operation in _operations(openapi):
        where = f"{method.upper()} {path}"
        statuses = set(operation["responses"])
        assert "503" in statuses, where  # the pool sheds any request (core/db.py)
        if operation.get("parameters") or "requestBody" in operation:
            assert "422" in statuses, where
        if "{" in path:
            assert "404" in statuses, where
        if operation.get("security") and {} not in operation["security"]:
            assert "401" in statuses, where
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
        if "Idempotency-Key" in names:
            assert {"400", "409", "422"} <= statuses, where
            assert "idempotency_key_in_use" in codes(openapi, method, path, 409)
            assert "bad_request" in codes(openapi, method, path, 400)
    assert "forbidden" in codes(openapi, "get", "/v1/admin/jobs", 403)
    assert "forbidden" in codes(openapi, "post", "/v1/products", 403)
    assert "rate_limited" in codes(openapi, "post", "/v1/orders", 429)
    assert "overloaded" in codes(openapi, "post", "/v1/orders", 503)
    assert "rate_limited" in codes(openapi, "post", "/v1/auth/token", 429)


def _body_schema(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def _parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    for parameter in document["paths"][path][method].get("parameters", []):
        if parameter["name"] == name:
            schema: dict[str, Any] = parameter["schema"]
            return schema
    raise AssertionError(f"{method} {path} has no parameter {name}")


def _without_null(schema: dict[str, Any]) -> bool:
    return "null" not in str(schema.get("anyOf", [])) and schema.get("type") != "null"


def test_rules_enforced_in_code_are_in_the_schema(openapi: dict[str, Any]) -> None:
    register = _body_schema(openapi, "post", "/v1/auth/register")
    assert register["properties"]["password"]["minLength"] == 12
    adjustment = _body_schema(openapi, "post", "/v1/products/{product_id}/stock-adjustments")
    assert adjustment["properties"]["delta"]["not"] == {"const": 0}
    limit = _parameter(openapi, "get", "/v1/products", "limit")
    assert (limit["minimum"], limit["maximum"]) == (1, 100)
    cursor = _parameter(openapi, "get", "/v1/products", "cursor")
    assert "pattern" in str(cursor)
    key = _parameter(openapi, "post", "/v1/orders", "Idempotency-Key")
    assert "'minLength': 1" in str(key)
    assert "'maxLength': 255" in str(key)
    assert "x20-\\\\x7e" in str(key)
    for path, method in (("/v1/products/{product_id}", "patch"),
                         ("/v1/admin/incidents/{incident_id}", "patch")):  # fmt: skip
        patch = _body_schema(openapi, method, path)
        assert not patch.get("required"), path
        for name in ("name", "price_cents", "active", "title", "status", "severity"):
            if name in patch["properties"]:
                assert _without_null(patch["properties"][name]), (path, name)
    strict = _body_schema(openapi, "post", "/v1/orders")
    assert strict["additionalProperties"] is False


def test_a_public_route_that_reads_an_optional_token_says_so(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/v1/products/{product_id}/recommendations"]["get"]
    assert {} in operation["security"]
    assert "401" in operation["responses"]  # a token that is sent must be valid
