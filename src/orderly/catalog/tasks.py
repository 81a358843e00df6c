"""Inventory jobs: the low-stock alert to staff."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict

from orderly.accounts import service as accounts_service
from orderly.catalog import repository
from orderly.catalog.service import RECORD_INVENTORY
from orderly.core.jobs import JobContext, RetryPolicy, task
from orderly.core.telemetry import get_logger
from orderly.notifications import service as notifications

log = get_logger(__name__)


class LowStock(BaseModel):
    """Payload of ``catalog.record_inventory``."""

    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID


@task(RECORD_INVENTORY, retry=RetryPolicy(max_attempts=12, base_delay=5.0, max_delay=1800.0))
async def record_inventory(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Alert every staff member by e-mail that a product fell under its low-stock threshold.

    The event key carries this job's id: a re-run of the same job sends nothing
    twice, while the next time stock falls under the threshold alerts again.
    """
    job = LowStock.model_validate(payload)
    product = await repository.get_product(ctx.tx, job.product_id)
    if product is None:
        return
    recipients = await accounts_service.staff_emails(ctx.tx)
    if not recipients:
        log.warning("low_stock_no_staff", product_id=str(job.product_id))
        return
    subject = f"Low stock: {product.sku} ({product.stock} left)"
    body = (
        f"{product.name} (sku {product.sku}, id {product.id}) has {product.stock} "
        f"in stock, under its threshold of {product.low_stock_threshold}.\n\norderly\n"
    )
    # One e-mail job per recipient: one unreachable mailbox must not resend the others.
    for email in recipients:
        await notifications.enqueue_email(
            ctx.tx,
            event_key=f"low-stock:{job.product_id}:{ctx.job_id}:{email}",
            to=email,
            subject=subject,
            body=body,
        )


TASKS = [record_inventory]
