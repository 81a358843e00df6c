"""Register → token → users/me → refresh → logout, and refresh-token reuse detection."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from orderly.accounts import tasks
from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.jobs import JobContext
from tests.support.accounts import PASSWORD, unique_email


async def register(client: httpx.AsyncClient, email: str, **extra: object) -> httpx.Response:
    body = {"email": email, "password": PASSWORD, "name": "Ada Lovelace", **extra}
    return await client.post("/v1/auth/register", json=body)


async def test_register_token_me_refresh_logout(
    client: httpx.AsyncClient, raw_db: asyncpg.Connection
) -> None:
    email = unique_email("ada")
    created = await register(client, "  " + email.upper() + " ")
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == email  # normalised: trimmed, lower-case
    assert user["role"] == "customer"
    assert user["name"] == "Ada Lovelace"
    assert "password" not in created.text
    assert "password_hash" not in user

    token = await client.post("/v1/auth/token", json={"email": email.upper(), "password": PASSWORD})
    assert token.status_code == 200, token.text
    pair = token.json()
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    headers = {"Authorization": f"Bearer {pair['access_token']}"}

    me = await client.get("/v1/users/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]
    assert me.headers["cache-control"] == "no-store"

    refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != pair["refresh_token"]
    assert second["access_token"] != pair["access_token"]
    new_headers = {"Authorization": f"Bearer {second['access_token']}"}
    assert (await client.get("/v1/users/me", headers=new_headers)).status_code == 200

    # Refresh tokens are stored only as digests.
    stored = await raw_db.fetch("SELECT token_hash FROM refresh_token")
    assert len(stored) == 2
    assert all(pair["refresh_token"].encode() not in bytes(r["token_hash"]) for r in stored)

    out = await client.post("/v1/auth/logout", headers=new_headers)
    assert out.status_code == 204
    # The session is over: its refresh token and its access tokens stop working at once.
    again = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert again.status_code == 401
    assert (await client.get("/v1/users/me", headers=new_headers)).status_code == 401
    # A new login works.
    fresh = await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    assert fresh.status_code == 200


async def test_reusing_a_spent_refresh_token_revokes_the_family(
    client: httpx.AsyncClient, raw_db: asyncpg.Connection
) -> None:
    email = unique_email()
    assert (await register(client, email)).status_code == 201
    first = (
        await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})
    ).json()
    second = (
        await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()

    reused = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert reused.headers["content-type"] == "application/problem+json"
    assert reused.json()["code"] == "unauthorized"

    # The whole family is gone: the legitimate latest token and its access token too.
    latest = await client.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert latest.status_code == 401
    me = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {second['access_token']}"}
    )
    assert me.status_code == 401
    family = await raw_db.fetchrow("SELECT revoked_at, revoked_reason FROM refresh_family")
    assert family["revoked_at"] is not None
    assert family["revoked_reason"] == "refresh_token_reused"
    event = await raw_db.fetchrow(
        "SELECT action, target_type FROM audit_event WHERE action = 'auth.refresh_token_reused'"
    )
    assert event is not None
    assert event["target_type"] == "session"


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/refresh", json={"refresh_token": "not-a-token"})
    assert response.status_code == 401
    assert response.json()["detail"] == "The refresh token is invalid or has been revoked."


async def test_registration_rejects_privileged_and_unknown_fields(
    client: httpx.AsyncClient,
) -> None:
    for extra in ({"role": "admin"}, {"is_admin": True}, {"balance_cents": 100}):
        response = await register(client, unique_email(), **extra)
        assert response.status_code == 422, extra
        body = response.json()
        assert body["code"] == "validation_failed"
        assert body["errors"][0]["message"] == "unknown field"


async def test_password_policy(client: httpx.AsyncClient) -> None:
    cases = {
        "password12345": "is too common; choose another",  # 13 characters, in the list
        "QwertyUIOP123": "is too common; choose another",  # matched case-insensitively
        "short-pw-1": "must be at least 12 characters",
    }
    for password, message in cases.items():
        response = await client.post(
            "/v1/auth/register",
            json={"email": unique_email(), "password": password, "name": "N"},
        )
        assert response.status_code == 422, password
        assert response.json()["errors"] == [{"field": "password", "message": message}]
        assert password not in response.text


async def test_duplicate_email_is_409_whatever_the_case(client: httpx.AsyncClient) -> None:
    email = unique_email()
    assert (await register(client, email)).status_code == 201
    duplicate = await register(client, email.upper())
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "conflict"


async def test_invalid_email_is_422(client: httpx.AsyncClient) -> None:
    response = await register(client, "not-an-email")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "email"


async def test_racing_refreshes_of_one_token_end_the_session(client: httpx.AsyncClient) -> None:
    """Two uses of one refresh token at once: one wins, the other is reuse and revokes all."""
    email = unique_email()
    assert (await register(client, email)).status_code == 201
    pair = (await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD})).json()
    body = {"refresh_token": pair["refresh_token"]}
    first, second = await asyncio.gather(
        client.post("/v1/auth/refresh", json=body), client.post("/v1/auth/refresh", json=body)
    )
    assert sorted([first.status_code, second.status_code]) == [200, 401]
    winner = first if first.status_code == 200 else second
    after = await client.post(
        "/v1/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]}
    )
    assert after.status_code == 401


async def test_non_ascii_email_is_normalised_consistently(client: httpx.AsyncClient) -> None:
    created = await register(client, "ÄDA.Ünïcode@Example.COM")
    assert created.status_code == 201, created.text
    assert created.json()["email"] == "äda.ünïcode@example.com"
    token = await client.post(
        "/v1/auth/token", json={"email": "äda.ÜNÏCODE@example.com", "password": PASSWORD}
    )
    assert token.status_code == 200


async def test_pruning_forgets_expired_tokens_and_dead_sessions(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    raw_db: asyncpg.Connection,
) -> None:
    email = unique_email()
    assert (await register(client, email)).status_code == 201
    login = {"email": email, "password": PASSWORD}
    live = (await client.post("/v1/auth/token", json=login)).json()
    dead = (await client.post("/v1/auth/token", json=login)).json()
    await client.post(
        "/v1/auth/logout", headers={"Authorization": f"Bearer {dead['access_token']}"}
    )
    # Age the logged-out session past retention, and expire one token of the live session.
    await raw_db.execute(
        """UPDATE refresh_family SET revoked_at = now() - interval '40 days'
           WHERE revoked_at IS NOT NULL"""
    )
    rotated = (
        await client.post("/v1/auth/refresh", json={"refresh_token": live["refresh_token"]})
    ).json()
    await raw_db.execute(
        """UPDATE refresh_token SET expires_at = now() - interval '1 second'
           WHERE spent_at IS NOT NULL"""
    )
    async with database.transaction() as tx:
        ctx = JobContext(tx=tx, job_id=0, attempt=1, resources={Settings: settings})
        await tasks.prune_sessions.handler(ctx, {})
        await tx.commit()
    assert await raw_db.fetchval("SELECT count(*) FROM refresh_family") == 1
    assert await raw_db.fetchval("SELECT count(*) FROM refresh_token") == 1
    still = await client.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert still.status_code == 200
