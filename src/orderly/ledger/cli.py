"""What ``orderly audit verify`` runs for the ledger (the command itself lives in cli.py)."""

from __future__ import annotations

from orderly.core.db import Database
from orderly.ledger.service import LedgerReport, check_ledger


async def verify(database_url: str) -> LedgerReport:
    """Check every ledger invariant in one read-only, repeatable-read snapshot."""
    database = Database(database_url, pool_size=1, application_name="orderly-cli")
    try:
        async with database.transaction() as tx:
            await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return await check_ledger(tx)
    finally:
        await database.dispose()


def describe(report: LedgerReport, *, limit: int = 5) -> list[str]:
    """One printable line per violation (at most *limit*), for the command's output."""
    lines = [f"ledger {v.check}: {v.subject}: {v.detail}" for v in report.violations[:limit]]
    if len(report.violations) > limit:
        lines.append(f"… and {len(report.violations) - limit} more ledger violations")
    return lines
