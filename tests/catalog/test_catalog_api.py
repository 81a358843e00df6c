"""Catalog over HTTP: public cursor-paginated reads, cached product reads, staff writes."""

from __future__ import annotations

import httpx

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.factories import make_product
from tests.support.accounts import signed_in


async def test_product_list_pages_with_a_cursor(
    client: httpx.AsyncClient, database: Database
) -> None:
    made = [await make_product(database) for _ in range(3)]
    first = await client.get("/v1/products?limit=2")
    assert first.status_code == 200
    assert [p["id"] for p in first.json()["data"]] == [str(p.id) for p in made[:2]]
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await client.get(f"/v1/products?limit=2&cursor={cursor}")
    assert [p["id"] for p in second.json()["data"]] == [str(made[2].id)]
    assert second.json()["next_cursor"] is None
    bad = await client.get("/v1/products?cursor=not-a-cursor")
    assert bad.status_code == 422
    assert (await client.get("/v1/products?limit=101")).status_code == 422


async def test_a_public_product_read_may_be_cached_by_shared_caches_a_private_one_not(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    customer = await signed_in(client, database, settings)
    product = await make_product(database)
    public = await client.get(f"/v1/products/{product.id}")
    assert public.headers["cache-control"] == "public, max-age=2"  # the app cache's own TTL
    private = await client.get(f"/v1/products/{product.id}", headers=customer.headers)
    assert private.json() == public.json()
    assert private.headers["cache-control"] == "no-store"
    missing = await client.get("/v1/products/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    assert "public" not in missing.headers.get("cache-control", "")


async def test_product_read_reflects_a_change_after_commit(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    product = await make_product(database, stock=5)
    assert (await client.get(f"/v1/products/{product.id}")).json()["name"] == "Test widget"
    renamed = await client.patch(
        f"/v1/products/{product.id}", json={"name": "Renamed"}, headers=staff.headers
    )
    assert renamed.status_code == 200
    assert (await client.get(f"/v1/products/{product.id}")).json()["name"] == "Renamed"
    hidden = await client.patch(
        f"/v1/products/{product.id}", json={"active": False}, headers=staff.headers
    )
    assert hidden.status_code == 200
    assert (await client.get(f"/v1/products/{product.id}")).status_code == 404


async def test_stock_adjustments_are_staff_only_and_recorded(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings)
    product = await make_product(database, stock=2)
    body = {"delta": -3, "reason": "inventory count"}
    url = f"/v1/products/{product.id}/stock-adjustments"
    assert (await client.post(url, json=body, headers=customer.headers)).status_code == 403
    refused = await client.post(url, json=body, headers=staff.headers)
    assert refused.status_code == 409
    added = await client.post(url, json={"delta": 10, "reason": "delivery"}, headers=staff.headers)
    assert added.status_code == 201
    assert added.json()["stock_after"] == 12
    assert (await client.get(f"/v1/products/{product.id}")).json()["stock"] == 12
