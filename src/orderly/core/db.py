"""Database plumbing: declarative base, engine and session factories.

One code path for both runtime modes: the URL is either the operator's
``ORDERLY_DATABASE_URL`` or the embedded PostgreSQL's socket URL. The caller
(a request or a job) owns the transaction; nothing here commits on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from sqlalchemy import MetaData, event, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Session as SyncSession

from orderly.core.telemetry import DB_POOL

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every orderly table (constraint names are deterministic)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def asyncpg_url(url: str) -> str:
    """Turn a plain libpq URL into the SQLAlchemy asyncpg form (the driver is ours to choose)."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url.removeprefix(prefix)
    raise ValueError("not a postgresql:// URL")


def libpq_url(url: str) -> str:
    """The plain libpq form of *url* (for asyncpg.connect, pgbench, psql)."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class Database:
    """An engine and its session factory, with pool metrics."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        statement_timeout_ms: int = 15_000,
        application_name: str = "orderly",
    ) -> None:
        self.url = libpq_url(url)
        self.engine: AsyncEngine = create_async_engine(
            asyncpg_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=5,
            # No pool_pre_ping: it costs round trips on every checkout (measured: it doubles
            # the round trips of a short transaction). A dropped connection is detected on
            # use instead, and SQLAlchemy then invalidates the whole pool.
            pool_recycle=1800,
            connect_args={
                "timeout": 5,
                "command_timeout": statement_timeout_ms / 1000 + 5,
                "server_settings": {
                    "application_name": application_name,
                    "statement_timeout": str(statement_timeout_ms),
                    "idle_in_transaction_session_timeout": "60000",
                },
            },
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._install_pool_metrics()

    def _install_pool_metrics(self) -> None:
        pool: Any = self.engine.sync_engine.pool

        def update(*_: Any) -> None:
            DB_POOL.labels("checked_out").set(pool.checkedout())
            DB_POOL.labels("idle").set(pool.checkedin())
            DB_POOL.labels("overflow").set(max(0, pool.overflow()))

        for name in ("checkout", "checkin", "connect"):
            event.listen(pool, name, update)
        update()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that rolls back unless the caller committed."""
        async with self.sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def ping(self, within_seconds: float = 2.0) -> None:
        """Raise unless the database answers a trivial query (server-side limit in seconds)."""
        async with self.engine.connect() as conn:
            await conn.execute(text(f"SET LOCAL statement_timeout = {int(within_seconds * 1000)}"))
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


async def raw_connection(conn: AsyncSession | AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under a session, inside the session's transaction.

    Hot paths and the job queue use it to run prepared SQL in the caller's own
    transaction; it must only be used from repositories and ``core.jobs``.
    """
    connection = await conn.connection() if isinstance(conn, AsyncSession) else conn
    proxied = await connection.get_raw_connection()
    adapter: Any = proxied.dbapi_connection
    # SQLAlchemy's asyncpg adapter opens the database transaction lazily, on the
    # first statement it runs itself. Open it now, or our statements would run
    # in autocommit and survive a rollback (tests/core/test_jobs.py proves they don't).
    if not adapter._started:
        await adapter._start_transaction()
    return cast(asyncpg.Connection, proxied.driver_connection)


_AFTER_COMMIT = "orderly.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run *callback* once the session's transaction commits (never on rollback).

    Caches are invalidated here rather than before the commit, so a concurrent
    reader cannot re-cache the old row between our invalidation and our commit.
    Callbacks wait in ``session.info``; two listeners installed once serve every
    session, so the hot path registers no events.
    """
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(SyncSession, "after_commit")
def _run_after_commit(session: SyncSession) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


@event.listens_for(SyncSession, "after_rollback")
def _drop_after_commit(session: SyncSession) -> None:
    session.info.pop(_AFTER_COMMIT, None)
