"""Analytics summary tables: per UTC day and currency, kept up to date by the worker.

The summary endpoint reads only these tables (and the product rows of its top
ten), never the orders or the ledger. Every row is a pure function of the raw
rows of its day, so a refresh recomputes whole days and is safe to re-run.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base
from orderly.orders.models import OrderEvent

# The incremental refresh finds what changed since its watermark by time; the ledger's
# own index (ix_ledger_transaction_created_at) sits with the ledger's table.
Index("ix_order_event_created_at", OrderEvent.__table__.c.created_at)


class AnalyticsDay(Base):
    """Money and order events of one UTC day in one currency."""

    __tablename__ = "analytics_day"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    gross_cents: Mapped[int] = mapped_column(BigInteger)
    refunds_cents: Mapped[int] = mapped_column(BigInteger)
    orders_paid: Mapped[int] = mapped_column(Integer)
    orders_cancelled: Mapped[int] = mapped_column(Integer)
    orders_refunded: Mapped[int] = mapped_column(Integer)


class AnalyticsStatusDay(Base):
    """How many orders created on a day (and currency) are now in each status."""

    __tablename__ = "analytics_status_day"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    orders: Mapped[int] = mapped_column(Integer)


class AnalyticsProductDay(Base):
    """A product's net units and revenue on a day: + when paid, − when the money went back."""

    __tablename__ = "analytics_product_day"
    # A refresh reads and clears a day's rows in every currency.
    __table_args__ = (Index("ix_analytics_product_day_day", "day"),)

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger)
    revenue_cents: Mapped[int] = mapped_column(BigInteger)


class AnalyticsProductSpan(Base):
    """A product's net figures over the aligned block of 2**level days from first_day.

    Blocks start on multiples of their length counted from 1970-01-01, so any
    range of days is a handful of them (at most two per level) plus at most
    two single days from ``analytics_product_day``.
    """

    __tablename__ = "analytics_product_span"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    first_day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    units: Mapped[int] = mapped_column(BigInteger)
    revenue_cents: Mapped[int] = mapped_column(BigInteger)


class AnalyticsState(Base):
    """The one row saying how far the summary tables are computed."""

    __tablename__ = "analytics_state"
    __table_args__ = (CheckConstraint("id = 1", "singleton"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    # Every raw row stamped before the watermark is reflected in the summary tables.
    watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The same for the product blocks, which older releases refresh without knowing them.
    span_watermark: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    computed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rebuilt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Every order event stamped before this is reflected in the recommendation scores.
    recommendations_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
