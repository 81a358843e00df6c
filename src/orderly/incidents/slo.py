"""SLOs computed in the application from per-minute request counts every process flushes.

availability: non-5xx share of ``/v1`` requests, objective 99.9 %;
order_latency: share of ``POST /v1/orders`` answered under 300 ms, objective 99 %.
Burn rate over a window = error rate / (1 − objective); a fast burn is 14.4×
over both 1 h and 5 m (the thresholds of ``ops/prometheus/alerts.yml``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from datetime import UTC, datetime

from orderly.audit.schemas import AuditContext
from orderly.core import request_scope
from orderly.core.db import Database, Tx
from orderly.core.telemetry import get_logger
from orderly.incidents import repository, service
from orderly.incidents.schemas import BurnRates, IncidentSource, Severity, SloRead, SloReport

log = get_logger(__name__)

OBJECTIVES = {"availability": 0.999, "order_latency": 0.99}
ORDER_LATENCY_SECONDS = 0.3
FAST_BURN = 14.4
WINDOW_DAYS = 30
_WINDOWS = {"5m": 300, "1h": 3600, "6h": 6 * 3600, "3d": 3 * 86400, "30d": WINDOW_DAYS * 86400}
SLO_GUARD = AuditContext(actor_role="system:slo")


class RequestCounter:
    """Counts requests per UTC minute in this process and flushes them to PostgreSQL."""

    def __init__(self, database: Database, *, flush_seconds: float = 5.0) -> None:
        self.database = database
        self.flush_seconds = flush_seconds
        self._counts: defaultdict[tuple[datetime, str, str], int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None

    def observe_request(self, finished: request_scope.FinishedRequest) -> None:
        """Count one finished request (only ``/v1`` routes)."""
        if not finished.route.startswith("/v1"):
            return
        now = int(time.time())
        minute = datetime.fromtimestamp(now - now % 60, UTC)
        good = finished.status < 500
        self._counts[(minute, "availability", "good" if good else "bad")] += 1
        if finished.method == "POST" and finished.route == "/v1/orders":
            fast = finished.seconds < ORDER_LATENCY_SECONDS
            self._counts[(minute, "order_latency", "good" if fast else "bad")] += 1

    async def flush(self) -> None:
        """Write the counts (added to every other process's)."""
        if not self._counts:
            return
        counts, self._counts = self._counts, defaultdict(int)
        try:
            async with self.database.transaction() as tx:
                await repository.add_request_counts(
                    tx, [(m, s, o, n) for (m, s, o), n in counts.items()]
                )
                await tx.commit()
        except Exception:
            for key, n in counts.items():
                self._counts[key] += n
            raise

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - retried next tick
                log.warning("slo_counts_flush_failed", error=type(exc).__name__)

    async def start(self) -> None:
        """Observe requests and flush periodically."""
        request_scope.observe(self.observe_request)
        self._task = asyncio.create_task(self._loop(), name="orderly-slo-flush")

    async def stop(self) -> None:
        """Stop and flush what is left."""
        request_scope.unobserve(self.observe_request)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.flush()


async def report(tx: Tx) -> SloReport:
    """Every SLO: SLI and budget over 30 days, burn rates over 5 m, 1 h, 6 h and 3 d."""
    slos = []
    windows = list(_WINDOWS.values())
    for name, objective in OBJECTIVES.items():
        totals = dict(
            zip(_WINDOWS, await repository.request_totals(tx, name, windows), strict=True)
        )
        budget = 1 - objective

        def burn(
            window: str, totals: dict[str, tuple[int, int]] = totals, budget: float = budget
        ) -> float:
            good, bad = totals[window]
            total = good + bad
            return round((bad / total) / budget, 4) if total else 0.0

        good, bad = totals["30d"]
        total = good + bad
        rates = BurnRates(
            **{"5m": burn("5m"), "1h": burn("1h"), "6h": burn("6h"), "3d": burn("3d")}
        )
        slos.append(
            SloRead(
                name=name,
                objective=objective,
                window_days=WINDOW_DAYS,
                good=good,
                total=total,
                sli=round(good / total, 6) if total else None,
                error_budget_remaining=round(1 - (bad / total) / budget, 6) if total else 1.0,
                burn_rates=rates,
                fast_burn=rates.h1 >= FAST_BURN and rates.m5 >= FAST_BURN,
            )
        )
    return SloReport(computed_at=datetime.now(UTC), slos=slos)


async def check_fast_burn(database: Database) -> int:
    """Open one incident per SLO burning fast (none while one is open); the number opened."""
    opened = 0
    async with database.transaction() as tx:
        current = await report(tx)
        for slo in current.slos:
            if not slo.fast_burn:
                continue
            _, created = await service.open_incident(
                tx, SLO_GUARD, title=f"SLO {slo.name} burning its error budget fast",
                severity=Severity.SEV2, source=IncidentSource.slo, dedupe_key=f"slo:{slo.name}",
                summary=f"Burn rate {slo.burn_rates.h1}× over 1 h and {slo.burn_rates.m5}× over"
                " 5 m (threshold 14.4×).",
                details=slo.model_dump(mode="json"),
            )  # fmt: skip
            opened += int(created)
        await tx.commit()
    return opened
