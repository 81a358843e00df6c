"""An order's jobs end to end: e-mail over real SMTP, the signed warehouse webhook and callback."""

from __future__ import annotations

import base64
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from standardwebhooks import Webhook

from orderly.accounts.schemas import Role
from orderly.config import Settings
from orderly.core.crypto import FieldCipher
from orderly.core.db import Database
from orderly.core.jobs import RetryPolicy
from orderly.core.outbound import Breakers, Timeouts
from orderly.main import create_app
from orderly.notifications import tasks as notification_tasks
from orderly.orders import tasks as order_tasks
from tests.conftest import make_settings
from tests.support.accounts import CHEAP_HASHING, signed_in
from tests.support.receivers import HttpReceiver, SmtpServer, eventually, running_worker
from tests.support.shop import create_product, fund_wallet, order_body, pay_with_credits

FAST = RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=0.5)
SEND_ORDER_EMAIL = dataclasses.replace(order_tasks.send_order_email, retry=FAST)
NOTIFY_WAREHOUSE = dataclasses.replace(order_tasks.notify_warehouse, retry=FAST)
SHORT = Timeouts(connect=0.5, read=0.5, write=0.5, pool=0.5)
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclasses.dataclass
class Shop:
    """An app without an in-process worker, its settings and an HTTP client."""

    client: httpx.AsyncClient
    settings: Settings


