"""GET /v1/admin/audit-events: admins only, newest first, cursor-paginated, filterable."""

from __future__ import annotations

import httpx

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.support.accounts import signed_in


async def test_admin_pages_through_events(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    for role in ("staff", "customer", "staff"):
        response = await client.patch(
            f"/v1/users/{customer.id}/role", json={"role": role}, headers=admin.headers
        )
        assert response.status_code == 200
    # 2 user.created (the test users) + 3 role changes
    first = await client.get("/v1/admin/audit-events?limit=2", headers=admin.headers)
    assert first.status_code == 200
    page = first.json()
    assert [e["seq"] for e in page["data"]] == [5, 4]
    assert page["data"][0]["action"] == "user.role_changed"
    assert page["data"][0]["actor_id"] == str(admin.id)
    assert page["data"][0]["details"] == {"from": "customer", "to": "staff"}
    seen = [e["seq"] for e in page["data"]]
    while page["next_cursor"]:
        response = await client.get(
            f"/v1/admin/audit-events?limit=2&cursor={page['next_cursor']}", headers=admin.headers
        )
        page = response.json()
        seen += [e["seq"] for e in page["data"]]
    assert seen == [5, 4, 3, 2, 1]

    filtered = await client.get(
        "/v1/admin/audit-events",
        params={"action": "user.role_changed", "target_id": str(customer.id)},
        headers=admin.headers,
    )
    assert [e["seq"] for e in filtered.json()["data"]] == [5, 4, 3]


async def test_non_admins_are_refused(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    assert (await client.get("/v1/admin/audit-events")).status_code == 401
    for role in (Role.customer, Role.staff):
        user = await signed_in(client, database, settings, role)
        response = await client.get("/v1/admin/audit-events", headers=user.headers)
        assert response.status_code == 403


async def test_malformed_cursor_is_422(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    response = await client.get("/v1/admin/audit-events?cursor=e30", headers=admin.headers)
    assert response.status_code == 422
