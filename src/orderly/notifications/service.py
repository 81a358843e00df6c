"""Notification use cases: enqueue in the caller's transaction; send each event once.

Delivery is **at least once**, with duplicates confined to one narrow window.
A sending job first inserts the event's ``notification`` row (unique event
key) in its own transaction, then sends, then commits. So:

* a job re-run after its commit (a crash before the queue acknowledged it, an
  admin retry, a second enqueue) finds the row and sends nothing;
* two runs at the same time are serialised by PostgreSQL on the unique key:
  the second waits for the first and sends only if the first rolled back;
* a failed send rolls the row back, so the retry sends again — nothing is lost;
* the one remaining window is "the receiver accepted, then our commit failed
  or the process died": the retry sends a second copy. We accept it rather
  than risk losing the notification (at-most-once would mean committing
  "sent" before sending). That copy is recognisable: the e-mail has the same
  Message-ID and the webhook the same ``webhook-id`` and body, so receivers
  drop it; the Maildir transport even overwrites its own earlier file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orderly.core import jobs
from orderly.core.db import Tx
from orderly.core.telemetry import get_logger
from orderly.notifications import repository
from orderly.notifications.mailer import Email, Mailer, compose, message_id_for
from orderly.notifications.schemas import Channel, EmailJob, WebhookJob
from orderly.notifications.webhooks import (
    WAREHOUSE,
    WebhookEvent,
    WebhookSender,
    render_body,
    webhook_id_for,
)

log = get_logger(__name__)

SEND_EMAIL = "notifications.send_email"
DELIVER_WEBHOOK = "notifications.deliver_webhook"


async def enqueue_email(tx: Tx, *, event_key: str, to: str, subject: str, body: str) -> int | None:
    """Queue an e-mail in the caller's transaction (sent only if it commits, once per key)."""
    job = EmailJob(event_key=event_key, to=to, subject=subject, body=body)
    return await jobs.enqueue(
        tx, SEND_EMAIL, job.model_dump(mode="json"), dedupe_key=f"notification:{event_key}"
    )


async def enqueue_webhook(
    tx: Tx,
    *,
    event_key: str,
    event_type: str,
    data: Mapping[str, Any],
    receiver: str = WAREHOUSE,
    occurred_at: datetime | None = None,
) -> int | None:
    """Queue a signed webhook in the caller's transaction (delivered once per key)."""
    job = WebhookJob(
        event_key=event_key,
        event_type=event_type,
        data=dict(data),
        occurred_at=occurred_at or datetime.now(UTC),
        receiver=receiver,
    )
    return await jobs.enqueue(
        tx,
        DELIVER_WEBHOOK,
        job.model_dump(mode="json"),
        dedupe_key=f"notification:{event_key}",
    )


async def send_email(
    tx: Tx, mailer: Mailer, job: EmailJob, *, sender: str, attempt: int = 1
) -> bool:
    """Send *job*'s e-mail unless its event was already sent; True if this call sent it."""
    message = compose(Email(job.event_key, job.to, job.subject, job.body), sender=sender)
    claimed = await repository.claim(
        tx,
        event_key=job.event_key,
        channel=Channel.email,
        recipient=job.to,
        subject=job.subject,
        message_id=message_id_for(job.event_key, sender),
        body_sha256=hashlib.sha256(job.body.encode()).hexdigest(),
        attempt=attempt,
    )
    if not claimed:
        log.info("notification_already_sent", event_key=job.event_key, channel=Channel.email)
        return False
    await mailer.send(message)
    await repository.mark_sent(tx, event_key=job.event_key)
    log.info("email_sent", event_key=job.event_key, transport=mailer.transport)
    return True


async def deliver_webhook(
    tx: Tx, sender: WebhookSender, job: WebhookJob, *, attempt: int = 1
) -> bool:
    """Deliver *job*'s webhook unless its event was already accepted; True if this call did."""
    receiver = sender.receiver(job.receiver)
    if receiver is None:
        log.warning("webhook_receiver_not_configured", receiver=job.receiver)
        return False
    event = WebhookEvent(job.event_key, job.event_type, job.data, job.occurred_at)
    claimed = await repository.claim(
        tx,
        event_key=job.event_key,
        channel=Channel.webhook,
        recipient=receiver.name,
        subject=job.event_type,
        message_id=webhook_id_for(job.event_key),
        body_sha256=hashlib.sha256(render_body(event)).hexdigest(),
        attempt=attempt,
    )
    if not claimed:
        log.info("notification_already_sent", event_key=job.event_key, channel=Channel.webhook)
        return False
    delivery = await sender.deliver(receiver, event)
    await repository.mark_sent(tx, event_key=job.event_key, response_status=delivery.status_code)
    log.info("webhook_delivered", event_key=job.event_key, webhook_id=delivery.webhook_id)
    return True
