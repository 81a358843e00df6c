"""Audit shapes: who did it and from where (AuditContext), and events as the API shows them."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class AuditContext:
    """Who acts and from where; built once per request (or job) and passed to services."""

    actor_id: uuid.UUID | None = None
    actor_role: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    def with_actor(self, actor_id: uuid.UUID | None, actor_role: str | None) -> AuditContext:
        """The same origin, acting as another actor (e.g. once a login identified the user)."""
        return dataclasses.replace(self, actor_id=actor_id, actor_role=actor_role)


SYSTEM = AuditContext(actor_role="system")


class AuditEventRead(BaseModel):
    """An audit event as ``GET /v1/admin/audit-events`` shows it."""

    id: uuid.UUID
    seq: int
    occurred_at: datetime
    actor_id: uuid.UUID | None
    actor_role: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str


class AuditEventPage(BaseModel):
    """One page of audit events, newest first."""

    data: list[AuditEventRead]
    next_cursor: str | None


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying the hash chain."""

    ok: bool
    checked: int
    broken_event_id: uuid.UUID | None = None
    broken_seq: int | None = None
    reason: str | None = None
