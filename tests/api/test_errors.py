"""Every error is RFC 9457 problem+json with a code and the request id, never internals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app

probe = APIRouter(prefix="/_probe")


class Echo(BaseModel):
    """A body with one field; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    message: str


@probe.post("/echo")
async def echo(body: Echo) -> Echo:
    """Returns the body it was given."""
    return body


@probe.get("/boom")
async def boom() -> None:
    """Fails the way a bug would, with internals in the message."""
    raise RuntimeError("SELECT secret FROM users WHERE password = 'hunter2' at /srv/app.py")


@pytest.fixture
async def probe_client(
    settings: Settings, database: Database, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus two probe routes that exercise body parsing and crashes."""
    app = create_app(settings, database_url=database_url)
    app.include_router(probe)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_unknown_route_is_404(probe_client: httpx.AsyncClient) -> None:
    assert_problem(await probe_client.get("/v1/nowhere"), 404, "not_found")


async def test_wrong_method_is_405(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.delete("/_probe/echo")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_two_mebibyte_body_is_413(probe_client: httpx.AsyncClient) -> None:
    body = b'{"message": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await probe_client.post(
        "/_probe/echo", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_chunked_body_over_the_limit_is_413(probe_client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = await probe_client.post(
        "/_probe/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_invalid_json_is_422(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post(
        "/_probe/echo", content=b'{"message": ', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["errors"] == [{"field": "body", "message": "request body is not valid JSON"}]


async def test_unknown_field_is_422_naming_it(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.post("/_probe/echo", json={"message": "hi", "role": "admin"})
    body = assert_problem(response, 422, "validation_failed")
    assert {"field": "role", "message": "unknown field"} in body["errors"]  # type: ignore[operator]


async def test_unhandled_exception_is_500_without_internals(
    probe_client: httpx.AsyncClient,
) -> None:
    response = await probe_client.get("/_probe/boom", headers={"X-Request-ID": "req-12345678"})
    body = assert_problem(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "req-12345678"
    text = response.text
    for leak in ("SELECT", "hunter2", "/srv/app.py", "Traceback", "RuntimeError"):
        assert leak not in text
    assert body["request_id"] == "req-12345678"


async def test_security_headers_on_every_response(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/livez", headers={"Authorization": "Bearer x"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    docs = await probe_client.get("/docs")
    assert "default-src 'none'" in docs.headers["content-security-policy"]


async def test_invalid_incoming_request_id_is_replaced(probe_client: httpx.AsyncClient) -> None:
    response = await probe_client.get("/livez", headers={"X-Request-ID": "bad id\twith junk"})
    assert response.headers["x-request-id"] != "bad id\twith junk"
    assert len(response.headers["x-request-id"]) == 32
