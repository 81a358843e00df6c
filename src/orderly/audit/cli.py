"""What ``orderly audit verify`` runs."""

from __future__ import annotations

from orderly.audit import repository, service
from orderly.audit.schemas import ChainReport
from orderly.core.db import Database


async def verify(database_url: str) -> ChainReport:
    """Verify the whole chain in one read-only, repeatable-read snapshot."""
    database = Database(database_url, pool_size=1, application_name="orderly-cli")
    try:
        async with database.transaction() as tx:
            # Batches read while appends go on must all see one consistent chain.
            await repository.read_only_snapshot(tx)
            return await service.verify_chain(tx)
    finally:
        await database.dispose()
