"""Analytics routes: the sales summary (JSON and CSV, staff) and a refresh on demand (admin)."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import Query
from starlette.responses import Response

from orderly import errors
from orderly.analytics import service
from orderly.analytics.schemas import RefreshRead, SummaryRead
from orderly.api.auth import AdminUser, StaffUser
from orderly.api.deps import AppSettings, Transaction
from orderly.api.idempotency import IDEMPOTENT
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.core.inputs import IsoDate

router = domain_router(tags=["analytics"])

From = Annotated[IsoDate | None, Query(alias="from", description="First UTC day, YYYY-MM-DD")]
To = Annotated[IsoDate | None, Query(description="Last UTC day, YYYY-MM-DD (default: today)")]
Currency = Annotated[
    str | None, Query(pattern=r"^[A-Z]{3}$", description="Default: the shop's currency")
]
_READ_ERRORS = responses_for(errors.InvalidInput, errors.Unauthorized, errors.Forbidden)


def _read(summary: service.Summary) -> SummaryRead:
    # The service's rows carry the schema's field names; only the range is renamed.
    return SummaryRead.model_validate(
        {
            "computed_at": summary.computed_at,
            "currency": summary.currency,
            "from": summary.first,
            "to": summary.last,
            "totals": summary.totals,
            "by_day": summary.by_day,
            "orders_by_status": summary.orders_by_status,
            "top_products": summary.top_products,
        },
        from_attributes=True,
    )


@router.get("/analytics/summary", responses=_READ_ERRORS, response_model_by_alias=True)
async def read_summary(
    tx: Transaction,
    user: StaffUser,
    settings: AppSettings,
    first: From = None,
    to: To = None,
    currency: Currency = None,
) -> SummaryRead:
    """Sales per UTC day from the summary tables (default: the last 30 days, shop currency)."""
    summary = await service.summary(
        tx, currency=currency or settings.currency, first=first, last=to
    )
    return _read(summary)


@router.get(
    "/analytics/summary.csv",
    responses={200: {"content": {"text/csv": {}}}, **_READ_ERRORS},
    response_class=Response,
)
async def read_summary_csv(
    tx: Transaction,
    user: StaffUser,
    settings: AppSettings,
    first: From = None,
    to: To = None,
    currency: Currency = None,
) -> Response:
    """The summary's days as CSV: day, currency, gross, refunds, net, orders paid."""
    summary = await service.summary(
        tx, currency=currency or settings.currency, first=first, last=to
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["day", "currency", "gross_cents", "refunds_cents", "net_cents", "orders_paid"])
    for d in summary.by_day:
        writer.writerow(
            [
                d.day.isoformat(),
                summary.currency,
                d.gross_cents,
                d.refunds_cents,
                d.net_cents,
                d.orders_paid,
            ]
        )
    name = f"summary-{summary.currency}-{summary.first}-{summary.last}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/admin/analytics/refresh",
    dependencies=[IDEMPOTENT],
    responses=responses_for(errors.Unauthorized, errors.Forbidden),
)
async def refresh(tx: Transaction, user: AdminUser) -> RefreshRead:
    """Refresh the summary tables and recommendation scores now; answers when done.

    The scores then reflect every order up to the refresh; their recompute is
    skipped when no order entered or left paid/fulfilled since the last one
    (it would give the same scores), unless that one is an hour old.
    """
    refreshed = await service.refresh_all(tx)
    return RefreshRead(computed_at=refreshed.computed_at)
