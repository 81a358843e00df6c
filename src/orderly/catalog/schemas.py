"""Catalog request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from orderly.core.inputs import SINGLE_LINE, Input, Omittable

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True, pattern=SINGLE_LINE),
]
Description = Annotated[str, StringConstraints(max_length=5000)]
MAX_STOCK = 1_000_000_000


class ProductCreate(Input):
    """A new product (staff)."""

    sku: Sku
    name: Name
    description: Description = ""
    price_cents: int = Field(ge=0, le=10**12)
    currency: Currency
    stock: int = Field(ge=0, le=MAX_STOCK)
    low_stock_threshold: int = Field(5, ge=0, le=MAX_STOCK)


class ProductUpdate(Input):
    """Fields staff may change (omitted: unchanged; never null); stock only by adjustments."""

    name: Omittable[Name] = None
    description: Omittable[Description] = None
    price_cents: Omittable[Annotated[int, Field(ge=0, le=10**12)]] = None
    active: Omittable[bool] = None
    low_stock_threshold: Omittable[Annotated[int, Field(ge=0, le=MAX_STOCK)]] = None


class ProductRead(BaseModel):
    """A product as the API shows it."""

    id: uuid.UUID
    sku: str
    name: str
    description: str
    price_cents: int
    currency: str
    stock: int
    active: bool
    created_at: datetime
    updated_at: datetime


class ProductPage(BaseModel):
    """One page of products."""

    data: list[ProductRead]
    next_cursor: str | None


class StockAdjustmentCreate(Input):
    """A manual stock change (delivery, count correction, damage); never zero."""

    delta: int = Field(ge=-MAX_STOCK, le=MAX_STOCK, json_schema_extra={"not": {"const": 0}})
    reason: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class StockMovementRead(BaseModel):
    """A recorded stock movement."""

    id: int
    product_id: uuid.UUID
    delta: int
    stock_after: int
    reason: str
    order_id: uuid.UUID | None
    created_at: datetime
