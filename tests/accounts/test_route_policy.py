"""Every route declares who may call it; the role matrix checks each declaration for real."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from orderly.accounts.schemas import Role
from orderly.api.auth import (
    DENY_UNDECLARED,
    PUBLIC,
    PUBLIC_BY_DESIGN,
    AdminUser,
    CurrentUser,
    app_routes,
    route_policy,
    unguarded_routes,
)
from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app
from tests.support.accounts import create_user, login, unique_email


def test_every_route_of_the_app_declares_a_policy(settings: Settings, database_url: str) -> None:
    app = create_app(settings, database_url=database_url)
    assert unguarded_routes(app) == []
    paths = {route.path for route in app_routes(app)}
    # The public-by-design exceptions are named, not inferred: ops probes, metrics and docs.
    assert {"/livez", "/readyz", "/metrics", "/openapi.json", "/docs"} <= paths
    # Beyond /v1 only the ops console (cookie sessions; tests/console/test_console_http.py).
    outside = {p for p in paths if not p.startswith(("/v1/", "/console"))}
    assert outside <= PUBLIC_BY_DESIGN


def test_the_policy_check_fails_for_an_unguarded_route(
    settings: Settings, database_url: str
) -> None:
    app = create_app(settings, database_url=database_url)

    @app.get("/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    assert unguarded_routes(app) == ["GET /v1/forgotten"]


async def test_an_undeclared_route_under_v1_is_denied_at_runtime() -> None:
    router = APIRouter(prefix="/v1", dependencies=[DENY_UNDECLARED])

    @router.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    @router.get("/open", dependencies=[PUBLIC])
    async def open_route() -> dict[str, str]:
        return {"hello": "world"}

    app = FastAPI()
    from orderly.api import problems

    problems.install(app)
    app.include_router(router)
    assert unguarded_routes(app) == ["GET /v1/forgotten"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        denied = await client.get("/v1/forgotten")
        assert denied.status_code == 403
        assert "secret" not in denied.text
        assert (await client.get("/v1/open")).status_code == 200


def test_policies_combine_to_the_roles_every_declaration_admits() -> None:
    app = FastAPI()

    @app.get("/a")
    async def a(user: CurrentUser, admin: AdminUser) -> None:
        return None

    @app.get("/b", dependencies=[PUBLIC])
    async def b() -> None:
        return None

    routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    policy_a = route_policy(routes["/a"])
    assert policy_a is not None
    assert policy_a.roles == {Role.admin}
    policy_b = route_policy(routes["/b"])
    assert policy_b is not None
    assert policy_b.public


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


async def test_role_matrix(
    client: httpx.AsyncClient, app: FastAPI, database: Database, settings: Settings
) -> None:
    """Call every /v1 route as anonymous, customer, staff and admin; check 401/403 per policy."""
    accounts = {}
    for role in Role:
        email = unique_email(role.value)
        await create_user(database, settings, role, email=email)
        accounts[role] = email
    checked = 0
    for route in app_routes(app):
        if not route.path.startswith("/v1/"):
            continue
        policy = route.policy
        assert policy is not None, route.path
        for method in sorted(route.methods):
            path = _concrete(route.path)
            body = {} if method in {"POST", "PATCH", "PUT"} else None
            anonymous = await client.request(method, path, json=body)
            if policy.public:
                assert anonymous.status_code not in (401, 403), (method, route.path)
            else:
                assert anonymous.status_code == 401, (method, route.path, anonymous.text)
            for role, email in accounts.items():
                token = (await login(client, email))["access_token"]  # fresh: logout ends one
                response = await client.request(
                    method, path, json=body, headers={"Authorization": f"Bearer {token}"}
                )
                if policy.public or role in policy.roles:
                    assert response.status_code not in (401, 403), (method, route.path, role)
                    assert response.status_code < 500, (method, route.path, role, response.text)
                else:
                    assert response.status_code == 403, (method, route.path, role)
                checked += 1
    assert checked >= 3 * 8


@pytest.mark.parametrize("role", list(Role))
async def test_matrix_expectations_for_accounts_routes(
    client: httpx.AsyncClient, database: Database, settings: Settings, role: Role
) -> None:
    """The declared policies are the product's: only admins change roles or read the audit log."""
    email = unique_email(role.value)
    user_id = await create_user(database, settings, role, email=email)
    headers = {"Authorization": f"Bearer {(await login(client, email))['access_token']}"}
    audit = await client.get("/v1/admin/audit-events", headers=headers)
    change = await client.patch(f"/v1/users/{user_id}/role", json={"role": role}, headers=headers)
    expected = 200 if role == Role.admin else 403
    assert audit.status_code == expected
    assert change.status_code == expected
