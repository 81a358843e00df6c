"""Every query on the recommendation tables, and the ones that fill them.

Co-purchase score of products *a* and *b* (cosine similarity of their order sets)::

    score(a, b) = n(a, b) / sqrt(n(a) * n(b))

where n(a, b) is the number of paid or fulfilled orders (of the last
``WINDOW_DAYS``) holding both, and n(a) the number holding *a*. Only pairs
bought together in at least 2 orders count. Dividing by the geometric mean of
the two products' popularity keeps best-sellers, which co-occur with
everything, from topping every list. The top 20 per product are kept.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

from orderly.core.db import Tx
from orderly.orders.schemas import OrderStatus

WINDOW_DAYS = 90
POPULAR_DAYS = 30
MIN_TOGETHER = 2
TOP_PER_PRODUCT = 20
POPULAR_KEPT = 200
BOUGHT_STATUSES = (OrderStatus.paid, OrderStatus.fulfilled)


@dataclasses.dataclass(frozen=True, slots=True)
class Candidate:
    """A product that may be recommended, with its catalog fields, in rank order."""

    id: uuid.UUID
    source: str
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    stock: int
    active: bool
    created_at: datetime
    updated_at: datetime


_RECOMPUTE_PAIRS = """
WITH baskets AS (
    SELECT i.order_id, i.product_id
      FROM sales_order o JOIN order_item i ON i.order_id = o.id
     WHERE o.status = ANY($1::text[]) AND o.created_at >= now() - make_interval(days => $2)),
counts AS (
    SELECT product_id, count(*) AS n FROM baskets GROUP BY product_id),
pairs AS (
    SELECT a.product_id AS a, b.product_id AS b, count(*) AS together
      FROM baskets a JOIN baskets b ON b.order_id = a.order_id AND b.product_id <> a.product_id
     GROUP BY a.product_id, b.product_id
    HAVING count(*) >= $3),
scored AS (
    SELECT p.a, p.b, p.together, p.together / sqrt(ca.n::float8 * cb.n) AS score
      FROM pairs p JOIN counts ca ON ca.product_id = p.a JOIN counts cb ON cb.product_id = p.b),
ranked AS (
    SELECT a, b, together, score,
           row_number() OVER (PARTITION BY a ORDER BY score DESC, together DESC, b) AS rank
      FROM scored)
INSERT INTO recommendation_pair (product_id, rank, other_id, together, score)
SELECT a, rank, b, together, score FROM ranked WHERE rank <= $4
"""

_RECOMPUTE_POPULAR = """
INSERT INTO popular_product (rank, product_id, units)
SELECT row_number() OVER (ORDER BY units DESC, product_id), product_id, units
  FROM (SELECT i.product_id, sum(i.quantity) AS units
          FROM sales_order o JOIN order_item i ON i.order_id = o.id
         WHERE o.status = ANY($1::text[]) AND o.created_at >= now() - make_interval(days => $2)
         GROUP BY i.product_id
         ORDER BY units DESC, i.product_id LIMIT $3) best
