"""Orders over HTTP on real PostgreSQL: reservation races, idempotency, state machine."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, signed_in
from tests.support.shop import ADDRESS, create_product, order_body


async def test_hundred_concurrent_orders_for_thirty_units(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customers = [await signed_in(client, database, settings) for _ in range(10)]
    product = await create_product(client, staff.headers, stock=30)

    responses = await asyncio.gather(
        *[
            client.post(
                "/v1/orders",
                json=order_body((product["id"], 1)),
                headers=customers[i % 10].headers,
            )
            for i in range(100)
        ]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 30
    assert statuses.count(409) == 70
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"out_of_stock"}
    pid = uuid.UUID(product["id"])
    assert await raw_db.fetchval("SELECT stock FROM product WHERE id = $1", pid) == 0
    moves = await raw_db.fetchval(
        "SELECT count(*) FROM stock_movement WHERE product_id = $1 AND order_id IS NOT NULL", pid
    )
    assert moves == 30
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order") == 30


async def test_two_item_order_with_a_short_line_reserves_nothing(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings)
    plenty = await create_product(client, staff.headers, stock=10)
    short = await create_product(client, staff.headers, stock=1)
    response = await client.post(
        "/v1/orders",
        json=order_body((plenty["id"], 2), (short["id"], 2)),
        headers=customer.headers,
    )
    assert response.status_code == 409
    assert response.json()["code"] == "out_of_stock"
    assert short["id"] in response.json()["detail"]
    stock = await raw_db.fetchval(
        "SELECT stock FROM product WHERE id = $1", uuid.UUID(plenty["id"])
    )
    assert stock == 10
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order") == 0
    assert await raw_db.fetchval("SELECT count(*) FROM pgqueuer") == 0


async def test_one_idempotency_key_raced_twenty_times_makes_one_order(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings)
    product = await create_product(client, staff.headers, stock=100)
    headers = {**customer.headers, "Idempotency-Key": "order-attempt-1"}
    body = order_body((product["id"], 2))

    responses = await asyncio.gather(
        *[client.post("/v1/orders", json=body, headers=headers) for _ in range(20)]
    )
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order") == 1
    created = [r for r in responses if r.status_code == 201]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_use) == 20
    assert created
    assert {r.json()["code"] for r in in_use} <= {"idempotency_key_in_use"}
    first_id = created[0].json()["id"]
    assert all(r.json()["id"] == first_id for r in created)

    later = await client.post("/v1/orders", json=body, headers=headers)
    assert later.status_code == 201
    assert later.headers["idempotent-replayed"] == "true"
    assert later.json() == created[0].json()

    other = await client.post("/v1/orders", json=order_body((product["id"], 3)), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    stock = await raw_db.fetchval(
        "SELECT stock FROM product WHERE id = $1", uuid.UUID(product["id"])
    )
    assert stock == 98


async def test_order_reads_are_private_and_the_address_is_encrypted(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    alice = await signed_in(client, database, settings)
    bob = await signed_in(client, database, settings)
    product = await create_product(client, staff.headers, stock=5)
    placed = await client.post(
        "/v1/orders", json=order_body((product["id"], 1)), headers=alice.headers
    )
    assert placed.status_code == 201
    order = placed.json()
    assert order["status"] == "pending"
    assert order["total_cents"] == 1250
    assert order["shipping_address"]["name"] == ADDRESS["name"]

    assert (await client.get(f"/v1/orders/{order['id']}", headers=alice.headers)).status_code == 200
    assert (await client.get(f"/v1/orders/{order['id']}", headers=bob.headers)).status_code == 404
    staff_view = await client.get(f"/v1/orders/{order['id']}", headers=staff.headers)
    assert staff_view.status_code == 200
    assert (await client.get("/v1/orders", headers=bob.headers)).json()["data"] == []
    listed = await client.get("/v1/orders?status=pending", headers=staff.headers)
    assert [o["id"] for o in listed.json()["data"]] == [order["id"]]

    stored = await raw_db.fetchval("SELECT shipping_address FROM sales_order")
    assert ADDRESS["name"] not in stored
    assert ADDRESS["line1"] not in stored


async def test_cancel_returns_stock_and_a_second_cancel_is_409(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings)
    product = await create_product(client, staff.headers, stock=4)
    order = (
        await client.post(
            "/v1/orders", json=order_body((product["id"], 3)), headers=customer.headers
        )
    ).json()
    pid = uuid.UUID(product["id"])
    assert await raw_db.fetchval("SELECT stock FROM product WHERE id = $1", pid) == 1

    cancelled = await client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert await raw_db.fetchval("SELECT stock FROM product WHERE id = $1", pid) == 4

    again = await client.post(f"/v1/orders/{order['id']}/cancel", headers=customer.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"
    assert await raw_db.fetchval("SELECT stock FROM product WHERE id = $1", pid) == 4


async def test_full_queue_sheds_new_orders_before_doing_any_work(
    database: Database, database_url: str, tmp_path: Path, raw_db: asyncpg.Connection
) -> None:
    settings = make_settings(
        database_url, tmp_path, max_queue_depth=5, order_rate_limit="1000/minute", **CHEAP_HASHING
    )
    app = create_app(settings, database_url=database_url)  # no worker: jobs pile up
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            staff = await signed_in(client, database, settings, Role.staff)
            customer = await signed_in(client, database, settings)
            product = await create_product(client, staff.headers, stock=50)
            body = order_body((product["id"], 1))
            for _ in range(5):
                ok = await client.post("/v1/orders", json=body, headers=customer.headers)
                assert ok.status_code == 201
            shed = await client.post("/v1/orders", json=body, headers=customer.headers)
    assert shed.status_code == 503
    assert shed.json()["code"] == "overloaded"
    assert int(shed.headers["retry-after"]) >= 1
    assert await raw_db.fetchval("SELECT count(*) FROM sales_order") == 5


async def test_order_rate_limit_answers_429_with_headers(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, order_rate_limit="2/minute", **CHEAP_HASHING)
    app = create_app(settings, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            staff = await signed_in(client, database, settings, Role.staff)
            customer = await signed_in(client, database, settings)
            product = await create_product(client, staff.headers, stock=50)
            body = order_body((product["id"], 1))
            first = await client.post("/v1/orders", json=body, headers=customer.headers)
            assert first.headers["ratelimit-limit"] == "2"
            assert first.headers["ratelimit-remaining"] == "1"
            await client.post("/v1/orders", json=body, headers=customer.headers)
            limited = await client.post("/v1/orders", json=body, headers=customer.headers)
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["ratelimit-remaining"] == "0"


async def test_staff_cannot_place_orders_and_anonymous_cannot_either(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    product = await create_product(client, staff.headers, stock=5)
    body = order_body((product["id"], 1))
    assert (await client.post("/v1/orders", json=body)).status_code == 401
    assert (await client.post("/v1/orders", json=body, headers=staff.headers)).status_code == 403


async def test_order_body_rejects_unknown_and_privileged_fields(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    customer = await signed_in(client, database, settings)
    body = {**order_body((str(uuid.uuid4()), 1)), "status": "paid"}
    response = await client.post("/v1/orders", json=body, headers=customer.headers)
    assert response.status_code == 422
    assert {"field": "status", "message": "unknown field"} in response.json()["errors"]
