"""Ledger use cases: wallets, credit grants, paying and refunding with credits, verification.

Every mutation is idempotent by a key the caller supplies (the admin's
transaction id, the payment reference) and is written by one statement, so it
either happens entirely or not at all. Functions flush nothing of their own and
never commit: the request or job that calls them owns the transaction.

Sign convention: entries are signed so each transaction sums to zero. Wallets
and revenue grow with positive entries; ``credits_issued`` and
``card_clearing`` are their counterparts and run negative.

A customer holds one wallet per currency, opened by the first credit in it;
money never moves between currencies, and an order is paid only from the
wallet in its own currency. Callers name the currency: the API passes the
shop's ``ORDERLY_CURRENCY`` when the client names none.
"""

from __future__ import annotations

import dataclasses
import re
import uuid

from orderly import errors
from orderly.audit import service as audit
from orderly.audit.schemas import AuditContext
from orderly.core.db import Tx
from orderly.errors import InsufficientFunds, TransactionIdReused
from orderly.ledger import repository as repo
from orderly.ledger.repository import StatementLine

WALLET_CURRENCY = "USD"
_NAMESPACE = uuid.UUID("6f1c2a3e-7d84-4a35-9a0e-5b2f0c4d1e77")
_CURRENCY = re.compile(r"^[A-Z]{3}$")

GRANT, PAYMENT, REFUND = "grant", "payment", "refund"
CARD_PAYMENT, CARD_REFUND = "card_payment", "card_refund"


def system_account(kind: str, currency: str) -> tuple[uuid.UUID, str]:
    """The id (deterministic, so no lookup is needed) and kind of a system account."""
    return uuid.uuid5(_NAMESPACE, f"{kind}:{currency}"), kind


@dataclasses.dataclass(frozen=True)
class Wallet:
    """A customer's credits: balance in minor units of one currency."""

    user_id: uuid.UUID
    balance_cents: int
    currency: str


LedgerTransaction = repo.TransactionRow
"""One business event in the ledger (its entries sum to zero), as stored."""


@dataclasses.dataclass(frozen=True)
class Posted:
    """The outcome of an idempotent posting: ``created`` is False for a replay."""

    transaction: LedgerTransaction
    created: bool
    balance_cents: int | None = None


@dataclasses.dataclass(frozen=True)
class Violation:
    """A broken ledger invariant: which check, on what, and how."""

    check: str
    subject: str
    detail: str


@dataclasses.dataclass(frozen=True)
class LedgerReport:
    """The result of :func:`check_ledger`: violations and per-account-kind totals."""

    violations: list[Violation]
    totals: list[tuple[str, str, int]]

    @property
    def ok(self) -> bool:
        """True when no invariant is broken."""
        return not self.violations


def _check_amount(amount_cents: int, currency: str) -> None:
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int) or amount_cents <= 0:
        raise errors.InvalidInput(
            "amount must be a positive integer of minor units", field="amount_cents"
        )
    _check_currency(currency)


def _check_currency(currency: str) -> None:
    if not _CURRENCY.match(currency):
        raise errors.InvalidInput("currency must be an ISO 4217 code like USD", field="currency")


# ---------------------------------------------------------------- wallets


async def get_or_create_wallet(
    tx: Tx, user_id: uuid.UUID, currency: str = WALLET_CURRENCY
) -> Wallet:
    """The user's wallet, opened with a zero balance on first use."""
    row = await repo.ensure_wallet(tx, user_id, currency)
    if row is None:
        raise errors.NotFound("no such user")
    return Wallet(row.user_id, row.balance_cents, row.currency)


async def get_wallet(tx: Tx, user_id: uuid.UUID, currency: str = WALLET_CURRENCY) -> Wallet:
    """The user's wallet in *currency*; one never credited reads as empty (nothing is written)."""
    _check_currency(currency)
    row = await repo.get_wallet(tx, user_id, currency)
    if row is None:
        return Wallet(user_id, 0, currency)
    return Wallet(row.user_id, row.balance_cents, row.currency)


async def list_wallets(tx: Tx, user_id: uuid.UUID) -> list[Wallet]:
    """Every wallet the user holds, one per currency, ordered by currency."""
    return [
        Wallet(row.user_id, row.balance_cents, row.currency)
        for row in await repo.list_wallets(tx, user_id)
    ]


