"""Paying with credits: the ledger posting alone, and the whole pay request on bare asyncpg.

Two uses.

* ``orderly bench --phases …,pay`` (``benchmarks/runner.py``) measures ``POST
  /v1/orders/{id}/pay`` with credits over HTTP against *the same statements* on
  bare asyncpg: the request is recorded through the real app (two requests, so
  the values that vary per request are told apart from the constants), then
  :func:`replay` runs that transaction on a plain asyncpg pool, each time for
  another pending order, its owner, a fresh idempotency key and fresh ids.
  :func:`fund_wallets` and :func:`clone_orders` prepare the wallets and the
  pending orders both passes consume (an order is paid once).
* Standalone, the service-level line: many wallets, each funded once; concurrent
  workers each run one request-shaped transaction, ``ledger.pay_from_wallet``
  then COMMIT, against the same posting statement run raw on asyncpg — the
  cost of our transaction plumbing on this path.
  Run: ``python -m benchmarks.ledger_pay postgresql://postgres@127.0.0.1:5432/postgres``
  (creates and drops a scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from benchmarks.capture import Recorded, request_transaction
from orderly import migrate
from orderly.core.db import Database
from orderly.ledger import repository, service

WALLETS = 200
PRICE = 100


async def fund_wallets(
    url: str,
    user_ids: Sequence[uuid.UUID],
    *,
    currency: str = service.WALLET_CURRENCY,
    amount_cents: int = 10**9,
) -> None:
    """Grant each user *amount_cents* of credits in *currency*, through the ledger service."""
    database = Database(url, pool_size=2)
    try:
        async with database.transaction() as tx:
            for user in user_ids:
                await service.grant_credits(
                    tx,
                    user_id=user,
                    amount_cents=amount_cents,
                    transaction_id=f"bench-{user}-{currency}",
                    reason="benchmark",
                    currency=currency,
                )
            await tx.commit()
    finally:
        await database.dispose()


async def _setup(url: str) -> list[uuid.UUID]:
    conn = await asyncpg.connect(url)
    users = [uuid.uuid4() for _ in range(WALLETS)]
    await conn.executemany(
        """INSERT INTO user_account (id, email, password_hash, role)
           VALUES ($1, $2, 'x', 'customer')""",
        [(u, f"{u.hex}@bench.test") for u in users],
    )
    await conn.close()
    await fund_wallets(url, users)
    return users


# ---------------------------------------------------------------- pending orders


async def _columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = $1
            ORDER BY ordinal_position""",
        table,
    )
    return [row["column_name"] for row in rows]


async def clone_orders(
    url: str, template: uuid.UUID, owners: Sequence[uuid.UUID], count: int
) -> list[tuple[int, uuid.UUID]]:
    """*count* pending copies of order *template* (with its lines), owners taken in turn.

    Returns (owner index, order id) pairs. The copies are SQL copies of a real
    order the app placed (same total, currency, lines and sealed address); only
    paying them is measured, so placing them through the app would only cost time.
    """
    ids = [uuid.uuid4() for _ in range(count)]
    who = [owners[k % len(owners)] for k in range(count)]
    conn = await asyncpg.connect(url)
    try:
        order_cols = await _columns(conn, "sales_order")
        item_cols = await _columns(conn, "order_item")

        def select(cols: list[str], own: dict[str, str]) -> tuple[str, str]:
            names = ", ".join(f'"{c}"' for c in cols)
            values = ", ".join(own.get(c, f'src."{c}"') for c in cols)
            return names, values

        o_names, o_values = select(
            order_cols, {"id": "m.id", "user_id": "m.user_id", "status": "'pending'"}
        )
        i_names, i_values = select(item_cols, {"order_id": "m.id"})
        async with conn.transaction():
            await conn.execute(
                f"""INSERT INTO sales_order ({o_names})
                    SELECT {o_values} FROM sales_order src,
                           unnest($2::uuid[], $3::uuid[]) AS m(id, user_id)
                     WHERE src.id = $1""",
                template,
                ids,
                who,
            )
            await conn.execute(
                f"""INSERT INTO order_item ({i_names})
                    SELECT {i_values} FROM order_item src, unnest($2::uuid[]) AS m(id)
                     WHERE src.order_id = $1""",
                template,
                ids,
            )
        await conn.execute("ANALYZE sales_order")
    finally:
        await conn.close()
    index = {owner: k for k, owner in enumerate(owners)}
    return [(index[w], i) for w, i in zip(who, ids, strict=True)]


