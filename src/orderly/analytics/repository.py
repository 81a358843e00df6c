"""Every query on the analytics summary tables, and the ones that fill them from raw rows.

A summary row is a pure function of the raw rows of its UTC day, so a refresh
recomputes whole days (delete, then insert from the source rows): re-running
it changes nothing, and a late refund of an old order simply makes its days
"affected" again. Which days are affected is found by time, from the
watermark: every raw row stamped at or after it is looked at again.

Sources (PRODUCT.md §5 "Analytics"):

- money: ledger transactions whose reference is an order (``order:<id>``):
  ``payment``/``card_payment`` are gross, ``refund``/``card_refund`` are refunds,
  on the UTC day and in the currency of the transaction;
- order events: ``order_event`` rows moving an order to paid, cancelled or
  refunded, on the event's day, in the order's currency;
- statuses: the current status of orders, on the day the order was created;
- products: order lines of those money transactions, + when paid, − when the
  money went back.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from orderly.core.db import Tx
from orderly.orders.schemas import OrderStatus

MONEY_IN = ("payment", "card_payment")
MONEY_OUT = ("refund", "card_refund")
ORDER_REFERENCE_PREFIX = "order:"

# The time spans a refresh recomputes: whole UTC days, or everything.
_DAYS_SPAN = """span AS (
    SELECT (d::timestamp AT TIME ZONE 'UTC') AS lo, ((d + 1)::timestamp AT TIME ZONE 'UTC') AS hi
      FROM unnest($1::date[]) AS d)"""
_ALL_SPAN = """span AS (
    SELECT '-infinity'::timestamptz AS lo, 'infinity'::timestamptz AS hi
     WHERE $1::date[] IS NULL)"""

# Money movements of orders in the span, one row per ledger transaction.
_MONEY = """money AS (
    SELECT t.currency, (t.created_at AT TIME ZONE 'UTC')::date AS day,
           t.kind IN ('payment', 'card_payment') AS incoming, t.amount_cents,
           substr(t.external_id, 7)::uuid AS order_id
      FROM span JOIN ledger_transaction t
        ON t.created_at >= span.lo AND t.created_at < span.hi
     WHERE t.kind IN ('payment', 'card_payment', 'refund', 'card_refund')
       AND t.external_id LIKE 'order:%')"""

# Order statuses from the one enum, rendered once into the SQL below.
_PAID, _CANCELLED, _REFUNDED = (
    f"'{status.value}'"
    for status in (OrderStatus.paid, OrderStatus.cancelled, OrderStatus.refunded)
)

_REFRESH_DAYS = f"""
WITH {{span}}, {_MONEY},
events AS (
    SELECT o.currency, (e.created_at AT TIME ZONE 'UTC')::date AS day, e.to_status
      FROM span JOIN order_event e ON e.created_at >= span.lo AND e.created_at < span.hi
      JOIN sales_order o ON o.id = e.order_id
     WHERE e.to_status IN ({_PAID}, {_CANCELLED}, {_REFUNDED}))
INSERT INTO analytics_day (currency, day, gross_cents, refunds_cents, orders_paid,
                           orders_cancelled, orders_refunded)
SELECT currency, day, sum(gross), sum(refunds), sum(paid), sum(cancelled), sum(refunded)
  FROM (SELECT currency, day,
               CASE WHEN incoming THEN amount_cents ELSE 0 END AS gross,
               CASE WHEN incoming THEN 0 ELSE amount_cents END AS refunds,
               0 AS paid, 0 AS cancelled, 0 AS refunded
          FROM money
        UNION ALL
        SELECT currency, day, 0, 0, (to_status = {_PAID})::int,
               (to_status = {_CANCELLED})::int, (to_status = {_REFUNDED})::int
          FROM events) AS moves
 GROUP BY currency, day
"""  # noqa: S608 - constant fragments

_REFRESH_PRODUCTS = f"""
WITH {{span}}, {_MONEY}
INSERT INTO analytics_product_day (currency, day, product_id, units, revenue_cents)
SELECT m.currency, m.day, i.product_id,
       sum(CASE WHEN m.incoming THEN i.quantity ELSE -i.quantity END),
       sum(CASE WHEN m.incoming THEN 1 ELSE -1 END * i.quantity * i.unit_price_cents)
  FROM money m JOIN order_item i ON i.order_id = m.order_id
 GROUP BY m.currency, m.day, i.product_id
"""  # noqa: S608 - constant fragments

# Orders are found by their first ("placed") event, which the order's own transaction
# writes with the same timestamp: an index range on order_event, never a scan of orders.
_REFRESH_STATUSES = """
WITH {span},
placed AS (
    SELECT o.currency, (o.created_at AT TIME ZONE 'UTC')::date AS day, o.status
      FROM span JOIN order_event e ON e.created_at >= span.lo AND e.created_at < span.hi
      JOIN sales_order o ON o.id = e.order_id
     WHERE e.from_status IS NULL
       AND o.created_at >= span.lo AND o.created_at < span.hi)
