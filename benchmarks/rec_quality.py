"""Offline quality of the built-in recommendations: co-purchase against popularity.

A synthetic shop with planted structure, from a fixed seed:

- ``bundles`` groups of ``bundle_size`` products that are bought together;
- ``popular`` products everyone adds now and then (Zipf-like weights);
- every customer likes one bundle (some two); each of their orders holds two
  or three products of a liked bundle, often a popular product and sometimes a
  random one (noise).

Every order but each customer's last is written as paid in the last four
weeks; the last is held out. The scores are computed by the real code
(``recommendations.service.recompute``: the SQL the analytics job runs), then,
for every customer, ten products are asked of:

- **co-purchase**: ``recommendations.service.for_user`` — companions of what the
  customer bought, filled up with best-sellers (what the API serves);
- **popularity**: the same candidates query with no seeds — the 30-day
  best-sellers, under the same filters (never what the customer bought).

Hit-rate@10 is the share of customers whose held-out order holds at least one
of the ten. Run it on a scratch database::

    python -m benchmarks.rec_quality --database-url postgresql://postgres@127.0.0.1:5432/postgres

or as ``orderly bench --phases rec_quality``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from orderly.core.db import Database

TOP_K = 10
_ORDER_COLUMNS = (
    "id", "user_id", "status", "total_cents", "currency", "shipping_address",
    "pii_key_id", "payment_method", "created_at", "updated_at",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """The shape of the synthetic shop (fixed seed: the same shop every run)."""

    seed: int = 20261203
    customers: int = 2_000
    products: int = 400
    bundles: int = 40
    bundle_size: int = 8
    popular: int = 20
    min_orders: int = 3
    max_orders: int = 6
    popular_share: float = 0.6  # orders that add a popular product
    noise_share: float = 0.3  # orders that add a random product


@dataclasses.dataclass(frozen=True)
class Quality:
    """Hit-rates@10 over the held-out orders."""

    customers: int
    training_orders: int
    co_purchase: float
    popularity: float
    answered_by_co_purchase: float  # share of lists whose first item came from co-purchase

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly figures (rates rounded)."""
        return {
            "customers": self.customers,
            "training_orders": self.training_orders,
            "hit_rate_at_10": {
                "co_purchase": round(self.co_purchase, 3),
                "popularity": round(self.popularity, 3),
            },
            "answered_by_co_purchase": round(self.answered_by_co_purchase, 3),
        }


@dataclasses.dataclass
class _Shop:
    products: list[uuid.UUID]
    customers: list[uuid.UUID]
    training: list[tuple[uuid.UUID, uuid.UUID, datetime, list[uuid.UUID]]]  # order, user, at, items
    held_out: dict[uuid.UUID, set[uuid.UUID]]


def _generate(shape: Synthetic, now: datetime) -> _Shop:
    """The shop's products, customers and orders (pure: same seed, same shop)."""
    rng = random.Random(shape.seed)
    products = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(shape.products)]
    shuffled = products[:]
    rng.shuffle(shuffled)
    popular = shuffled[: shape.popular]
    rest = shuffled[shape.popular :]
    bundles = [
        rest[i * shape.bundle_size : (i + 1) * shape.bundle_size] for i in range(shape.bundles)
    ]
    popular_weights = [1 / (rank + 1) for rank in range(len(popular))]
    customers = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(shape.customers)]
    training: list[tuple[uuid.UUID, uuid.UUID, datetime, list[uuid.UUID]]] = []
    held_out: dict[uuid.UUID, set[uuid.UUID]] = {}
    for customer in customers:
        liked = rng.sample(bundles, 2 if rng.random() < 0.3 else 1)
        count = rng.randint(shape.min_orders, shape.max_orders)
        # Minutes ago, oldest first; all inside the 30-day window the scores read.
        moments = sorted((rng.randint(60, 27 * 24 * 60) for _ in range(count)), reverse=True)
        for index, minutes in enumerate(moments):
            items = set(rng.sample(rng.choice(liked), rng.choice((2, 3))))
            if rng.random() < shape.popular_share:
                items.add(rng.choices(popular, popular_weights)[0])
            if rng.random() < shape.noise_share:
                items.add(rng.choice(products))
            if index == count - 1:
                held_out[customer] = items
            else:
                order_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                at = now - timedelta(minutes=minutes)
                training.append((order_id, customer, at, sorted(items)))
    return _Shop(products, customers, training, held_out)


