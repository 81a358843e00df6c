"""Wallet and credit grant bodies as the API reads and writes them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orderly.core.inputs import Input

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 code in capitals (``USD``, ``EUR``)."""

# Bounded so one typo cannot mint billions; larger grants are several transactions.
MAX_GRANT_CENTS = 100_000_000


class WalletRead(BaseModel):
    """The caller's credits."""

    balance_cents: int
    currency: str


class WalletList(BaseModel):
    """Every wallet the caller holds, one per currency."""

    data: list[WalletRead]


class WalletTransactionRead(BaseModel):
    """One wallet movement: ``amount_cents`` is signed from the wallet's side."""

    id: uuid.UUID
    kind: str
    reference: str
    amount_cents: int
    balance_after_cents: int | None
    currency: str
    reason: str | None
    created_at: datetime


class WalletTransactionPage(BaseModel):
    """A page of wallet movements, newest first."""

    data: list[WalletTransactionRead]
    next_cursor: str | None


class CreditGrantCreate(Input):
    """An admin's credit grant; ``transaction_id`` makes it idempotent."""

    model_config = ConfigDict(str_strip_whitespace=True)

    user_id: uuid.UUID
    amount_cents: int = Field(gt=0, le=MAX_GRANT_CENTS, strict=True)
    transaction_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    currency: Currency | None = None


class CreditGrantRead(BaseModel):
    """A credit grant as recorded (the same body for the first call and its replays)."""

    id: uuid.UUID
    transaction_id: str
    user_id: uuid.UUID
    amount_cents: int
    currency: str
    reason: str | None
    created_at: datetime
