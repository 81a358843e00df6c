"""SLOs computed in the application from per-minute request counts every process flushes.

availability: non-5xx share of ``/v1`` requests, objective 99.9 %;
order_latency: share of ``POST /v1/orders`` answered under 300 ms, objective 99 %.
Burn rate over a window = error rate / (1 − objective); a fast burn is 14.4×
over both 1 h and 5 m (the thresholds of ``ops/prometheus/alerts.yml``).
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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
# Upper bounds (seconds) of the latency histogram's buckets; one more bucket holds the rest.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestCounter(request_scope.FlushingObserver):
    """Counts requests per UTC minute in this process and flushes them to PostgreSQL."""

    task_name = "orderly-slo-flush"
    flush_failed_event = "slo_counts_flush_failed"

    def __init__(self, database: Database, *, flush_seconds: float = 5.0) -> None:
        super().__init__(flush_seconds=flush_seconds)
        self.database = database
        self._counts: defaultdict[tuple[datetime, str, str], int] = defaultdict(int)
        self._latency: defaultdict[tuple[datetime, int], int] = defaultdict(int)

    def observe_request(self, finished: request_scope.FinishedRequest) -> None:
        """Count one finished request (only ``/v1`` routes)."""
        if not finished.route.startswith("/v1"):
            return
        now = int(time.time())
        minute = datetime.fromtimestamp(now - now % 60, UTC)
        good = finished.status < 500
        self._counts[(minute, "availability", "good" if good else "bad")] += 1
        self._latency[(minute, bisect.bisect_left(LATENCY_BUCKETS, finished.seconds))] += 1
        if finished.method == "POST" and finished.route == "/v1/orders":
            fast = finished.seconds < ORDER_LATENCY_SECONDS
            self._counts[(minute, "order_latency", "good" if fast else "bad")] += 1

    async def flush(self) -> None:
        """Write the counts (added to every other process's)."""
        if not self._counts and not self._latency:
            return
        counts, self._counts = self._counts, defaultdict(int)
        latency, self._latency = self._latency, defaultdict(int)
        try:
            async with self.database.transaction() as tx:
                if counts:
                    await repository.add_request_counts(
                        tx, [(m, s, o, n) for (m, s, o), n in counts.items()]
                    )
                if latency:
                    await repository.add_latency_counts(
                        tx, [(m, b, n) for (m, b), n in latency.items()]
                    )
                await tx.commit()
        except Exception:
            for key, n in counts.items():
                self._counts[key] += n
            for bucket_key, n in latency.items():
                self._latency[bucket_key] += n
            raise


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


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    """One time bin of ``/v1`` traffic, for the console's charts."""

    start: datetime
    requests: int
    errors: int
    requests_per_second: float
    error_rate: float | None
    p50_seconds: float | None
    p99_seconds: float | None


def quantile(buckets: dict[int, int], q: float) -> float | None:
    """The *q* quantile of a histogram, interpolated inside its bucket (as PromQL does)."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank, seen = q * total, 0
    for index in range(len(LATENCY_BUCKETS) + 1):
        count = buckets.get(index, 0)
        if count and seen + count >= rank:
            if index == len(LATENCY_BUCKETS):  # the unbounded bucket: its lower bound
                return LATENCY_BUCKETS[-1]
            lower = LATENCY_BUCKETS[index - 1] if index else 0.0
            upper = LATENCY_BUCKETS[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return LATENCY_BUCKETS[-1]


async def traffic(
    tx: Tx, *, hours: int = 6, bin_minutes: int = 10, now: datetime | None = None
) -> list[TrafficPoint]:
    """Request rate, error rate and p50/p99 latency per bin over the last *hours* (UTC bins)."""
    end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % bin_minutes)
    start = end - timedelta(hours=hours) + timedelta(minutes=bin_minutes)
    bins = [start + timedelta(minutes=bin_minutes * i) for i in range(hours * 60 // bin_minutes)]
    good = dict.fromkeys(bins, 0)
    bad = dict.fromkeys(bins, 0)
    histograms: dict[datetime, dict[int, int]] = {b: defaultdict(int) for b in bins}
    for row in await repository.minutes_since(tx, start):
        offset = int((row.minute - start).total_seconds() // 60) // bin_minutes
        if not 0 <= offset < len(bins):
            continue
        key = bins[offset]
        good[key] += row.good
        bad[key] += row.bad
        for bucket, count in row.buckets.items():
            histograms[key][bucket] += count
    seconds = bin_minutes * 60
    return [
        TrafficPoint(
            start=b,
            requests=good[b] + bad[b],
            errors=bad[b],
            requests_per_second=(good[b] + bad[b]) / seconds,
            error_rate=bad[b] / (good[b] + bad[b]) if good[b] + bad[b] else None,
            p50_seconds=quantile(histograms[b], 0.5),
            p99_seconds=quantile(histograms[b], 0.99),
        )
        for b in bins
    ]


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
