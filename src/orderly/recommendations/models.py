"""Recommendation tables, recomputed by the analytics refresh."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, Float, Integer, SmallInteger
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base


class RecommendationPair(Base):
    """Product *product_id*'s *rank*-th best companion (top 20 kept per product)."""

    __tablename__ = "recommendation_pair"

    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    rank: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    other_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    together: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)


class PopularProduct(Base):
    """The 30-day best-sellers in rank order (units in paid or fulfilled orders)."""

    __tablename__ = "popular_product"

    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    units: Mapped[int] = mapped_column(BigInteger)