# ---------------------------------------------------------------- the pay request, replayed

_ARG = re.compile(r"\$(\d+)")
Mapping_ = dict[str, str]


def _replace_text(text: str, mapping: Mapping_) -> str:
    for old, new in mapping.items():
        if old in text:
            text = text.replace(old, new)
    return text


def _compile(a: Any, b: Any, known: set[str]) -> Callable[[Mapping_], Any]:
    """How one recorded value is rebuilt for another order.

    *a* and *b* are the value in two recorded requests. Values that name the
    order, its owner or the idempotency key (*known*, as text) are mapped; a
    UUID that differs between the two requests and is none of those is a fresh
    id (uuid4 per replay); a differing timestamp is "now"; the rest is constant.
    """
    if isinstance(a, uuid.UUID):
        text = str(a)
        if text in known:
            return lambda m: uuid.UUID(m[text])
        if a != b:
            return lambda m: uuid.uuid4()
        return lambda m: a
    if isinstance(a, str):
        if any(k in a for k in known):
            return lambda m: _replace_text(a, m)
        return lambda m: a
    if isinstance(a, bytes | bytearray | memoryview):
        raw = bytes(a).decode("utf-8", errors="surrogateescape")
        if any(k in raw for k in known):
            return lambda m: _replace_text(raw, m).encode("utf-8", errors="surrogateescape")
        return lambda m: a
    if isinstance(a, datetime) and a != b:
        return lambda m: datetime.now(a.tzinfo)
    if isinstance(a, dict):
        return _compile(orjson.dumps(a).decode(), orjson.dumps(b).decode(), known)
    if isinstance(a, list | tuple):
        other = b if isinstance(b, list | tuple) and len(b) == len(a) else a
        parts = [_compile(x, y, known) for x, y in zip(a, other, strict=True)]
        kind = type(a)
        return lambda m: kind(part(m) for part in parts)
    return lambda m: a


@dataclasses.dataclass
class ReplayStatement:
    """One recorded statement and how to rebuild its arguments (its rows, when ``many``)."""

    sql: str
    args: list[Callable[[Mapping_], Any]]
    many: bool

    def values(self, mapping: Mapping_) -> list[Any]:
        """The arguments for the request *mapping* describes."""
        return [arg(mapping) for arg in self.args]


@dataclasses.dataclass
class PayReplay:
    """The recorded pay transaction, ready to run for any pending order."""

    statements: list[ReplayStatement]
    summary: list[str]
    excluded: list[str]
    order_a: str
    key_a: str
    user_values: list[dict[str, str]]  # per user index: first user's value -> this user's

    @classmethod
    def from_recordings(
        cls,
        a: Sequence[Recorded],
        b: Sequence[Recorded],
        *,
        order_a: uuid.UUID,
        order_b: uuid.UUID,
        key_a: str,
        key_b: str,
        user_values: list[dict[str, str]],
    ) -> PayReplay:
        """Two recorded pay requests of the first user (orders *order_a*, *order_b*)."""
        what = "POST /v1/orders/{id}/pay"
        chosen_a, excluded = request_transaction(a, "insert into ledger_transaction", what)
        chosen_b, _ = request_transaction(b, "insert into ledger_transaction", what)
        if [r.sql for r in chosen_a] != [r.sql for r in chosen_b]:
            raise RuntimeError("two pay requests ran different statements: cannot replay")
        known = {str(order_a), key_a, *user_values[0]}
        statements: list[ReplayStatement] = []
        for ra, rb in zip(chosen_a, chosen_b, strict=True):
            # The two requests' values, with order B's own ids put back to A's.
            args_b = _compile(rb.args, rb.args, {str(order_b), key_b})(
                {str(order_b): str(order_a), key_b: key_a}
            )
            highest = max((int(n) for n in _ARG.findall(ra.sql)), default=0)
            many = (
                bool(ra.args)
                and all(isinstance(row, tuple) for row in ra.args)
                and highest == len(ra.args[0]) != len(ra.args)
            )
            rows_b = args_b if len(args_b) == len(ra.args) else ra.args
            statements.append(
                ReplayStatement(
                    ra.sql,
                    [_compile(x, y, known) for x, y in zip(ra.args, rows_b, strict=True)],
                    many,
                )
            )
        summary = [" ".join(r.sql.split())[:110] for r in chosen_a]
        return cls(statements, summary, excluded, str(order_a), key_a, user_values)

    def mapping(self, user: int, order_id: uuid.UUID, key: str) -> Mapping_:
        """What the first recorded request's order, owner and key become for this one."""
        return {self.order_a: str(order_id), self.key_a: key, **self.user_values[user]}


