"""Incident use cases: open (once per dedupe key), change with a timeline entry, post-mortem."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from orderly import errors
from orderly.accounts import service as accounts_service
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core.db import Tx
from orderly.core.telemetry import REGISTRY, get_logger
from orderly.incidents import repository
from orderly.incidents.repository import IncidentRow, TimelineRow
from orderly.incidents.schemas import (
    AlertmanagerPayload,
    AlertmanagerResult,
    IncidentCreate,
    IncidentRead,
    IncidentSource,
    IncidentStatus,
    IncidentUpdate,
    Severity,
    TimelineEntryRead,
)
from orderly.notifications import service as notifications

log = get_logger(__name__)

INCIDENTS_OPENED = Counter(
    "orderly_incidents_opened_total", "Incidents opened, by source.", ["source"], registry=REGISTRY
)

_NEXT_STATUS = {
    IncidentStatus.active: {IncidentStatus.stable, IncidentStatus.closed},
    IncidentStatus.stable: {IncidentStatus.closed},
    IncidentStatus.closed: set(),
}


def next_statuses(status: IncidentStatus) -> list[IncidentStatus]:
    """Where an incident in *status* may go next (active → stable → closed)."""
    return sorted(_NEXT_STATUS[status], key=list(IncidentStatus).index)


def actor_name(context: AuditContext) -> str:
    """How the timeline names an actor: ``user:<id>`` or the system role."""
    if context.actor_id is not None:
        return f"user:{context.actor_id}"
    return context.actor_role or "system"


def _read(row: IncidentRow, timeline: list[TimelineRow]) -> IncidentRead:
    return IncidentRead(
        id=row.id,
        title=row.title,
        severity=Severity(row.severity),
        status=IncidentStatus(row.status),
        source=IncidentSource(row.source),
        commander_id=row.commander_id,
        summary=row.summary,
        impact=row.impact,
        root_cause=row.root_cause,
        resolution=row.resolution,
        lessons_learned=row.lessons_learned,
        action_items=list(row.action_items or []),
        started_at=row.started_at,
        stabilized_at=row.stabilized_at,
        closed_at=row.closed_at,
        timeline=[
            TimelineEntryRead(at=t.at, kind=t.kind, message=t.message, actor=t.actor, data=t.data)
            for t in timeline
        ],
    )


async def _load(tx: Tx, row: IncidentRow) -> IncidentRead:
    return _read(row, (await repository.timelines(tx, [row.id]))[row.id])


async def open_incident(
    tx: Tx,
    context: AuditContext,
    *,
    title: str,
    severity: Severity,
    source: IncidentSource,
    summary: str | None = None,
    dedupe_key: str | None = None,
    details: dict[str, Any] | None = None,
) -> tuple[IncidentRead, bool]:
    """Open an incident (or find the open one with *dedupe_key*); e-mails staff when new."""
    row = await repository.insert(
        tx,
        title=title,
        severity=severity.value,
        source=source.value,
        summary=summary,
        commander_id=context.actor_id,
        dedupe_key=dedupe_key,
    )
    if row is None:
        assert dedupe_key is not None
        existing = await repository.find_open(tx, dedupe_key)
        if existing is None:  # closed in between: a new one is right
            return await open_incident(
                tx, context, title=title, severity=severity, source=source, summary=summary,
                dedupe_key=None, details=details,
            )  # fmt: skip
        return await _load(tx, existing), False
    actor = actor_name(context)
    await repository.add_entry(
        tx, row.id, "opened", f"Incident opened ({severity.value}, {source.value}): {title}",
        actor, details or {},
    )  # fmt: skip
    await audit.record(
        tx, context, "incident.opened", target_type="incident", target_id=row.id,
        details={"title": title, "severity": severity.value, "source": source.value},
    )  # fmt: skip
    for email in await accounts_service.staff_emails(tx):
        await notifications.enqueue_email(
            tx,
            event_key=f"incident:{row.id}:opened:{email}",
            to=email,
            subject=f"[{severity.value}] Incident opened: {title}",
            body=f"An incident was opened ({source.value}).\n\n{title}\n\n{summary or ''}\n"
            f"Incident id: {row.id}\n",
        )
    INCIDENTS_OPENED.labels(source.value).inc()
    log.warning("incident_opened", incident_id=str(row.id), source=source.value)
    return await _load(tx, row), True


async def create(tx: Tx, context: AuditContext, data: IncidentCreate) -> IncidentRead:
    """A manual incident, commanded by whoever opened it."""
    incident, _ = await open_incident(
        tx, context, title=data.title, severity=data.severity, source=IncidentSource.manual,
        summary=data.summary,
    )  # fmt: skip
    return incident


async def get(tx: Tx, incident_id: uuid.UUID) -> IncidentRead:
    """One incident with its timeline."""
    row = await repository.get(tx, incident_id)
    if row is None:
        raise errors.NotFound("No such incident.")
    return await _load(tx, row)


async def list_incidents(
    tx: Tx,
    *,
    status: IncidentStatus | None,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
) -> list[IncidentRead]:
    """Incidents newest first."""
    rows = await repository.page(
        tx, status=status.value if status else None, limit=limit, before=before
    )
    timelines = await repository.timelines(tx, [row.id for row in rows])
    return [_read(row, timelines[row.id]) for row in rows]


async def update(
    tx: Tx, context: AuditContext, incident_id: uuid.UUID, data: IncidentUpdate
) -> IncidentRead:
    """Change fields; a status move stamps its time; every change adds a timeline entry."""
    row = await repository.get(tx, incident_id, lock=True)
    if row is None:
        raise errors.NotFound("No such incident.")
    given = data.model_dump(exclude_unset=True, mode="json")
    changes: dict[str, Any] = {
        name: value
        for name, value in given.items()
        if not (value is None and name in {"status", "severity", "title", "action_items"})
        and _differs(row, name, value)
    }
    if "status" in changes:
        current, target = IncidentStatus(row.status), IncidentStatus(changes["status"])
        if target not in _NEXT_STATUS[current]:
            raise errors.Conflict(f"An incident cannot go from {current.value} to {target.value}.")
        now = datetime.now(UTC)
        if target is IncidentStatus.stable or row.stabilized_at is None:
            changes["stabilized_at"] = now
        if target is IncidentStatus.closed:
            changes["closed_at"] = now
    if "commander_id" in changes and changes["commander_id"] is not None:
        changes["commander_id"] = uuid.UUID(changes["commander_id"])
    if not changes:
        return await _load(tx, row)
    updated = await repository.update(tx, incident_id, changes)
    assert updated is not None
    actor = actor_name(context)
    for name in given:
        if name not in changes:
            continue
        value = changes[name]
        message = (
            f"Status changed to {value}"
            if name == "status"
            else f"{name.replace('_', ' ').capitalize()} set to {value}"
        )
        await repository.add_entry(tx, incident_id, f"{name}_changed", message[:2000], actor, {})
    await audit.record(
        tx, context, "incident.updated", target_type="incident", target_id=incident_id,
        details={"changed": sorted(k for k in changes if k in given)},
    )  # fmt: skip
    return await _load(tx, updated)


def _differs(row: IncidentRow, name: str, value: Any) -> bool:
    current = getattr(row, name)
    if isinstance(current, uuid.UUID):
        current = str(current)
    return bool(current != value)


async def add_note(
    tx: Tx, context: AuditContext, incident_id: uuid.UUID, message: str
) -> IncidentRead:
    """Append a note to the timeline."""
    row = await repository.get(tx, incident_id)
    if row is None:
        raise errors.NotFound("No such incident.")
    await repository.add_entry(tx, incident_id, "note", message, actor_name(context), {})
    return await _load(tx, row)


async def add_system_entry(
    tx: Tx, incident_id: uuid.UUID, kind: str, message: str, actor: str, data: dict[str, Any]
) -> None:
    """An automatic action's timeline entry (guard, alert, SLO)."""
    await repository.add_entry(tx, incident_id, kind, message, actor, data)


