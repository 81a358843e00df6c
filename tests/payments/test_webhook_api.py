"""POST /v1/webhooks/stripe over HTTP: public, signature-checked, applied once."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import httpx
import pytest

from orderly.config import Settings
from tests.conftest import make_settings
from tests.support.stripe import WEBHOOK_SECRET, intent_succeeded_event, signed_delivery


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """An app with a Stripe webhook secret configured."""
    return make_settings(database_url, tmp_path, stripe_webhook_secret=WEBHOOK_SECRET)


async def test_stripe_webhook_verifies_and_applies_once(
    client: httpx.AsyncClient, raw_db: asyncpg.Connection
) -> None:
    event = intent_succeeded_event(
        "evt_http", intent_id="pi_http", amount=1234, currency="usd", reference="order:http"
    )
    body, header = signed_delivery(event)
    forged, forged_header = signed_delivery(event, "whsec_not_ours")

    rejected = await client.post(
        "/v1/webhooks/stripe", content=forged, headers={"Stripe-Signature": forged_header}
    )
    assert rejected.status_code == 401
    assert rejected.json()["code"] == "unauthorized"
    unsigned = await client.post("/v1/webhooks/stripe", content=body)
    assert unsigned.status_code == 401

    first = await client.post(
        "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
    )
    second = await client.post(
        "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
    )
    assert (first.status_code, first.json()["outcome"]) == (200, "reconciled")
    assert (second.status_code, second.json()["outcome"]) == (200, "duplicate")
    assert await raw_db.fetchval("SELECT count(*) FROM card_payment") == 1


async def test_stripe_webhook_is_404_when_not_configured(database_url: str, tmp_path: Path) -> None:
    from asgi_lifespan import LifespanManager

    from orderly.main import create_app

    app = create_app(make_settings(database_url, tmp_path), database_url=database_url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post("/v1/webhooks/stripe", content=b"{}")
    assert response.status_code == 404
