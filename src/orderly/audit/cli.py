"""What ``orderly audit verify`` runs."""

from __future__ import annotations

from orderly.audit import service
from orderly.audit.schemas import ChainReport
from orderly.core.db import Database


async def verify(database_url: str) -> ChainReport:
    """Verify the whole chain in one read-only, repeatable-read snapshot."""
    database = Database(database_url, pool_size=1, application_name="orderly-cli")
    try:
        async with database.session() as session:
            await session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
            return await service.verify_chain(session)
    finally:
        await database.dispose()
