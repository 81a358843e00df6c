"""Flag shapes: Unleash's client-API documents, evaluation, release plans."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from orderly.core.inputs import Input, IsoDateTime

# Unleash's rule: URL-friendly names (letters, digits, '.', '_', '-', '~'), any case.
FLAG_NAME_PATTERN = r"^[A-Za-z0-9._~-]{1,255}$"
FlagName = Annotated[str, Field(pattern=FLAG_NAME_PATTERN)]


class _Unleash(Input):
    # Unleash documents carry fields we do not use (project, type, stale, …): ignored, not stored.
    model_config = ConfigDict(extra="ignore")


class Constraint(_Unleash):
    """One constraint on a context field."""

    contextName: str
    operator: str
    values: list[str] = []
    value: str | None = None
    inverted: bool = False
    caseInsensitive: bool = False


class Strategy(_Unleash):
    """An activation strategy with its parameters, constraints, segments and variants."""

    name: str
    parameters: dict[str, str] = {}
    constraints: list[Constraint] = []
    segments: list[int] = []
    variants: list[dict[str, Any]] = []


class Feature(_Unleash):
    """A flag in the shape of Unleash's client API."""

    name: FlagName
    description: str | None = None
    enabled: bool = False
    strategies: list[Strategy] = []
    variants: list[dict[str, Any]] = []
    dependencies: list[dict[str, Any]] = []
    impressionData: bool = False


class Segment(_Unleash):
    """A named, reusable list of constraints."""

    id: int
    name: str | None = None
    constraints: list[Constraint] = []


class FlagsDocument(_Unleash):
    """Unleash's client-features document: ``{version, features, segments}``."""

    version: int = 2
    features: list[Feature] = []
    segments: list[Segment] = []


class FlagPage(BaseModel):
    """A page of flags ordered by name."""

    data: list[Feature]
    next_cursor: str | None


class ImportResult(BaseModel):
    """How many flags and segments an import upserted."""

    imported: int


class EvaluationContext(Input):
    """Unleash's context fields for an evaluation."""

    userId: str | None = None
    sessionId: str | None = None
    remoteAddress: str | None = None
    environment: str | None = None
    appName: str | None = None
    currentTime: IsoDateTime | None = None
    properties: dict[str, str] = {}


class EvaluateRequest(Input):
    """``POST /v1/admin/flags/evaluate``."""

    flag: str = Field(min_length=1, max_length=255)
    context: EvaluationContext = EvaluationContext()


class VariantRead(BaseModel):
    """The variant a flag resolves to."""

    name: str
    enabled: bool
    payload: dict[str, str] | None = None
    feature_enabled: bool


class Evaluation(BaseModel):
    """A flag evaluated for one context."""

    enabled: bool
    variant: VariantRead


class MyFlags(BaseModel):
    """``GET /v1/flags``: every flag evaluated for the caller."""

    flags: dict[str, Evaluation]


class ReleaseStatus(StrEnum):
    """Where a release plan is."""

    running = "running"
    paused = "paused"
    completed = "completed"
    rolled_back = "rolled_back"


class Stage(Input):
    """One stage: a rollout percentage held for ``hold_seconds`` before the next."""

    rollout: int = Field(ge=0, le=100)
    hold_seconds: float = Field(0, ge=0, le=30 * 86400)


class Guard(Input):
    """When to roll back by itself."""

    max_error_rate: float = Field(0.05, gt=0, lt=1)
    min_samples: int = Field(100, ge=1)
    window_seconds: int = Field(300, ge=10, le=86400)


class ReleasePlan(Input):
    """``PUT /v1/admin/flags/{name}/release``."""

    stages: list[Stage] = Field(min_length=1, max_length=20)
    guard: Guard | None = None


class ReleaseRead(BaseModel):
    """A release plan's progress."""

    flag: str
    status: ReleaseStatus
    stage: int
    rollout: int
    next_at: datetime | None
    stages: list[Stage]
    guard: Guard | None
    incident_id: str | None
    history: list[dict[str, Any]]
