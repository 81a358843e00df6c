"""Wallet and admin credit routes over HTTP, with real auth, audit and concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.db import Database
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, signed_in


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Cheap (real) password hashing for many logins."""
    return make_settings(database_url, tmp_path, **CHEAP_HASHING)


def _grant(user_id: uuid.UUID, amount: int = 1500, tx: str = "grant-1") -> dict[str, object]:
    return {
        "user_id": str(user_id),
        "amount_cents": amount,
        "transaction_id": tx,
        "reason": "promo",
    }


async def test_wallet_starts_empty_and_needs_a_login(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    assert (await client.get("/v1/wallet")).status_code == 401
    customer = await signed_in(client, database, settings)
    response = await client.get("/v1/wallet", headers=customer.headers)
    assert response.status_code == 200
    assert response.json() == {"balance_cents": 0, "currency": "USD"}
    page = await client.get("/v1/wallet/transactions", headers=customer.headers)
    assert page.json() == {"data": [], "next_cursor": None}


async def test_admin_credit_first_201_then_200_then_409(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)

    first = await client.post("/v1/admin/credits", json=_grant(customer.id), headers=admin.headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/admin/credits", json=_grant(customer.id), headers=admin.headers)
    assert again.status_code == 200
    assert again.json() == first.json()
    other = await client.post(
        "/v1/admin/credits", json=_grant(customer.id, amount=9999), headers=admin.headers
    )
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "conflict"

    wallet = await client.get("/v1/wallet", headers=customer.headers)
    assert wallet.json() == {"balance_cents": 1500, "currency": "USD"}
    statement = (await client.get("/v1/wallet/transactions", headers=customer.headers)).json()
    assert [(t["kind"], t["amount_cents"], t["reference"]) for t in statement["data"]] == [
        ("grant", 1500, "grant-1")
    ]
    audited = await raw_db.fetch(
        "SELECT actor_id, target_id FROM audit_event WHERE action = 'ledger.credits_granted'"
    )
    assert [(row["actor_id"], row["target_id"]) for row in audited] == [
        (admin.id, str(customer.id))
    ]


async def test_credit_rules(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    forbidden = await client.post(
        "/v1/admin/credits", json=_grant(customer.id), headers=customer.headers
    )
    assert forbidden.status_code == 403
    unknown = await client.post(
        "/v1/admin/credits", json=_grant(uuid.uuid4()), headers=admin.headers
    )
    assert unknown.status_code == 404
    for body in (
        {**_grant(customer.id), "balance_cents": 5},
        _grant(customer.id, amount=0),
        _grant(customer.id, amount=-100),
        {**_grant(customer.id), "amount_cents": 10.5},
        {**_grant(customer.id), "amount_cents": "100"},
    ):
        response = await client.post("/v1/admin/credits", json=body, headers=admin.headers)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_failed"


async def test_100_concurrent_admin_credits_with_one_transaction_id_credit_once(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/admin/credits", json=_grant(customer.id, tx="once"), headers=admin.headers
            )
            for _ in range(100)
        )
    )
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 99}
    assert len({r.json()["id"] for r in responses}) == 1
    wallet = await client.get("/v1/wallet", headers=customer.headers)
    assert wallet.json()["balance_cents"] == 1500
    assert (
        await raw_db.fetchval(
            "SELECT count(*) FROM audit_event WHERE action = 'ledger.credits_granted'"
        )
        == 1
    )


async def test_wallet_transactions_are_paginated(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    admin = await signed_in(client, database, settings, Role.admin)
    customer = await signed_in(client, database, settings)
    for n in range(3):
        response = await client.post(
            "/v1/admin/credits",
            json=_grant(customer.id, amount=100 + n, tx=f"t{n}"),
            headers=admin.headers,
        )
        assert response.status_code == 201
    first = (await client.get("/v1/wallet/transactions?limit=2", headers=customer.headers)).json()
    assert [t["amount_cents"] for t in first["data"]] == [102, 101]
    assert [t["balance_after_cents"] for t in first["data"]] == [303, 201]
    assert first["next_cursor"]
    second = (
        await client.get(
            "/v1/wallet/transactions",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=customer.headers,
        )
    ).json()
    assert [t["amount_cents"] for t in second["data"]] == [100]
    assert second["next_cursor"] is None
    bad = await client.get("/v1/wallet/transactions?cursor=%%%", headers=customer.headers)
    assert bad.status_code == 422
