"""``GET /v1/admin/audit-events`` (admin)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from orderly.api.auth import AdminUser
from orderly.api.deps import Page, Transaction, encode_cursor
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.audit import service
from orderly.audit.schemas import AuditEventPage
from orderly.errors import Forbidden, InvalidInput, Unauthorized

router = domain_router(tags=["audit"])


@router.get(
    "/admin/audit-events",
    responses=responses_for(Unauthorized, Forbidden, InvalidInput),
)
async def list_audit_events(
    _: AdminUser,
    tx: Transaction,
    page: Page,
    action: Annotated[str | None, Query(max_length=100)] = None,
    actor_id: uuid.UUID | None = None,
    target_id: Annotated[str | None, Query(max_length=100)] = None,
) -> AuditEventPage:
    """Audit events newest first, optionally filtered by action, actor or target."""
    before = page.integer("seq")
    events = await service.list_events(
        tx,
        limit=page.limit + 1,
        before_seq=before,
        action=action,
        actor_id=actor_id,
        target_id=target_id,
    )
    more = len(events) > page.limit
    events = events[: page.limit]
    cursor = encode_cursor({"seq": str(events[-1].seq)}) if more and events else None
    return AuditEventPage(data=events, next_cursor=cursor)
