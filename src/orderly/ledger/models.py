"""Ledger tables: accounts, transactions (groups of entries) and append-only entries.

Wallets carry a running ``balance_cents`` updated in the same statement as their
entries (so a CHECK can keep it from going negative). System accounts (revenue,
credits issued, card clearing) carry none: nothing constrains them, and a
balance column there would be one hot row every payment in the system queues on.
Their balance is the sum of their entries.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from orderly.core.schema import Base


class LedgerAccount(Base):
    """A wallet (one per user and currency) or a system account (one per kind and currency)."""

    __tablename__ = "ledger_account"
    __table_args__ = (
        UniqueConstraint("id", "currency", name="uq_ledger_account_id_currency"),
        CheckConstraint("kind IN ('wallet', 'revenue', 'credits_issued', 'card_clearing')", "kind"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", "currency"),
        CheckConstraint(
            "(kind = 'wallet') = (user_id IS NOT NULL AND balance_cents IS NOT NULL)",
            "wallet_shape",
        ),
        CheckConstraint("balance_cents >= 0", "balance_not_negative"),
        # One wallet per user and currency (migration 0007; before it, one per user).
        Index(
            "uq_ledger_account_wallet_user_currency",
            "user_id",
            "currency",
            unique=True,
            postgresql_where=text("kind = 'wallet'"),
        ),
        Index(
            "uq_ledger_account_system_kind",
            "kind",
            "currency",
            unique=True,
            postgresql_where=text("kind <> 'wallet'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("user_account.id", ondelete="RESTRICT")
    )
    balance_cents: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerTransaction(Base):
    """One business event (grant, payment, refund…); its entries sum to zero."""

    __tablename__ = "ledger_transaction"
    __table_args__ = (
        # Analytics reads money movements by the day they happened (migration 0007).
        Index("ix_ledger_transaction_created_at", "created_at"),
        UniqueConstraint("kind", "external_id", name="uq_ledger_transaction_kind_external_id"),
        CheckConstraint(
            "kind IN ('grant', 'payment', 'refund', 'card_payment', 'card_refund', 'correction')",
            "kind",
        ),
        CheckConstraint("amount_cents > 0", "amount_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ledger_transaction.id")
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerEntry(Base):
    """One signed movement on one account; never updated or deleted (a trigger refuses)."""

    __tablename__ = "ledger_entry"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_account.id", "ledger_account.currency"],
            name="fk_ledger_entry_account_currency",
        ),
        CheckConstraint("amount_cents <> 0", "amount_nonzero"),
        Index("ix_ledger_entry_account_id_id", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("ledger_transaction.id"), index=True
    )
    account_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    currency: Mapped[str] = mapped_column(String(3))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    balance_after_cents: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
