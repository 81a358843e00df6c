"""Database helpers for tests: create/drop databases, empty all tables."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orderly.core.db import libpq_url


def server_url(url: str, database: str) -> str:
    """*url* pointing at *database* (keeps host, credentials and ?host= socket queries)."""
    parts = urlsplit(libpq_url(url))
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(server_url(url, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(url: str, name: str) -> None:
    """CREATE DATABASE *name* on the server of *url*."""
    import asyncio

    asyncio.run(_admin(url, f'CREATE DATABASE "{name}"'))


def drop_database(url: str, name: str) -> None:
    """DROP DATABASE *name*, disconnecting stragglers."""
    import asyncio

    asyncio.run(_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def truncate_all(url: str) -> None:
    """Empty every table but Alembic's, so the next test starts clean."""
    conn = await asyncpg.connect(url)
    try:
        tables = await conn.fetch(
            """SELECT quote_ident(tablename) AS t FROM pg_tables
               WHERE schemaname = 'public' AND tablename <> 'alembic_version'"""
        )
        if tables:
            names = ", ".join(row["t"] for row in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