@pytest.fixture
def smtp() -> SmtpServer:
    """An SMTP server on a reserved port, not started yet (the test decides)."""
    server = SmtpServer()
    yield server  # type: ignore[misc]
    server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    """The warehouse: a real HTTP server on 127.0.0.1."""
    server = HttpReceiver()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def shop(
    database: Database,
    database_url: str,
    tmp_path: Path,
    smtp: SmtpServer,
    receiver: HttpReceiver,
) -> AsyncIterator[Shop]:
    """The API configured with the test's SMTP server and warehouse receiver."""
    settings = make_settings(
        database_url,
        tmp_path,
        smtp_url=smtp.url,
        mail_from="shop@orderly.example",
        warehouse_webhook_url=receiver.url,
        warehouse_webhook_secret=SECRET,
        order_rate_limit="1000/minute",
        **CHEAP_HASHING,
    )
    app = create_app(settings, database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Shop(client, settings)


def resources(settings: Settings) -> dict[type, Any]:
    """What the worker gives order tasks: settings, cipher, mailer, webhook sender."""
    return {
        Settings: settings,
        FieldCipher: FieldCipher(settings.encryption_key_list),
        **notification_tasks.build_resources(
            settings, Breakers(), smtp_timeout=1.0, webhook_timeouts=SHORT
        ),
    }


async def place_order(shop: Shop, database: Database) -> tuple[dict[str, Any], dict[str, str]]:
    """A customer's pending order (the customer's wallet can pay it), and admin headers."""
    staff = await signed_in(shop.client, database, shop.settings, Role.staff)
    admin = await signed_in(shop.client, database, shop.settings, Role.admin)
    customer = await signed_in(shop.client, database, shop.settings)
    product = await create_product(shop.client, staff.headers, stock=5)
    response = await shop.client.post(
        "/v1/orders", json=order_body((product["id"], 2)), headers=customer.headers
    )
    assert response.status_code == 201
    order: dict[str, Any] = response.json()
    await fund_wallet(shop.client, admin.headers, customer.id, order["total_cents"])
    order["customer_headers"] = customer.headers
    return order, admin.headers


async def pay(shop: Shop, order: dict[str, Any]) -> None:
    """The customer pays the order with credits (asserts 200)."""
    paid = await pay_with_credits(shop.client, order["id"], order["customer_headers"])
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "paid"


async def _true(value: bool) -> bool:
    return value


async def test_confirmation_email_survives_an_smtp_outage_and_arrives_once(
    shop: Shop, database: Database, smtp: SmtpServer, raw_db: asyncpg.Connection
) -> None:
    order, _ = await place_order(shop, database)
    async with running_worker(database, [SEND_ORDER_EMAIL], resources(shop.settings)):

        async def retried() -> bool:
            return bool(await raw_db.fetchval("SELECT max(attempts) FROM pgqueuer") or 0)

        await eventually(retried)  # SMTP refused the first attempt; the job waits to retry
        assert smtp.messages == []
        smtp.start()
        await eventually(lambda: _true(len(smtp.messages) == 1))

        async def drained() -> bool:
            return int(await raw_db.fetchval("SELECT count(*) FROM pgqueuer")) == 0

        await eventually(drained)
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert order["id"] in message["Subject"]
    assert order["id"] in message.get_payload()
    assert "2 x Widget" in message.get_payload()
    assert message["Message-ID"]


async def test_paid_order_reaches_the_warehouse_after_three_failures_with_one_webhook_id(
    shop: Shop, database: Database, receiver: HttpReceiver, raw_db: asyncpg.Connection
) -> None:
    order, _ = await place_order(shop, database)
    receiver.script = [500, 503, 502]
    await pay(shop, order)

    async with running_worker(database, [NOTIFY_WAREHOUSE], resources(shop.settings)):
        await eventually(lambda: _true(len(receiver.requests) == 4))

    ids = {request.headers["webhook-id"] for request in receiver.requests}
    assert len(ids) == 1
    last = receiver.requests[-1]
    payload = Webhook(SECRET).verify(last.body, dict(last.headers))
    assert payload["type"] == "order.paid"
    assert payload["data"]["order_id"] == order["id"]
    assert payload["data"]["shipping_address"]["name"] == "Ada Lovelace"
    assert len({request.body for request in receiver.requests}) == 1


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    webhook_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, now, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def test_warehouse_callback_needs_a_valid_signature_and_replays_are_harmless(
    shop: Shop, database: Database, raw_db: asyncpg.Connection
) -> None:
    order, _ = await place_order(shop, database)
    await pay(shop, order)
    body = orjson.dumps({"order_id": order["id"], "event": "shipped"})

    forged = _signed(body, "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    bad = await shop.client.post("/v1/webhooks/warehouse", content=body, headers=forged)
    assert bad.status_code == 401
    assert bad.json()["code"] == "unauthorized"

    headers = _signed(body)
    first = await shop.client.post("/v1/webhooks/warehouse", content=body, headers=headers)
    assert first.status_code == 200
    replay = await shop.client.post("/v1/webhooks/warehouse", content=body, headers=headers)
    assert replay.status_code == 200

    oid = uuid.UUID(order["id"])
    assert await raw_db.fetchval("SELECT status FROM sales_order WHERE id = $1", oid) == "fulfilled"
    transitions = await raw_db.fetchval(
        "SELECT count(*) FROM order_event WHERE order_id = $1 AND to_status = 'fulfilled'", oid
    )
    assert transitions == 1
    audited = await raw_db.fetchval(
        "SELECT count(*) FROM audit_event WHERE action = 'order.fulfilled' AND target_id = $1",
        order["id"],
    )
    assert audited == 1


async def test_a_dead_webhook_is_listed_and_an_admin_retry_delivers_it(
    shop: Shop, database: Database, receiver: HttpReceiver, raw_db: asyncpg.Connection
) -> None:
    order, admin = await place_order(shop, database)
    receiver.default = "hang"  # never answers in time
    await pay(shop, order)

    async with running_worker(database, [NOTIFY_WAREHOUSE], resources(shop.settings)):

        async def dead() -> bool:
            listed = await shop.client.get("/v1/admin/jobs?status=dead", headers=admin)
            return len(listed.json()["data"]) == 1

        await eventually(dead, timeout=30)
        job = (await shop.client.get("/v1/admin/jobs?status=dead", headers=admin)).json()["data"][0]
        assert job["task"] == "orders.notify_warehouse"
        assert job["attempts"] == FAST.max_attempts - 1
        assert job["last_error"]

        receiver.default = 204
        retried = await shop.client.post(f"/v1/admin/jobs/{job['id']}/retry", headers=admin)
        assert retried.status_code == 200
        assert retried.json()["status"] == "queued"

        async def delivered() -> bool:
            remaining = await raw_db.fetchval(
                "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'orders.notify_warehouse'"
            )
            return int(remaining) == 0

        await eventually(delivered)
    audited = await raw_db.fetchval("SELECT count(*) FROM audit_event WHERE action = 'job.retried'")
    assert audited == 1
    sent = await raw_db.fetchval(
        "SELECT count(*) FROM notification WHERE event_key = $1 AND sent_at IS NOT NULL",
        f"order:{order['id']}:paid",
    )
    assert sent == 1
