"""Incident tables: the record, its timeline, and per-minute request counts for SLOs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base


class Incident(Base):
    """An incident: severity, status with timestamps, commander, and the post-mortem fields."""

    __tablename__ = "incident"
    __table_args__ = (
        CheckConstraint("severity IN ('SEV1', 'SEV2', 'SEV3', 'SEV4')", "severity_known"),
        CheckConstraint("status IN ('active', 'stable', 'closed')", "status_known"),
        CheckConstraint("source IN ('manual', 'guard', 'alert', 'slo')", "source_known"),
        # One open incident per alert fingerprint / SLO, however often it is reported.
        Index(
            "uq_incident_open_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL AND status <> 'closed'"),
        ),
        Index("ix_incident_status_started", "status", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    severity: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(10))
    source: Mapped[str] = mapped_column(String(10))
    commander_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    summary: Mapped[str | None] = mapped_column(Text)
    impact: Mapped[str | None] = mapped_column(Text)
    root_cause: Mapped[str | None] = mapped_column(Text)
    resolution: Mapped[str | None] = mapped_column(Text)
    lessons_learned: Mapped[str | None] = mapped_column(Text)
    action_items: Mapped[list[str]] = mapped_column(JSONB)
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    stabilized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IncidentTimelineEntry(Base):
    """One entry of an incident's timeline: every change and every automatic action."""

    __tablename__ = "incident_timeline"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    incident_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)


class SloRequestMinute(Base):
    """Requests per UTC minute by series and outcome, summed from every process."""

    __tablename__ = "slo_request_minute"
    __table_args__ = (
        CheckConstraint("series IN ('availability', 'order_latency')", "series_known"),
        CheckConstraint("outcome IN ('good', 'bad')", "outcome_known"),
    )

    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    series: Mapped[str] = mapped_column(String(20), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(4), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class SloLatencyMinute(Base):
    """A latency histogram of ``/v1`` requests per UTC minute, summed from every process.

    ``bucket`` indexes ``incidents.slo.LATENCY_BUCKETS`` (upper bounds in seconds, the
    last one unbounded); the console draws p50/p99 over the last hours from it.
    """

    __tablename__ = "slo_latency_minute"

    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    bucket: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
