"""Every query on the ``notification`` table."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from orderly.core.db import Tx
from orderly.notifications.schemas import Channel


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """The delivery record of one notification event, as stored."""

    id: uuid.UUID
    event_key: str
    channel: Channel
    recipient: str
    subject: str | None
    message_id: str
    body_sha256: str
    response_status: int | None
    attempt: int
    sent_at: datetime


async def claim(
    tx: Tx,
    *,
    event_key: str,
    channel: Channel,
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
    claimed = await tx.fetchval(
        """INSERT INTO notification
             (id, event_key, channel, recipient, subject, message_id, body_sha256, attempt)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (event_key) DO NOTHING
           RETURNING id""",
        uuid.uuid4(),
        event_key,
        channel,
        recipient,
        subject,
        message_id,
        body_sha256,
        attempt,
    )
    return claimed is not None


async def mark_sent(tx: Tx, *, event_key: str, response_status: int | None = None) -> None:
    """Stamp the claimed record with the moment the receiver accepted it."""
    await tx.execute(
        """UPDATE notification SET sent_at = clock_timestamp(), response_status = $2
           WHERE event_key = $1""",
        event_key,
        response_status,
    )


async def get(tx: Tx, event_key: str) -> NotificationRow | None:
    """The record for *event_key*, if that event was sent."""
    row = await tx.fetchrow(
        """SELECT id, event_key, channel, recipient, subject, message_id, body_sha256,
                  response_status, attempt, sent_at
           FROM notification WHERE event_key = $1""",
        event_key,
    )
    if row is None:
        return None
    return NotificationRow(
        id=row["id"],
        event_key=row["event_key"],
        channel=Channel(row["channel"]),
        recipient=row["recipient"],
        subject=row["subject"],
        message_id=row["message_id"],
        body_sha256=row["body_sha256"],
        response_status=row["response_status"],
        attempt=row["attempt"],
        sent_at=row["sent_at"],
    )
