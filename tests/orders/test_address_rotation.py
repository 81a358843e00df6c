"""Shipping addresses follow an encryption-key rotation: re-sealed, then the old key can go."""

from __future__ import annotations

import secrets

import asyncpg
import httpx

from orderly.accounts.schemas import Role
from orderly.config import Settings, decode_keys
from orderly.core.crypto import FieldCipher
from orderly.core.db import Database
from orderly.orders import service
from tests.support.accounts import signed_in
from tests.support.shop import ADDRESS, create_product, order_body


async def test_rotation_reseals_every_address_under_the_new_key(
    client: httpx.AsyncClient, database: Database, settings: Settings, raw_db: asyncpg.Connection
) -> None:
    staff = await signed_in(client, database, settings, Role.staff)
    customer = await signed_in(client, database, settings)
    product = await create_product(client, staff.headers, stock=10)
    for _ in range(3):
        placed = await client.post(
            "/v1/orders", json=order_body((product["id"], 1)), headers=customer.headers
        )
        assert placed.status_code == 201

    old_keys = settings.encryption_key_list
    new_key = decode_keys(secrets.token_urlsafe(32))[0]
    rotated = FieldCipher([new_key, *old_keys])
    async with database.transaction() as tx:
        assert await service.reencrypt_addresses(tx, rotated, batch=2) == 2
        assert await service.reencrypt_addresses(tx, rotated, batch=2) == 1
        assert await service.reencrypt_addresses(tx, rotated, batch=2) == 0
        await tx.commit()

    only_new = FieldCipher([new_key])
    rows = await raw_db.fetch("SELECT id, shipping_address, pii_key_id FROM sales_order")
    assert {row["pii_key_id"] for row in rows} == {only_new.current_key_id}
    for row in rows:
        plain = only_new.decrypt(
            row["shipping_address"], context=f"order.shipping_address:{row['id']}"
        )
        assert ADDRESS["line1"] in plain