async def _write(conn: asyncpg.Connection, shop: _Shop) -> None:
    """The shop as rows: products, customers, paid orders with their lines and events."""
    await conn.copy_records_to_table(
        "user_account",
        columns=["id", "email", "password_hash", "role"],
        records=[(u, f"q{u.hex[:16]}@example.test", "x", "customer") for u in shop.customers],
    )
    await conn.copy_records_to_table(
        "product",
        columns=["id", "sku", "name", "price_cents", "currency", "stock"],
        records=[
            (p, f"Q-{index:05d}", f"Synthetic {index}", 1000, "USD", 1_000_000)
            for index, p in enumerate(shop.products)
        ],
    )
    await conn.copy_records_to_table(
        "sales_order",
        columns=list(_ORDER_COLUMNS),
        records=[
            (o, u, "paid", 1000 * len(items), "USD", "sealed", "quality", "credits", at, at)
            for o, u, at, items in shop.training
        ],
    )
    await conn.copy_records_to_table(
        "order_item",
        columns=["order_id", "product_id", "quantity", "unit_price_cents"],
        records=[(o, p, 1, 1000) for o, _, _, items in shop.training for p in items],
    )
    await conn.copy_records_to_table(
        "order_event",
        columns=["order_id", "from_status", "to_status", "reason", "created_at"],
        records=[
            row
            for o, _, at, _ in shop.training
            for row in ((o, None, "pending", "placed", at), (o, "pending", "paid", "quality", at))
        ],
    )
    await conn.execute("ANALYZE")


async def evaluate(database: Database, conn: asyncpg.Connection, shape: Synthetic) -> Quality:
    """Write the synthetic shop into an empty migrated database and measure hit-rate@10."""
    from orderly.recommendations import repository as recommendations_repo
    from orderly.recommendations import service as recommendations

    now = await conn.fetchval("SELECT now()")
    shop = _generate(shape, now)
    await _write(conn, shop)
    async with database.transaction() as tx:
        await recommendations.recompute(tx)
        await tx.commit()

    co_hits = pop_hits = first_co = 0
    for customer in shop.customers:
        recommendations.answer_cache.clear()
        served = await recommendations.for_user(database, customer, limit=TOP_K)
        async with database.transaction() as tx:
            bought = await recommendations_repo.bought_recently(tx, customer)
            best = await recommendations_repo.candidates(tx, seeds=[], exclude=bought, limit=TOP_K)
        wanted = shop.held_out[customer]
        co_hits += bool(wanted & {item.id for item in served.items})
        pop_hits += bool(wanted & {item.id for item in best})
        first_co += served.source == "co_purchase"
    recommendations.answer_cache.clear()
    n = len(shop.customers)
    return Quality(
        customers=n,
        training_orders=len(shop.training),
        co_purchase=co_hits / n,
        popularity=pop_hits / n,
        answered_by_co_purchase=first_co / n,
    )


async def measure(server_url: str, name: str, shape: Synthetic) -> dict[str, Any]:
    """On a new scratch database *name* of the server at *server_url* (migrated, then filled)."""
    from benchmarks import shop
    from orderly import migrate

    url = await shop.create_database(server_url, name)
    await asyncio.to_thread(migrate.upgrade, url, "head")
    conn = await asyncpg.connect(url)
    database = Database(url, pool_size=2)
    try:
        started = time.perf_counter()
        quality = await evaluate(database, conn, shape)
        result = {**quality.as_dict(), "seed": shape.seed, "seconds": 0.0}
        result["seconds"] = round(time.perf_counter() - started, 1)
        return result
    finally:
        await database.dispose()
        await conn.close()


def run_phase(run: Any) -> None:
    """The runner's entry (``--phases rec_quality``): its own scratch database."""
    customers = int(os.environ.get("BENCH_REC_QUALITY_CUSTOMERS", Synthetic.customers))
    name = run.database(f"recq_{uuid.uuid4().hex[:4]}")
    result = asyncio.run(measure(run.server_url, name, Synthetic(customers=customers)))
    run.measurements["rec_quality"] = result
    rates = result["hit_rate_at_10"]
    run.say(
        f"rec_quality: hit-rate@10 co-purchase {rates['co_purchase']:.1%}, "
        f"popularity {rates['popularity']:.1%} ({result['customers']} customers)"
    )


def main() -> None:
    """``python -m benchmarks.rec_quality``: create a scratch database, measure, drop it."""
    from benchmarks import shop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "ORDERLY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server to create the scratch database on",
    )
    parser.add_argument("--seed", type=int, default=Synthetic.seed)
    parser.add_argument("--customers", type=int, default=Synthetic.customers)
    args = parser.parse_args()
    name = f"orderly_bench_recq_{uuid.uuid4().hex[:8]}"

    async def run() -> dict[str, Any]:
        try:
            return await measure(
                args.database_url, name, Synthetic(seed=args.seed, customers=args.customers)
            )
        finally:
            await shop.drop_database(args.database_url, name)

    print(json.dumps(asyncio.run(run()), indent=2))


if __name__ == "__main__":
    main()
