"""Card payments against a real localstripe: charge, decline, refund, reconcile, outage."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest
import stripe

from orderly import errors
from orderly.core.db import Database
from orderly.core.outbound import Breakers
from orderly.core.telemetry import CIRCUIT_STATE, REGISTRY
from orderly.errors import CardDeclined, CircuitOpen
from orderly.ledger import service as ledger
from orderly.payments import service as payments
from orderly.payments.gateway import BREAKER, GatewayOptions, StripeGateway
from tests.support.stripe import (
    CARD_DECLINED,
    CARD_OK,
    TEST_API_KEY,
    free_port,
    payment_method,
)

# stripe's HTTPXClient posts form bytes through httpx's deprecated ``data=`` path.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=:DeprecationWarning")


async def _counts(raw_db: asyncpg.Connection) -> tuple[int, int]:
    return (
        await raw_db.fetchval("SELECT count(*) FROM card_payment"),
        await raw_db.fetchval("SELECT count(*) FROM ledger_entry"),
    )


async def test_card_payment_succeeds_and_is_recorded_once(
    database: Database, gateway: StripeGateway, stripe_base: str, raw_db: asyncpg.Connection
) -> None:
    method = await payment_method(stripe_base, CARD_OK)
    user = uuid.uuid4()
    async with database.transaction() as tx:
        paid = await payments.pay_by_card(
            tx,
            gateway,
            reference="order:card-1",
            user_id=user,
            amount_cents=4200,
            currency="EUR",
            payment_method=method,
            idempotency_key="client-key-1",
        )
        await tx.commit()
    assert paid.created
    assert paid.status == "succeeded"
    assert paid.payment_intent_id.startswith("pi_")
    at_stripe = await gateway.retrieve_payment(paid.payment_intent_id)
    assert (at_stripe.status, at_stripe.amount_cents, at_stripe.currency) == (
        "succeeded",
        4200,
        "EUR",
    )
    assert at_stripe.metadata["orderly_reference"] == "order:card-1"

    async with database.transaction() as tx:
        again = await payments.pay_by_card(
            tx,
            gateway,
            reference="order:card-1",
            user_id=user,
            amount_cents=4200,
            currency="EUR",
            payment_method=method,
        )
        with pytest.raises(errors.Conflict):
            await payments.pay_by_card(
                tx,
                gateway,
                reference="order:card-1",
                user_id=user,
                amount_cents=1,
                currency="EUR",
                payment_method=method,
            )
        report = await ledger.check_ledger(tx)
    assert not again.created
    assert again.payment_intent_id == paid.payment_intent_id
    assert report.ok
    assert ("revenue", "EUR", 4200) in report.totals
    assert await _counts(raw_db) == (1, 2)


async def test_declined_card_raises_card_declined_and_writes_nothing(
    database: Database, gateway: StripeGateway, stripe_base: str, raw_db: asyncpg.Connection
) -> None:
    method = await payment_method(stripe_base, CARD_DECLINED)
    async with database.transaction() as tx:
        with pytest.raises(CardDeclined) as declined:
            await payments.pay_by_card(
                tx,
                gateway,
                reference="order:declined",
                user_id=None,
                amount_cents=999,
                currency="USD",
                payment_method=method,
            )
        await tx.commit()
    assert declined.value.code == "card_declined"
    assert isinstance(declined.value, errors.PaymentRequired)
    assert await _counts(raw_db) == (0, 0)
    assert await gateway.breakers.state(BREAKER) == "closed"


async def test_unknown_payment_method_is_invalid_input(
    database: Database, gateway: StripeGateway
) -> None:
    async with database.transaction() as tx:
        with pytest.raises(errors.InvalidInput):
            await payments.pay_by_card(
                tx,
                gateway,
                reference="order:bad-pm",
                user_id=None,
                amount_cents=100,
                currency="USD",
                payment_method="pm_does_not_exist",
            )


async def test_refund_is_made_once(
    database: Database, gateway: StripeGateway, stripe_base: str
) -> None:
    method = await payment_method(stripe_base, CARD_OK)
    async with database.transaction() as tx:
        paid = await payments.pay_by_card(
            tx,
            gateway,
            reference="order:refund-me",
            user_id=None,
            amount_cents=1500,
            currency="USD",
            payment_method=method,
        )
        await tx.commit()
    async with database.transaction() as tx:
        refunded = await payments.refund_card_payment(
            tx, gateway, reference="order:refund-me", reason="cancelled"
        )
        await tx.commit()
    async with database.transaction() as tx:
        again = await payments.refund_card_payment(tx, gateway, reference="order:refund-me")
        report = await ledger.check_ledger(tx)
        with pytest.raises(errors.NotFound):
            await payments.refund_card_payment(tx, gateway, reference="order:never-paid")
    assert refunded.created
    assert refunded.status == "refunded"
    assert refunded.refund_id is not None
    assert refunded.refund_id.startswith("re_")
    assert not again.created
    assert again.refund_id == refunded.refund_id
    assert report.ok
    assert ("revenue", "USD", 0) in report.totals
    charge = await gateway.retrieve_payment(paid.payment_intent_id)
    assert charge.status == "succeeded"


async def test_intent_that_succeeded_after_our_timeout_is_reconciled(
    database: Database, gateway: StripeGateway, stripe_base: str
) -> None:
    # Stripe charged, but our request died before recording it.
    client = stripe.StripeClient(
        TEST_API_KEY, base_addresses={"api": stripe_base}, http_client=stripe.HTTPXClient()
    )
    intent = await client.v1.payment_intents.create_async(
        {
            "amount": 777,
            "currency": "usd",
            "payment_method": await payment_method(stripe_base, CARD_OK),
            "confirm": True,
            "metadata": {"orderly_reference": "order:lost", "orderly_user_id": ""},
        }
    )
    async with database.transaction() as tx:
        first = await payments.reconcile_intent(tx, gateway, intent.id)
        second = await payments.reconcile_intent(tx, gateway, intent.id)
        await tx.commit()
    assert first is not None
    assert first.created
    assert second is not None
    assert not second.created
    async with database.transaction() as tx:
        recorded = await payments.get_card_payment(tx, "order:lost")
    assert recorded is not None
    assert (recorded.payment_intent_id, recorded.amount_cents) == (intent.id, 777)


async def test_unreachable_stripe_fails_fast_and_opens_the_breaker(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    dead = StripeGateway(
        TEST_API_KEY,
        api_base=f"http://127.0.0.1:{free_port()}",
        breakers=Breakers(),
        options=GatewayOptions(
            connect_timeout=1,
            read_timeout=2,
            max_network_retries=1,
            deadline=5,
            breaker_threshold=3,
            forbid_redirects=False,
        ),
    )
    try:
        for _ in range(3):
            started = time.monotonic()
            async with database.transaction() as tx:
                with pytest.raises(errors.Unavailable) as caught:
                    await payments.pay_by_card(
                        tx,
                        dead,
                        reference="order:outage",
                        user_id=None,
                        amount_cents=100,
                        currency="USD",
                        payment_method="pm_whatever",
                    )
            assert not isinstance(caught.value, CircuitOpen)
            assert time.monotonic() - started < 5.5  # bounded by the deadline
        assert await dead.breakers.state(BREAKER) == "opened"
        assert CIRCUIT_STATE.labels(BREAKER)._value.get() == 1
        started = time.monotonic()
        async with database.transaction() as tx:
            with pytest.raises(CircuitOpen):
                await payments.pay_by_card(
                    tx,
                    dead,
                    reference="order:outage",
                    user_id=None,
                    amount_cents=100,
                    currency="USD",
                    payment_method="pm_whatever",
                )
        assert time.monotonic() - started < 0.5  # not even attempted
        counted = REGISTRY.get_sample_value(
            "orderly_stripe_requests_total",
            {"operation": "create_payment", "outcome": "circuit_open"},
        )
        assert counted is not None
        assert counted >= 1
        assert await _counts(raw_db) == (0, 0)
    finally:
        await dead.aclose()
        CIRCUIT_STATE.labels(BREAKER).set(0)


async def test_concurrent_refunds_of_one_payment_refund_once(
    database_url: str, database: Database, gateway: StripeGateway, stripe_base: str
) -> None:
    method = await payment_method(stripe_base, CARD_OK)
    async with database.transaction() as tx:
        await payments.pay_by_card(
            tx,
            gateway,
            reference="order:race",
            user_id=None,
            amount_cents=500,
            currency="USD",
            payment_method=method,
        )
        await tx.commit()
    racing = Database(database_url, pool_size=5)

    async def refund() -> bool:
        async with racing.transaction() as tx:
            result = await payments.refund_card_payment(tx, gateway, reference="order:race")
            await tx.commit()
            return result.created

    try:
        created = await asyncio.gather(*(refund() for _ in range(5)))
    finally:
        await racing.dispose()
    assert sorted(created) == [False, False, False, False, True]
    async with database.transaction() as tx:
        report = await ledger.check_ledger(tx)
    assert report.ok
