"""Incident shapes: the record and its timeline, Alertmanager's webhook, SLO reports."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from orderly.core.inputs import SINGLE_LINE, Input, Omittable


class Severity(StrEnum):
    """SEV1 (worst) … SEV4."""

    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class IncidentStatus(StrEnum):
    """active → stable → closed."""

    active = "active"
    stable = "stable"
    closed = "closed"


class IncidentSource(StrEnum):
    """Who opened it."""

    manual = "manual"
    guard = "guard"
    alert = "alert"
    slo = "slo"


class IncidentCreate(Input):
    """``POST /v1/admin/incidents``."""

    title: str = Field(min_length=1, max_length=200, pattern=SINGLE_LINE)
    severity: Severity
    summary: str | None = Field(None, max_length=10_000)


class IncidentUpdate(Input):
    """``PATCH /v1/admin/incidents/{id}``: only the fields given change."""

    title: Omittable[Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)]] = (
        None
    )
    status: Omittable[IncidentStatus] = None
    severity: Omittable[Severity] = None
    commander_id: uuid.UUID | None = None
    summary: str | None = Field(None, max_length=10_000)
    impact: str | None = Field(None, max_length=10_000)
    root_cause: str | None = Field(None, max_length=10_000)
    resolution: str | None = Field(None, max_length=10_000)
    lessons_learned: str | None = Field(None, max_length=10_000)
    action_items: Omittable[Annotated[list[str], Field(max_length=100)]] = None


class TimelineNote(Input):
    """``POST /v1/admin/incidents/{id}/timeline``."""

    message: str = Field(min_length=1, max_length=5000)


class TimelineEntryRead(BaseModel):
    """One timeline entry."""

    at: datetime
    kind: str
    message: str
    actor: str
    data: dict[str, Any] = {}


class IncidentRead(BaseModel):
    """An incident with its timeline."""

    id: uuid.UUID
    title: str
    severity: Severity
    status: IncidentStatus
    source: IncidentSource
    commander_id: uuid.UUID | None
    summary: str | None
    impact: str | None
    root_cause: str | None
    resolution: str | None
    lessons_learned: str | None
    action_items: list[str]
    started_at: datetime
    stabilized_at: datetime | None
    closed_at: datetime | None
    timeline: list[TimelineEntryRead]


class IncidentPage(BaseModel):
    """A page of incidents, newest first."""

    data: list[IncidentRead]
    next_cursor: str | None


class AlertmanagerAlert(BaseModel):
    """One alert of an Alertmanager v4 webhook."""

    model_config = ConfigDict(extra="ignore")

    status: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    startsAt: str | None = None
    endsAt: str | None = None
    generatorURL: str | None = None
    fingerprint: str = Field(min_length=1, max_length=200)


class AlertmanagerPayload(BaseModel):
    """Alertmanager's webhook body (version 4)."""

    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: str
    receiver: str | None = None
    alerts: list[AlertmanagerAlert] = Field(default_factory=list, max_length=1000)


class AlertmanagerResult(BaseModel):
    """What the receiver did."""

    opened: int
    resolved: int


class BurnRates(BaseModel):
    """Burn rates per window (1.0 spends the budget exactly over 30 days)."""

    m5: float = Field(alias="5m")
    h1: float = Field(alias="1h")
    h6: float = Field(alias="6h")
    d3: float = Field(alias="3d")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class SloRead(BaseModel):
    """One SLO over 30 days."""

    name: str
    objective: float
    window_days: int
    good: int
    total: int
    sli: float | None
    error_budget_remaining: float
    burn_rates: BurnRates
    fast_burn: bool


class SloReport(BaseModel):
    """``GET /v1/admin/slos``."""

    computed_at: datetime
    slos: list[SloRead]
