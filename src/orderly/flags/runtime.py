"""The per-process flag runtime: the current snapshot, kept fresh.

Freshness: a dedicated connection LISTENs on ``orderly_flags`` (every change
NOTIFYs on commit) and, as a safety net for lost notifications or a pooler
that cannot LISTEN, the configuration version (one indexed row) is compared
every ``poll_seconds``. Either way a change reaches the process well within
one second and evaluation itself never touches the database.

Outcomes for the guard are counted apart, by ``flags/outcomes.py``.
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from prometheus_client import Counter, Gauge

from orderly.core.db import Database
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.flags import repository
from orderly.flags.engine import EMPTY, Snapshot

log = get_logger(__name__)

FLAG_CONFIG_VERSION = Gauge(
    "orderly_flag_config_version",
    "Flag configuration version this process evaluates with.",
    registry=REGISTRY,
)
FLAG_RELOADS = Counter(
    "orderly_flag_reloads_total",
    "Flag snapshots loaded, by trigger.",
    ["trigger"],
    registry=REGISTRY,
)


async def load_snapshot(database: Database) -> Snapshot:
    """Read every flag and segment and compile them."""
    async with database.transaction() as tx:
        version = await repository.get_version(tx)
        flags = await repository.list_flags(tx)
        segments = await repository.list_segments(tx)
    return Snapshot(
        [row.definition for row in flags], [row.definition for row in segments], version
    )


class FlagRuntime:
    """One per process: the snapshot every evaluation reads."""

    def __init__(self, database: Database, *, poll_seconds: float = 0.5) -> None:
        self.database = database
        self.poll_seconds = poll_seconds
        self.snapshot: Snapshot = EMPTY
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the snapshot, start listening and polling."""
        await self.reload("start")
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self._listen()
        self._tasks = [asyncio.create_task(self._poll_loop(), name="orderly-flags-poll")]

    async def stop(self) -> None:
        """Stop polling, close the listener."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.database.direct_url, timeout=5)

        def notified(*_: object) -> None:
            self._wake.set()

        await conn.add_listener(repository.CHANNEL, notified)
        self._listener = conn

    async def reload(self, trigger: str) -> None:
        """Load a fresh snapshot and swap it in."""
        self.snapshot = await load_snapshot(self.database)
        FLAG_CONFIG_VERSION.set(self.snapshot.version)
        FLAG_RELOADS.labels(trigger).inc()
        log.debug("flags_reloaded", version=self.snapshot.version, trigger=trigger)

    async def _poll_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            notified, trigger = self._wake.is_set(), "notify"
            self._wake.clear()
            try:
                if not notified:
                    trigger = "poll"
                    async with self.database.transaction() as tx:
                        version = await repository.get_version(tx)
                    if version == self.snapshot.version:
                        if self._listener is None or self._listener.is_closed():
                            with contextlib.suppress(OSError, asyncpg.PostgresError):
                                await self._listen()
                        continue
                await self.reload(trigger)
            except Exception as exc:  # noqa: BLE001 - keep the last snapshot, retry next tick
                log.warning("flags_refresh_failed", error=type(exc).__name__)
