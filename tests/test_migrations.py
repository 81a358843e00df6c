"""Migrations: a full round trip on an empty database, and no drift from the models."""

from __future__ import annotations

import asyncio

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from orderly import migrate
from orderly.core.schema import Base, sqlalchemy_url
from orderly.models import load_all


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


def test_upgrade_downgrade_upgrade_on_an_empty_database(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url, "head")
    at_head = asyncio.run(_tables(empty_database_url))
    assert {"pgqueuer", "alembic_version"} <= at_head
    assert migrate.current(empty_database_url).endswith("(head)")

    migrate.downgrade(empty_database_url, "base")
    assert asyncio.run(_tables(empty_database_url)) == {"alembic_version"}

    migrate.upgrade(empty_database_url, "head")
    assert asyncio.run(_tables(empty_database_url)) == at_head


def test_models_match_the_migrated_schema(database_url: str) -> None:
    """Autogenerate finds nothing to do: the ORM models and the migrations agree."""
    load_all()

    async def run() -> list[object]:
        engine = create_async_engine(sqlalchemy_url(database_url))
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(_diff)
        finally:
            await engine.dispose()

    assert asyncio.run(run()) == []


def _diff(conn: Connection) -> list[object]:
    def include_object(
        obj: object, name: str | None, kind: str, reflected: bool, _: object
    ) -> bool:
        # PgQueuer's tables come from its frozen SQL, not from our models; test_* tables are
        # scaffolding some tests create for themselves.
        return not (kind == "table" and name is not None and name.startswith(("pgqueuer", "test_")))

    context = MigrationContext.configure(
        conn, opts={"include_object": include_object, "compare_type": True}
    )
    return list(compare_metadata(context, Base.metadata))
