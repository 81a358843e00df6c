"""Ownership (404 for strangers), role changes (admin only, audited) and the auth cache."""

from __future__ import annotations

import asyncpg
import httpx

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.support.accounts import create_user, signed_in


async def test_customer_reading_another_customer_gets_404(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    alice = await signed_in(client, database, settings)
    bob = await signed_in(client, database, settings)
    own = await client.get(f"/v1/users/{alice.id}", headers=alice.headers)
    assert own.status_code == 200
    other = await client.get(f"/v1/users/{bob.id}", headers=alice.headers)
    assert other.status_code == 404
    assert other.json()["code"] == "not_found"
    # Indistinguishable from an id that does not exist.
    missing = await client.get(
        "/v1/users/00000000-0000-0000-0000-000000000000", headers=alice.headers
    )
    assert missing.status_code == 404
    assert missing.json()["detail"] == other.json()["detail"]


async def test_staff_and_admin_read_any_user(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    customer = await signed_in(client, database, settings)
    for role in (Role.staff, Role.admin):
        reader = await signed_in(client, database, settings, role)
        response = await client.get(f"/v1/users/{customer.id}", headers=reader.headers)
        assert response.status_code == 200
        assert response.json()["name"] == "Test User"


async def test_customer_and_staff_cannot_change_roles(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    customer = await signed_in(client, database, settings)
    staff = await signed_in(client, database, settings, Role.staff)
    for caller in (customer, staff):
        response = await client.patch(
            f"/v1/users/{caller.id}/role", json={"role": "admin"}, headers=caller.headers
        )
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
    me = await client.get("/v1/users/me", headers=customer.headers)
    assert me.json()["role"] == "customer"


async def test_admin_changes_a_role_and_it_is_audited(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    response = await client.patch(
        f"/v1/users/{customer.id}/role",
        json={"role": "staff"},
        headers={
            **admin.headers,
            "User-Agent": "pytest-admin",
            "X-Request-ID": "req-role-change-1",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["role"] == "staff"
    event = await raw_db.fetchrow("SELECT * FROM audit_event WHERE action = 'user.role_changed'")
    assert event is not None
    assert event["actor_id"] == admin.id
    assert event["actor_role"] == "admin"
    assert event["target_type"] == "user"
    assert event["target_id"] == str(customer.id)
    assert event["ip"] == "127.0.0.1"
    assert event["user_agent"] == "pytest-admin"
    assert event["request_id"] == "req-role-change-1"
    assert event["details"] == '{"to": "staff", "from": "customer"}'


async def test_role_change_rejects_unknown_roles_and_users(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    bad = await client.patch(
        f"/v1/users/{admin.id}/role", json={"role": "root"}, headers=admin.headers
    )
    assert bad.status_code == 422
    missing = await client.patch(
        "/v1/users/00000000-0000-0000-0000-000000000000/role",
        json={"role": "staff"},
        headers=admin.headers,
    )
    assert missing.status_code == 404


async def test_the_last_admin_cannot_be_demoted(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    response = await client.patch(
        f"/v1/users/{admin.id}/role", json={"role": "customer"}, headers=admin.headers
    )
    assert response.status_code == 409
    second = await signed_in(client, database, settings, Role.admin)
    demoted = await client.patch(
        f"/v1/users/{admin.id}/role", json={"role": "customer"}, headers=second.headers
    )
    assert demoted.status_code == 200


async def test_auth_lookups_are_cached_and_invalidated_on_role_change(
    backend_client: tuple[httpx.AsyncClient, Settings],
    database: Database,
    raw_db: asyncpg.Connection,
) -> None:
    client, settings = backend_client
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    other = await create_user(database, settings)
    assert (await client.get(f"/v1/users/{other}", headers=customer.headers)).status_code == 404

    # Behind the service's back the row changes: the cached role still answers (proof of the
    # cache), so no request hit the database for it.
    await raw_db.execute("UPDATE user_account SET role = 'staff' WHERE id = $1", customer.id)
    assert (await client.get(f"/v1/users/{other}", headers=customer.headers)).status_code == 404
    await raw_db.execute("UPDATE user_account SET role = 'customer' WHERE id = $1", customer.id)

    # Through the service, the change invalidates the cache: it applies to the very next request
    # with the same access token.
    promoted = await client.patch(
        f"/v1/users/{customer.id}/role", json={"role": "staff"}, headers=admin.headers
    )
    assert promoted.status_code == 200
    assert (await client.get(f"/v1/users/{other}", headers=customer.headers)).status_code == 200
    demoted = await client.patch(
        f"/v1/users/{customer.id}/role", json={"role": "customer"}, headers=admin.headers
    )
    assert demoted.status_code == 200
    assert (await client.get(f"/v1/users/{other}", headers=customer.headers)).status_code == 404


async def test_revocation_invalidates_cached_sessions(
    backend_client: tuple[httpx.AsyncClient, Settings], database: Database
) -> None:
    client, settings = backend_client
    user = await signed_in(client, database, settings)
    assert (await client.get("/v1/users/me", headers=user.headers)).status_code == 200  # cached
    assert (await client.post("/v1/auth/logout", headers=user.headers)).status_code == 204
    assert (await client.get("/v1/users/me", headers=user.headers)).status_code == 401
