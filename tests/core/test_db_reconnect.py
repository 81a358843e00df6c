"""A connection the server closed: replaced at BEGIN, 503 midway — never a 500."""

from __future__ import annotations

import asyncpg
import pytest

from orderly import errors
from orderly.core.db import Database


async def _backend_pid(database: Database) -> int:
    async with database.transaction() as tx:
        pid: int = await tx.fetchval("SELECT pg_backend_pid()")
        return pid


async def _terminate(raw_db: asyncpg.Connection, pid: int) -> None:
    """End a backend and wait until it is gone (its socket closed)."""
    assert await raw_db.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)


async def test_a_connection_killed_by_the_server_is_replaced_at_begin(
    database_url: str, raw_db: asyncpg.Connection
) -> None:
    database = Database(database_url, pool_size=1)
    try:
        pid = await _backend_pid(database)  # the pool's one connection, now idle
        await _terminate(raw_db, pid)
        # BEGIN on the dead connection fails; asyncpg detaches it from the pool as it
        # notices; the unit of work takes a fresh one and the statement runs.
        fresh = await _backend_pid(database)
        assert fresh != pid
    finally:
        await database.dispose()


async def test_a_connection_lost_mid_transaction_is_overloaded_and_rolls_back_cleanly(
    database_url: str, raw_db: asyncpg.Connection
) -> None:
    database = Database(database_url, pool_size=1)
    try:
        async with database.transaction() as tx:
            pid = await tx.fetchval("SELECT pg_backend_pid()")
            await _terminate(raw_db, pid)
            with pytest.raises(errors.Overloaded) as lost:
                await tx.fetchval("SELECT 1")
        # Leaving the block rolled back on the dead connection without a new error.
        # 503 + Retry-After for the client, the connection error kept as the cause (the
        # job worker waits for the database on it); the pool carries on with a new one.
        assert lost.value.headers == {"Retry-After": "1"}
        assert isinstance(lost.value.__cause__, asyncpg.InterfaceError | asyncpg.PostgresError)
        assert await _backend_pid(database) != pid
    finally:
        await database.dispose()
