"""Analytics use cases: refresh the summary tables (incrementally or in full) and read them.

The request path reads only the summary tables (PRODUCT.md §5: "the request
path never scans orders"). The worker keeps them current:

- incremental refresh (every ``ORDERLY_ANALYTICS_REFRESH_SECONDS``): every raw
  row stamped at or after the stored watermark names the UTC days it affects
  (its own day; for an order event also the day its order was created); those
  days are recomputed whole from the raw rows. The new watermark is the start
  of the oldest transaction still open when the refresh began, so a row that
  commits later is still looked at next time. Re-running changes nothing.
- full rebuild (nightly, and whenever there is no watermark yet): every day.

The product blocks (``analytics_product_span``) keep a watermark of their own:
during a rolling deploy a release that does not know them refreshes too and
moves only the main one, so a refresh here also rebuilds the blocks of every
day refreshed since theirs (tests/test_rolling_deploy.py found the gap).

Refreshes take the state row's lock, so they run one at a time.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta

from prometheus_client import Gauge

from orderly import errors
from orderly.analytics import repository as repo
from orderly.core.db import Tx
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.recommendations import service as recommendations

log = get_logger(__name__)

COMPUTED_AT = Gauge(
    "orderly_analytics_computed_timestamp_seconds",
    "Unix time up to which the analytics summary tables are computed (the last refresh's read).",
    registry=REGISTRY,
)

DEFAULT_DAYS = 30
MAX_DAYS = 3660
TOP_PRODUCTS = 10
# Rows are stamped by their transaction's start; a little slack covers a backend that
# has begun its transaction but not yet published it in pg_stat_activity.
WATERMARK_MARGIN_SECONDS = 2.0
FULL_REBUILD_TIMEOUT_SECONDS = 1800


@dataclasses.dataclass(frozen=True, slots=True)
class Refreshed:
    """What a refresh did."""

    computed_at: datetime
    full: bool
    days: int
    # Every raw row stamped before this is reflected in the summary tables.
    watermark: datetime
    # Whether the recommendation scores were recomputed (refresh_all only).
    recommendations: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class DayTotals:
    """One day of the summary."""

    day: date
    gross_cents: int
    refunds_cents: int
    net_cents: int
    orders_paid: int


@dataclasses.dataclass(frozen=True, slots=True)
class Totals:
    """The range's totals."""

    gross_cents: int
    refunds_cents: int
    net_cents: int
    orders_paid: int
    orders_cancelled: int
    orders_refunded: int
    average_order_cents: int


@dataclasses.dataclass(frozen=True, slots=True)
class TopProduct:
    """One of the best products of the range by net revenue."""

    product_id: uuid.UUID
    sku: str
    name: str
    units: int
    revenue_cents: int


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """The sales summary of one currency over a range of UTC days."""

    computed_at: datetime | None
    currency: str
    first: date
    last: date
    totals: Totals
    by_day: list[DayTotals]
    orders_by_status: dict[str, int]
    top_products: list[TopProduct]


# ---------------------------------------------------------------- refresh


async def refresh(tx: Tx, *, full: bool = False, as_of: datetime | None = None) -> Refreshed:
    """Bring the summary tables up to date; *full* recomputes every day.

    The caller commits. Without a watermark yet (a fresh database), this is a
    full rebuild. *as_of* replays history (tests, benchmarks): the refresh
    takes that instant as "now" and as its new watermark.
    """
    state = await repo.lock_state(tx)
    horizon = await repo.horizon(tx, WATERMARK_MARGIN_SECONDS)
    if as_of is not None:
        horizon = repo.Horizon(now=as_of, watermark=as_of)
    # The product blocks keep a watermark of their own (migration 0010): an older release
    # refreshing beside this one during a rolling deploy moves only the main one.
    full = full or state.watermark is None or state.span_watermark is None
    if full:
        await repo.allow_long_statements(tx, FULL_REBUILD_TIMEOUT_SECONDS)
        await repo.recompute_days(tx, None)
        await repo.recompute_products(tx, None)
        await repo.recompute_spans(tx, None)
        await repo.recompute_statuses(tx, None)
        touched = 0
    else:
        assert state.watermark is not None
        assert state.span_watermark is not None
        affected = await repo.affected_days(tx, state.watermark)
        day_rows = sorted(set(affected.money) | set(affected.events))
        span_days = affected.money
        if state.span_watermark < state.watermark:  # refreshed meanwhile without the blocks
            behind = await repo.affected_days(tx, state.span_watermark)
            span_days = sorted({*span_days, *behind.money})
        planner = await repo.plan_for_a_few_days(tx)
        if day_rows:
            await repo.recompute_days(tx, day_rows)
        if affected.money:
            await repo.recompute_products(tx, affected.money)
        if span_days:
            await repo.recompute_spans(tx, span_days)
        if affected.created:
            await repo.recompute_statuses(tx, affected.created)
        await repo.restore_planner(tx, planner)
        touched = len(set(day_rows) | set(affected.created))
    # Never move the watermark back: a long transaction seen now may have been
    # open (and so been waited for) at the last refresh already.
    watermark = horizon.watermark
    if state.watermark is not None and not full:
        watermark = max(watermark, state.watermark)
    await repo.save_state(tx, watermark=watermark, computed_at=horizon.now, rebuilt=full)
    tx.after_commit(lambda: publish(horizon.now))
    log.info("analytics_refreshed", full=full, days=touched, watermark=watermark.isoformat())
    return Refreshed(computed_at=horizon.now, full=full, days=touched, watermark=watermark)


