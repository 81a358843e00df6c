"""The ledger on real PostgreSQL: idempotent grants, payments, refunds, append-only entries."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from orderly import errors
from orderly.core.db import Database
from orderly.errors import InsufficientFunds, TransactionIdReused
from orderly.ledger import service as ledger
from tests.ledger.conftest import MakeUser
from tests.support.cli import run_orderly


async def test_grant_is_idempotent_by_transaction_id(
    database: Database, make_user: MakeUser
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        first = await ledger.grant_credits(
            tx, user_id=user, amount_cents=500, transaction_id="t-1", reason="welcome"
        )
        await tx.commit()
    assert first.created
    assert first.balance_cents == 500

    async with database.transaction() as tx:
        again = await ledger.grant_credits(
            tx, user_id=user, amount_cents=500, transaction_id="t-1", reason="welcome"
        )
        await tx.commit()
    assert not again.created
    assert again.transaction.id == first.transaction.id

    async with database.transaction() as tx:
        with pytest.raises(TransactionIdReused) as caught:
            await ledger.grant_credits(
                tx, user_id=user, amount_cents=700, transaction_id="t-1", reason="welcome"
            )
        assert caught.value.code == "conflict"
        assert isinstance(caught.value, errors.Conflict)
        wallet = await ledger.get_wallet(tx, user)
    assert wallet.balance_cents == 500


async def test_grant_to_unknown_user_is_not_found(database: Database) -> None:
    async with database.transaction() as tx:
        with pytest.raises(errors.NotFound):
            await ledger.grant_credits(
                tx, user_id=uuid.uuid4(), amount_cents=5, transaction_id="x", reason="r"
            )


@pytest.mark.parametrize("amount", [0, -5])
async def test_amounts_must_be_positive(
    database: Database, make_user: MakeUser, amount: int
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        with pytest.raises(errors.InvalidInput):
            await ledger.grant_credits(
                tx, user_id=user, amount_cents=amount, transaction_id="z", reason="r"
            )
        with pytest.raises(errors.InvalidInput):
            await ledger.pay_from_wallet(
                tx, user_id=user, amount_cents=amount, currency="USD", reference="o"
            )


async def test_pay_refund_and_statement(database: Database, make_user: MakeUser) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=1000, transaction_id="g", reason="promo"
        )
        paid = await ledger.pay_from_wallet(
            tx, user_id=user, amount_cents=300, currency="USD", reference="order:1"
        )
        await tx.commit()
    assert paid.created
    assert paid.balance_cents == 700

    async with database.transaction() as tx:
        replay = await ledger.pay_from_wallet(
            tx, user_id=user, amount_cents=300, currency="USD", reference="order:1"
        )
        assert not replay.created
        assert replay.transaction.id == paid.transaction.id
        with pytest.raises(TransactionIdReused):
            await ledger.pay_from_wallet(
                tx, user_id=user, amount_cents=301, currency="USD", reference="order:1"
            )
        with pytest.raises(InsufficientFunds) as short:
            await ledger.pay_from_wallet(
                tx, user_id=user, amount_cents=701, currency="USD", reference="order:2"
            )
        assert short.value.code == "insufficient_funds"
        # The refusal left the transaction usable: the next statement works.
        refund = await ledger.refund_to_wallet(tx, reference="order:1", reason="cancelled")
        again = await ledger.refund_to_wallet(tx, reference="order:1", reason="cancelled")
        await tx.commit()
    assert refund.created
    assert refund.balance_cents == 1000
    assert refund.transaction.reverses_id == paid.transaction.id
    assert not again.created
    assert again.transaction.id == refund.transaction.id

    async with database.transaction() as tx:
        lines = await ledger.list_wallet_transactions(tx, user, limit=2)
        older = await ledger.list_wallet_transactions(tx, user, limit=2, before=lines[-1].entry_id)
        report = await ledger.check_ledger(tx)
    assert [(line.kind, line.amount_cents, line.balance_after_cents) for line in lines] == [
        ("refund", 300, 1000),
        ("payment", -300, 700),
    ]
    assert [(line.kind, line.amount_cents) for line in older] == [("grant", 1000)]
    assert report.ok, report.violations
    totals = {(kind, currency): total for kind, currency, total in report.totals}
    assert totals == {
        ("wallet", "USD"): 1000,
        ("credits_issued", "USD"): -1000,
        ("revenue", "USD"): 0,
    }


async def test_refund_of_unknown_payment_is_not_found(database: Database) -> None:
    async with database.transaction() as tx:
        with pytest.raises(errors.NotFound):
            await ledger.refund_to_wallet(tx, reference="nope")


async def test_paying_without_a_wallet_or_in_another_currency(
    database: Database, make_user: MakeUser
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        with pytest.raises(InsufficientFunds):
            await ledger.pay_from_wallet(
                tx, user_id=user, amount_cents=1, currency="USD", reference="o"
            )
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=10, transaction_id="g", reason="r"
        )
        # USD credits never pay for an EUR order: no EUR funds is simply insufficient.
        with pytest.raises(InsufficientFunds):
            await ledger.pay_from_wallet(
                tx, user_id=user, amount_cents=1, currency="EUR", reference="o"
            )
        wallet = await ledger.get_wallet(tx, await make_user())
        eur = await ledger.get_wallet(tx, user, "EUR")
    assert (wallet.balance_cents, wallet.currency) == (0, "USD")
    assert (eur.balance_cents, eur.currency) == (0, "EUR")


async def test_a_wallet_per_currency(database: Database, make_user: MakeUser) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=700, transaction_id="u", reason="r"
        )
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=900, transaction_id="e", reason="r", currency="EUR"
        )
        paid = await ledger.pay_from_wallet(
            tx, user_id=user, amount_cents=400, currency="EUR", reference="order:1"
        )
        wallets = await ledger.list_wallets(tx, user)
        statement = await ledger.list_wallet_transactions(tx, user, currency="EUR")
        report = await ledger.check_ledger(tx)
        await tx.commit()
    assert paid.balance_cents == 500
    assert [(w.currency, w.balance_cents) for w in wallets] == [("EUR", 500), ("USD", 700)]
    assert [(line.kind, line.amount_cents) for line in statement] == [
        ("payment", -400),
        ("grant", 900),
    ]
    assert report.ok, report.violations


async def test_card_payment_and_refund_are_booked_once(database: Database) -> None:
    async with database.transaction() as tx:
        first = await ledger.record_card_payment(
            tx, reference="pi_1", user_id=None, amount_cents=250, currency="EUR"
        )
        second = await ledger.record_card_payment(
            tx, reference="pi_1", user_id=None, amount_cents=250, currency="EUR"
        )
        refund = await ledger.record_card_refund(tx, reference="pi_1")
        refund_again = await ledger.record_card_refund(tx, reference="pi_1")
        await tx.commit()
        report = await ledger.check_ledger(tx)
    assert first.created
    assert not second.created
    assert refund.created
    assert not refund_again.created
    assert report.ok
    totals = {(kind, currency): total for kind, currency, total in report.totals}
    assert totals == {("card_clearing", "EUR"): 0, ("revenue", "EUR"): 0}


async def test_entries_are_append_only(
    database: Database, make_user: MakeUser, raw_db: asyncpg.Connection
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=10, transaction_id="g", reason="r"
        )
        await tx.commit()
    with pytest.raises(asyncpg.RestrictViolationError):
        await raw_db.execute("UPDATE ledger_entry SET amount_cents = 1000")
    with pytest.raises(asyncpg.RestrictViolationError):
        await raw_db.execute("DELETE FROM ledger_entry")
    with pytest.raises(asyncpg.RestrictViolationError):
        await raw_db.execute("UPDATE ledger_transaction SET amount_cents = 1000")


async def test_unbalanced_entries_are_refused_by_the_database(
    database: Database, make_user: MakeUser, raw_db: asyncpg.Connection
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        posted = await ledger.grant_credits(
            tx, user_id=user, amount_cents=10, transaction_id="g", reason="r"
        )
        await tx.commit()
    account = await raw_db.fetchval("SELECT id FROM ledger_account WHERE user_id = $1", user)
    with pytest.raises(asyncpg.CheckViolationError):
        await raw_db.execute(
            """INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_cents)
               VALUES ($1, $2, 'USD', 5)""",
            posted.transaction.id,
            account,
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await raw_db.execute("UPDATE ledger_account SET balance_cents = -1 WHERE id = $1", account)


async def test_tampering_with_an_entry_is_reported(
    database: Database, make_user: MakeUser, raw_db: asyncpg.Connection
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        posted = await ledger.grant_credits(
            tx, user_id=user, amount_cents=10, transaction_id="g", reason="r"
        )
        await tx.commit()
    # A superuser can bypass the append-only trigger; the verification still catches it.
    async with raw_db.transaction():
        await raw_db.execute("SET LOCAL session_replication_role = replica")
        await raw_db.execute(
            """UPDATE ledger_entry SET amount_cents = 1000
                WHERE transaction_id = $1 AND amount_cents = 10""",
            posted.transaction.id,
        )
    async with database.transaction() as tx:
        report = await ledger.check_ledger(tx)
    checks = {violation.check for violation in report.violations}
    assert not report.ok
    assert {"unbalanced_transaction", "balance_mismatch", "ledger_not_zero"} <= checks
    assert any(v.subject == str(posted.transaction.id) for v in report.violations)


async def test_cli_verification_reads_one_snapshot(
    database: Database, database_url: str, make_user: MakeUser, raw_db: asyncpg.Connection
) -> None:
    from orderly.ledger import cli

    user = await make_user()
    async with database.transaction() as tx:
        await ledger.grant_credits(
            tx, user_id=user, amount_cents=10, transaction_id="g", reason="r"
        )
        await tx.commit()
    clean = await cli.verify(database_url)
    assert clean.ok
    assert cli.describe(clean) == []
    async with raw_db.transaction():
        await raw_db.execute("SET LOCAL session_replication_role = replica")
        await raw_db.execute("DELETE FROM ledger_entry WHERE amount_cents < 0")
    broken = await cli.verify(database_url)
    assert not broken.ok
    assert any("unbalanced_transaction" in line for line in cli.describe(broken))


async def test_orderly_audit_verify_exits_1_when_a_ledger_entry_is_tampered_with(
    database: Database,
    database_url: str,
    make_user: MakeUser,
    raw_db: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    user = await make_user()
    async with database.transaction() as tx:
        posted = await ledger.grant_credits(
            tx, user_id=user, amount_cents=250, transaction_id="t-1", reason="r"
        )
        await tx.commit()
    intact = run_orderly("audit", "verify", database_url=database_url, data_dir=tmp_path)
    assert intact.returncode == 0, intact.stderr
    async with raw_db.transaction():
        await raw_db.execute("SET LOCAL session_replication_role = replica")
        await raw_db.execute(
            """UPDATE ledger_entry SET amount_cents = 25
                WHERE transaction_id = $1 AND amount_cents = 250""",
            posted.transaction.id,
        )
    broken = run_orderly("audit", "verify", database_url=database_url, data_dir=tmp_path)
    assert broken.returncode == 1
    assert "unbalanced_transaction" in broken.stderr + broken.stdout
