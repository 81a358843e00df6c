"""Order tables: the order, its lines, and the history of its status changes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base
from orderly.orders.schemas import OrderStatus

_KNOWN = ", ".join(f"'{status.value}'" for status in OrderStatus)


class SalesOrder(Base):
    """A customer's order ("order" is an SQL keyword, hence the name)."""

    __tablename__ = "sales_order"
    __table_args__ = (
        CheckConstraint(
            f"status IN ({_KNOWN})",
            name="status_known",
        ),
        CheckConstraint("total_cents >= 0", name="total_not_negative"),
        Index("ix_sales_order_user_created", "user_id", "created_at", "id"),
        Index("ix_sales_order_status_created", "status", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    status: Mapped[str] = mapped_column(String(16))
    total_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # AES-GCM token (core.crypto.FieldCipher) naming its key id; personal data at rest.
    shipping_address: Mapped[str] = mapped_column(Text)
    pii_key_id: Mapped[str] = mapped_column(String(32), index=True)
    payment_method: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrderItem(Base):
    """One line of an order, with the unit price at the time of ordering."""

    __tablename__ = "order_item"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sales_order.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("product.id"), primary_key=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)


class OrderEvent(Base):
    """A status change of an order: who moved it from what to what, and when."""

    __tablename__ = "order_event"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("sales_order.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    reason: Mapped[str] = mapped_column(String(200), server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
