"""Notification jobs, enqueued by name by any domain (see ``service.enqueue_*``)."""

from __future__ import annotations

from typing import Any

from orderly.config import Settings
from orderly.core.jobs import JobContext, RetryPolicy, task
from orderly.core.outbound import Breakers, Timeouts
from orderly.notifications import service
from orderly.notifications.mailer import Mailer, build_mailer
from orderly.notifications.schemas import EmailJob, WebhookJob
from orderly.notifications.webhooks import WebhookSender, receivers_from

# Attempt n waits 2.5–5 s · 2ⁿ⁻¹, capped: about 1 h (e-mail) and 3 h (webhooks) in all,
# long enough to ride out a receiver's deploy or outage before the job is dead.
EMAIL_RETRY = RetryPolicy(max_attempts=12, base_delay=5.0, max_delay=1800.0)
WEBHOOK_RETRY = RetryPolicy(max_attempts=14, base_delay=5.0, max_delay=3600.0)


@task(service.SEND_EMAIL, retry=EMAIL_RETRY, timeout=60)
async def send_email(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Send one e-mail for an event key, unless it was already sent."""
    job = EmailJob.model_validate(payload)
    sender = ctx.resource(Settings).mail_from
    await service.send_email(ctx.tx, ctx.resource(Mailer), job, sender=sender, attempt=ctx.attempt)


@task(service.DELIVER_WEBHOOK, retry=WEBHOOK_RETRY, timeout=60)
async def deliver_webhook(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Deliver one signed webhook for an event key; non-2xx or a timeout fails the attempt."""
    job = WebhookJob.model_validate(payload)
    await service.deliver_webhook(ctx.tx, ctx.resource(WebhookSender), job, attempt=ctx.attempt)


TASKS = [send_email, deliver_webhook]


def build_resources(
    settings: Settings,
    breakers: Breakers,
    *,
    smtp_timeout: float = 10.0,
    webhook_timeouts: Timeouts | None = None,
) -> dict[type[Any], Any]:
    """The mailer and webhook sender the tasks above reach through ``ctx.resource``."""
    return {
        Mailer: build_mailer(settings, breakers, timeout=smtp_timeout),
        WebhookSender: WebhookSender(receivers_from(settings), breakers, timeouts=webhook_timeouts),
    }