INSERT INTO analytics_status_day (currency, day, status, orders)
SELECT currency, day, status, count(*) FROM placed GROUP BY currency, day, status
"""


# Product figures are also rolled up over aligned blocks of 2**level days (levels 1 to
# SPAN_LEVELS, built level by level from the one below): a range of up to 2**(SPAN_LEVELS+1)
# days is at most two blocks per level, so the summary's top products read
# O(products × log days) rows, whatever the range's length.
SPAN_LEVELS = 11
_EPOCH = date(1970, 1, 1)

_SPAN_FROM_DAYS = """
INSERT INTO analytics_product_span (level, first_day, currency, product_id, units, revenue_cents)
SELECT 1, DATE '1970-01-01' + ((day - DATE '1970-01-01') / 2) * 2, currency, product_id,
       sum(units), sum(revenue_cents)
  FROM analytics_product_day
 WHERE $1::date[] IS NULL OR day = ANY($1)
 GROUP BY 2, currency, product_id
"""

_SPAN_FROM_SPANS = """
INSERT INTO analytics_product_span (level, first_day, currency, product_id, units, revenue_cents)
SELECT $2::smallint, DATE '1970-01-01' + ((first_day - DATE '1970-01-01') / $3::int) * $3::int,
       currency, product_id,
       sum(units), sum(revenue_cents)
  FROM analytics_product_span
 WHERE level = $2::smallint - 1 AND ($1::date[] IS NULL OR first_day = ANY($1))
 GROUP BY 2, 3, 4
"""


def block_start(day: date, level: int) -> date:
    """The first day of the aligned block of 2**level days holding *day*."""
    size = 1 << level
    return _EPOCH + timedelta(days=((day - _EPOCH).days // size) * size)


def decompose(first: date, last: date) -> list[tuple[int, date]]:
    """*first*..*last* (inclusive) as the fewest aligned blocks: ``(level, first day)``.

    Level 0 is a single day (``analytics_product_day``); at most two blocks per level.
    """
    blocks: list[tuple[int, date]] = []
    day = first
    while day <= last:
        offset = (day - _EPOCH).days
        level = 0
        while (
            level < SPAN_LEVELS
            and offset % (2 << level) == 0
            and day + timedelta(days=(2 << level) - 1) <= last
        ):
            level += 1
        blocks.append((level, day))
        day += timedelta(days=1 << level)
    return blocks


@dataclasses.dataclass(frozen=True, slots=True)
class RefreshState:
    """How far the summary tables are computed."""

    watermark: datetime | None
    # The product blocks' own watermark: an older release's refresh moves only ``watermark``.
    span_watermark: datetime | None
    computed_at: datetime | None
    rebuilt_at: datetime | None
    recommendations_at: datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class Horizon:
    """The instant a refresh reads up to: the database clock, and the new watermark.

    The watermark is the start of the oldest transaction still open (rows it
    writes will be stamped no earlier), so nothing committed later can land
    before it.
    """

    now: datetime
    watermark: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class AffectedDays:
    """UTC days whose summary rows must be recomputed."""

    money: list[date]
    events: list[date]
    created: list[date]


@dataclasses.dataclass(frozen=True, slots=True)
class DayFigures:
    """One day of one currency from the summary tables."""

    day: date
    gross_cents: int
    refunds_cents: int
    orders_paid: int
    orders_cancelled: int
    orders_refunded: int


@dataclasses.dataclass(frozen=True, slots=True)
class ProductFigures:
    """A product's net units and revenue over a range."""

    product_id: uuid.UUID
    sku: str
    name: str
    units: int
    revenue_cents: int


@dataclasses.dataclass(frozen=True, slots=True)
class SummaryRows:
    """Everything the summary endpoint shows, read in one statement."""

    computed_at: datetime | None
    days: list[DayFigures]
    statuses: dict[str, int]
    top_products: list[ProductFigures]


# ---------------------------------------------------------------- refresh


async def lock_state(tx: Tx) -> RefreshState:
    """Lock the state row (one refresh at a time) and return it."""
    # The migration inserts the row; a database emptied by hand gets it back here.
    await tx.execute("INSERT INTO analytics_state (id) VALUES (1) ON CONFLICT DO NOTHING")
    row = await tx.fetchrow(
        """SELECT watermark, span_watermark, computed_at, rebuilt_at, recommendations_at
             FROM analytics_state WHERE id = 1 FOR UPDATE"""
    )
    assert row is not None
    return RefreshState(**dict(row))


