"""The delivery record: one row per notification event that was sent."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Integer, String, Text, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base
from orderly.notifications.schemas import Channel

_CHANNELS = ", ".join(f"'{channel.value}'" for channel in Channel)


class Notification(Base):
    """What was sent for an event key (``order:{id}:confirmation``), to whom and when.

    The unique event key is what makes a re-run job skip a second send; the row
    is written in the sending job's transaction, so it exists only if the send
    succeeded and the job committed.
    """

    __tablename__ = "notification"
    __table_args__ = (CheckConstraint(f"channel IN ({_CHANNELS})", name="channel"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_key: Mapped[str] = mapped_column(String(255), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    # The RFC 5322 Message-ID or the Standard Webhooks webhook-id: stable per event,
    # so a receiver can drop the duplicate our at-least-once delivery may produce.
    message_id: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
