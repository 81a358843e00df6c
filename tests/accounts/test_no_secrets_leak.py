"""No response, log line or audit event carries a password, token or key."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import structlog

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.telemetry import configure_logging
from tests.support.accounts import PASSWORD, signed_in, unique_email

# The loggers configure_logging touches besides the root (see orderly.core.telemetry).
_CONFIGURED_LOGGERS = (
    "uvicorn.access",
    "uvicorn.error",
    "pgqueuer",
    "asyncio",
    "httpx",
    "aiosmtplib",
    "alembic",
)


@pytest.fixture
def info_logs() -> Iterator[io.StringIO]:
    """JSON logs at INFO into a buffer, as production writes them to stdout.

    Logging is process-wide: the root logger's handlers (pytest's capture
    handlers among them), levels and structlog's configuration are put back
    exactly as found, so the next test logs where it expects.
    """
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in _CONFIGURED_LOGGERS)]
    saved = [(lg, lg.handlers[:], lg.level, lg.disabled, lg.propagate) for lg in loggers]
    structlog_config = structlog.get_config()
    buffer = io.StringIO()
    original = sys.stdout
    sys.stdout = buffer  # configure_logging binds the stream it finds now
    try:
        configure_logging("INFO", json=True)
    finally:
        sys.stdout = original
    try:
        yield buffer
    finally:
        structlog.configure(**structlog_config)
        for lg, handlers, level, disabled, propagate in saved:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.disabled, lg.propagate = disabled, propagate


async def test_flow_leaves_no_secret_behind(
    info_logs: io.StringIO,
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    raw_db: asyncpg.Connection,
) -> None:
    seen: list[str] = []
    issuing: list[str] = []

    async def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        text = f"{response.status_code} {dict(response.headers)} {response.text}"
        issued = url in ("/v1/auth/token", "/v1/auth/refresh") and response.status_code == 200
        # A successful token response carries its own new tokens by design; nothing else may.
        (issuing if issued else seen).append(text)
        return response

    email = unique_email()
    rejected_password = "password12345"
    other_password = "another long Passphrase 77"
    await call(
        "POST",
        "/v1/auth/register",
        json={"email": email, "password": rejected_password, "name": "X"},
    )
    created = await call(
        "POST", "/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "X"}
    )
    await call("POST", "/v1/auth/token", json={"email": email, "password": other_password})
    await call("POST", "/v1/auth/token", json={"email": unique_email(), "password": other_password})
    pair = (
        await call("POST", "/v1/auth/token", json={"email": email, "password": PASSWORD})
    ).json()
    auth = {"Authorization": f"Bearer {pair['access_token']}"}
    await call("GET", "/v1/users/me", headers=auth)
    second = (
        await call("POST", "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).json()
    await call("POST", "/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})  # reuse
    await call("GET", "/v1/users/me", headers={"Authorization": f"Bearer {second['access_token']}"})
    await call("GET", "/v1/users/me", headers={"Authorization": "Bearer forged.token.value"})
    admin = await signed_in(client, database, settings, Role.admin)
    user_id = created.json()["id"]
    await call("PATCH", f"/v1/users/{user_id}/role", json={"role": "staff"}, headers=admin.headers)
    await call("POST", "/v1/auth/logout", headers=admin.headers)

    secrets = {
        "password": PASSWORD,
        "rejected password": rejected_password,
        "wrong password": other_password,
        "access token": pair["access_token"],
        "refresh token": pair["refresh_token"],
        "second access token": second["access_token"],
        "second refresh token": second["refresh_token"],
        "admin token": admin.access_token,
        "jwt secret": settings.jwt_secret.get_secret_value() if settings.jwt_secret else "",
        "encryption key": settings.encryption_keys.get_secret_value()
        if settings.encryption_keys
        else "",
    }
    logs = info_logs.getvalue()
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "login_failed" for e in events)  # the logs were captured
    audit_rows = [str(dict(r)) for r in await raw_db.fetch("SELECT * FROM audit_event")]
    assert any("auth.login_failed" in row for row in audit_rows)
    haystacks = {"responses": "\n".join(seen), "logs": logs, "audit": "\n".join(audit_rows)}
    keys_and_passwords = {k: v for k, v in secrets.items() if "token" not in k}
    for name, value in keys_and_passwords.items():
        assert value not in "\n".join(issuing), f"{name} found in a token response"
    for where, text in haystacks.items():
        for name, value in secrets.items():
            assert value, name
            assert value not in text, f"{name} found in {where}"
