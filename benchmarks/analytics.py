"""`orderly bench --phases analytics`: the summary and recommendations at a million orders.

Generates ``BENCH_ANALYTICS_ORDERS`` (default 1,000,000) orders over the last
365 days in SQL (lines, status events, ledger transactions for their money:
credit and card payments, cancels of paid orders and refunds, two currencies),
then measures, in process on the real service functions:

- the full rebuild of the summary tables;
- the summary read (default range: 30 days), p50/p99 over 300 reads;
- the incremental refresh after 1,000 new paid orders (summary tables only,
  and with the recommendation scores);
- recommendations from the built-in source (cache cleared: every read goes
  to the database), p50/p99;
- whether EXPLAIN of the summary query names any order or ledger table.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

DEFAULT_ORDERS = 1_000_000
NEW_ORDERS = 1_000
PRODUCTS = 500
USERS = 2_000
ORDER_TABLES = ("sales_order", "order_item", "order_event", "ledger_transaction", "card_payment")

_GENERATE = """
CREATE TEMP TABLE gen AS
SELECT n, gen_random_uuid() AS id,
       CASE WHEN n % 10 = 0 THEN 'EUR' ELSE 'USD' END AS currency,
       $2::timestamptz - make_interval(secs => (hashint4(n::int)::bigint + 2147483648) % $3) AS at,
       (n * 7919) % $4 AS p1, (n * 104729 + 13) % $4 AS p2, 1 + n % 3 AS q1, n % 2 AS two,
       n % 20 AS kind, (n % $5) AS u
  FROM generate_series(1::bigint, $1) AS n;
