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
    currency: str = "EUR",
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