async def _init(conn: asyncpg.Connection) -> None:
    # The app's json/jsonb codec (orderly.core.db): JSON text or Python values in,
    # orjson out, so the recorded arguments bind exactly as they did there.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda v: v if isinstance(v, str) else orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


@dataclasses.dataclass
class ReplayResult:
    """Transactions per second of the bare replay, its latency and its Python CPU."""

    transactions: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float
    concurrency: int
    orders_left: int
    orders_used: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (the keys of an HTTP pass where they mean the same)."""
        from benchmarks.loadgen import percentile

        ms = sorted(self.latencies_ms)
        tps = self.transactions / self.seconds if self.seconds else 0.0
        return {
            "tool": f"bare asyncpg, pool {self.concurrency}, {self.concurrency} tasks",
            "duration_s": round(self.seconds, 3),
            "requests": self.transactions,
            "ok": self.transactions,
            "ok_rps": round(tps, 1),
            "tps": round(tps, 1),
            "p50_ms": round(percentile(ms, 50), 3),
            "p95_ms": round(percentile(ms, 95), 3),
            "p99_ms": round(percentile(ms, 99), 3),
            "client_cpu_ms_per_request": round(
                self.cpu_seconds * 1000 / max(1, self.transactions), 3
            ),
            "orders_left": self.orders_left,
        }


async def replay(
    url: str,
    script: PayReplay,
    targets: Sequence[tuple[int, uuid.UUID]],
    *,
    seconds: float,
    concurrency: int = 10,
    key_prefix: str = "bare",
) -> ReplayResult:
    """Run the recorded pay transaction for *targets* in turn, *concurrency* at a time.

    Stops after *seconds* or when every target was paid. CPU is this process's.
    """
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency, init=_init)
    latencies: list[float] = []
    cursor = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal cursor
        while time.perf_counter() < deadline and cursor < len(targets):
            user, order_id = targets[cursor]
            cursor += 1
            mapping = script.mapping(user, order_id, f"{key_prefix}-{cursor}")
            began = time.perf_counter()
            async with pool.acquire() as conn:
                for statement in script.statements:
                    if not statement.args:
                        await conn.execute(statement.sql)
                    elif statement.many:  # the app sent these rows with executemany
                        await conn.executemany(statement.sql, statement.values(mapping))
                    else:
                        await conn.fetch(statement.sql, *statement.values(mapping))
            latencies.append((time.perf_counter() - began) * 1000)

    try:
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    finally:
        await pool.close()
    return ReplayResult(
        len(latencies), elapsed, latencies, cpu, concurrency, max(0, len(targets) - cursor), cursor
    )


async def count_paid(url: str, order_ids: Sequence[uuid.UUID]) -> tuple[int, int]:
    """How many of *order_ids* are paid, and how many have a ledger payment (a replay check)."""
    conn = await asyncpg.connect(url)
    try:
        paid = await conn.fetchval(
            "SELECT count(*) FROM sales_order WHERE id = ANY($1::uuid[]) AND status = 'paid'",
            list(order_ids),
        )
        posted = await conn.fetchval(
            "SELECT count(*) FROM ledger_transaction WHERE kind = 'payment'"
            " AND external_id = ANY($1::text[])",
            [f"order:{order_id}" for order_id in order_ids],
        )
    finally:
        await conn.close()
    return int(paid), int(posted)


# ---------------------------------------------------------------- standalone


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
            async with database.transaction() as tx:
                await service.pay_from_wallet(
                    tx,
                    user_id=users[(worker * 7919 + n) % WALLETS],
                    amount_cents=PRICE,
                    currency="USD",
                    reference=f"s-{worker}-{n}",
                )
                await tx.commit()

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
        async with database.transaction() as tx:
            report = await service.check_ledger(tx)
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