async def balance(tx: Tx, user_id: uuid.UUID, currency: str = WALLET_CURRENCY) -> int:
    """The wallet balance in *currency*, in minor units (0 without a wallet)."""
    return (await get_wallet(tx, user_id, currency)).balance_cents


async def list_wallet_transactions(
    tx: Tx,
    user_id: uuid.UUID,
    *,
    currency: str = WALLET_CURRENCY,
    limit: int = 20,
    before: int | None = None,
) -> list[StatementLine]:
    """The *currency* wallet's movements newest first; pass the last ``entry_id`` as *before*."""
    _check_currency(currency)
    wallet = await repo.get_wallet(tx, user_id, currency)
    if wallet is None:
        return []
    return await repo.wallet_statement(tx, wallet.id, limit=limit, before_entry=before)


# ---------------------------------------------------------------- postings


async def grant_credits_audited(
    tx: Tx,
    context: AuditContext,
    *,
    user_id: uuid.UUID,
    amount_cents: int,
    transaction_id: str,
    reason: str,
    currency: str = WALLET_CURRENCY,
) -> Posted:
    """An admin's grant (see :func:`grant_credits`), audited the one time it credits."""
    posted = await grant_credits(
        tx,
        user_id=user_id,
        amount_cents=amount_cents,
        transaction_id=transaction_id,
        reason=reason,
        actor_id=context.actor_id,
        currency=currency,
    )
    if posted.created:
        await audit.record(
            tx,
            context,
            "ledger.credits_granted",
            target_type="user",
            target_id=user_id,
            details={
                "transaction_id": transaction_id,
                "amount_cents": amount_cents,
                "currency": posted.transaction.currency,
                "reason": reason,
            },
        )
    return posted


async def grant_credits(
    tx: Tx,
    *,
    user_id: uuid.UUID,
    amount_cents: int,
    transaction_id: str,
    reason: str,
    actor_id: uuid.UUID | None = None,
    currency: str = WALLET_CURRENCY,
) -> Posted:
    """Credit the wallet once per *transaction_id*.

    The same id with the same values returns the first transaction
    (``created=False``); with other values it raises :class:`TransactionIdReused`.
    Raises NotFound when the user does not exist.
    """
    _check_amount(amount_cents, currency)
    existing = await repo.find_transaction(tx, GRANT, transaction_id)
    if existing is None:
        await _ensure_wallet_for(tx, user_id, currency)
        result = await repo.post_wallet(
            tx,
            kind=GRANT,
            external_id=transaction_id,
            user_id=user_id,
            amount_cents=amount_cents,
            currency=currency,
            wallet_delta=amount_cents,
            system_account=system_account("credits_issued", currency),
            reason=reason,
            actor_id=actor_id,
        )
        if result.inserted is not None:
            return Posted(result.inserted, True, result.balance_cents)
        # A concurrent grant with this id committed first (the insert waited for it).
        existing = await repo.find_transaction(tx, GRANT, transaction_id)
        if existing is None:  # pragma: no cover - the wallet was just ensured
            raise AssertionError("grant neither written nor found")
    same = (existing.user_id, existing.amount_cents, existing.currency, existing.reason) == (
        user_id,
        amount_cents,
        currency,
        reason,
    )
    if not same:
        raise TransactionIdReused(
            f"transaction_id {transaction_id!r} was already used for a different grant"
        )
    return Posted(existing, False)


async def pay_from_wallet(
    tx: Tx,
    *,
    user_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    reference: str,
    description: str | None = None,
) -> Posted:
    """Debit the wallet and credit revenue in one ledger transaction, once per *reference*.

    Only the wallet in *currency* pays. Raises :class:`InsufficientFunds`
    (nothing written, the transaction stays usable) when it holds less or does not
    exist; :class:`TransactionIdReused` when *reference* was paid with other
    values. A repeat with the same values returns the first payment.
    """
    _check_amount(amount_cents, currency)
    result = await repo.post_wallet(
        tx,
        kind=PAYMENT,
        external_id=reference,
        user_id=user_id,
        amount_cents=amount_cents,
        currency=currency,
        wallet_delta=-amount_cents,
        system_account=system_account("revenue", currency),
        reason=description,
    )
    if result.inserted is not None:
        return Posted(result.inserted, True, result.balance_cents)
    existing = await repo.find_transaction(tx, PAYMENT, reference)
    if existing is not None:
        if (existing.user_id, existing.amount_cents, existing.currency) != (
            user_id,
            amount_cents,
            currency,
        ):
            raise TransactionIdReused(f"payment {reference!r} was already made with other values")
        return Posted(existing, False)
    raise InsufficientFunds(
        f"the wallet holds {result.balance_cents or 0} {currency} minor units, "
        f"{amount_cents} are needed"
    )


