"""Periodic ledger reconciliation: the same checks as ``orderly audit verify``, as metrics."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Gauge

from orderly.core.jobs import JobContext, RetryPolicy, task
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.ledger import repository
from orderly.ledger.service import LedgerReport, check_ledger

log = get_logger(__name__)

LEDGER_VIOLATIONS = Gauge(
    "orderly_ledger_violations",
    "Broken ledger invariants found by the last reconciliation, by check (0 is healthy).",
    ["check"],
    registry=REGISTRY,
)
LEDGER_TOTALS = Gauge(
    "orderly_ledger_total_cents",
    "Sum of ledger entries by account kind and currency at the last reconciliation.",
    ["kind", "currency"],
    registry=REGISTRY,
)
LEDGER_RECONCILED_AT = Gauge(
    "orderly_ledger_last_reconciliation_timestamp_seconds",
    "Unix time of the last completed ledger reconciliation.",
    registry=REGISTRY,
)


def publish(report: LedgerReport) -> None:
    """Expose a verification result in the Prometheus registry."""
    counts = dict.fromkeys(repository.CHECK_NAMES, 0)
    for violation in report.violations:
        counts[violation.check] = counts.get(violation.check, 0) + 1
    for check, count in counts.items():
        LEDGER_VIOLATIONS.labels(check).set(count)
    for kind, currency, total in report.totals:
        LEDGER_TOTALS.labels(kind, currency).set(total)
    LEDGER_RECONCILED_AT.set(time.time())


RECONCILE = "ledger.reconcile"
"""Job name: the periodic check of every ledger invariant."""


@task(RECONCILE, schedule="*/5 * * * *", retry=RetryPolicy(max_attempts=3), timeout=300)
async def reconcile(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Verify every ledger invariant and publish the result; violations page someone."""
    report = await check_ledger(ctx.tx)
    publish(report)
    if report.ok:
        log.info("ledger_reconciled", violations=0)
    else:
        log.error(
            "ledger_violations",
            violations=len(report.violations),
            sample=[f"{v.check}:{v.subject}:{v.detail}" for v in report.violations[:10]],
        )


TASKS = [reconcile]
