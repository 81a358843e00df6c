"""Flag tables: definitions (Unleash client-API JSON), segments, release plans, guard outcomes.

Declared for Alembic only; the repository speaks SQL over asyncpg.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Integer,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base


class Flag(Base):
    """One feature flag; ``definition`` is the Unleash client-API feature object."""

    __tablename__ = "flag"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FlagSegment(Base):
    """A reusable list of constraints (Unleash segment), referenced by id from strategies."""

    __tablename__ = "flag_segment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FlagConfigVersion(Base):
    """One row: bumped by every flag or segment change, so processes can check cheaply."""

    __tablename__ = "flag_config_version"
    __table_args__ = (CheckConstraint("id = 1", "single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)


class FlagRelease(Base):
    """A release plan: the flag's rollout moves through ``stages``; state is the row itself."""

    __tablename__ = "flag_release"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'paused', 'completed', 'rolled_back')", "status_known"
        ),
    )

    flag_name: Mapped[str] = mapped_column(
        String(255), ForeignKey("flag.name", ondelete="CASCADE"), primary_key=True
    )
    stages: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    guard: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(20))
    stage: Mapped[int] = mapped_column(Integer)
    next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    paused_remaining_seconds: Mapped[float | None] = mapped_column(Double)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    incident_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class FlagOutcome(Base):
    """Outcomes per flag, cohort and 10-second bucket, summed from every process."""

    __tablename__ = "flag_outcome"
    __table_args__ = (CheckConstraint("cohort IN ('on', 'off')", "cohort_known"),)

    flag_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    cohort: Mapped[str] = mapped_column(String(3), primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    ok: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
