"""Flag outcomes of one process, counted in memory and flushed for the guard.

Outcomes are counted per flag, cohort (on/off) and 10-second bucket: every
finished request that evaluated a flag (a 5xx is a failure for its cohort),
and whatever a code path reports itself (``client.record_outcome``). They are
flushed to PostgreSQL every ``flush_seconds`` (≤ 10 s by contract), where the
worker's guard sums every process's.

A process records outcomes only when ``flags/lifecycle.py`` builds a recorder
(``ORDERLY_RECORD_REQUEST_OUTCOMES``, on by default).
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

from prometheus_client import Counter

from orderly.core import request_scope
from orderly.core.db import Database
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.flags import repository

log = get_logger(__name__)

BUCKET_SECONDS = 10

FLAG_OUTCOMES = Counter(
    "orderly_flag_outcomes_total",
    "Outcomes recorded per flag and cohort.",
    ["flag", "cohort", "outcome"],
    registry=REGISTRY,
)


class OutcomeRecorder(request_scope.FlushingObserver):
    """One per recording process: outcome counts per flag and cohort, flushed periodically."""

    task_name = "orderly-flags-flush"
    flush_failed_event = "flag_outcomes_flush_failed"

    def __init__(self, database: Database, *, flush_seconds: float = 5.0) -> None:
        super().__init__(flush_seconds=flush_seconds)
        self.database = database
        self._counts: defaultdict[tuple[str, str, datetime], list[int]] = defaultdict(
            lambda: [0, 0]
        )

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
