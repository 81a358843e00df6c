"""``orderly user create --email E --role R --password-stdin`` bootstraps accounts."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from orderly.config import Settings
from orderly.core.db import Database
from tests.support.accounts import PASSWORD, login, unique_email
from tests.support.cli import run_orderly


def secrets_env(settings: Settings) -> dict[str, str]:
    assert settings.encryption_keys is not None
    return {
        "ORDERLY_ENCRYPTION_KEYS": settings.encryption_keys.get_secret_value(),
        "ORDERLY_PASSWORD_HASH_TIME_COST": str(settings.password_hash_time_cost),
        "ORDERLY_PASSWORD_HASH_MEMORY_KIB": str(settings.password_hash_memory_kib),
    }


@pytest.mark.slow
async def test_create_an_admin_from_stdin_then_log_in(
    client: httpx.AsyncClient,
    database: Database,
    database_url: str,
    settings: Settings,
    raw_db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    email = unique_email("root")
    result = run_orderly(
        "user", "create", "--email", email, "--role", "admin", "--password-stdin",
        database_url=database_url, data_dir=tmp_path, stdin=PASSWORD + "\n",
        **secrets_env(settings),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "created admin" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    row = await raw_db.fetchrow("SELECT id, role FROM user_account WHERE email = $1", email)
    assert row["role"] == "admin"
    event = await raw_db.fetchrow("SELECT * FROM audit_event WHERE action = 'user.created'")
    assert event["actor_role"] == "operator"
    assert event["target_id"] == str(row["id"])

    tokens = await login(client, email)
    audit = await client.get(
        "/v1/admin/audit-events", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert audit.status_code == 200


@pytest.mark.slow
async def test_usage_errors_exit_2_and_failures_exit_1(
    database: Database, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    env = secrets_env(settings)
    common = {"database_url": database_url, "data_dir": tmp_path}
    no_stdin_flag = run_orderly("user", "create", "--email", unique_email(), **common, **env)
    assert no_stdin_flag.returncode == 2
    assert "--password-stdin" in no_stdin_flag.stderr
    bad_role = run_orderly(
        "user", "create", "--email", unique_email(), "--role", "root", "--password-stdin",
        stdin=PASSWORD, **common, **env,
    )  # fmt: skip
    assert bad_role.returncode == 2
    weak = run_orderly(
        "user", "create", "--email", unique_email(), "--password-stdin",
        stdin="password12345\n", **common, **env,
    )  # fmt: skip
    assert weak.returncode == 1
    assert "too common" in weak.stderr
    assert "password12345" not in weak.stderr
    email = unique_email()
    args = ("user", "create", "--email", email, "--password-stdin")
    assert run_orderly(*args, stdin=PASSWORD, **common, **env).returncode == 0
    duplicate = run_orderly(*args, stdin=PASSWORD, **common, **env)
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
