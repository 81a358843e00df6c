"""Job payloads of the notification tasks (what the orders domain enqueues)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orderly.notifications.webhooks import WAREHOUSE


class Channel(StrEnum):
    """How a notification leaves orderly (``notification.channel``)."""

    email = "email"
    webhook = "webhook"


EventKey = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")


class EmailJob(BaseModel):
    """``notifications.send_email``: one e-mail per event key, ever."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_key: str = EventKey
    to: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str = Field(min_length=1, max_length=998, pattern=r"^[^\r\n]+$")
    body: str = Field(max_length=1_000_000)


class WebhookJob(BaseModel):
    """``notifications.deliver_webhook``: one accepted delivery per event key, ever."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_key: str = EventKey
    event_type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_.]+$")
    data: dict[str, Any]
    occurred_at: datetime
    receiver: str = Field(WAREHOUSE, min_length=1, max_length=50)
