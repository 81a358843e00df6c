"""Audit use cases: append an event to the chain, list events, verify the chain.

Any domain calls :func:`record` inside its own transaction: the event commits
or vanishes with the action it describes. Appends are serialized by a
transaction-scoped advisory lock, so the chain stays linear however many API
instances write at once; the lock is held until the caller's commit, which is
why audited transactions should record late and commit promptly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from orderly.audit import repository
from orderly.audit.repository import AuditEventRow
from orderly.audit.schemas import AuditContext, AuditEventRead, ChainReport
from orderly.core.db import Tx
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

GENESIS = "0" * 64
_SECRET_KEY = re.compile(r"pass(word)?|secret|token|api[_-]?key|private|credential", re.I)
_MAX_TEXT = 512


def _clip(value: str | None) -> str | None:
    return value[:_MAX_TEXT] if value is not None else None


def event_digest(event: AuditEventRow) -> str:
    """The hash of *event*: SHA-256 over its predecessor's hash and its canonical fields."""
    fields = {
        "id": str(event.id),
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "actor_role": event.actor_role,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
    }
    canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(event.prev_hash.encode() + b"\n" + canonical).hexdigest()


async def record(
    tx: Tx,
    context: AuditContext,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEventRow:
    """Append one event (``action`` like ``user.role_changed``) in the caller's transaction."""
    details = dict(details or {})
    leaked = [key for key in details if _SECRET_KEY.search(key)]
    if leaked:
        # A programming error: secrets never belong in the audit log.
        raise ValueError(f"audit details must not carry secrets: {leaked}")
    await repository.lock_chain(tx)
    last = await repository.last_link(tx)
    seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
    unsealed = AuditEventRow(
        id=uuid.uuid4(),
        seq=seq,
        occurred_at=datetime.now(UTC),
        actor_id=context.actor_id,
        actor_role=context.actor_role,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        ip=_clip(context.ip),
        user_agent=_clip(context.user_agent),
        request_id=context.request_id,
        details=details,
        prev_hash=prev_hash,
        hash="",
    )
    event = dataclasses.replace(unsealed, hash=event_digest(unsealed))
    await repository.add(tx, event)
    log.info("audit_event", action=action, audit_seq=seq, target_type=target_type)
    return event


async def list_events(
    tx: Tx,
    *,
    limit: int,
    before_seq: int | None = None,
    action: str | None = None,
    actor_id: uuid.UUID | None = None,
    target_id: str | None = None,
) -> list[AuditEventRead]:
    """A page of events, newest first."""
    rows = await repository.page(
        tx,
        limit=limit,
        before_seq=before_seq,
        action=action,
        actor_id=actor_id,
        target_id=target_id,
    )
    return [AuditEventRead.model_validate(row, from_attributes=True) for row in rows]


async def verify_chain(tx: Tx) -> ChainReport:
    """Recompute the chain oldest first; report the first event that was edited or removed."""
    expected_seq, prev_hash, checked = 1, GENESIS, 0
    async for event in repository.in_order(tx):
        reason = None
        if event.seq != expected_seq:
            reason = f"sequence gap: expected {expected_seq}, found {event.seq} (events removed)"
        elif event.prev_hash != prev_hash:
            reason = "prev_hash does not match the previous event (events removed or reordered)"
        elif event.hash != event_digest(event):
            reason = "content does not match its hash (event edited)"
        if reason is not None:
            return ChainReport(False, checked, event.id, event.seq, reason)
        checked += 1
        expected_seq, prev_hash = event.seq + 1, event.hash
    return ChainReport(True, checked)
