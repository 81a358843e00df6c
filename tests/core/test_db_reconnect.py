"""A pooled connection the server closed is replaced at BEGIN, never answered with a 500."""

from __future__ import annotations

import asyncpg

from orderly.core.db import Database


async def _backend_pid(database: Database) -> int:
    async with database.transaction() as tx:
        pid: int = await tx.fetchval("SELECT pg_backend_pid()")
        return pid


async def test_a_connection_killed_by_the_server_is_replaced_at_begin(
    database_url: str, raw_db: asyncpg.Connection
) -> None:
    database = Database(database_url, pool_size=1)
    try:
        pid = await _backend_pid(database)  # the pool's one connection, now idle
        assert await raw_db.fetchval("SELECT pg_terminate_backend($1)", pid)
        # BEGIN on the dead connection fails; asyncpg detaches it from the pool as it
        # notices; the unit of work takes a fresh one and the statement runs.
        fresh = await _backend_pid(database)
        assert fresh != pid
    finally:
        await database.dispose()
