"""Every query on audit_event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from orderly.audit.models import AuditEvent

# Arbitrary constant naming "the audit chain" among transaction-scoped advisory locks.
CHAIN_LOCK_KEY = 0x6F72_6465_726C_7961


async def lock_chain(session: AsyncSession) -> None:
    """Serialize appends until this transaction ends (commit or rollback releases it)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})


async def last_link(session: AsyncSession) -> tuple[int, str] | None:
    """``(seq, hash)`` of the newest event, or None for an empty log."""
    row = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
        )
    ).first()
    return (int(row[0]), str(row[1])) if row else None


async def add(session: AsyncSession, event: AuditEvent) -> None:
    """Insert one event (flushed now, so a constraint violation surfaces here)."""
    session.add(event)
    await session.flush()


async def page(
    session: AsyncSession,
    *,
    limit: int,
    before_seq: int | None,
    action: str | None,
    actor_id: uuid.UUID | None,
    target_id: str | None,
) -> Sequence[AuditEvent]:
    """Events newest first, keyset-paginated by ``seq``."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if before_seq is not None:
        query = query.where(AuditEvent.seq < before_seq)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor_id is not None:
        query = query.where(AuditEvent.actor_id == actor_id)
    if target_id is not None:
        query = query.where(AuditEvent.target_id == target_id)
    return (await session.scalars(query)).all()


async def in_order(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEvent]:
    """Every event oldest first, read in batches (bounded memory for long logs)."""
    after = 0
    while True:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > after)
                .order_by(AuditEvent.seq)
                .limit(batch)
                .execution_options(populate_existing=True)
            )
        ).all()
        if not rows:
            return
        for row in rows:
            yield row
        after = rows[-1].seq
        session.expunge_all()
