"""Start and stop progressive delivery in a process (composition roots call this).

Every process: the flag runtime (snapshot kept fresh) and, when recording, its
flag outcomes (``flags/outcomes.py``). HTTP processes, when recording:
per-minute request counts for SLOs (``incidents/slo.py``). Worker processes
(and ``orderly serve``): the driver of release plans, guards and SLO
fast-burn checks.

Whether a process records is decided here and nowhere else, from
``ORDERLY_RECORD_REQUEST_OUTCOMES`` (on by default). Off, neither recorder is
built: the guard and ``/v1/admin/slos`` see no traffic from that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from orderly.config import Settings
from orderly.core.db import Database
from orderly.flags import client
from orderly.flags.outcomes import OutcomeRecorder
from orderly.flags.runtime import FlagRuntime
from orderly.flags.tasks import drive
from orderly.incidents.slo import RequestCounter


@dataclasses.dataclass
class Delivery:
    """What one process runs for flags, guards and SLOs."""

    flags: FlagRuntime | None
    outcomes: OutcomeRecorder | None
    requests: RequestCounter | None
    driver: asyncio.Task[None] | None

    async def stop(self) -> None:
        """Stop everything started, flushing counts."""
        if self.driver is not None:
            self.driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.driver
        if self.requests is not None:
            await self.requests.stop()
        if self.outcomes is not None:
            await self.outcomes.stop()
        if self.flags is not None:
            client.uninstall(self.flags)
            await self.flags.stop()


async def start(
    settings: Settings, database: Database, *, http: bool, drive_plans: bool
) -> Delivery:
    """Start the flag runtime (unless this process has one), recording, the driver."""
    record = settings.record_request_outcomes
    flush = settings.telemetry_flush_seconds
    flags: FlagRuntime | None = None
    outcomes: OutcomeRecorder | None = None
    if client.runtime() is None:
        flags = FlagRuntime(database)
        await flags.start()
        if record:
            outcomes = OutcomeRecorder(database, flush_seconds=flush)
            await outcomes.start()
        client.install(flags, outcomes)
    requests = None
    if http and record:
        requests = RequestCounter(database, flush_seconds=flush)
        await requests.start()
    driver = (
        asyncio.create_task(drive(database, settings), name="orderly-flags-driver")
        if drive_plans
        else None
    )
    return Delivery(flags, outcomes, requests, driver)
