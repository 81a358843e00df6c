"""Brute-force protection: failures per account and client, per client IP, a progressive
delay per account (so a stranger cannot lock the owner out), generic errors, timing."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from orderly.accounts.sessions import DELAY_MAX_SECONDS, guess_delay
from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, PASSWORD, create_user, unique_email

WRONG = "definitely-not-the-password"


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/token", json={"email": email, "password": password})


def client_for(app: FastAPI, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def make_app(database: Database, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    """Build apps with extra settings (several may share one Redis, like a fleet)."""
    managers: list[tuple[FastAPI, LifespanManager]] = []

    async def build(**overrides: Any) -> tuple[FastAPI, Settings]:
        app_settings = make_settings(database_url, tmp_path, **{**CHEAP_HASHING, **overrides})
        application = create_app(app_settings, database_url=database_url)
        manager = LifespanManager(application)
        await manager.__aenter__()
        managers.append((application, manager))
        return application, app_settings

    yield build
    for application, manager in reversed(managers):
        limits = getattr(application.state, "limits", None)
        if limits is not None:
            await limits.close()
        await manager.__aexit__(None, None, None)


async def test_ten_wrong_passwords_lock_that_client_out_even_with_the_right_one(
    backend_client: tuple[httpx.AsyncClient, Settings],
    database: Database,
    raw_db: asyncpg.Connection,
) -> None:
    client, settings = backend_client
    assert settings.login_rate_limit == "10/15minutes"  # the product default
    email = unique_email()
    await create_user(database, settings, email=email)

    statuses = [(await attempt(client, email, WRONG)).status_code for _ in range(10)]
    assert statuses == [401] * 9 + [429]

    locked = await attempt(client, email, PASSWORD)
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"
    retry_after = int(locked.headers["retry-after"])
    assert 0 < retry_after <= 15 * 60
    assert "access_token" not in locked.text

    failures = await raw_db.fetchval(
        "SELECT count(*) FROM audit_event WHERE action = 'auth.login_failed'"
    )
    assert failures == 10


async def test_the_lock_lifts_when_the_window_passes(make_app: Any, database: Database) -> None:
    app, settings = await make_app(login_rate_limit="3/2seconds")
    email = unique_email()
    await create_user(database, settings, email=email)
    async with client_for(app, "10.0.0.1") as client:
        for _ in range(3):
            await attempt(client, email, WRONG)
        assert (await attempt(client, email, PASSWORD)).status_code == 429
        await asyncio.sleep(2.2)
        assert (await attempt(client, email, PASSWORD)).status_code == 200


async def test_a_successful_login_clears_the_account_counter(
    make_app: Any, database: Database
) -> None:
    app, settings = await make_app(login_rate_limit="3/minute")
    email = unique_email()
    await create_user(database, settings, email=email)
    async with client_for(app, "10.0.0.2") as client:
        for _ in range(2):
            assert (await attempt(client, email, WRONG)).status_code == 401
        assert (await attempt(client, email, PASSWORD)).status_code == 200
        for _ in range(2):
            assert (await attempt(client, email, WRONG)).status_code == 401


async def test_failures_count_per_client_ip_across_accounts(
    make_app: Any, database: Database
) -> None:
    app, settings = await make_app(login_rate_limit="2/minute")  # per IP: 5 x 2 = 10
    emails = [unique_email() for _ in range(6)]
    for email in emails:
        await create_user(database, settings, email=email)
    async with client_for(app, "203.0.113.7") as attacker:
        statuses = []
        for email in emails[:5]:
            statuses.append((await attempt(attacker, email, WRONG)).status_code)
            statuses.append((await attempt(attacker, email, WRONG)).status_code)
        # Each account's own allowance (2) is used up on its second failure.
        assert statuses == [401, 429] * 4 + [401, 429]
        # The IP has failed 10 times: even a fresh account with the right password is refused.
        blocked = await attempt(attacker, emails[5], PASSWORD)
        assert blocked.status_code == 429
        assert "retry-after" in blocked.headers
    async with client_for(app, "198.51.100.9") as someone_else:
        assert (await attempt(someone_else, emails[5], PASSWORD)).status_code == 200


async def test_a_strangers_failures_do_not_lock_the_owner_out(
    make_app: Any, database: Database
) -> None:
    app, settings = await make_app(login_rate_limit="3/15minutes")
    email = unique_email()
    await create_user(database, settings, email=email)
    async with client_for(app, "203.0.113.50") as stranger:
        statuses = [(await attempt(stranger, email, WRONG)).status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        # Guessing stops for the stranger: not even the right password gets through.
        assert (await attempt(stranger, email, PASSWORD)).status_code == 429
    async with client_for(app, "198.51.100.20") as owner:
        assert (await attempt(owner, email, PASSWORD)).status_code == 200
    async with client_for(app, "192.0.2.77") as another_stranger:
        # A second address gets its own allowance, but the account now answers more slowly.
        assert (await attempt(another_stranger, email, WRONG)).status_code == 401


def test_the_delay_grows_with_the_accounts_failures_and_is_bounded() -> None:
    assert [guess_delay(failures, 10) for failures in (0, 9, 10, 11, 12)] == [
        0.0,
        0.0,
        0.25,
        0.5,
        1.0,
    ]
    assert guess_delay(10_000, 10) == DELAY_MAX_SECONDS


async def test_instances_sharing_redis_share_the_limit(
    make_app: Any, database: Database, redis_url: str
) -> None:
    first, settings = await make_app(login_rate_limit="4/minute", redis_url=redis_url)
    second, _ = await make_app(login_rate_limit="4/minute", redis_url=redis_url)
    email = unique_email()
    await create_user(database, settings, email=email)
    # One client behind a load balancer, reaching both instances.
    async with client_for(first, "10.1.0.1") as a, client_for(second, "10.1.0.1") as b:
        assert (await attempt(a, email, WRONG)).status_code == 401
        assert (await attempt(b, email, WRONG)).status_code == 401
        assert (await attempt(a, email, WRONG)).status_code == 401
        assert (await attempt(b, email, WRONG)).status_code == 429
        assert (await attempt(a, email, PASSWORD)).status_code == 429


async def test_unknown_email_and_wrong_password_look_and_take_the_same(
    make_app: Any, database: Database
) -> None:
    # A realistic hashing cost, so a skipped hash on one path would show in the timing.
    app, settings = await make_app(
        login_rate_limit="1000/minute", password_hash_time_cost=2, password_hash_memory_kib=19456
    )
    email = unique_email()
    await create_user(database, settings, email=email)
    timings: dict[str, list[float]] = {"unknown": [], "wrong": []}
    bodies: dict[str, set[str]] = {"unknown": set(), "wrong": set()}
    async with client_for(app, "10.2.0.1") as client:
        for i in range(24):
            kind = "unknown" if i % 2 else "wrong"
            target = unique_email("nobody") if kind == "unknown" else email
            started = time.perf_counter()
            response = await attempt(client, target, WRONG)
            timings[kind].append(time.perf_counter() - started)
            assert response.status_code == 401
            body = response.json()
            bodies[kind].add(f"{body['title']}|{body['detail']}|{body['code']}")
    assert (
        bodies["unknown"]
        == bodies["wrong"]
        == {"Authentication required|Invalid e-mail or password.|unauthorized"}
    )
    unknown = statistics.median(timings["unknown"][2:])
    wrong = statistics.median(timings["wrong"][2:])
    # Skipping the dummy hash would make the unknown path ~10x faster; load noise is far less.
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


async def test_a_burst_of_parallel_guesses_gets_no_more_than_the_allowance(
    make_app: Any, database: Database, raw_db: asyncpg.Connection
) -> None:
    app, settings = await make_app(login_rate_limit="5/minute")
    email = unique_email()
    await create_user(database, settings, email=email)
    async with client_for(app, "10.3.0.1") as client:
        responses = await asyncio.gather(*(attempt(client, email, WRONG) for _ in range(25)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 4 + [429] * 21
    failures = await raw_db.fetchval(
        "SELECT count(*) FROM audit_event WHERE action = 'auth.login_failed'"
    )
    assert failures == 5  # exactly the allowance was checked against the password


async def test_login_outcomes_are_counted_in_metrics(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    def value(text: str, outcome: str) -> float:
        match = re.search(rf'orderly_login_attempts_total{{outcome="{outcome}"}} (\S+)', text)
        return float(match.group(1)) if match else 0.0

    before = (await client.get("/metrics")).text
    email = unique_email()
    await create_user(database, settings, email=email)
    await attempt(client, email, WRONG)
    await attempt(client, email, PASSWORD)
    after = (await client.get("/metrics")).text
    assert value(after, "failed") == value(before, "failed") + 1
    assert value(after, "succeeded") == value(before, "succeeded") + 1


async def test_with_redis_down_logins_fail_closed_and_tokens_still_work(
    make_app: Any, database: Database
) -> None:
    secret = "s" * 48
    healthy, settings = await make_app(jwt_secret=secret)
    broken, _ = await make_app(
        jwt_secret=secret,
        encryption_keys=settings.encryption_keys.get_secret_value()
        if settings.encryption_keys
        else None,
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
    )
    email = unique_email()
    await create_user(database, settings, email=email)
    async with client_for(healthy, "10.4.0.1") as ok, client_for(broken, "10.4.0.1") as down:
        refused = await attempt(down, email, PASSWORD)
        assert refused.status_code == 503  # never an unlimited password check
        assert refused.json()["code"] == "service_unavailable"
        tokens = (await attempt(ok, email, PASSWORD)).json()
        me = await down.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status_code == 200  # the auth cache degrades to the database
