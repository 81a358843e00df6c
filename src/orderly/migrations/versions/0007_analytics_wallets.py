"""Analytics summary tables, recommendation scores, and a wallet per currency.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

Wallets (expand/contract): a customer could hold one wallet; now one per
currency. Existing wallets are rows that already name their currency, so no
data moves: the new unique index on (user, currency) is built first (expand),
then the old per-user one is dropped (contract). Code from before this
revision keeps working against the new schema: it only ever opens and reads
wallets in its one currency, which the new index still keeps unique.

The downgrade refuses (and changes nothing) while any customer holds wallets in
more than one currency: folding them into one would lose money.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID = postgresql.UUID(as_uuid=True)


def upgrade() -> None:
    # ---- wallets: one per user and currency
    op.create_index(
        "uq_ledger_account_wallet_user_currency",
        "ledger_account",
        ["user_id", "currency"],
        unique=True,
        postgresql_where=sa.text("kind = 'wallet'"),
    )
    op.drop_index("uq_ledger_account_wallet_user", table_name="ledger_account")

    # ---- what the incremental analytics refresh scans by time
    op.create_index("ix_ledger_transaction_created_at", "ledger_transaction", ["created_at"])
    op.create_index("ix_order_event_created_at", "order_event", ["created_at"])

    # ---- analytics summary tables
    op.create_table(
        "analytics_day",
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("gross_cents", sa.BigInteger(), nullable=False),
        sa.Column("refunds_cents", sa.BigInteger(), nullable=False),
        sa.Column("orders_paid", sa.Integer(), nullable=False),
        sa.Column("orders_cancelled", sa.Integer(), nullable=False),
        sa.Column("orders_refunded", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("currency", "day", name="pk_analytics_day"),
    )
    op.create_table(
        "analytics_status_day",
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("currency", "day", "status", name="pk_analytics_status_day"),
    )
    op.create_table(
        "analytics_product_day",
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("currency", "day", "product_id", name="pk_analytics_product_day"),
    )
    op.create_table(
        "analytics_state",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rebuilt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recommendations_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_analytics_state"),
        sa.CheckConstraint("id = 1", name="singleton"),
    )
    op.execute("INSERT INTO analytics_state (id) VALUES (1)")

    # ---- recommendation scores
    op.create_table(
        "recommendation_pair",
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("other_id", UUID, nullable=False),
        sa.Column("together", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("product_id", "rank", name="pk_recommendation_pair"),
    )
    op.create_table(
        "popular_product",
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("product_id", UUID, nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rank", name="pk_popular_product"),
        sa.UniqueConstraint("product_id", name="uq_popular_product_product_id"),
    )


def downgrade() -> None:
    bind = op.get_bind()
    several = bind.execute(
        sa.text(
            """SELECT user_id FROM ledger_account WHERE kind = 'wallet'
                GROUP BY user_id HAVING count(*) > 1 LIMIT 1"""
        )
    ).first()
    if several is not None:
        raise RuntimeError(
            f"cannot downgrade below 0007: user {several[0]} holds wallets in more than one "
            "currency (merging them would lose money); empty or move them first"
        )
    op.drop_table("popular_product")
    op.drop_table("recommendation_pair")
    op.drop_table("analytics_state")
    op.drop_table("analytics_product_day")
    op.drop_table("analytics_status_day")
    op.drop_table("analytics_day")
    op.drop_index("ix_order_event_created_at", table_name="order_event")
    op.drop_index("ix_ledger_transaction_created_at", table_name="ledger_transaction")
    op.create_index(
        "uq_ledger_account_wallet_user",
        "ledger_account",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'wallet'"),
    )
    op.drop_index("uq_ledger_account_wallet_user_currency", table_name="ledger_account")
