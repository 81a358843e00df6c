"""Helpers for tests that shop through the API: products, addresses, orders."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

ADDRESS: dict[str, str] = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}


async def create_product(
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    *,
    stock: int,
    price_cents: int = 1250,
    currency: str = "USD",
    low_stock_threshold: int = 0,
) -> dict[str, Any]:
    """POST /v1/products as staff (asserts 201)."""
    response = await client.post(
        "/v1/products",
        json={
            "sku": f"SKU-{uuid.uuid4().hex[:10]}",
            "name": "Widget",
            "price_cents": price_cents,
            "currency": currency,
            "stock": stock,
            "low_stock_threshold": low_stock_threshold,
        },
        headers=staff_headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def order_body(*lines: tuple[str, int]) -> dict[str, Any]:
    """A POST /v1/orders body for (product_id, quantity) lines."""
    return {
        "items": [{"product_id": pid, "quantity": qty} for pid, qty in lines],
        "shipping_address": ADDRESS,
    }


async def fund_wallet(
    client: httpx.AsyncClient, admin_headers: dict[str, str], user_id: uuid.UUID, cents: int
) -> None:
    """POST /v1/admin/credits for *user_id* (asserts 201)."""
    response = await client.post(
        "/v1/admin/credits",
        json={
            "user_id": str(user_id),
            "amount_cents": cents,
            "transaction_id": f"grant-{uuid.uuid4().hex}",
            "reason": "test funding",
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text


async def pay_with_credits(
    client: httpx.AsyncClient, order_id: str, customer_headers: dict[str, str]
) -> httpx.Response:
    """POST /v1/orders/{id}/pay with credits."""
    return await client.post(
        f"/v1/orders/{order_id}/pay", json={"method": "credits"}, headers=customer_headers
    )
