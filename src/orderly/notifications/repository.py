"""Every query on the ``notification`` table."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderly.notifications.models import Notification


async def claim(
    session: AsyncSession,
    *,
    event_key: str,
    channel: str,
    recipient: str,
    subject: str | None,
    message_id: str,
    body_sha256: str,
    attempt: int,
) -> bool:
    """Insert the record for *event_key* in this transaction; False if it already exists.

    While another transaction holds an uncommitted row for the same key (a
    concurrent run of the same job), PostgreSQL makes this statement wait for
    it: if that run commits we get False, if it rolls back we claim the key.
    """
    statement = (
        insert(Notification)
        .values(
            id=uuid.uuid4(),
            event_key=event_key,
            channel=channel,
            recipient=recipient,
            subject=subject,
            message_id=message_id,
            body_sha256=body_sha256,
            attempt=attempt,
        )
        .on_conflict_do_nothing(index_elements=[Notification.event_key])
        .returning(Notification.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def mark_sent(
    session: AsyncSession, *, event_key: str, response_status: int | None = None
) -> None:
    """Stamp the claimed record with the moment the receiver accepted it."""
    await session.execute(
        update(Notification)
        .where(Notification.event_key == event_key)
        .values(sent_at=func.clock_timestamp(), response_status=response_status)
    )


async def get(session: AsyncSession, event_key: str) -> Notification | None:
    """The record for *event_key*, if that event was sent."""
    result = await session.execute(select(Notification).where(Notification.event_key == event_key))
    return result.scalar_one_or_none()