"""


async def recompute(tx: Tx) -> None:
    """Replace the co-purchase scores and the best-seller list from the orders."""
    statuses = list(BOUGHT_STATUSES)
    await tx.execute("DELETE FROM recommendation_pair")
    await tx.execute(_RECOMPUTE_PAIRS, statuses, WINDOW_DAYS, MIN_TOGETHER, TOP_PER_PRODUCT)
    await tx.execute("DELETE FROM popular_product")
    await tx.execute(_RECOMPUTE_POPULAR, statuses, POPULAR_DAYS, POPULAR_KEPT)


async def mark_computed(tx: Tx, watermark: datetime | None) -> None:
    """Record that every order event stamped before *watermark* is in the scores (None: unknown)."""
    # The row may be missing in a database emptied by hand (the analytics refresh recreates it).
    await tx.execute(
        """INSERT INTO analytics_state (id, recommendations_at) VALUES (1, $1)
           ON CONFLICT (id) DO UPDATE SET recommendations_at = EXCLUDED.recommendations_at""",
        watermark,
    )


async def scores_watermark(tx: Tx) -> datetime | None:
    """Order events stamped before this are reflected in the scores (None: recompute)."""
    value: datetime | None = await tx.fetchval(
        "SELECT recommendations_at FROM analytics_state WHERE id = 1"
    )
    return value


async def bought_changed_since(tx: Tx, since: datetime) -> bool:
    """Whether an order event stamped at or after *since* moved an order into or out of "bought"."""
    return bool(
        await tx.fetchval(
            """SELECT EXISTS (
                 SELECT 1 FROM order_event
                  WHERE created_at >= $1
                    AND (coalesce(from_status, '') = ANY($2::text[]))
                        <> (to_status = ANY($2::text[])))""",
            since,
            list(BOUGHT_STATUSES),
        )
    )


async def bought_recently(tx: Tx, user_id: uuid.UUID) -> list[uuid.UUID]:
    """Products in the user's paid or fulfilled orders of the last 30 days."""
    rows = await tx.fetch(
        """SELECT DISTINCT i.product_id
             FROM sales_order o JOIN order_item i ON i.order_id = o.id
            WHERE o.user_id = $1 AND o.status = ANY($2::text[])
              AND o.created_at >= now() - make_interval(days => $3)""",
        user_id,
        list(BOUGHT_STATUSES),
        POPULAR_DAYS,
    )
    return [row["product_id"] for row in rows]


_PRODUCT_COLUMNS = (
    "p.id, p.sku, p.name, p.description, p.price_cents, p.currency, p.stock, p.active, "
    "p.created_at, p.updated_at"
)

# Companions of the seeds (scores summed over seeds), then best-sellers; every filter
# applied in SQL. A product in both lists keeps its better (co-purchase) place.
_CANDIDATES = f"""
WITH companions AS (
    SELECT other_id AS product_id, sum(score) AS score
      FROM recommendation_pair WHERE product_id = ANY($1::uuid[])
     GROUP BY other_id),
listed AS (
    SELECT product_id, 0 AS tier, -score AS ord FROM companions
    UNION ALL
    SELECT product_id, 1, rank FROM popular_product),
best AS (
    SELECT DISTINCT ON (product_id) product_id, tier, ord
      FROM listed ORDER BY product_id, tier, ord)
SELECT CASE WHEN b.tier = 0 THEN 'co_purchase' ELSE 'popular' END AS source,
       {_PRODUCT_COLUMNS}
  FROM best b JOIN product p ON p.id = b.product_id
 WHERE p.active AND p.stock > 0 AND p.id <> ALL($2::uuid[])
 ORDER BY b.tier, b.ord, p.id
 LIMIT $3
"""  # noqa: S608 - constant column list


async def candidates(
    tx: Tx, *, seeds: Sequence[uuid.UUID], exclude: Sequence[uuid.UUID], limit: int
) -> list[Candidate]:
    """Up to *limit* recommendable products for *seeds*, never one in *exclude*."""
    rows = await tx.fetch(_CANDIDATES, list(seeds), list(exclude), limit)
    return [Candidate(**dict(row)) for row in rows]


async def recommendable(
    tx: Tx, product_ids: Sequence[uuid.UUID], exclude: Sequence[uuid.UUID]
) -> list[Candidate]:
    """Those of *product_ids* that may be shown (active, in stock, not excluded), in order."""
    rows = await tx.fetch(
        f"""SELECT 'model' AS source, {_PRODUCT_COLUMNS}
              FROM unnest($1::uuid[]) WITH ORDINALITY AS m(id, ord)
              JOIN product p ON p.id = m.id
             WHERE p.active AND p.stock > 0 AND p.id <> ALL($2::uuid[])
             ORDER BY m.ord""",  # noqa: S608 - constant column list
        list(product_ids),
        list(exclude),
    )
    return [Candidate(**dict(row)) for row in rows]


async def is_active_product(tx: Tx, product_id: uuid.UUID) -> bool:
    """Whether the product exists and is active."""
    return bool(await tx.fetchval("SELECT active FROM product WHERE id = $1", product_id))
