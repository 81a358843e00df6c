"""Every session of an orderly process names it (pg_stat_activity, `migrate downgrade`'s check)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
from asgi_lifespan import LifespanManager

from orderly import migrate
from orderly.core.db import with_application_name
from orderly.main import create_app
from tests.conftest import make_settings


def test_the_name_joins_or_replaces_the_url_query() -> None:
    socket = "postgresql://postgres:@/postgres?host=/tmp/pg"
    assert with_application_name(socket, "orderly-api") == (
        "postgresql://postgres:@/postgres?host=/tmp/pg&application_name=orderly-api"
    )
    named = "postgresql://u:p%40ss@db:5432/shop?application_name=psql&sslmode=require"
    assert with_application_name(named, "orderly-worker") == (
        "postgresql://u:p%40ss@db:5432/shop?sslmode=require&application_name=orderly-worker"
    )


async def _names(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """SELECT application_name FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()"""
    )
    return sorted(row["application_name"] for row in rows)


async def test_an_app_with_its_worker_names_every_session(
    empty_database_url: str, tmp_path: Path
) -> None:
    """The pool, PgQueuer's pool and the flag listener all say orderly-serve."""
    url = empty_database_url
    await asyncio.to_thread(migrate.upgrade, url, "head")
    app = create_app(make_settings(url, tmp_path), database_url=url, run_worker=True)
    conn = await asyncpg.connect(url)
    try:
        async with LifespanManager(app):
            # Pool, flag listener, PgQueuer's pool (and its listener): wait for all to connect.
            deadline = time.monotonic() + 15
            names = await _names(conn)
            while len(names) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                names = await _names(conn)
            assert len(names) >= 4, names
            assert set(names) == {"orderly-serve"}, names
    finally:
        await conn.close()
