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
