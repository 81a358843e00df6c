"""Ledger invariants under real concurrency: many sessions racing on one wallet."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg

from orderly.core.db import Database
from orderly.errors import InsufficientFunds
from orderly.ledger import service as ledger
from tests.ledger.conftest import MakeUser

PRICE = 700


async def test_100_concurrent_grants_with_one_transaction_id_credit_once(
    database_url: str, database: Database, make_user: MakeUser
) -> None:
    user = await make_user()
    racing = Database(database_url, pool_size=12)

    async def grant() -> bool:
        async with racing.transaction() as tx:
            posted = await ledger.grant_credits(
                tx, user_id=user, amount_cents=2500, transaction_id="bonus-1", reason="r"
            )
            await tx.commit()
            return posted.created

    try:
        created = await asyncio.gather(*(grant() for _ in range(100)))
    finally:
        await racing.dispose()
    assert Counter(created) == {True: 1, False: 99}
    async with database.transaction() as tx:
        assert await ledger.balance(tx, user) == 2500
        lines = await ledger.list_wallet_transactions(tx, user, limit=100)
        report = await ledger.check_ledger(tx)
    assert len(lines) == 1
    assert report.ok, report.violations


async def test_50_concurrent_payments_on_a_wallet_funded_for_10(
    database_url: str, database: Database, make_user: MakeUser, raw_db: asyncpg.Connection
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=10 * PRICE, transaction_id="fund", reason="r"
        )
        await tx.commit()
    racing = Database(database_url, pool_size=12)
    lowest: list[int] = []
    stop = asyncio.Event()

    async def watch() -> None:
        # Sample the committed balance while the race runs: it must never dip below zero.
        while not stop.is_set():
            lowest.append(
                await raw_db.fetchval(
                    "SELECT balance_cents FROM ledger_account WHERE user_id = $1", user
                )
            )
            await asyncio.sleep(0)

    async def pay(n: int) -> str:
        async with racing.transaction() as tx:
            try:
                await ledger.pay_from_wallet(
                    tx, user_id=user, amount_cents=PRICE, currency="USD", reference=f"o-{n}"
                )
            except InsufficientFunds:
                await tx.rollback()
                return "402"
            await asyncio.sleep(0.001)  # hold the lock a little, as a real request would
            await tx.commit()
            return "200"

    watcher = asyncio.create_task(watch())
    try:
        outcomes = await asyncio.gather(*(pay(n) for n in range(50)))
    finally:
        stop.set()
        await watcher
        await racing.dispose()
    assert Counter(outcomes) == {"200": 10, "402": 40}
    assert min(lowest) >= 0
    async with database.transaction() as tx:
        assert await ledger.balance(tx, user) == 0
        report = await ledger.check_ledger(tx)
    assert report.ok, report.violations
    assert (
        await raw_db.fetchval("SELECT count(*) FROM ledger_transaction WHERE kind = 'payment'")
        == 10
    )


async def test_20_concurrent_payments_of_one_reference_debit_once(
    database_url: str, database: Database, make_user: MakeUser
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=5 * PRICE, transaction_id="fund", reason="r"
        )
        await tx.commit()
    racing = Database(database_url, pool_size=10)

    async def pay() -> bool:
        async with racing.transaction() as tx:
            posted = await ledger.pay_from_wallet(
                tx, user_id=user, amount_cents=PRICE, currency="USD", reference="order-x"
            )
            await tx.commit()
            return posted.created

    try:
        created = await asyncio.gather(*(pay() for _ in range(20)))
    finally:
        await racing.dispose()
    assert Counter(created) == {True: 1, False: 19}
    async with database.transaction() as tx:
        assert await ledger.balance(tx, user) == 4 * PRICE


async def test_concurrent_refunds_and_payments_across_wallets_stay_consistent(
    database_url: str, database: Database, make_user: MakeUser
) -> None:
    users = [await make_user() for _ in range(5)]
    async with database.transaction() as tx:
        for user in users:
            await ledger.grant_credits(
                tx,
                user_id=user,
                amount_cents=10 * PRICE,
                transaction_id=f"f-{user}",
                reason="r",
            )
        await tx.commit()
    racing = Database(database_url, pool_size=12)

    async def pay_then_refund(user_index: int, n: int) -> None:
        user = users[user_index]
        reference = f"o-{user_index}-{n}"
        async with racing.transaction() as tx:
            try:
                await ledger.pay_from_wallet(
                    tx, user_id=user, amount_cents=PRICE, currency="USD", reference=reference
                )
            except InsufficientFunds:  # 20 racing payers on 10 payments' worth: legitimate
                return
            await tx.commit()
        async with racing.transaction() as tx:
            await ledger.refund_to_wallet(tx, reference=reference)
            await tx.commit()

    started = time.perf_counter()
    try:
        await asyncio.gather(*(pay_then_refund(i % 5, i) for i in range(100)))
    finally:
        await racing.dispose()
    assert time.perf_counter() - started < 30
    async with database.transaction() as tx:
        for user in users:
            assert await ledger.balance(tx, user) == 10 * PRICE
        report = await ledger.check_ledger(tx)
    assert report.ok, report.violations