async def read_state(tx: Tx) -> RefreshState:
    """The state row, without locking it."""
    row = await tx.fetchrow(
        """SELECT watermark, span_watermark, computed_at, rebuilt_at, recommendations_at
             FROM analytics_state WHERE id = 1"""
    )
    if row is None:
        return RefreshState(None, None, None, None, None)
    return RefreshState(**dict(row))


async def horizon(tx: Tx, margin_seconds: float) -> Horizon:
    """Now, and the new watermark: the oldest open transaction's start (minus *margin_seconds*).

    Rows take ``now()`` (their transaction's start) as their timestamp, so a
    transaction still open may yet commit rows stamped as early as its start.
    """
    row = await tx.fetchrow(
        """SELECT clock_timestamp() AS now,
                  least(clock_timestamp(), min(a.xact_start))
                    - make_interval(secs => $1) AS watermark
             FROM pg_stat_activity a
            WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
              AND a.xact_start IS NOT NULL""",
        margin_seconds,
    )
    assert row is not None
    return Horizon(now=row["now"], watermark=row["watermark"])


async def allow_long_statements(tx: Tx, seconds: int) -> None:
    """Raise this transaction's statement timeout (a full rebuild reads every order)."""
    await tx.execute(f"SET LOCAL statement_timeout = '{int(seconds)}s'")


async def affected_days(tx: Tx, since: datetime) -> AffectedDays:
    """Days touched by ledger transactions and order events stamped at or after *since*."""
    row = await tx.fetchrow(
        """SELECT
             ARRAY(SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date
                     FROM ledger_transaction
                    WHERE created_at >= $1 AND external_id LIKE 'order:%') AS money,
             ARRAY(SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date
                     FROM order_event WHERE created_at >= $1) AS events,
             ARRAY(SELECT DISTINCT (o.created_at AT TIME ZONE 'UTC')::date
                     FROM order_event e JOIN sales_order o ON o.id = e.order_id
                    WHERE e.created_at >= $1) AS created""",
        since,
    )
    assert row is not None
    return AffectedDays(list(row["money"]), list(row["events"]), list(row["created"]))


async def _clear(tx: Tx, table: str, days: Sequence[date] | None) -> None:
    # A separate statement: a DELETE in a CTE runs after the INSERT beside it.
    await tx.execute(
        f"DELETE FROM {table} WHERE $1::date[] IS NULL OR day = ANY($1)",  # noqa: S608 - constant
        None if days is None else list(days),
    )


_PLANNER = ("enable_hashjoin", "enable_mergejoin", "jit")


async def _refill(tx: Tx, sql: str, days: Sequence[date] | None) -> None:
    if days is None:
        await tx.execute(sql.format(span=_ALL_SPAN), None)
    else:
        await tx.execute(sql.format(span=_DAYS_SPAN), list(days))


async def plan_for_a_few_days(tx: Tx) -> tuple[str, ...]:
    """Plan the next statements for a few days' rows; returns the settings to restore.

    A few days are a few thousand rows, but the planner cannot see how narrow
    the span's time ranges are (it guesses a third of each table): it would
    hash-join every order (measured: 0.4 s a statement at 1M orders) and JIT-
    compile the plan for its inflated cost (20–60 ms). Rows by index, no JIT.
    """
    before = await tx.fetchrow(
        "SELECT current_setting($1), current_setting($2), current_setting($3)", *_PLANNER
    )
    assert before is not None
    await restore_planner(tx, ("off", "off", "off"))
    return tuple(before)


async def restore_planner(tx: Tx, values: Sequence[str]) -> None:
    """Put back the settings :func:`plan_for_a_few_days` returned (for this transaction)."""
    await tx.execute(
        "SELECT set_config($1, $4, true), set_config($2, $5, true), set_config($3, $6, true)",
        *_PLANNER,
        *values,
    )


async def recompute_days(tx: Tx, days: Sequence[date] | None) -> None:
    """Recompute money and event counts of *days* (None: every day) from raw rows."""
    await _clear(tx, "analytics_day", days)
    await _refill(tx, _REFRESH_DAYS, days)


async def recompute_products(tx: Tx, days: Sequence[date] | None) -> None:
    """Recompute product figures of *days* (None: every day) from raw rows."""
    await _clear(tx, "analytics_product_day", days)
    await _refill(tx, _REFRESH_PRODUCTS, days)


