"""Accounts tests run with argon2id at a cheap (but real) cost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from orderly.config import Settings
from orderly.core.db import Database
from orderly.main import create_app
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Test settings with cheap password hashing."""
    return make_settings(database_url, tmp_path, **CHEAP_HASHING)


@pytest.fixture(params=["in-process", "redis"])
async def backend_client(
    request: pytest.FixtureRequest, database: Database, database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """A client on an app whose limits and cache live in-process, then on Redis."""
    overrides: dict[str, Any] = dict(CHEAP_HASHING)
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    app_settings = make_settings(database_url, tmp_path, **overrides)
    application = create_app(app_settings, database_url=database_url)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, app_settings
        limits = getattr(application.state, "limits", None)
        if limits is not None:
            await limits.close()
