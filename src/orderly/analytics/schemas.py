"""The sales summary as the API shows it."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class SummaryTotals(BaseModel):
    """Totals over the range."""

    gross_cents: int
    refunds_cents: int
    net_cents: int
    orders_paid: int
    orders_cancelled: int
    orders_refunded: int
    average_order_cents: int


class SummaryDay(BaseModel):
    """One UTC day of the range."""

    day: date
    gross_cents: int
    refunds_cents: int
    net_cents: int
    orders_paid: int


class SummaryProduct(BaseModel):
    """One of the ten best products by net revenue."""

    product_id: uuid.UUID
    sku: str
    name: str
    units: int
    revenue_cents: int


class SummaryRead(BaseModel):
    """Sales of one currency over a range of UTC days, from the summary tables."""

    model_config = ConfigDict(populate_by_name=True)

    computed_at: datetime | None
    currency: str
    from_: date = Field(alias="from")
    to: date
    totals: SummaryTotals
    by_day: list[SummaryDay]
    orders_by_status: dict[str, int]
    top_products: list[SummaryProduct]


class RefreshRead(BaseModel):
    """When the refresh that just finished read its data."""

    computed_at: datetime
