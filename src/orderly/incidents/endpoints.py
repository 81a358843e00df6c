"""Incident routes, the Alertmanager receiver and the SLO report."""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import Header, Query
from starlette.responses import Response

from orderly import errors
from orderly.api.auth import PUBLIC, Origin, StaffUser
from orderly.api.deps import AppSettings, Page, Transaction, keyset_after, keyset_cursor
from orderly.api.idempotency import IDEMPOTENT
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.incidents import postmortem, service, slo
from orderly.incidents.schemas import (
    AlertmanagerPayload,
    AlertmanagerResult,
    IncidentCreate,
    IncidentPage,
    IncidentRead,
    IncidentStatus,
    IncidentUpdate,
    SloReport,
    TimelineNote,
)

router = domain_router(tags=["incidents"])
_ERRORS = responses_for(errors.Unauthorized, errors.Forbidden, errors.NotFound)
_CREATE_ERRORS = {
    **_ERRORS,
    **responses_for(errors.IdempotencyKeyReused, errors.IdempotencyKeyInUse),
}


@router.post(
    "/admin/incidents", status_code=201, dependencies=[IDEMPOTENT], responses=_CREATE_ERRORS
)
async def open_incident(
    data: IncidentCreate, tx: Transaction, user: StaffUser, origin: Origin
) -> IncidentRead:
    """Open an incident; the caller is its commander; staff are e-mailed."""
    return await service.create(tx, origin.with_actor(user.id, user.role), data)


@router.get("/admin/incidents", responses=_ERRORS)
async def list_incidents(
    tx: Transaction,
    user: StaffUser,
    page: Page,
    status: Annotated[IncidentStatus | None, Query()] = None,
) -> IncidentPage:
    """Incidents newest first, optionally by status."""
    items = await service.list_incidents(
        tx, status=status, limit=page.limit + 1, before=keyset_after(page.cursor)
    )
    more = len(items) > page.limit
    items = items[: page.limit]
    last = (items[-1].started_at, items[-1].id) if more else None
    return IncidentPage(data=items, next_cursor=keyset_cursor(last))


@router.get("/admin/incidents/{incident_id}", responses=_ERRORS)
async def read_incident(incident_id: uuid.UUID, tx: Transaction, user: StaffUser) -> IncidentRead:
    """One incident with its timeline."""
    return await service.get(tx, incident_id)


@router.patch(
    "/admin/incidents/{incident_id}", responses={**_ERRORS, **responses_for(errors.Conflict)}
)
async def update_incident(
    incident_id: uuid.UUID, data: IncidentUpdate, tx: Transaction, user: StaffUser, origin: Origin
) -> IncidentRead:
    """Change status (active → stable → closed), severity, commander or post-mortem fields."""
    return await service.update(tx, origin.with_actor(user.id, user.role), incident_id, data)


@router.post(
    "/admin/incidents/{incident_id}/timeline",
    status_code=201,
    dependencies=[IDEMPOTENT],
    responses=_CREATE_ERRORS,
)
async def add_timeline_note(
    incident_id: uuid.UUID, data: TimelineNote, tx: Transaction, user: StaffUser, origin: Origin
) -> IncidentRead:
    """Append a note to the timeline."""
    return await service.add_note(
        tx, origin.with_actor(user.id, user.role), incident_id, data.message
    )


@router.get(
    "/admin/incidents/{incident_id}/postmortem",
    response_class=Response,
    responses={200: {"content": {"text/markdown": {}}, "description": "Markdown draft"}, **_ERRORS},
)
async def read_postmortem(incident_id: uuid.UUID, tx: Transaction, user: StaffUser) -> Response:
    """The post-mortem draft in the template's sections, filled from the record."""
    incident = await service.get(tx, incident_id)
    body = await postmortem.render(tx, incident)
    return Response(body, media_type="text/markdown; charset=utf-8")


@router.get("/admin/slos", responses=responses_for(errors.Unauthorized, errors.Forbidden))
async def read_slos(tx: Transaction, user: StaffUser) -> SloReport:
    """SLIs, error budgets and burn rates from the per-minute request counts."""
    return await slo.report(tx)


@router.post(
    "/webhooks/alertmanager",
    dependencies=[PUBLIC],
    responses=responses_for(errors.Unauthorized),
)
async def alertmanager_webhook(
    payload: AlertmanagerPayload,
    tx: Transaction,
    settings: AppSettings,
    authorization: Annotated[str | None, Header()] = None,
) -> AlertmanagerResult:
    """Alertmanager's webhook (bearer ``ORDERLY_ALERTMANAGER_TOKEN``): firing opens an incident."""
    token = settings.alertmanager_token
    given = (authorization or "").removeprefix("Bearer ").strip()
    if token is None or not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise errors.Unauthorized("A valid bearer token is required.")
    return await service.receive_alerts(tx, payload)