# ---------------------------------------------------------------- Alertmanager

ALERT_ACTOR = AuditContext(actor_role="system:alertmanager")
_SEVERITY_BY_LABEL = {"page": Severity.SEV2, "critical": Severity.SEV1, "ticket": Severity.SEV3}


async def receive_alerts(tx: Tx, payload: AlertmanagerPayload) -> AlertmanagerResult:
    """Firing alerts open one incident per fingerprint; resolved ones add to its timeline."""
    opened = resolved = 0
    for alert in payload.alerts:
        key = f"alert:{alert.fingerprint}"
        name = alert.labels.get("alertname", "alert")
        summary = alert.annotations.get("summary") or alert.annotations.get("description")
        if alert.status == "firing":
            _, created = await open_incident(
                tx, ALERT_ACTOR, title=f"Alert {name} firing"[:200],
                severity=_SEVERITY_BY_LABEL.get(alert.labels.get("severity", ""), Severity.SEV3),
                source=IncidentSource.alert, summary=summary, dedupe_key=key,
                details={"labels": alert.labels, "startsAt": alert.startsAt},
            )  # fmt: skip
            opened += int(created)
        elif alert.status == "resolved":
            existing = await repository.find_open(tx, key)
            if existing is not None:
                await repository.add_entry(
                    tx, existing.id, "alert_resolved", f"Alert {name} resolved",
                    ALERT_ACTOR.actor_role or "system", {"endsAt": alert.endsAt},
                )  # fmt: skip
                resolved += 1
    return AlertmanagerResult(opened=opened, resolved=resolved)