async def refund_to_wallet(
    tx: Tx,
    *,
    reference: str,
    reason: str | None = None,
    actor_id: uuid.UUID | None = None,
) -> Posted:
    """Reverse the wallet payment made under *reference*, exactly once.

    Returns the refund (``created=False`` when it already happened). Raises
    NotFound when no wallet payment has that reference.
    """
    payment = await repo.find_transaction(tx, PAYMENT, reference)
    if payment is None or payment.user_id is None:
        raise errors.NotFound(f"no wallet payment with reference {reference!r}")
    result = await repo.post_wallet(
        tx,
        kind=REFUND,
        external_id=reference,
        user_id=payment.user_id,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
        wallet_delta=payment.amount_cents,
        system_account=system_account("revenue", payment.currency),
        reason=reason,
        actor_id=actor_id,
        reverses_id=payment.id,
    )
    if result.inserted is not None:
        return Posted(result.inserted, True, result.balance_cents)
    existing = await repo.find_transaction(tx, REFUND, reference)
    if existing is None:  # pragma: no cover - the payment proves the wallet exists
        raise AssertionError("refund neither written nor found")
    return Posted(existing, False)


async def record_card_payment(
    tx: Tx,
    *,
    reference: str,
    user_id: uuid.UUID | None,
    amount_cents: int,
    currency: str,
    description: str | None = None,
) -> Posted:
    """Book a captured card payment (card clearing → revenue), once per *reference*."""
    _check_amount(amount_cents, currency)
    row = await repo.post_between_system_accounts(
        tx,
        kind=CARD_PAYMENT,
        external_id=reference,
        user_id=user_id,
        amount_cents=amount_cents,
        currency=currency,
        debit=system_account("card_clearing", currency),
        credit=system_account("revenue", currency),
        reason=description,
    )
    if row is not None:
        return Posted(row, True)
    existing = await repo.find_transaction(tx, CARD_PAYMENT, reference)
    assert existing is not None
    return Posted(existing, False)


async def record_card_refund(tx: Tx, *, reference: str, reason: str | None = None) -> Posted:
    """Book the refund of the card payment booked under *reference*, once."""
    payment = await repo.find_transaction(tx, CARD_PAYMENT, reference)
    if payment is None:
        raise errors.NotFound(f"no card payment with reference {reference!r}")
    row = await repo.post_between_system_accounts(
        tx,
        kind=CARD_REFUND,
        external_id=reference,
        user_id=payment.user_id,
        amount_cents=payment.amount_cents,
        currency=payment.currency,
        debit=system_account("revenue", payment.currency),
        credit=system_account("card_clearing", payment.currency),
        reason=reason,
        reverses_id=payment.id,
    )
    if row is not None:
        return Posted(row, True)
    existing = await repo.find_transaction(tx, CARD_REFUND, reference)
    assert existing is not None
    return Posted(existing, False)


async def _ensure_wallet_for(tx: Tx, user_id: uuid.UUID, currency: str) -> None:
    if await repo.ensure_wallet(tx, user_id, currency) is None:
        raise errors.NotFound("no such user")


# ---------------------------------------------------------------- verification


async def check_ledger(tx: Tx) -> LedgerReport:
    """Verify the ledger: every transaction sums to zero, balances equal their entries, no wallet
    is negative. An empty ``violations`` list means the ledger is sound.
    """
    found = await repo.find_violations(tx)
    totals = await repo.totals_by_account_kind(tx)
    return LedgerReport([Violation(v.check, v.subject, v.detail) for v in found], totals)