async def refresh_all(tx: Tx, *, full: bool = False) -> Refreshed:
    """Refresh the summary tables, then the recommendation scores (one transaction).

    The scores are brought up to date too, but recomputed only when an order
    moved into or out of paid/fulfilled since their last run, or that run is
    over an hour old (``recommendations.service.refresh``); *full* (the nightly
    rebuild) always recomputes them. Either way, after this the scores reflect
    every order event up to the refresh.
    """
    refreshed = await refresh(tx, full=full)
    recomputed = await recommendations.refresh(tx, watermark=refreshed.watermark, force=full)
    return dataclasses.replace(refreshed, recommendations=recomputed)


async def last_computed_at(tx: Tx) -> datetime | None:
    """When the summary tables were last brought up to date (None: never)."""
    computed_at = (await repo.read_state(tx)).computed_at
    publish(computed_at)
    return computed_at


def publish(computed_at: datetime | None) -> None:
    """Expose how fresh the summary tables are (the staleness alert reads this)."""
    if computed_at is not None:
        COMPUTED_AT.set(computed_at.timestamp())


# ---------------------------------------------------------------- read


def check_range(first: date, last: date) -> None:
    """Raise InvalidInput for a reversed or overlong range."""
    if first > last:
        raise errors.InvalidInput("from must not be after to", field="from")
    if (last - first).days + 1 > MAX_DAYS:
        raise errors.InvalidInput(f"the range may span at most {MAX_DAYS} days", field="to")


async def summary(
    tx: Tx, *, currency: str, first: date | None = None, last: date | None = None
) -> Summary:
    """The sales summary for *currency* over *first*..*last* (default: the last 30 days)."""
    if last is None:
        last = datetime.now(UTC).date()
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    check_range(first, last)
    rows = await repo.summary(tx, currency, first, last, TOP_PRODUCTS)
    stored = {d.day: d for d in rows.days}
    by_day: list[DayTotals] = []
    gross = refunds = paid = cancelled = refunded = 0
    day = first
    while day <= last:
        figures = stored.get(day)
        if figures is None:
            by_day.append(DayTotals(day, 0, 0, 0, 0))
        else:
            by_day.append(
                DayTotals(
                    day,
                    figures.gross_cents,
                    figures.refunds_cents,
                    figures.gross_cents - figures.refunds_cents,
                    figures.orders_paid,
                )
            )
            gross += figures.gross_cents
            refunds += figures.refunds_cents
            paid += figures.orders_paid
            cancelled += figures.orders_cancelled
            refunded += figures.orders_refunded
        day += timedelta(days=1)
    totals = Totals(
        gross_cents=gross,
        refunds_cents=refunds,
        net_cents=gross - refunds,
        orders_paid=paid,
        orders_cancelled=cancelled,
        orders_refunded=refunded,
        average_order_cents=gross // paid if paid else 0,
    )
    return Summary(
        computed_at=rows.computed_at,
        currency=currency,
        first=first,
        last=last,
        totals=totals,
        by_day=by_day,
        orders_by_status={s: n for s, n in sorted(rows.statuses.items()) if n},
        top_products=[
            TopProduct(p.product_id, p.sku, p.name, p.units, p.revenue_cents)
            for p in rows.top_products
        ],
    )
