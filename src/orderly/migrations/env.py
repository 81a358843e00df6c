"""Alembic environment: the URL comes from orderly, never from alembic.ini."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, pool
from sqlalchemy.ext.asyncio import create_async_engine

from orderly.core.schema import Base, sqlalchemy_url
from orderly.models import load_all

load_all()
config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(
        sqlalchemy_url(url),
        poolclass=pool.NullPool,
        # Named like every orderly session, so a concurrent `migrate downgrade` sees it.
        connect_args={"server_settings": {"application_name": "orderly-migrate"}},
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run() -> None:
    """Run online migrations against the URL orderly put in the config attributes."""
    url = config.attributes.get("database_url")
    if url is None:
        from orderly.config import load_settings

        settings = load_settings()
        if settings.database_url is None:
            raise SystemExit("set ORDERLY_DATABASE_URL, or use `orderly migrate`")
        url = settings.database_url.get_secret_value()
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; use `orderly migrate`")
run()
