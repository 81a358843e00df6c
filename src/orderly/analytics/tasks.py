"""Analytics jobs: the periodic incremental refresh and the nightly full rebuild.

Both refresh the recommendation scores too: the nightly rebuild always
recomputes them; the periodic refresh only when an order entered or left
paid/fulfilled since their last run, or that run is an hour old (see
``analytics.service.refresh_all``). The scheduler fires every minute;
the refresh runs when ``ORDERLY_ANALYTICS_REFRESH_SECONDS`` have passed since
the last one (so the effective period is at least a minute).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orderly.analytics import service
from orderly.config import Settings
from orderly.core.jobs import JobContext, RetryPolicy, task

REFRESH_TASK = "analytics.refresh"
REBUILD_TASK = "analytics.rebuild"
# A scheduled run that comes a little early still counts as due.
_SLACK_SECONDS = 5.0


@task(REFRESH_TASK, schedule="* * * * *", retry=RetryPolicy(max_attempts=3), timeout=300)
async def refresh(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Bring the summary tables and recommendation scores up to date, when due."""
    settings = ctx.resource(Settings)
    last = await service.last_computed_at(ctx.tx)
    if last is not None and not payload.get("force"):
        age = (datetime.now(UTC) - last).total_seconds()
        if age + _SLACK_SECONDS < settings.analytics_refresh_seconds:
            return
    await service.refresh_all(ctx.tx)


@task(REBUILD_TASK, schedule="17 3 * * *", retry=RetryPolicy(max_attempts=3), timeout=3600)
async def rebuild(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Recompute every day of the summary tables from the raw rows (nightly)."""
    await service.refresh_all(ctx.tx, full=True)


TASKS = [refresh, rebuild]