async def recompute_spans(tx: Tx, days: Sequence[date] | None) -> None:
    """Recompute the product blocks holding *days* (None: every block), level by level."""
    levels = range(1, SPAN_LEVELS + 1)
    if days is None:
        await tx.execute("DELETE FROM analytics_product_span")
    else:
        blocks = sorted({(level, block_start(d, level)) for d in days for level in levels})
        await tx.execute(
            """DELETE FROM analytics_product_span
                WHERE (level, first_day) IN (SELECT * FROM unnest($1::smallint[], $2::date[]))""",
            [level for level, _ in blocks],
            [start for _, start in blocks],
        )
    for level in levels:
        children: list[date] | None = None
        if days is not None:
            # Each block is the sum of its two halves, one level down (single days at level 1).
            starts = {block_start(d, level) for d in days}
            half = timedelta(days=1 << (level - 1))
            children = sorted({*starts, *(start + half for start in starts)})
        if level == 1:
            await tx.execute(_SPAN_FROM_DAYS, children)
        else:
            await tx.execute(_SPAN_FROM_SPANS, children, level, 1 << level)


async def recompute_statuses(tx: Tx, days: Sequence[date] | None) -> None:
    """Recompute status counts of orders created on *days* (None: every day)."""
    await _clear(tx, "analytics_status_day", days)
    await _refill(tx, _REFRESH_STATUSES, days)


async def save_state(
    tx: Tx,
    *,
    watermark: datetime,
    computed_at: datetime,
    rebuilt: bool,
) -> None:
    """Record how far the summary tables (the product blocks too) are computed."""
    await tx.execute(
        """UPDATE analytics_state
              SET watermark = $1, span_watermark = $1, computed_at = $2,
                  rebuilt_at = CASE WHEN $3 THEN $2 ELSE rebuilt_at END
            WHERE id = 1""",
        watermark,
        computed_at,
        rebuilt,
    )


# ---------------------------------------------------------------- read path

# One statement, summary tables only (plus the top ten's product rows by primary key). The
# top products add up the range's blocks (``decompose``): single days ($5) and spans ($6, $7).
SUMMARY_SQL = """
SELECT (SELECT computed_at FROM analytics_state WHERE id = 1) AS computed_at,
       (SELECT coalesce(json_agg(json_build_array(day, gross_cents, refunds_cents, orders_paid,
                                                  orders_cancelled, orders_refunded)
                                 ORDER BY day), '[]')
          FROM analytics_day WHERE currency = $1 AND day BETWEEN $2 AND $3) AS days,
       (SELECT coalesce(json_object_agg(status, n), '{}')
          FROM (SELECT status, sum(orders) AS n FROM analytics_status_day
                 WHERE currency = $1 AND day BETWEEN $2 AND $3 GROUP BY status) s) AS statuses,
       (SELECT coalesce(json_agg(json_build_array(product_id, sku, name, units, revenue_cents)
                                 ORDER BY revenue_cents DESC, sku), '[]')
          FROM (SELECT t.product_id, p.sku, p.name, t.units, t.revenue_cents
                  FROM (SELECT product_id, sum(units) AS units, sum(revenue_cents) AS revenue_cents
                          FROM (SELECT product_id, units, revenue_cents
                                  FROM analytics_product_day
                                 WHERE currency = $1 AND day = ANY($5::date[])
                                UNION ALL
                                SELECT s.product_id, s.units, s.revenue_cents
                                  FROM unnest($6::smallint[], $7::date[]) AS b(level, first_day)
                                  JOIN analytics_product_span s
                                    ON s.level = b.level AND s.first_day = b.first_day
                                   AND s.currency = $1) AS parts
                         GROUP BY product_id) t
                  JOIN product p ON p.id = t.product_id
                 ORDER BY t.revenue_cents DESC, p.sku LIMIT $4) best) AS top
"""


def summary_args(currency: str, first: date, last: date, top: int) -> tuple[object, ...]:
    """The parameters of :data:`SUMMARY_SQL` for this range."""
    blocks = decompose(first, last)
    days = [start for level, start in blocks if level == 0]
    spans = [(level, start) for level, start in blocks if level > 0]
    return (
        currency,
        first,
        last,
        top,
        days,
        [level for level, _ in spans],
        [start for _, start in spans],
    )


async def summary(tx: Tx, currency: str, first: date, last: date, top: int) -> SummaryRows:
    """The summary tables' figures for *currency* from *first* to *last* (inclusive)."""
    row = await tx.fetchrow(SUMMARY_SQL, *summary_args(currency, first, last, top))
    assert row is not None
    days = [
        DayFigures(date.fromisoformat(d), int(g), int(r), int(p), int(c), int(f))
        for d, g, r, p, c, f in row["days"]
    ]
    products = [
        ProductFigures(uuid.UUID(pid), sku, name, int(units), int(revenue))
        for pid, sku, name, units, revenue in row["top"]
    ]
    statuses = {status: int(count) for status, count in row["statuses"].items()}
    return SummaryRows(row["computed_at"], days, statuses, products)
