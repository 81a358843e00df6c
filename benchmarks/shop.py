"""Scratch databases and the shop the benchmark loads: users, tokens, flags, products, one order.

Setup runs through the real app in-process (the same routes a client uses),
then the migrated, populated database is copied with ``CREATE DATABASE …
TEMPLATE`` for pgbench and for the job drain, so every phase starts from the
same rows and none disturbs another.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import orjson

from benchmarks.capture import QueryRecorder, Recorded, Variables

ADDRESS: dict[str, str] = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
# A realistic flag set, loaded through the admin API during setup (so every database copy
# has it): the flag runtime of every server under test holds and refreshes a real snapshot.
# The order path itself evaluates no flag (only recommendations ask `recommendations.model`).
FLAGS: dict[str, Any] = {
    "version": 2,
    "segments": [
        {
            "id": 1,
            "name": "customers",
            "constraints": [{"contextName": "role", "operator": "IN", "values": ["customer"]}],
        }
    ],
    "features": [
        {
            "name": "recommendations.model",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {
                        "rollout": "10",
                        "stickiness": "userId",
                        "groupId": "recommendations.model",
                    },
                }
            ],
        },
        {
            "name": "checkout.express",
            "enabled": True,
            "strategies": [
                {
                    "name": "flexibleRollout",
                    "parameters": {
                        "rollout": "50",
                        "stickiness": "default",
                        "groupId": "checkout.express",
                    },
                    "segments": [1],
                }
            ],
        },
        {
            "name": "catalog.search-v2",
            "enabled": True,
            "strategies": [
                {
                    "name": "default",
                    "constraints": [
                        {"contextName": "environment", "operator": "IN", "values": ["production"]}
                    ],
                }
            ],
            "variants": [
                {"name": "bm25", "weight": 500, "stickiness": "default"},
                {"name": "vector", "weight": 500, "stickiness": "default"},
            ],
        },
        {"name": "payments.card-3ds", "enabled": False, "strategies": [{"name": "default"}]},
    ],
}
PASSWORD = "bench-passphrase-not-common-42"  # noqa: S105 - scratch accounts on a scratch database
STOCK = 1_000_000_000  # the schema's maximum: no order of a run can run out


def database_url(server_url: str, database: str) -> str:
    """*server_url* pointing at *database* (keeps host, credentials and ?host= socket queries)."""
    parts = urlsplit(server_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/" + database))


async def _admin(server_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(server_url: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE *name* (optionally a copy of *template*); returns its URL."""
    suffix = f' TEMPLATE "{template}"' if template else ""
    await _admin(server_url, f'CREATE DATABASE "{name}"{suffix}')
    return database_url(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE *name*, disconnecting stragglers."""
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def server_version(server_url: str) -> str:
    """``PostgreSQL 15.x`` and its durability settings, for the report."""
    conn = await asyncpg.connect(database_url(server_url, "postgres"))
    try:
        version = await conn.fetchval("SHOW server_version")
        fsync = await conn.fetchval("SHOW fsync")
        sync = await conn.fetchval("SHOW synchronous_commit")
    finally:
        await conn.close()
    return f"PostgreSQL {version} (fsync={fsync}, synchronous_commit={sync})"


@dataclass
class BenchSecrets:
    """Secrets shared by the in-process setup app and the API server process."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    encryption_keys: str = field(default_factory=lambda: secrets.token_urlsafe(32))


def server_settings(
    secrets_: BenchSecrets, url: str, data_dir: Path, log_level: str
) -> dict[str, str]:
    """The API server's settings as ``ORDERLY_*`` variables (the benchmark's own, not yours).

    The order rate limit and queue-depth limit are raised so the run measures
    throughput rather than the limiter or load shedding; password hashing is
    cheap because logins are setup, not measured.
    """
    return {
        "ORDERLY_ENV": "development",
        "ORDERLY_DATABASE_URL": url,
        "ORDERLY_DATA_DIR": str(data_dir),
        "ORDERLY_JWT_SECRET": secrets_.jwt_secret,
        "ORDERLY_ENCRYPTION_KEYS": secrets_.encryption_keys,
        "ORDERLY_ORDER_RATE_LIMIT": "1000000/second",
        "ORDERLY_LOGIN_RATE_LIMIT": "100000/minute",
        "ORDERLY_MAX_QUEUE_DEPTH": "1000000000",
        "ORDERLY_ACCESS_TOKEN_TTL_SECONDS": "7200",
        "ORDERLY_PASSWORD_HASH_TIME_COST": "1",
        "ORDERLY_PASSWORD_HASH_MEMORY_KIB": "8192",
        "ORDERLY_LOG_LEVEL": log_level,
        "ORDERLY_LOG_JSON": "true",
        "ORDERLY_SHUTDOWN_GRACE_SECONDS": "0",
    }


@dataclass
class Shop:
    """What setup created: customers' tokens, products, and the recorded order transaction."""

    tokens: list[str]
    user_ids: list[str]
    product_ids: list[str]
    recorded: list[Recorded]
    variables: Variables
    order_status: int


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = orjson.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _expect(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return response.json()


@contextlib.asynccontextmanager
async def in_process_app(env: dict[str, str]) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """orderly's app with the server's settings, served over ASGI in this process."""
    from orderly.config import load_settings
    from orderly.main import create_app

    overrides = {k.removeprefix("ORDERLY_").lower(): v for k, v in env.items()}
    settings = load_settings(**overrides)
    app = create_app(settings, database_url=env["ORDERLY_DATABASE_URL"], run_worker=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            yield app, client
        limits = getattr(app.state, "limits", None)
        if limits is not None:
            await limits.close()


def app_database(app: Any) -> Any:
    """The app's :class:`orderly.core.db.Database` (its lifespan runtime holds it)."""
    runtime = getattr(app.state, "runtime", None)
    return runtime.database if runtime is not None else app.state.database


async def _customers(
    client: httpx.AsyncClient, run: str, count: int, prefix: str
) -> tuple[list[str], list[str]]:
    """Register and log in *count* customers; their access tokens and ids."""
    tokens: list[str] = []
    user_ids: list[str] = []
    for k in range(count):
        email = f"{prefix}{k}-{run}@bench.example.com"
        user = _expect(
            await client.post(
                "/v1/auth/register",
                json={"email": email, "password": PASSWORD, "name": f"Customer {k}"},
            ),
            201,
            "POST /v1/auth/register",
        )
        pair = _expect(
            await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD}),
            200,
            "POST /v1/auth/token",
        )
        tokens.append(pair["access_token"])
        user_ids.append(str(user["id"]))
    return tokens, user_ids


def _user_values(tokens: list[str], user_ids: list[str]) -> list[dict[str, str]]:
    """Per user: the first user's id and UUID claims -> this user's (what a replay swaps)."""
    claims = [_claims(token) for token in tokens]
    names = [n for n, v in claims[0].items() if _is_uuid(v) and n != "jti"]
    return [
        {user_ids[0]: user_ids[k], **{str(claims[0][n]): str(c[n]) for n in names}}
        for k, c in enumerate(claims)
    ]


@dataclass
class PaySetup:
    """Customers with funded wallets, the order they clone, and the replayable pay request."""

    tokens: list[str]
    user_ids: list[str]
    template_order: str
    replay: Any  # benchmarks.ledger_pay.PayReplay


async def build_pay(env: dict[str, str], *, users: int, warmups: int = 2) -> PaySetup:
    """Create *users* customers with credits and one order; record two real credit payments.

    The order (placed through the app) is the template :func:`ledger_pay.clone_orders`
    copies; the two recorded ``POST /v1/orders/{id}/pay`` requests (after *warmups*
    unrecorded ones) become the bare-asyncpg replay.
    """
    from benchmarks import ledger_pay

    url = env["ORDERLY_DATABASE_URL"]
    run = uuid.uuid4().hex[:8]
    async with in_process_app(env) as (app, client):
        tokens, user_ids = await _customers(client, run, users, "payer")
        product = _expect(
            await client.get("/v1/products", params={"limit": 2}), 200, "GET /v1/products"
        )
        items = product["data"] if isinstance(product, dict) else product
        body = {
            "items": [{"product_id": p["id"], "quantity": 1} for p in items[:2]],
            "shipping_address": ADDRESS,
        }
        headers = {"Authorization": f"Bearer {tokens[0]}"}
        order = _expect(
            await client.post("/v1/orders", json=body, headers=headers), 201, "POST /v1/orders"
        )
        owners = [uuid.UUID(u) for u in user_ids]
        await ledger_pay.fund_wallets(url, owners, currency=order["currency"])
        first = await ledger_pay.clone_orders(url, uuid.UUID(order["id"]), owners[:1], warmups + 2)
        recorder = QueryRecorder(app_database(app))
        recordings: list[list[Recorded]] = []
        keys: list[str] = []
        try:
            for attempt, (_, order_id) in enumerate(first):
                key = f"bench-pay-{run}-{attempt}"
                with recorder.recording() as recorded:
                    response = await client.post(
                        f"/v1/orders/{order_id}/pay",
                        json={"method": "credits"},
                        headers={**headers, "Idempotency-Key": key},
                    )
                    await asyncio.sleep(0.05)  # query loggers run with call_soon
                _expect(response, 200, f"POST /v1/orders/{order_id}/pay")
                if attempt >= warmups:
                    recordings.append(list(recorded))
                    keys.append(key)
        finally:
            recorder.close()
    replay = ledger_pay.PayReplay.from_recordings(
        recordings[0],
        recordings[1],
        order_a=first[-2][1],
        order_b=first[-1][1],
        key_a=keys[0],
        key_b=keys[1],
        user_values=_user_values(tokens, user_ids),
    )
    return PaySetup(tokens, user_ids, order["id"], replay)


async def build_shop(env: dict[str, str], *, users: int, products: int) -> Shop:
    """Staff, an admin, the flag set (FLAGS), *users* customers, *products* products; one order."""
    from orderly.accounts.cli import create_user
    from orderly.accounts.schemas import Role
    from orderly.config import load_settings

    overrides = {k.removeprefix("ORDERLY_").lower(): v for k, v in env.items()}
    settings = load_settings(**overrides)
    run = uuid.uuid4().hex[:8]
    emails = {role: f"{role.value}-{run}@bench.example.com" for role in (Role.staff, Role.admin)}
    for role, email in emails.items():
        await create_user(
            settings,
            env["ORDERLY_DATABASE_URL"],
            email=email,
            role=role,
            password=PASSWORD,
            name=f"Bench {role.value}",
        )
    async with in_process_app(env) as (app, client):
        headers_of = {}
        for role, email in emails.items():
            pair = _expect(
                await client.post("/v1/auth/token", json={"email": email, "password": PASSWORD}),
                200,
                f"{role.value} login",
            )
            headers_of[role] = {"Authorization": f"Bearer {pair['access_token']}"}
        staff_headers = headers_of[Role.staff]
        _expect(
            await client.post("/v1/admin/flags/import", json=FLAGS, headers=headers_of[Role.admin]),
            200,
            "POST /v1/admin/flags/import",
        )
        tokens, user_ids = await _customers(client, run, users, "customer")
        product_ids: list[str] = []
        for k in range(products):
            product = _expect(
                await client.post(
                    "/v1/products",
                    json={
                        "sku": f"BENCH-{run}-{k}",
                        "name": f"Bench product {k}",
                        "description": "A product of the load benchmark.",
                        "price_cents": 1000 + 37 * k,
                        "currency": "EUR",
                        "stock": STOCK,
                        "low_stock_threshold": 0,
                    },
                    headers=staff_headers,
                ),
                201,
                "POST /v1/products",
            )
            product_ids.append(str(product["id"]))
        recorder = QueryRecorder(app_database(app))
        try:
            lines = sorted(product_ids[:2])
            body = {
                "items": [{"product_id": pid, "quantity": 1} for pid in lines],
                "shipping_address": ADDRESS,
            }
            headers = {"Authorization": f"Bearer {tokens[0]}"}
            # Two warm-up orders first: one-time work (type introspection, caches) is not the
            # transaction's; the third is recorded.
            for attempt in range(3):
                key = f"bench-capture-{run}-{attempt}"
                if attempt < 2:
                    await client.post(
                        "/v1/orders", json=body, headers={**headers, "Idempotency-Key": key}
                    )
                    continue
                with recorder.recording() as recorded:
                    response = await client.post(
                        "/v1/orders", json=body, headers={**headers, "Idempotency-Key": key}
                    )
                    # asyncpg calls query loggers with call_soon: let the COMMIT's run.
                    await asyncio.sleep(0.05)
            order = _expect(response, 201, "POST /v1/orders")
        finally:
            recorder.close()
    per_user: dict[str, list[str]] = {}
    all_claims = [_claims(token) for token in tokens]
    for name, value in all_claims[0].items():
        if _is_uuid(value) and name != "jti":
            per_user[value] = [str(c[name]) for c in all_claims]
    per_user.setdefault(user_ids[0], user_ids)
    variables = Variables(
        order_id=str(order["id"]),
        idempotency_key=key,
        per_user=per_user,
        products=product_ids,
        product_vars={pid: f"p{i + 1}" for i, pid in enumerate(lines)},
    )
    return Shop(tokens, user_ids, product_ids, list(recorded), variables, response.status_code)
