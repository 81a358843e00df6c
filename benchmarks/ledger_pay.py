"""Pay-with-credits throughput at the service level, against the same SQL run raw.

Many wallets, each funded once; concurrent workers each run one request-shaped
transaction: ``ledger.pay_from_wallet`` then COMMIT. The raw line runs the same
posting statement on plain asyncpg connections (no SQLAlchemy session), so the
ratio is the cost of our session plumbing on this path.

Run: ``python -m benchmarks.ledger_pay postgresql://postgres@127.0.0.1:5432/postgres``
(creates and drops a scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from orderly import migrate
from orderly.core.db import Database
from orderly.ledger import repository, service

WALLETS = 200
PRICE = 100


async def _setup(url: str) -> list[uuid.UUID]:
    conn = await asyncpg.connect(url)
    users = [uuid.uuid4() for _ in range(WALLETS)]
    await conn.executemany(
        """INSERT INTO user_account (id, email, password_hash, role)
           VALUES ($1, $2, 'x', 'customer')""",
        [(u, f"{u.hex}@bench.test") for u in users],
    )
    await conn.close()
    database = Database(url, pool_size=4)
    async with database.session() as session:
        for user in users:
            await service.grant_credits(
                session, user_id=user, amount_cents=10**9, transaction_id=f"f{user}", reason="b"
            )
        await session.commit()
    await database.dispose()
    return users


async def _run(
    concurrency: int, seconds: float, one: Callable[[int, int], Awaitable[None]]
) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(worker: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            await one(worker, n)
            n += 1
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(concurrency)))
    return done / (time.perf_counter() - started)


def _on(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


async def _admin(base: str, sql: str) -> None:
    conn = await asyncpg.connect(_on(base, "postgres"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main(base: str, seconds: float, concurrency: int) -> None:
    """Measure both lines on a scratch database, then drop it."""
    name = f"orderly_bench_ledger_{uuid.uuid4().hex[:6]}"
    await _admin(base, f'CREATE DATABASE "{name}"')
    url = _on(base, name)
    try:
        await asyncio.to_thread(migrate.upgrade, url, "head")
        users = await _setup(url)
        database = Database(url, pool_size=10)

        async def via_service(worker: int, n: int) -> None:
            async with database.session() as session:
                await service.pay_from_wallet(
                    session,
                    user_id=users[(worker * 7919 + n) % WALLETS],
                    amount_cents=PRICE,
                    currency="USD",
                    reference=f"s-{worker}-{n}",
                )
                await session.commit()

        pool = await asyncpg.create_pool(url, min_size=10, max_size=10)
        revenue = service.system_account("revenue", "USD")

        async def raw(worker: int, n: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await conn.fetchrow(
                    repository._WALLET_POSTING,
                    uuid.uuid4(),
                    "payment",
                    f"r-{worker}-{n}",
                    users[(worker * 7919 + n) % WALLETS],
                    PRICE,
                    "USD",
                    None,
                    None,
                    None,
                    -PRICE,
                    revenue[0],
                    revenue[1],
                )

        raw_tps = await _run(concurrency, seconds, raw)
        service_tps = await _run(concurrency, seconds, via_service)
        await pool.close()
        async with database.session() as session:
            report = await service.check_ledger(session)
        await database.dispose()
        print(f"raw asyncpg, same statement : {raw_tps:8.0f} payments/s")
        print(f"ledger.pay_from_wallet      : {service_tps:8.0f} payments/s")
        print(f"ratio                       : {service_tps / raw_tps:8.2f}")
        print(f"ledger checks after the run : {'clean' if report.ok else report.violations[:3]}")
    finally:
        await _admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.seconds, args.concurrency))