"""

# kind: 0 pending · 1 cancelled unpaid · 2 cancelled after paying · 3 refunded ·
# 4–11 fulfilled · else paid; every third payment by card.
_FILL = [
    """INSERT INTO sales_order (id, user_id, status, total_cents, currency, shipping_address,
                                pii_key_id, payment_method, created_at, updated_at)
       SELECT g.id, us.id,
              CASE WHEN kind = 0 THEN 'pending' WHEN kind IN (1, 2) THEN 'cancelled'
                   WHEN kind = 3 THEN 'refunded' WHEN kind BETWEEN 4 AND 11 THEN 'fulfilled'
                   ELSE 'paid' END,
              g.q1 * p1.price_cents + g.two * p2.price_cents, g.currency, 'sealed', 'bench',
              CASE WHEN kind = 0 OR kind = 1 THEN NULL WHEN n % 3 = 0 THEN 'card'
                   ELSE 'credits' END,
              g.at, g.at
         FROM gen g JOIN bench_product p1 ON p1.currency = g.currency AND p1.i = g.p1
         JOIN bench_product p2 ON p2.currency = g.currency AND p2.i = g.p2
         JOIN bench_user us ON us.i = g.u""",
    """INSERT INTO order_item (order_id, product_id, quantity, unit_price_cents)
       SELECT g.id, p.id, g.q1, p.price_cents FROM gen g
         JOIN bench_product p ON p.currency = g.currency AND p.i = g.p1
       UNION ALL
       SELECT g.id, p.id, 1, p.price_cents FROM gen g
         JOIN bench_product p ON p.currency = g.currency AND p.i = g.p2
        WHERE g.two = 1 AND g.p2 <> g.p1""",
    """UPDATE sales_order o SET total_cents = s.total
         FROM (SELECT order_id, sum(quantity * unit_price_cents) AS total
                 FROM order_item GROUP BY order_id) s
        WHERE o.id = s.order_id AND o.total_cents <> s.total""",
    """INSERT INTO order_event (order_id, from_status, to_status, reason, created_at)
       SELECT id, NULL, 'pending', 'placed', at FROM gen
       UNION ALL
       SELECT id, 'pending', 'paid', 'bench', least(now(), at + interval '2 minutes')
         FROM gen WHERE kind >= 2
       UNION ALL
       SELECT id, 'pending', 'cancelled', 'bench', least(now(), at + interval '1 hour')
         FROM gen WHERE kind = 1
       UNION ALL
       SELECT id, 'paid', 'cancelled', 'bench', least(now(), at + interval '3 hours')
         FROM gen WHERE kind = 2
       UNION ALL
       SELECT id, 'paid', 'fulfilled', 'bench', least(now(), at + interval '1 day') FROM gen
        WHERE kind BETWEEN 3 AND 11
       UNION ALL
       SELECT id, 'fulfilled', 'refunded', 'bench', least(now(), at + interval '5 days') FROM gen
        WHERE kind = 3""",
    """INSERT INTO ledger_transaction (id, kind, external_id, user_id, amount_cents, currency,
                                       created_at)
       SELECT gen_random_uuid(), CASE WHEN o.payment_method = 'card' THEN 'card_payment'
                                      ELSE 'payment' END,
              'order:' || o.id, o.user_id, o.total_cents, o.currency,
              least(now(), g.at + interval '2 minutes')
         FROM gen g JOIN sales_order o ON o.id = g.id WHERE g.kind >= 2
       UNION ALL
       SELECT gen_random_uuid(), CASE WHEN o.payment_method = 'card' THEN 'card_refund'
                                      ELSE 'refund' END,
              'order:' || o.id, o.user_id, o.total_cents, o.currency,
              least(now(), g.at + CASE WHEN g.kind = 2 THEN interval '3 hours'
                                       ELSE interval '5 days' END)
         FROM gen g JOIN sales_order o ON o.id = g.id WHERE g.kind IN (2, 3)""",
]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "samples": len(ordered),
    }


async def _setup_catalog(conn: Any) -> None:
    await conn.execute(
        """INSERT INTO user_account (id, email, password_hash, role)
           SELECT gen_random_uuid(), 'bench' || i || '@example.test', 'x', 'customer'
             FROM generate_series(0, $1 - 1) i""",
        USERS,
    )
    await conn.execute(
        """CREATE TEMP TABLE bench_user AS
           SELECT row_number() OVER (ORDER BY id) - 1 AS i, id FROM user_account"""
    )
    await conn.execute(
        """INSERT INTO product (id, sku, name, price_cents, currency, stock)
           SELECT gen_random_uuid(), c || '-' || lpad(i::text, 5, '0'), 'Bench product ' || i,
                  100 + (i * 37) % 9900, c, 1000000
             FROM generate_series(0, $1 - 1) i, unnest(ARRAY['USD', 'EUR']) c""",
        PRODUCTS,
    )
    await conn.execute(
        """CREATE TEMP TABLE bench_product AS
           SELECT currency, (substr(sku, 5))::int AS i, id, price_cents FROM product"""
    )


async def measure(url: str, orders: int, say: Any) -> dict[str, Any]:
    """Generate *orders* orders in the database at *url* and measure the analytics paths."""
    import asyncpg

    from orderly.analytics import repository as analytics_repo
    from orderly.analytics import service as analytics
    from orderly.core.db import Database
    from orderly.recommendations import service as recommendations

    result: dict[str, Any] = {"orders": orders}
    conn = await asyncpg.connect(url)
    database = Database(url, pool_size=4, statement_timeout_ms=3_600_000)
    try:
        await _setup_catalog(conn)
        started = time.perf_counter()
        now = await conn.fetchval("SELECT now()")
        await conn.execute(_GENERATE, orders, now, 365 * 86400, PRODUCTS, USERS)
        for statement in _FILL:
            await conn.execute(statement)
        await conn.execute("ANALYZE")
        result["generate_seconds"] = round(time.perf_counter() - started, 1)
        say(f"analytics: {orders:,} orders generated in {result['generate_seconds']} s")

        started = time.perf_counter()
        async with database.transaction() as tx:
            await analytics.refresh(tx, full=True)
            await tx.commit()
        result["full_rebuild_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        async with database.transaction() as tx:
            await recommendations.recompute(tx)
            await tx.commit()
        result["recommendations_recompute_seconds"] = round(time.perf_counter() - started, 2)
        await conn.execute("ANALYZE")
        say(f"analytics: full rebuild {result['full_rebuild_seconds']} s")

        samples = []
        for _ in range(300):
            t0 = time.perf_counter()
            async with database.transaction() as tx:
                await analytics.summary(tx, currency="USD")
            samples.append(time.perf_counter() - t0)
        result["summary_30_days"] = _percentiles(samples)
        samples = []
        for _ in range(50):
            t0 = time.perf_counter()
            async with database.transaction() as tx:
                await analytics.summary(
                    tx,
                    currency="USD",
                    first=(now - timedelta(days=364)).date(),
                    last=now.date(),
                )
            samples.append(time.perf_counter() - t0)
        result["summary_365_days"] = _percentiles(samples)
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + analytics_repo.SUMMARY_SQL,
            *analytics_repo.summary_args("USD", (now - timedelta(days=29)).date(), now.date(), 10),
        )
        result["explain_reads_order_tables"] = [t for t in ORDER_TABLES if f'"{t}"' in str(plan)]

        # 1,000 new paid orders, as the services would write them, then the refresh.
        await conn.execute("DROP TABLE gen")
        # Stamped now, after the rebuild's watermark, as new orders would be.
        fresh = await conn.fetchval("SELECT clock_timestamp()")
        await conn.execute(_GENERATE, NEW_ORDERS, fresh, 1, PRODUCTS, USERS)
        await conn.execute("UPDATE gen SET kind = 12, id = gen_random_uuid()")
        for statement in _FILL:
            if "UPDATE sales_order" in statement:
                statement = statement.replace(
                    "FROM order_item GROUP BY order_id",
                    "FROM order_item WHERE order_id IN (SELECT id FROM gen) GROUP BY order_id",
                )
            await conn.execute(statement)
        started = time.perf_counter()
        async with database.transaction() as tx:
            refreshed = await analytics.refresh(tx)
            await tx.commit()
        result["incremental_refresh_1000_orders_seconds"] = round(time.perf_counter() - started, 3)
        result["incremental_refresh_days"] = refreshed.days
        # Past the watermark's margin, so that the next refresh's watermark is after the
        # new orders: it recomputes the scores, and the one after that finds nothing new.
        await asyncio.sleep(analytics.WATERMARK_MARGIN_SECONDS + 0.5)
        started = time.perf_counter()
        async with database.transaction() as tx:
            await analytics.refresh_all(tx)
            await tx.commit()
        result["refresh_with_recommendations_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        async with database.transaction() as tx:
            unchanged = await analytics.refresh_all(tx)
            await tx.commit()
        result["refresh_all_unchanged_seconds"] = round(time.perf_counter() - started, 3)
        result["refresh_all_unchanged_recomputed_scores"] = unchanged.recommendations

        products = [
            row["id"] for row in await conn.fetch("SELECT id FROM product ORDER BY sku LIMIT 200")
        ]
        users = [row["id"] for row in await conn.fetch("SELECT id FROM bench_user LIMIT 200")]
        samples = []
        for index in range(400):
            recommendations.answer_cache.clear()
            t0 = time.perf_counter()
            if index % 2:
                await recommendations.for_product(database, products[index % len(products)])
            else:
                await recommendations.for_user(database, users[index % len(users)])
            samples.append(time.perf_counter() - t0)
        result["recommendations_builtin"] = _percentiles(samples)
        result["targets"] = {
            "summary_p99_ms": 20,
            "incremental_refresh_seconds": 1,
            "recommendations_p99_ms": 50,
        }
    finally:
        await database.dispose()
        await conn.close()
    return result


def run_phase(run: Any) -> None:
    """The runner's entry: a scratch database of its own, migrated, filled, measured."""
    from benchmarks import shop
    from orderly import migrate

    orders = int(os.environ.get("BENCH_ANALYTICS_ORDERS", DEFAULT_ORDERS))

    async def main() -> dict[str, Any]:
        name = run.database(f"analytics_{uuid.uuid4().hex[:4]}")
        url = await shop.create_database(run.server_url, name)
        await asyncio.to_thread(migrate.upgrade, url, "head")
        return await measure(url, orders, run.say)

    run.measurements["analytics"] = asyncio.run(main())
