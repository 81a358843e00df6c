"""Every query on the card payment tables."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import asyncpg

from orderly.core.db import Tx
from orderly.payments.schemas import CardPaymentStatus, StripeEventOutcome

_COLUMNS = (
    "id, reference, user_id, payment_intent_id, amount_cents, currency, status, refund_id, "
    "created_at, updated_at"
)


@dataclasses.dataclass(frozen=True)
class CardPaymentRow:
    """A recorded card payment."""

    id: uuid.UUID
    reference: str
    user_id: uuid.UUID | None
    payment_intent_id: str
    amount_cents: int
    currency: str
    status: CardPaymentStatus
    refund_id: str | None
    created_at: datetime
    updated_at: datetime


def _row(record: asyncpg.Record) -> CardPaymentRow:
    values = dict(record)
    values["status"] = CardPaymentStatus(values["status"])
    return CardPaymentRow(**values)


async def find_by_reference(
    tx: Tx, reference: str, *, for_update: bool = False
) -> CardPaymentRow | None:
    """The card payment for *reference* (locked for the transaction with *for_update*)."""
    lock = " FOR UPDATE" if for_update else ""
    row = await tx.fetchrow(
        f"SELECT {_COLUMNS} FROM card_payment WHERE reference = $1{lock}",  # noqa: S608 - constants
        reference,
    )
    return _row(row) if row is not None else None


async def find_by_intent(
    tx: Tx, payment_intent_id: str, *, for_update: bool = False
) -> CardPaymentRow | None:
    """The card payment for a PaymentIntent id."""
    lock = " FOR UPDATE" if for_update else ""
    row = await tx.fetchrow(
        f"SELECT {_COLUMNS} FROM card_payment WHERE payment_intent_id = $1{lock}",  # noqa: S608
        payment_intent_id,
    )
    return _row(row) if row is not None else None


async def insert_succeeded(
    tx: Tx,
    *,
    reference: str,
    user_id: uuid.UUID | None,
    payment_intent_id: str,
    amount_cents: int,
    currency: str,
) -> CardPaymentRow | None:
    """Record a succeeded intent; None when the reference or intent is already recorded."""
    row = await tx.fetchrow(
        f"""INSERT INTO card_payment
                   (id, reference, user_id, payment_intent_id, amount_cents, currency, status)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT DO NOTHING RETURNING {_COLUMNS}""",  # noqa: S608 - constants
        uuid.uuid4(),
        reference,
        user_id,
        payment_intent_id,
        amount_cents,
        currency,
        CardPaymentStatus.succeeded,
    )
    return _row(row) if row is not None else None


async def mark_refunded(tx: Tx, payment_id: uuid.UUID, refund_id: str) -> CardPaymentRow:
    """Set a card payment to refunded."""
    row = await tx.fetchrow(
        f"""UPDATE card_payment SET status = $3, refund_id = $2, updated_at = now()
             WHERE id = $1 RETURNING {_COLUMNS}""",  # noqa: S608 - constants
        payment_id,
        refund_id,
        CardPaymentStatus.refunded,
    )
    assert row is not None
    return _row(row)


async def claim_event(tx: Tx, event_id: str, event_type: str) -> bool:
    """Record a webhook event as being processed; False if it was already (a redelivery).

    A concurrent delivery of the same event waits on the first one's
    transaction and then sees it: the event is applied exactly once.
    """
    inserted = await tx.fetchval(
        """INSERT INTO stripe_event (id, type, outcome) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING true""",
        event_id,
        event_type,
        StripeEventOutcome.processing,
    )
    return bool(inserted)


async def set_event_outcome(tx: Tx, event_id: str, outcome: StripeEventOutcome) -> None:
    """Note what processing the event did (for operators)."""
    await tx.execute("UPDATE stripe_event SET outcome = $2 WHERE id = $1", event_id, outcome)
