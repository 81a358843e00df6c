"""Migration 0007 (a wallet per currency): no wallet is lost; a lossy downgrade refuses."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from orderly import migrate


async def _run(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _wallet(url: str, user_id: uuid.UUID, currency: str, balance: int) -> None:
    asyncio.run(
        _run(
            url,
            """INSERT INTO ledger_account (id, kind, currency, user_id, balance_cents)
               VALUES ($1, 'wallet', $2, $3, $4)""",
            uuid.uuid4(),
            currency,
            user_id,
            balance,
        )
    )


def _wallets(url: str) -> list[tuple[str, int]]:
    rows = asyncio.run(
        _run(url, "SELECT currency, balance_cents FROM ledger_account ORDER BY currency")
    )
    return [(row["currency"], row["balance_cents"]) for row in rows]


def test_wallets_survive_upgrade_and_downgrade(empty_database_url: str) -> None:
    url = empty_database_url
    migrate.upgrade(url, "0006")
    user_id = uuid.uuid4()
    asyncio.run(
        _run(
            url,
            "INSERT INTO user_account (id, email, password_hash, role) "
            "VALUES ($1, $2, 'x', 'customer')",
            user_id,
            "wallet@example.test",
        )
    )
    _wallet(url, user_id, "USD", 1234)

    migrate.upgrade(url, "0007")
    assert _wallets(url) == [("USD", 1234)]
    _wallet(url, user_id, "EUR", 50)  # possible only from 0007 on
    assert _wallets(url) == [("EUR", 50), ("USD", 1234)]

    with pytest.raises(RuntimeError, match="more than one currency"):
        migrate.downgrade(url, "0006")
    assert migrate.current(url).startswith("0007")
    assert _wallets(url) == [("EUR", 50), ("USD", 1234)]

    asyncio.run(_run(url, "DELETE FROM ledger_account WHERE currency = 'EUR'"))
    migrate.downgrade(url, "0006")
    assert _wallets(url) == [("USD", 1234)]
    with pytest.raises(asyncpg.UniqueViolationError):
        _wallet(url, user_id, "EUR", 1)  # one wallet per user again
    migrate.upgrade(url, "head")
    assert _wallets(url) == [("USD", 1234)]
