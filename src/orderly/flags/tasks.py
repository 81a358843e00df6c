"""The worker's driver for release plans, guards and SLO fast-burn checks.

PgQueuer schedules have minute resolution; the guard interval is seconds
(``ORDERLY_GUARD_INTERVAL_SECONDS``), so each worker process runs this loop
beside its queue. Steps are conditional updates (see ``release.py``), so any
number of workers may run it at once.
"""

from __future__ import annotations

import asyncio
import time

from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.telemetry import get_logger
from orderly.flags import release, repository
from orderly.incidents import slo

log = get_logger(__name__)


async def drive(database: Database, settings: Settings) -> None:
    """Advance due stages about every second; check guards and SLOs every guard interval."""
    interval = settings.guard_interval_seconds
    tick = min(1.0, interval)
    next_guard = time.monotonic()
    while True:
        try:
            await release.advance_due(database)
            if time.monotonic() >= next_guard:
                next_guard = time.monotonic() + interval
                await release.check_guards(database)
                await slo.check_fast_burn(database)
                async with database.transaction() as tx:
                    await repository.prune_outcomes(tx, 2 * 86400)
                    await tx.commit()
        except Exception as exc:  # noqa: BLE001 - the next tick retries
            log.warning("flags_driver_failed", error=type(exc).__name__)
        await asyncio.sleep(tick)
