"""Ledger domain errors (mapped to HTTP by their ``OrderlyError`` ancestors)."""

from __future__ import annotations

from orderly import errors


class InsufficientFunds(errors.PaymentRequired):
    """The wallet holds less than the amount to pay; nothing was written."""

    code = "insufficient_funds"
    title = "Insufficient funds"


class CurrencyMismatch(errors.Conflict):
    """The wallet is kept in another currency than the amount to move."""

    code = "currency_mismatch"
    title = "Currency mismatch"


class TransactionIdReused(errors.Conflict):
    """An idempotency key (transaction id, payment reference) was used with other values."""

    title = "Transaction id reused"
