"""Alembic, driven programmatically: ``orderly migrate``, ``orderly serve`` and tests."""

from __future__ import annotations

import io
from importlib.resources import files
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

import asyncpg
from alembic import command
from alembic.config import Config

from orderly.core.db import libpq_url


def alembic_config(database_url: str, *, stdout: TextIO | None = None) -> Config:
    """An Alembic config that points at orderly's migrations and *database_url*."""
    config = Config(stdout=stdout) if stdout is not None else Config()
    config.set_main_option("script_location", str(files("orderly") / "migrations"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to *revision*."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Revert migrations down to *revision* (``base`` empties the schema)."""
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str:
    """The revision the database is at, as Alembic prints it."""
    buffer = io.StringIO()
    command.current(alembic_config(database_url, stdout=buffer))
    return buffer.getvalue().strip()


def database_name(database_url: str) -> str:
    """The database *database_url* names (libpq's defaults: ``dbname=``, then the user)."""
    parts = urlsplit(libpq_url(database_url))
    query = parse_qs(parts.query)
    return (
        parts.path.lstrip("/")
        or next(iter(query.get("dbname", [])), "")
        or parts.username
        or "postgres"
    )


async def orderly_sessions(database_url: str) -> dict[str, int]:
    """Sessions of orderly processes on that database, by ``application_name`` (ours excluded).

    Every orderly process names its sessions ``orderly-…`` (api, worker, serve,
    cli, migrate; ``core/db.py``), so these are instances still running.
    """
    conn = await asyncpg.connect(
        libpq_url(database_url), timeout=10, server_settings={"application_name": "orderly-migrate"}
    )
    try:
        rows = await conn.fetch(
            """SELECT application_name, count(*) AS sessions FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND application_name LIKE 'orderly%'
                GROUP BY application_name ORDER BY application_name"""
        )
    finally:
        await conn.close()
    return {row["application_name"]: row["sessions"] for row in rows}
