"""Ledger (accounts, transactions, append-only entries) and card payments (Stripe).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from orderly.migrations.helpers import execute_script

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)


def _created_at() -> sa.Column[Any]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


# The database, not the application, guarantees the ledger's two core promises:
# entries are never changed (corrections are new transactions), and every batch
# of entries written by one statement balances per transaction and currency.
_TRIGGERS = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger % rows are append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transaction_append_only BEFORE UPDATE OR DELETE ON ledger_transaction
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.transaction_id, sum(n.amount_cents) AS total, count(DISTINCT n.currency) AS currencies
      INTO bad
      FROM new_entries n
     GROUP BY n.transaction_id
    HAVING sum(n.amount_cents) <> 0 OR count(DISTINCT n.currency) > 1
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % does not balance (sum %, % currencies)',
            bad.transaction_id, bad.total, bad.currencies
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_entry
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_balance();
"""

_DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS ledger_entry_balanced ON ledger_entry;
DROP TRIGGER IF EXISTS ledger_transaction_append_only ON ledger_transaction;
DROP TRIGGER IF EXISTS ledger_entry_append_only ON ledger_entry;
DROP FUNCTION IF EXISTS ledger_entries_balance();
DROP FUNCTION IF EXISTS ledger_refuse_change();
"""


def upgrade() -> None:
    op.create_table(
        "ledger_account",
        sa.Column("id", UUID, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("user_id", UUID, nullable=True),
        sa.Column("balance_cents", sa.BigInteger(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_account"),
        sa.UniqueConstraint("id", "currency", name="uq_ledger_account_id_currency"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name="fk_ledger_account_user_id_user_account",
            ondelete="RESTRICT",
        ),
        sa.CheckConstraint(
            "kind IN ('wallet', 'revenue', 'credits_issued', 'card_clearing')",
            name="kind",
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency"),
        sa.CheckConstraint(
            "(kind = 'wallet') = (user_id IS NOT NULL AND balance_cents IS NOT NULL)",
            name="wallet_shape",
        ),
        sa.CheckConstraint("balance_cents >= 0", name="balance_not_negative"),
    )
    op.create_index(
        "uq_ledger_account_wallet_user",
        "ledger_account",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'wallet'"),
    )
    op.create_index(
        "uq_ledger_account_system_kind",
        "ledger_account",
        ["kind", "currency"],
        unique=True,
        postgresql_where=sa.text("kind <> 'wallet'"),
    )

    op.create_table(
        "ledger_transaction",
        sa.Column("id", UUID, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("user_id", UUID, nullable=True),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor_id", UUID, nullable=True),
        sa.Column("reverses_id", UUID, nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_transaction"),
        sa.UniqueConstraint("kind", "external_id", name="uq_ledger_transaction_kind_external_id"),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transaction.id"],
            name="fk_ledger_transaction_reverses_id_ledger_transaction",
        ),
        sa.CheckConstraint(
            "kind IN ('grant', 'payment', 'refund', 'card_payment', 'card_refund', 'correction')",
            name="kind",
        ),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
    )

    op.create_table(
        "ledger_entry",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("transaction_id", UUID, nullable=False),
        sa.Column("account_id", UUID, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_cents", sa.BigInteger(), nullable=True),
        _created_at(),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entry"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transaction.id"],
            name="fk_ledger_entry_transaction_id_ledger_transaction",
        ),
        sa.ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_account.id", "ledger_account.currency"],
            name="fk_ledger_entry_account_currency",
        ),
        sa.CheckConstraint("amount_cents <> 0", name="amount_nonzero"),
    )
    op.create_index("ix_ledger_entry_transaction_id", "ledger_entry", ["transaction_id"])
    op.create_index("ix_ledger_entry_account_id_id", "ledger_entry", ["account_id", "id"])
    execute_script(_TRIGGERS)

    op.create_table(
        "card_payment",
        sa.Column("id", UUID, nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column("user_id", UUID, nullable=True),
        sa.Column("payment_intent_id", sa.String(255), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("refund_id", sa.String(255), nullable=True),
        _created_at(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_card_payment"),
        sa.UniqueConstraint("reference", name="uq_card_payment_reference"),
        sa.UniqueConstraint("payment_intent_id", name="uq_card_payment_payment_intent_id"),
        sa.CheckConstraint("status IN ('succeeded', 'refunded')", name="status"),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
    )
    op.create_table(
        "stripe_event",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(50), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_stripe_event"),
    )


def downgrade() -> None:
    op.drop_table("stripe_event")
    op.drop_table("card_payment")
    execute_script(_DROP_TRIGGERS)
    op.drop_table("ledger_entry")
    op.drop_table("ledger_transaction")
    op.drop_table("ledger_account")
