"""Idempotency-Key with Stripe semantics, through a test-only route that writes real rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any, Literal

import asyncpg
import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from starlette.responses import JSONResponse

from orderly import errors
from orderly.api.auth import CurrentUser
from orderly.api.deps import Transaction
from orderly.api.idempotency import IDEMPOTENT, fingerprint
from orderly.api.routing import domain_router, rate_limited
from orderly.config import Settings
from orderly.core import idempotency as keys
from orderly.core.db import Database
from orderly.core.jobs import JobContext
from orderly.main import create_app
from tests.support.accounts import signed_in

CRASH = {"on": False}


class WidgetCreate(BaseModel):
    """Body of the test route."""

    model_config = ConfigDict(extra="forbid")

    name: str
    delay: float = 0.0
    outcome: Literal["created", "conflict", "crash", "response", "busy"] = "created"


class WidgetRead(BaseModel):
    """What the test route returns."""

    id: int
    name: str


router = domain_router()


@router.post(
    "/test-widgets",
    status_code=201,
    response_model=WidgetRead,
    dependencies=[IDEMPOTENT, rate_limited("widgets", lambda settings: "100/minute")],
)
async def create_widget(data: WidgetCreate, tx: Transaction, user: CurrentUser) -> Any:
    """A mutating POST declared idempotent and rate limited, as real endpoints are."""
    widget_id = await tx.fetchval(
        "INSERT INTO test_widget (name) VALUES ($1) RETURNING id", data.name
    )
    await asyncio.sleep(data.delay)
    if data.outcome == "conflict":
        raise errors.Conflict("That widget clashes with another.")
    if data.outcome == "crash" and CRASH["on"]:
        raise RuntimeError("the widget press broke")
    if data.outcome == "busy":
        return JSONResponse({"detail": "try later"}, status_code=503)
    if data.outcome == "response":
        return JSONResponse(
            {"id": widget_id, "name": data.name},
            status_code=201,
            headers={"Location": f"/v1/test-widgets/{widget_id}", "X-Not-Kept": "1"},
        )
    return WidgetRead(id=widget_id, name=data.name)


@pytest.fixture
async def widgets(
    database: Database, raw_db: asyncpg.Connection
) -> AsyncIterator[asyncpg.Connection]:
    """The table the test route writes to; dropped afterwards (the schema stays the migrations')."""
    await raw_db.execute(
        "CREATE TABLE IF NOT EXISTS test_widget (id bigserial PRIMARY KEY, name text NOT NULL)"
    )
    yield raw_db
    await raw_db.execute("DROP TABLE IF EXISTS test_widget")


@pytest.fixture
async def api(
    settings: Settings, database: Database, database_url: str, widgets: asyncpg.Connection
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus the test route, over ASGI (500s come back as responses).

    Two real customers sign in; ``X-Test-User`` picks whose token a request carries.
    """
    app: FastAPI = create_app(settings, database_url=database_url)
    app.include_router(router)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            for name in USERS:
                USERS[name] = (await signed_in(c, database, settings)).headers
            yield c
    CRASH["on"] = False


USERS: dict[str, dict[str, str]] = {"u1": {}, "alice": {}, "bob": {}}


async def _post(
    api: httpx.AsyncClient, body: Mapping[str, object], key: str | None = "key-1", user: str = "u1"
) -> httpx.Response:
    headers = dict(USERS[user])
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.post("/v1/test-widgets", json=body, headers=headers)


async def _count(raw_db: asyncpg.Connection, table: str = "test_widget") -> int:
    return int(await raw_db.fetchval(f"SELECT count(*) FROM {table}"))


async def test_twenty_concurrent_duplicates_make_exactly_one_widget(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    body = {"name": "sprocket", "delay": 0.3}
    responses = await asyncio.gather(*(_post(api, body) for _ in range(20)))

    assert await _count(widgets) == 1
    created = [r for r in responses if r.status_code == 201]
    busy = [r for r in responses if r.status_code == 409]
    assert len(created) + len(busy) == 20
    assert len([r for r in created if "idempotent-replayed" not in r.headers]) == 1
    assert all(r.json()["code"] == "idempotency_key_in_use" for r in busy)
    assert all(r.headers["content-type"] == "application/problem+json" for r in busy)
    first = next(r for r in created if "idempotent-replayed" not in r.headers)
    assert all(r.content == first.content for r in created)

    later = await _post(api, body)
    assert later.status_code == 201
    assert later.headers["idempotent-replayed"] == "true"
    assert "ratelimit-remaining" not in later.headers  # per-request headers are never stored
    assert later.content == first.content
    assert later.headers["content-type"] == "application/json"
    assert await _count(widgets) == 1


async def test_a_replay_spends_no_rate_quota(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    first = await _post(api, {"name": "cog"}, key="quota-1")
    assert first.headers["ratelimit-remaining"] == "99"
    for _ in range(3):
        replay = await _post(api, {"name": "cog"}, key="quota-1")
        assert replay.headers["idempotent-replayed"] == "true"
    fresh = await _post(api, {"name": "cog"}, key="quota-2")
    assert fresh.headers["ratelimit-remaining"] == "98"


async def test_same_key_with_a_different_body_is_422(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    first = await _post(api, {"name": "cog"})
    assert first.status_code == 201
    other = await _post(api, {"name": "gear"})
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert await _count(widgets) == 1


async def test_the_body_fingerprint_is_canonical(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    headers = {**USERS["u1"], "Idempotency-Key": "canon", "Content-Type": "application/json"}
    one = await api.post("/v1/test-widgets", content=b'{"name":"cog","delay":0}', headers=headers)
    two = await api.post(
        "/v1/test-widgets", content=b'{ "delay": 0 ,\n "name": "cog" }', headers=headers
    )
    assert (one.status_code, two.status_code) == (201, 201)
    assert two.headers["idempotent-replayed"] == "true"
    assert await _count(widgets) == 1


async def test_keys_are_scoped_per_caller(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    a = await _post(api, {"name": "cog"}, user="alice")
    b = await _post(api, {"name": "cog"}, user="bob")
    assert (a.status_code, b.status_code) == (201, 201)
    assert "idempotent-replayed" not in b.headers
    assert await _count(widgets) == 2


async def test_without_a_key_every_request_runs(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    for _ in range(2):
        response = await _post(api, {"name": "cog"}, key=None)
        assert response.status_code == 201
    assert await _count(widgets) == 2
    assert await _count(widgets, "idempotency_key") == 0


async def test_a_client_error_is_stored_and_replayed_without_effects(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    body = {"name": "clash", "outcome": "conflict"}
    first = await _post(api, body)
    assert first.status_code == 409
    assert first.json()["code"] == "conflict"
    again = await _post(api, body)
    assert again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _count(widgets) == 0  # the operation's insert was rolled back


async def test_a_server_error_is_not_stored_and_rolls_back_with_the_key(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    body = {"name": "fragile", "outcome": "crash"}
    CRASH["on"] = True
    failed = await _post(api, body)
    assert failed.status_code == 500
    assert await _count(widgets) == 0
    assert await _count(widgets, "idempotency_key") == 0

    CRASH["on"] = False  # the bug is fixed; the client retries with the same key
    retried = await _post(api, body)
    assert retried.status_code == 201
    assert "idempotent-replayed" not in retried.headers
    assert await _count(widgets) == 1


async def test_a_server_error_response_releases_the_key(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    busy = await _post(api, {"name": "cog", "outcome": "busy"})
    assert busy.status_code == 503
    assert await _count(widgets, "idempotency_key") == 0
    again = await _post(api, {"name": "cog", "outcome": "busy"})
    assert "idempotent-replayed" not in again.headers


async def test_a_ready_response_keeps_its_location_header(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    body = {"name": "cog", "outcome": "response"}
    first = await _post(api, body)
    replay = await _post(api, body)
    assert replay.status_code == 201
    assert replay.headers["location"] == first.headers["location"]
    assert "x-not-kept" not in replay.headers
    assert replay.content == first.content


async def test_an_expired_key_runs_again(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    first = await _post(api, {"name": "cog"})
    await widgets.execute("UPDATE idempotency_key SET created_at = now() - interval '25 hours'")
    second = await _post(api, {"name": "gear"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["name"] == "gear"
    assert await _count(widgets) == 2
    assert await _count(widgets, "idempotency_key") == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
async def test_a_malformed_key_is_rejected(
    api: httpx.AsyncClient, widgets: asyncpg.Connection, key: str
) -> None:
    response = await _post(api, {"name": "cog"}, key=key)
    assert response.status_code == 400  # a bad header, not a bad body (issue 8)
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "bad_request"
    assert await _count(widgets) == 0


async def test_the_longest_key_is_accepted(
    api: httpx.AsyncClient, widgets: asyncpg.Connection
) -> None:
    response = await _post(api, {"name": "cog"}, key="k" * 255)
    assert response.status_code == 201


async def test_cleanup_job_deletes_keys_older_than_a_day(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    rows = [
        ("u", f"old-{i}", "f" * 64, "POST", "/v1/x", 201, "{}", b"{}", timedelta(hours=25))
        for i in range(3)
    ] + [("u", "fresh", "f" * 64, "POST", "/v1/x", 201, "{}", b"{}", timedelta(hours=1))]
    await raw_db.executemany(
        """INSERT INTO idempotency_key (principal, key, fingerprint, method, path,
               response_status, response_headers, response_body, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, now() - $9::interval)""",
        rows,
    )
    async with database.transaction() as tx:
        ctx = JobContext(tx=tx, job_id=0, attempt=1, resources={})
        await keys.prune_keys.handler(ctx, {"batch": 2})
        await tx.commit()
    # A full batch enqueues a follow-up job for the rest.
    assert await raw_db.fetchval("SELECT count(*) FROM idempotency_key") == 2
    assert (
        await raw_db.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'idempotency.prune'"
        )
        == 1
    )
    async with database.transaction() as tx:
        ctx = JobContext(tx=tx, job_id=0, attempt=1, resources={})
        await keys.prune_keys.handler(ctx, {})
        await tx.commit()
    remaining = await raw_db.fetch("SELECT key FROM idempotency_key")
    assert [r["key"] for r in remaining] == ["fresh"]
    assert keys.prune_keys.schedule is not None


def test_fingerprint_covers_method_path_and_body() -> None:
    body = orjson.dumps({"a": 1, "b": [1, 2]})
    base = fingerprint("POST", "/v1/orders", body)
    assert base == fingerprint("post", "/v1/orders", b'{"b":[1,2],"a":1}')
    assert base != fingerprint("POST", "/v1/orders/1/pay", body)
    assert base != fingerprint("POST", "/v1/orders", b'{"a":2,"b":[1,2]}')
    assert fingerprint("POST", "/v1/x", b"not json") != fingerprint("POST", "/v1/x", b"not json!")
