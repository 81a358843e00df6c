"""Personal data is ciphertext in PostgreSQL; key rotation re-encrypts it in a background job."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from orderly.accounts import tasks
from orderly.config import Settings
from orderly.core import jobs
from orderly.core.crypto import FieldCipher, key_id
from orderly.core.db import Database
from orderly.core.jobs import JobContext
from orderly.main import create_app
from orderly.worker import build_worker
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, PASSWORD, login, unique_email

ADDRESS = {
    "line1": "12 Analytical Engine Way",
    "city": "London",
    "postal_code": "NW1 2DB",
    "country": "GB",
}


async def register(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "name": "Ada Lovelace",
            "phone": "+44 20 7946 0000",
            "shipping_address": ADDRESS,
        },
    )


async def test_name_phone_and_address_are_ciphertext_in_the_database(
    client: httpx.AsyncClient, raw_db: asyncpg.Connection, settings: Settings
) -> None:
    email = unique_email()
    response = await register(client, email)
    assert response.status_code == 201, response.text
    assert response.json()["shipping_address"]["city"] == "London"
    row = await raw_db.fetchrow("SELECT * FROM user_account WHERE email = $1", email)
    raw = " ".join(str(row[c]) for c in ("name", "phone", "shipping_address"))
    # Fragments a base64url ciphertext cannot contain by chance (a space is not in its
    # alphabet; six letters in a row appear by chance ~1 in 10^8): "NW1" alone once did.
    for plain in ("Ada Lovelace", "Lovelace", "7946 0000", "London", "Analytical", "NW1 2DB"):
        assert plain not in raw
    current = key_id(settings.encryption_key_list[0])
    assert row["pii_key_id"] == current
    for column in ("name", "phone", "shipping_address"):
        assert row[column].startswith(f"v1.{current}.")
    # Two users with the same name get different ciphertexts (random nonces).
    other = unique_email()
    assert (await register(client, other)).status_code == 201
    other_name = await raw_db.fetchval("SELECT name FROM user_account WHERE email = $1", other)
    assert other_name != row["name"]


async def test_a_ciphertext_copied_to_another_row_does_not_open(
    client: httpx.AsyncClient, raw_db: asyncpg.Connection
) -> None:
    victim, attacker = unique_email(), unique_email()
    await register(client, victim)
    await register(client, attacker)
    await raw_db.execute(
        """UPDATE user_account SET name = (SELECT name FROM user_account WHERE email = $1)
           WHERE email = $2""",
        victim,
        attacker,
    )
    tokens = await login(client, attacker)
    response = await client.get(
        "/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 500  # tampering is an integrity failure, never a leak
    assert "Ada" not in response.text


async def test_key_rotation_reencrypts_every_row_and_the_old_key_can_go(
    database: Database, database_url: str, raw_db: asyncpg.Connection, tmp_path: Path
) -> None:
    old_key, new_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before = make_settings(database_url, tmp_path, encryption_keys=old_key, **CHEAP_HASHING)
    emails = [unique_email() for _ in range(5)]
    app = create_app(before, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for email in emails:
                assert (await register(client, email)).status_code == 201

    # Deploy the new key first in the list; run the job in batches of 2 (it chains itself).
    rotated = make_settings(
        database_url, tmp_path, encryption_keys=f"{new_key},{old_key}", **CHEAP_HASHING
    )
    new_id = FieldCipher(rotated.encryption_key_list).current_key_id
    rounds = 0
    while True:
        async with database.transaction() as tx:
            ctx = JobContext(tx=tx, job_id=0, attempt=1, resources={Settings: rotated})
            await tasks.reencrypt_pii.handler(ctx, {"batch": 2})
            await tx.commit()
        rounds += 1
        stale = await raw_db.fetchval(
            "SELECT count(*) FROM user_account WHERE pii_key_id <> $1", new_id
        )
        if stale == 0:
            break
        assert rounds < 10
    assert rounds == 3
    chained = await raw_db.fetchval(
        "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'accounts.reencrypt_pii'"
    )
    assert chained >= 1  # full batches enqueue a follow-up job in the same transaction

    # The old key is removed: every row still decrypts, through the API.
    after = make_settings(database_url, tmp_path, encryption_keys=new_key, **CHEAP_HASHING)
    app = create_app(after, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for email in emails:
                tokens = await login(client, email)
                me = await client.get(
                    "/v1/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
                )
                assert me.status_code == 200
                assert me.json()["name"] == "Ada Lovelace"
                assert me.json()["shipping_address"]["postal_code"] == "NW1 2DB"


async def test_the_worker_runs_the_reencryption_job(
    database: Database, database_url: str, raw_db: asyncpg.Connection, tmp_path: Path
) -> None:
    old_key, new_key = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before = make_settings(database_url, tmp_path, encryption_keys=old_key, **CHEAP_HASHING)
    app = create_app(before, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await register(client, unique_email())).status_code == 201

    rotated = make_settings(
        database_url, tmp_path, encryption_keys=f"{new_key},{old_key}", **CHEAP_HASHING
    )
    new_id = FieldCipher(rotated.encryption_key_list).current_key_id
    async with database.transaction() as tx:
        await jobs.enqueue(tx, tasks.REENCRYPT_PII, {})
        await tx.commit()
    worker = build_worker(rotated, database)  # every task orderly registers
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            key = await raw_db.fetchval("SELECT pii_key_id FROM user_account")
            if key == new_id:
                break
            await asyncio.sleep(0.05)
        assert key == new_id
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
