"""Order request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from orderly.core.inputs import Input


class OrderStatus(StrEnum):
    """The order state machine's states: one enum for schemas, services and SQL parameters.

    pending → paid → fulfilled; pending|paid → cancelled; paid|fulfilled → refunded.
    """

    pending = "pending"
    paid = "paid"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    refunded = "refunded"


class OrderEmailKind(StrEnum):
    """Why the customer gets an e-mail about an order (``orders.send_order_email``)."""

    confirmation = "confirmation"
    payment = "payment"
    cancellation = "cancellation"
    refund = "refund"


class PaymentMethod(StrEnum):
    """How an order was paid."""

    credits = "credits"
    card = "card"


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.paid: frozenset({OrderStatus.pending}),
    OrderStatus.fulfilled: frozenset({OrderStatus.paid}),
    OrderStatus.cancelled: frozenset({OrderStatus.pending, OrderStatus.paid}),
    OrderStatus.refunded: frozenset({OrderStatus.paid, OrderStatus.fulfilled}),
}
"""For each target status, the statuses an order may move to it from."""
Line = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Optional = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]


class ShippingAddress(Input):
    """Where the order goes; personal data, stored encrypted."""

    name: Line
    line1: Line
    line2: Optional = ""
    city: Line
    postal_code: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
    phone: Annotated[str, StringConstraints(max_length=32, pattern=r"^[0-9+ ()-]*$")] = ""


class OrderLineCreate(Input):
    """One product and how many."""

    product_id: uuid.UUID
    quantity: int = Field(ge=1, le=1000)


class OrderCreate(Input):
    """A new order (customer): lines and where to ship them."""

    items: list[OrderLineCreate] = Field(min_length=1, max_length=50)
    shipping_address: ShippingAddress


class OrderLineRead(BaseModel):
    """A line as ordered, priced at ordering time."""

    product_id: uuid.UUID
    quantity: int
    unit_price_cents: int


class OrderRead(BaseModel):
    """An order as the API shows it."""

    id: uuid.UUID
    user_id: uuid.UUID
    status: OrderStatus
    items: list[OrderLineRead]
    total_cents: int
    currency: str
    payment_method: str | None = None
    shipping_address: ShippingAddress | None = None
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    """One page of orders."""

    data: list[OrderRead]
    next_cursor: str | None


class CreditsPayment(Input):
    """Pay from the caller's credits wallet."""

    method: Literal["credits"]


class CardPayment(Input):
    """Pay by card: a Stripe PaymentMethod id created by the client (``pm_…``)."""

    method: Literal["card"]
    payment_method: Annotated[str, StringConstraints(pattern=r"^pm_[A-Za-z0-9_]{1,200}$")]


PaymentCreate = Annotated[CreditsPayment | CardPayment, Field(discriminator="method")]


class WarehouseEvent(Input):
    """The warehouse's signed callback."""

    order_id: uuid.UUID
    event: Literal["shipped"]
