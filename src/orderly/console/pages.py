"""What the console's pages show, assembled from the domains' services (no HTTP here)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from orderly import errors
from orderly.accounts import service as accounts_service
from orderly.accounts.schemas import Principal
from orderly.accounts.security import Security
from orderly.analytics.service import Summary
from orderly.api import ops
from orderly.api.deps import Runtime
from orderly.console.charts import Series, bar_chart, line_chart
from orderly.core.db import Tx
from orderly.flags import release
from orderly.flags import service as flags_service
from orderly.flags.schemas import Feature, ReleaseRead
from orderly.incidents import service as incidents_service
from orderly.incidents import slo
from orderly.incidents.schemas import IncidentStatus
from orderly.incidents.slo import TrafficPoint
from orderly.jobs import service as jobs_service
from orderly.orders import service as orders_service
from orderly.orders.schemas import OrderStatus

CANCELLABLE = {OrderStatus.pending, OrderStatus.paid}
REFUNDABLE = {OrderStatus.paid, OrderStatus.fulfilled}


def describe(invalid: ValidationError) -> str:
    """One readable sentence from a validation error."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in invalid.errors()
    )


async def overview(request: Request, tx: Tx, runtime: Runtime) -> dict[str, Any]:
    """Dependencies' health, queue depth and age, open incidents, error budgets."""
    health = await ops.check_dependencies(runtime, request.app.state.lifecycle)
    queue = await jobs_service.queue_summary(tx)
    open_incidents = [
        incident
        for status in (IncidentStatus.active, IncidentStatus.stable)
        for incident in await incidents_service.list_incidents(
            tx, status=status, limit=20, before=None
        )
    ]
    report = await slo.report(tx)
    return {"health": health, "queue": queue, "incidents": open_incidents, "report": report}


async def order(tx: Tx, security: Security, user: Principal, order_id: uuid.UUID) -> dict[str, Any]:
    """An order with its customer, history and the actions its status allows."""
    found = await orders_service.get(
        tx, order_id, viewer_id=user.id, sees_all=True, cipher=security.cipher
    )
    customer = await accounts_service.contact(tx, found.user_id)
    return {
        "order": found,
        "customer": customer,
        "events": await orders_service.history(tx, order_id),
        "can_cancel": found.status in CANCELLABLE,
        "can_refund": found.status in REFUNDABLE,
    }


@dataclass(frozen=True)
class FlagRow:
    """A flag as the list shows it."""

    feature: Feature
    rollout: int
    strategies: str
    plan: ReleaseRead | None


async def _plan(tx: Tx, name: str) -> ReleaseRead | None:
    try:
        return await release.get(tx, name)
    except errors.NotFound:
        return None


async def flag_rows(tx: Tx) -> list[FlagRow]:
    """Every flag by name with its rollout and release plan."""
    features = await flags_service.list_flags(tx, after=None, limit=500)
    return [
        FlagRow(
            feature=f,
            rollout=flags_service.rollout_of(f.model_dump(mode="json")),
            strategies=", ".join(s.name for s in f.strategies) or "none (on for everyone)",
            plan=await _plan(tx, f.name),
        )
        for f in features
    ]


async def flag(tx: Tx, name: str) -> dict[str, Any]:
    """One flag, its rollout and release plan."""
    feature = await flags_service.get_flag(tx, name)
    return {
        "flag": feature,
        "rollout": flags_service.rollout_of(feature.model_dump(mode="json")),
        "plan": await _plan(tx, name),
    }


def next_incident_statuses(status: IncidentStatus) -> list[IncidentStatus]:
    """The statuses an incident may move to."""
    return incidents_service.next_statuses(status)


def bin_minutes(hours: int) -> int:
    """Chart resolution: about 36 bins, in whole minutes that divide an hour."""
    for minutes in (1, 2, 5, 10, 15, 20, 30, 60):
        if hours * 60 / minutes <= 40:
            return minutes
    return 60


def _ms(value: float) -> str:
    return f"{value:g} ms"


def traffic_charts(points: list[TrafficPoint], hours: int) -> dict[str, Any]:
    """Request rate, error rate and p50/p99 latency charts (UTC time axis)."""
    labels = [p.start.strftime("%H:%M") for p in points]
    x_title = f"time (UTC), last {hours} h"
    return {
        "rate": line_chart(
            "Request rate", labels,
            [Series("requests per second", [p.requests_per_second for p in points], "s1")],
            y_unit="requests / s", x_title=x_title, y_format=lambda v: f"{v:.3g}",
        ),
        "errors": line_chart(
            "Error rate (5xx share)", labels,
            [Series("5xx share", [
                None if p.error_rate is None else p.error_rate * 100 for p in points
            ], "s3")],
            y_unit="errors (%)", x_title=x_title, y_format=lambda v: f"{v:.3g} %",
        ),
        "latency": line_chart(
            "Latency p50 and p99", labels,
            [
                Series("p50", [None if p.p50_seconds is None else p.p50_seconds * 1000
                               for p in points], "s1"),
                Series("p99", [None if p.p99_seconds is None else p.p99_seconds * 1000
                               for p in points], "s2"),
            ],
            y_unit="latency (ms)", x_title=x_title, y_format=lambda v: _ms(round(v, 1)),
        ),
        "requests": sum(p.requests for p in points),
    }  # fmt: skip


def revenue_chart(summary: Summary) -> Any:
    """Net revenue per UTC day as bars."""
    return bar_chart(
        f"Net revenue per day ({summary.currency})",
        [d.day.strftime("%m-%d") for d in summary.by_day],
        Series(
            f"net revenue ({summary.currency})", [d.net_cents / 100 for d in summary.by_day], "s1"
        ),
        y_unit=f"net revenue ({summary.currency})",
        x_title=f"day (UTC), {summary.first} … {summary.last}",
        y_format=lambda v: f"{v:,.0f}",
    )
