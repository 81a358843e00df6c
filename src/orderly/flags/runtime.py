"""The per-process flag runtime: the current snapshot, kept fresh, and outcome counters.

Freshness: a dedicated connection LISTENs on ``orderly_flags`` (every change
NOTIFYs on commit) and, as a safety net for lost notifications or a pooler
that cannot LISTEN, the configuration version (one indexed row) is compared
every ``poll_seconds``. Either way a change reaches the process well within
one second and evaluation itself never touches the database.

Outcomes (per flag and cohort) are counted in memory and flushed to
PostgreSQL every ``flush_seconds`` (≤ 10 s by contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from datetime import UTC, datetime

import asyncpg
from prometheus_client import Counter, Gauge

from orderly.core import request_scope
from orderly.core.db import Database
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.flags import repository
from orderly.flags.engine import EMPTY, Snapshot

log = get_logger(__name__)

BUCKET_SECONDS = 10

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
FLAG_OUTCOMES = Counter(
    "orderly_flag_outcomes_total",
    "Outcomes recorded per flag and cohort.",
    ["flag", "cohort", "outcome"],
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
    """One per process: the snapshot every evaluation reads, and the outcome counters."""

    def __init__(
        self, database: Database, *, poll_seconds: float = 0.5, flush_seconds: float = 5.0
    ) -> None:
        self.database = database
        self.poll_seconds = poll_seconds
        self.flush_seconds = flush_seconds
        self.snapshot: Snapshot = EMPTY
        self._counts: defaultdict[tuple[str, str, datetime], list[int]] = defaultdict(
            lambda: [0, 0]
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._listener: asyncpg.Connection | None = None
        self._wake = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the snapshot, start listening, polling and flushing; observe requests."""
        await self.reload("start")
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await self._listen()
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name="orderly-flags-poll"),
            asyncio.create_task(self._flush_loop(), name="orderly-flags-flush"),
        ]
        request_scope.observe(self.observe_request)

    async def stop(self) -> None:
        """Stop the loops, flush what is counted, close the listener."""
        request_scope.unobserve(self.observe_request)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.flush()
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

    # ------------------------------------------------------------ outcomes

    def record(self, flag: str, on: bool, ok: bool) -> None:
        """Count one outcome for *flag*'s on/off cohort."""
        now = int(time.time())
        bucket = datetime.fromtimestamp(now - now % BUCKET_SECONDS, UTC)
        cohort = "on" if on else "off"
        self._counts[(flag, cohort, bucket)][0 if ok else 1] += 1
        FLAG_OUTCOMES.labels(flag, cohort, "ok" if ok else "failed").inc()

    def observe_request(self, finished: request_scope.FinishedRequest) -> None:
        """A request that evaluated flags: an error (5xx) or success for each flag's cohort."""
        scope = finished.scope
        if not scope.flags:
            return
        ok = finished.status < 500
        for flag, on in scope.flags.items():
            if flag not in scope.reported:
                self.record(flag, on, ok)

    async def flush(self) -> None:
        """Write counted outcomes to PostgreSQL (summed with every other process's)."""
        if not self._counts:
            return
        counts, self._counts = self._counts, defaultdict(lambda: [0, 0])
        rows = [(f, c, b, ok, failed) for (f, c, b), (ok, failed) in counts.items()]
        try:
            async with self.database.transaction() as tx:
                await repository.add_outcomes(tx, rows)
                await tx.commit()
        except Exception:
            for (f, c, b), (ok, failed) in counts.items():  # keep them for the next flush
                self._counts[(f, c, b)][0] += ok
                self._counts[(f, c, b)][1] += failed
            raise

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                log.warning("flag_outcomes_flush_failed", error=type(exc).__name__)
