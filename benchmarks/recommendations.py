"""`orderly bench --phases recommendations`: answer latency, built in and with a hanging model.

On a scratch database of ``BENCH_RECOMMENDATIONS_ORDERS`` (default 100,000)
orders generated as in ``benchmarks/analytics.py`` (500 products per currency,
2,000 customers), after the real score recompute, in process on the real
service functions (``recommendations.service.for_user`` / ``for_product``):

- ``builtin``: co-purchase and best-sellers, the 2-s answer cache cleared
  before every call (each one reads the database), alternating product and
  user requests of signed-in callers (their 30-day purchases filtered) —
  PRODUCT.md §9: p99 < 50 ms;
- ``model_hanging``: signed-in requests routed to a model service that
  accepts the connection and never answers, the breaker held closed so every
  call waits out ``ORDERLY_RECOMMENDER_TIMEOUT_MS`` (default 250), 8 requests
  in flight at a time, their starts staggered — target p99 < timeout + 20 ms;
- ``breaker_open``: the same hanging model with the real breaker (opens after
  5 failures): later answers skip the call and should cost what ``builtin``
  does (< 5 ms more).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

DEFAULT_ORDERS = 100_000
BUILTIN_SAMPLES = 400
HANGING_SAMPLES = 400
HANGING_CONCURRENCY = 8  # requests in flight at once (each waits out the timeout)
OPEN_SAMPLES = 200


@asynccontextmanager
async def hanging_model() -> AsyncIterator[str]:
    """A model service on 127.0.0.1 that reads each request and never answers; yields its URL."""
    connections: set[asyncio.StreamWriter] = set()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            connections.discard(writer)
            writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/recommend"
    finally:
        server.close()
        for writer in list(connections):
            writer.close()
        await server.wait_closed()


async def measure(url: str, orders: int, say: Any) -> dict[str, Any]:
    """Generate *orders* orders in the database at *url* and time the recommendation answers."""
    import asyncpg

    from benchmarks import analytics as generator
    from benchmarks.analytics import _percentiles
    from orderly.config import Settings
    from orderly.core.db import Database
    from orderly.core.outbound import Breakers, Timeouts, http_client
    from orderly.recommendations import service
    from orderly.recommendations.model import BREAKER, ModelClient
    from orderly.recommendations.routing import AlwaysModel

    timeout_ms = int(Settings.model_fields["recommender_timeout_ms"].default)
    result: dict[str, Any] = {"orders": orders, "timeout_ms": timeout_ms}
    conn = await asyncpg.connect(url)
    database = Database(url, pool_size=4, statement_timeout_ms=3_600_000)
    try:
        started = time.perf_counter()
        await generator._setup_catalog(conn)
        now = await conn.fetchval("SELECT now()")
        # Spread over 90 days: the window the co-purchase scores read.
        await conn.execute(
            generator._GENERATE, orders, now, 90 * 86400, generator.PRODUCTS, generator.USERS
        )
        for statement in generator._FILL:
            await conn.execute(statement)
        # Vacuumed now, so that autovacuum does not wake up on the new rows mid-measurement.
        await conn.execute("VACUUM ANALYZE")
        result["generate_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        async with database.transaction() as tx:
            await service.recompute(tx)
            await tx.commit()
        result["recompute_seconds"] = round(time.perf_counter() - started, 2)
        await conn.execute("ANALYZE")
        say(f"recommendations: {orders:,} orders, scores in {result['recompute_seconds']} s")

        products = [r["id"] for r in await conn.fetch("SELECT id FROM product ORDER BY sku")]
        users = [r["id"] for r in await conn.fetch("SELECT id FROM bench_user ORDER BY i")]

        async def timed(index: int, **model: Any) -> float:
            service.answer_cache.clear()
            t0 = time.perf_counter()
            if index % 2:
                await service.for_product(
                    database,
                    products[index % len(products)],
                    user_id=users[index % len(users)],
                    **model,
                )
            else:
                await service.for_user(database, users[index % len(users)], **model)
            return time.perf_counter() - t0

        for index in range(20):  # warm the pool and the plans
            await timed(index)
        result["builtin"] = _percentiles([await timed(i) for i in range(BUILTIN_SAMPLES)])

        seconds = timeout_ms / 1000
        timeouts = Timeouts(connect=seconds, read=seconds, write=seconds, pool=seconds)
        async with hanging_model() as model_url:
            held = Breakers()
            client = ModelClient(
                model_url,
                held,
                timeout_ms=timeout_ms,
                client=http_client(timeouts=timeouts, max_connections=100),
            )
            # Held closed: every request waits out the timeout (the worst case per request).
            held.configure(BREAKER, threshold=1_000_000, ttl=1.0)

            async def caller(first: int) -> list[float]:
                # Staggered over one timeout, as arrivals would be: in lockstep, eight
                # timeouts firing at once queue each other's fallbacks (a harness artefact).
                await asyncio.sleep(first * timeout_ms / 1000 / HANGING_CONCURRENCY)
                return [
                    await timed(i, model=client, routing=AlwaysModel())
                    for i in range(first, HANGING_SAMPLES, HANGING_CONCURRENCY)
                ]

            try:
                chunks = await asyncio.gather(*(caller(n) for n in range(HANGING_CONCURRENCY)))
            finally:
                await client.aclose()
            result["model_hanging"] = _percentiles([t for chunk in chunks for t in chunk])
            result["model_hanging"]["concurrency"] = HANGING_CONCURRENCY

            breakers = Breakers()
            client = ModelClient(
                model_url,
                breakers,
                timeout_ms=timeout_ms,
                client=http_client(timeouts=timeouts, max_connections=100),
            )
            try:
                for i in range(5):  # the failures that open it
                    await timed(i, model=client, routing=AlwaysModel())
                result["breaker_state"] = await breakers.state(BREAKER)
                samples = [
                    await timed(i, model=client, routing=AlwaysModel()) for i in range(OPEN_SAMPLES)
                ]
            finally:
                await client.aclose()
            result["breaker_open"] = _percentiles(samples)
        result["targets"] = {
            "builtin_p99_ms": 50,
            "model_hanging_p99_ms": timeout_ms + 20,
            "breaker_open_extra_ms": 5,
        }
    finally:
        service.answer_cache.clear()
        await database.dispose()
        await conn.close()
    return result


def run_phase(run: Any) -> None:
    """The runner's entry: a scratch database of its own, migrated, filled, measured."""
    from benchmarks import shop
    from orderly import migrate

    orders = int(os.environ.get("BENCH_RECOMMENDATIONS_ORDERS", DEFAULT_ORDERS))

    async def main() -> dict[str, Any]:
        name = run.database(f"recs_{uuid.uuid4().hex[:4]}")
        url = await shop.create_database(run.server_url, name)
        await asyncio.to_thread(migrate.upgrade, url, "head")
        return await measure(url, orders, run.say)

    run.measurements["recommendations"] = asyncio.run(main())
