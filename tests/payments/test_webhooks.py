"""Stripe webhooks: signatures verified, each event applied exactly once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg
import pytest

from orderly.core.db import Database
from orderly.errors import InvalidWebhookSignature
from orderly.ledger import service as ledger
from orderly.payments import service as payments
from tests.support.stripe import WEBHOOK_SECRET, intent_succeeded_event, signed_delivery

NOTIFY = "test.card_payment_reconciled"


async def test_bad_signatures_are_rejected(database: Database, raw_db: asyncpg.Connection) -> None:
    event = intent_succeeded_event(
        "evt_bad", intent_id="pi_x", amount=100, currency="usd", reference="order:x"
    )
    body, header = signed_delivery(event, "whsec_someone_else")
    _, stale = signed_delivery(event, at=int(time.time()) - 3600)
    good_body, good_header = signed_delivery(event)
    async with database.transaction() as tx:
        for payload, signature in [
            (body, header),
            (good_body, None),
            (good_body, stale),
            (good_body + b" ", good_header),
            (b"not json", good_header),
        ]:
            with pytest.raises(InvalidWebhookSignature) as caught:
                await payments.handle_webhook(
                    tx, payload=payload, signature=signature, secret=WEBHOOK_SECRET
                )
            assert caught.value.code == "unauthorized"
    assert await raw_db.fetchval("SELECT count(*) FROM stripe_event") == 0


async def test_the_same_event_twice_is_applied_once(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    event = intent_succeeded_event(
        "evt_1", intent_id="pi_late", amount=2500, currency="usd", reference="order:late"
    )
    outcomes = []
    for _ in range(2):
        body, header = signed_delivery(event)
        async with database.transaction() as tx:
            outcomes.append(
                await payments.handle_webhook(
                    tx,
                    payload=body,
                    signature=header,
                    secret=WEBHOOK_SECRET,
                    notify_task=NOTIFY,
                )
            )
            await tx.commit()
    assert [(o.outcome, o.duplicate) for o in outcomes] == [
        ("reconciled", False),
        ("duplicate", True),
    ]
    assert await raw_db.fetchval("SELECT count(*) FROM card_payment") == 1
    assert await raw_db.fetchval("SELECT count(*) FROM pgqueuer WHERE entrypoint = $1", NOTIFY) == 1
    async with database.transaction() as tx:
        report = await ledger.check_ledger(tx)
    assert report.ok
    assert ("revenue", "USD", 2500) in report.totals


async def test_concurrent_deliveries_of_one_event_apply_once(
    database_url: str, database: Database, raw_db: asyncpg.Connection
) -> None:
    event = intent_succeeded_event(
        "evt_race", intent_id="pi_race", amount=300, currency="eur", reference="order:race"
    )
    body, header = signed_delivery(event)
    racing = Database(database_url, pool_size=10)

    async def deliver() -> str:
        async with racing.transaction() as tx:
            outcome = await payments.handle_webhook(
                tx, payload=body, signature=header, secret=WEBHOOK_SECRET
            )
            await tx.commit()
            return outcome.outcome

    try:
        outcomes = await asyncio.gather(*(deliver() for _ in range(10)))
    finally:
        await racing.dispose()
    assert Counter(outcomes) == {"reconciled": 1, "duplicate": 9}
    assert await raw_db.fetchval("SELECT count(*) FROM ledger_transaction") == 1


async def test_a_refund_made_at_stripe_is_recorded(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    paid = intent_succeeded_event(
        "evt_paid", intent_id="pi_r", amount=900, currency="usd", reference="order:r"
    )
    refunded = {
        "id": "evt_refunded",
        "object": "event",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_r",
                "object": "charge",
                "payment_intent": "pi_r",
                "refunds": {"data": [{"id": "re_r", "amount": 900}]},
            }
        },
    }
    unknown = {
        "id": "evt_other",
        "object": "event",
        "type": "customer.created",
        "data": {"object": {}},
    }
    results = []
    async with database.transaction() as tx:
        for event in (paid, refunded, unknown):
            body, header = signed_delivery(event)
            results.append(
                await payments.handle_webhook(
                    tx, payload=body, signature=header, secret=WEBHOOK_SECRET
                )
            )
        await tx.commit()
        payment = await payments.get_card_payment(tx, "order:r")
        report = await ledger.check_ledger(tx)
    assert [r.outcome for r in results] == ["reconciled", "refund_recorded", "ignored"]
    assert payment is not None
    assert (payment.status, payment.refund_id) == ("refunded", "re_r")
    assert report.ok
    assert ("revenue", "USD", 0) in report.totals
    assert await raw_db.fetchval("SELECT count(*) FROM stripe_event") == 3


async def test_a_second_charge_for_a_paid_reference_is_flagged_not_recorded(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    outcomes = []
    async with database.transaction() as tx:
        for event_id, intent_id in (("evt_a", "pi_first"), ("evt_b", "pi_second")):
            event = intent_succeeded_event(
                event_id, intent_id=intent_id, amount=100, currency="usd", reference="order:dup"
            )
            body, header = signed_delivery(event)
            outcome = await payments.handle_webhook(
                tx, payload=body, signature=header, secret=WEBHOOK_SECRET
            )
            outcomes.append(outcome.outcome)
        await tx.commit()
    assert outcomes == ["reconciled", "duplicate_charge"]
    assert await raw_db.fetchval("SELECT payment_intent_id FROM card_payment") == "pi_first"
    assert await raw_db.fetchval("SELECT count(*) FROM ledger_transaction") == 1
