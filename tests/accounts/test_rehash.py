"""Raising the argon2id cost rehashes each password at its owner's next login."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
from argon2 import extract_parameters
from asgi_lifespan import LifespanManager

from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app
from tests.conftest import make_settings
from tests.support.accounts import create_user, login, unique_email


async def test_login_rehashes_when_parameters_change(
    database: Database,
    database_url: str,
    settings: Settings,
    raw_db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    email = unique_email()
    user_id = await create_user(database, settings, email=email)
    before = await raw_db.fetchval("SELECT password_hash FROM user_account WHERE id = $1", user_id)
    assert extract_parameters(before).time_cost == settings.password_hash_time_cost == 1

    stronger = make_settings(
        database_url,
        tmp_path,
        encryption_keys=settings.encryption_keys.get_secret_value()
        if settings.encryption_keys
        else None,
        password_hash_time_cost=2,
        password_hash_memory_kib=2048,
    )
    app = create_app(stronger, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await login(client, email)
            after = await raw_db.fetchval(
                "SELECT password_hash FROM user_account WHERE id = $1", user_id
            )
            assert after != before
            parameters = extract_parameters(after)
            assert (parameters.time_cost, parameters.memory_cost) == (2, 2048)
            await login(client, email)  # the new hash verifies; no rehash loop
            again = await raw_db.fetchval(
                "SELECT password_hash FROM user_account WHERE id = $1", user_id
            )
            assert again == after
