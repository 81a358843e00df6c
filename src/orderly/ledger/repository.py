"""Every query on the ledger tables, as prepared SQL on the transaction's own connection.

Postings are single statements: the wallet row is locked (``FOR UPDATE`` in a
CTE, so after a wait it is re-read at its newest version), the transaction row
is inserted only if the wallet stays non-negative and its idempotency key is
new, and the balance update and both entries follow from that insert. Either
everything is written or nothing is, and the caller's transaction stays usable
after a refusal. Only one wallet is touched per statement, and system accounts
carry no balance row to lock, so postings cannot deadlock on each other.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

import asyncpg

from orderly.core.db import Tx

_TX_COLUMNS = (
    "id, kind, external_id, user_id, amount_cents, currency, reason, actor_id, "
    "reverses_id, created_at"
)


@dataclasses.dataclass(frozen=True)
class TransactionRow:
    """A ledger transaction as stored."""

    id: uuid.UUID
    kind: str
    external_id: str
    user_id: uuid.UUID | None
    amount_cents: int
    currency: str
    reason: str | None
    actor_id: uuid.UUID | None
    reverses_id: uuid.UUID | None
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class WalletRow:
    """A wallet account as stored."""

    id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    balance_cents: int


@dataclasses.dataclass(frozen=True)
class StatementLine:
    """One wallet entry with its transaction, for the customer's statement."""

    entry_id: int
    transaction_id: uuid.UUID
    kind: str
    external_id: str
    amount_cents: int
    balance_after_cents: int | None
    currency: str
    reason: str | None
    created_at: datetime


@dataclasses.dataclass(frozen=True)
class PostingResult:
    """What a posting statement did: the new transaction (if any) and the wallet balance."""

    inserted: TransactionRow | None
    wallet_found: bool
    balance_cents: int | None


def _tx(row: asyncpg.Record) -> TransactionRow:
    return TransactionRow(
        **{field.name: row[field.name] for field in dataclasses.fields(TransactionRow)}
    )


# ---------------------------------------------------------------- wallets


async def ensure_wallet(tx: Tx, user_id: uuid.UUID, currency: str) -> WalletRow | None:
    """The user's wallet in *currency*, created with a zero balance if missing.

    None when there is no such user (the foreign key decides, not a read first).
    """
    try:
        await tx.execute(
            """INSERT INTO ledger_account (id, kind, currency, user_id, balance_cents)
               VALUES ($1, 'wallet', $2, $3, 0) ON CONFLICT DO NOTHING""",
            uuid.uuid4(),
            currency,
            user_id,
        )
    except asyncpg.ForeignKeyViolationError:
        return None
    wallet = await get_wallet(tx, user_id, currency)
    assert wallet is not None
    return wallet


async def get_wallet(tx: Tx, user_id: uuid.UUID, currency: str) -> WalletRow | None:
    """The user's wallet in *currency*, or None if they never had one."""
    row = await tx.fetchrow(
        """SELECT id, user_id, currency, balance_cents FROM ledger_account
            WHERE kind = 'wallet' AND user_id = $1 AND currency = $2""",
        user_id,
        currency,
    )
    return WalletRow(**dict(row)) if row is not None else None


async def list_wallets(tx: Tx, user_id: uuid.UUID) -> list[WalletRow]:
    """Every wallet of the user, by currency."""
    rows = await tx.fetch(
        """SELECT id, user_id, currency, balance_cents FROM ledger_account
            WHERE kind = 'wallet' AND user_id = $1 ORDER BY currency""",
        user_id,
    )
    return [WalletRow(**dict(row)) for row in rows]


async def wallet_statement(
    tx: Tx, account_id: uuid.UUID, *, limit: int, before_entry: int | None
) -> list[StatementLine]:
    """Wallet entries newest first, keyset-paginated by entry id."""
    rows = await tx.fetch(
        """SELECT e.id AS entry_id, t.id AS transaction_id, t.kind, t.external_id,
                  e.amount_cents, e.balance_after_cents, e.currency, t.reason, t.created_at
             FROM ledger_entry e JOIN ledger_transaction t ON t.id = e.transaction_id
            WHERE e.account_id = $1 AND ($2::bigint IS NULL OR e.id < $2)
            ORDER BY e.id DESC LIMIT $3""",
        account_id,
        before_entry,
        limit,
    )
    return [StatementLine(**dict(row)) for row in rows]


# ---------------------------------------------------------------- transactions


async def find_transaction(tx: Tx, kind: str, external_id: str) -> TransactionRow | None:
    """The transaction of *kind* recorded under *external_id* (its idempotency key)."""
    row = await tx.fetchrow(
        f"SELECT {_TX_COLUMNS} FROM ledger_transaction WHERE kind = $1 AND external_id = $2",  # noqa: S608 - constant column list
        kind,
        external_id,
    )
    return _tx(row) if row is not None else None


_WALLET_POSTING = f"""
WITH locked AS (
    SELECT id, balance_cents FROM ledger_account
     WHERE kind = 'wallet' AND user_id = $4 AND currency = $6
       FOR UPDATE
), system_account AS (
    INSERT INTO ledger_account (id, kind, currency) VALUES ($11, $12, $6)
    ON CONFLICT DO NOTHING
), tx AS (
    INSERT INTO ledger_transaction
           (id, kind, external_id, user_id, amount_cents, currency, reason, actor_id, reverses_id)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM locked
     WHERE locked.balance_cents + $10 >= 0
    ON CONFLICT (kind, external_id) DO NOTHING
    RETURNING {_TX_COLUMNS}
), wallet AS (
    -- The new balance comes from the locked (newest) row, not from a.balance_cents:
    -- this UPDATE scans with the statement's snapshot, and PostgreSQL checks the
    -- CHECK constraint on the row built from that older version before it
    -- notices the newer one, so a stale balance could fail a sound payment.
    UPDATE ledger_account a SET balance_cents = locked.balance_cents + $10
      FROM locked WHERE a.id = locked.id AND EXISTS (SELECT 1 FROM tx)
    RETURNING a.id, a.balance_cents
), entries AS (
    INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_cents,
                              balance_after_cents)
    SELECT tx.id, wallet.id, $6, $10, wallet.balance_cents FROM tx, wallet
    UNION ALL
    SELECT tx.id, $11, $6, -$10, NULL FROM tx
)
SELECT tx.*, (SELECT count(*) FROM locked) AS wallet_found,
       COALESCE((SELECT balance_cents FROM wallet), (SELECT balance_cents FROM locked))
         AS balance_after
  FROM (SELECT 1) one LEFT JOIN tx ON true
"""  # noqa: S608 - constant column list


async def post_wallet(
    tx: Tx,
    *,
    kind: str,
    external_id: str,
    user_id: uuid.UUID,
    amount_cents: int,
    currency: str,
    wallet_delta: int,
    system_account: tuple[uuid.UUID, str],
    reason: str | None = None,
    actor_id: uuid.UUID | None = None,
    reverses_id: uuid.UUID | None = None,
) -> PostingResult:
    """Move *wallet_delta* between the user's wallet and a system account, in one statement.

    Writes nothing when the wallet is missing, would go negative, or *external_id*
    is already used for *kind* (the caller tells these apart).
    """
    row = await tx.fetchrow(
        _WALLET_POSTING,
        uuid.uuid4(),
        kind,
        external_id,
        user_id,
        amount_cents,
        currency,
        reason,
        actor_id,
        reverses_id,
        wallet_delta,
        system_account[0],
        system_account[1],
    )
    assert row is not None
    inserted = _tx(row) if row["id"] is not None else None
    return PostingResult(inserted, bool(row["wallet_found"]), row["balance_after"])


_SYSTEM_POSTING = f"""
WITH system_account AS (
    INSERT INTO ledger_account (id, kind, currency) VALUES ($7, $8, $5), ($9, $10, $5)
    ON CONFLICT DO NOTHING
), tx AS (
    INSERT INTO ledger_transaction
           (id, kind, external_id, user_id, amount_cents, currency, reason, reverses_id)
    VALUES ($1, $2, $3, $4, $6, $5, $11, $12)
    ON CONFLICT (kind, external_id) DO NOTHING
    RETURNING {_TX_COLUMNS}
), entries AS (
    INSERT INTO ledger_entry (transaction_id, account_id, currency, amount_cents)
    SELECT tx.id, $7, $5, -$6::bigint FROM tx
    UNION ALL
    SELECT tx.id, $9, $5, $6::bigint FROM tx
)
SELECT * FROM tx
"""  # noqa: S608 - constant column list


async def post_between_system_accounts(
    tx: Tx,
    *,
    kind: str,
    external_id: str,
    user_id: uuid.UUID | None,
    amount_cents: int,
    currency: str,
    debit: tuple[uuid.UUID, str],
    credit: tuple[uuid.UUID, str],
    reason: str | None = None,
    reverses_id: uuid.UUID | None = None,
) -> TransactionRow | None:
    """Move *amount_cents* from *debit* to *credit*; None if *external_id* was already used."""
    row = await tx.fetchrow(
        _SYSTEM_POSTING,
        uuid.uuid4(),
        kind,
        external_id,
        user_id,
        currency,
        amount_cents,
        debit[0],
        debit[1],
        credit[0],
        credit[1],
        reason,
        reverses_id,
    )
    return _tx(row) if row is not None else None


# ---------------------------------------------------------------- verification


@dataclasses.dataclass(frozen=True)
class ViolationRow:
    """One broken invariant found by :func:`find_violations`."""

    check: str
    subject: str
    detail: str


# Each check is one statement, so it reads one snapshot: a posting that commits
# meanwhile is seen entirely or not at all, never half (no false alarms under load).
_CHECKS: dict[str, str] = {
    "unbalanced_transaction": """
        SELECT transaction_id::text AS subject,
               'entries sum to ' || sum(amount_cents) AS detail
          FROM ledger_entry GROUP BY transaction_id HAVING sum(amount_cents) <> 0""",
    "mixed_currency_transaction": """
        SELECT e.transaction_id::text AS subject, 'entry in ' || e.currency
               || ' on a ' || t.currency || ' transaction' AS detail
          FROM ledger_entry e JOIN ledger_transaction t ON t.id = e.transaction_id
         WHERE e.currency <> t.currency""",
    "transaction_without_entries": """
        SELECT t.id::text AS subject, 'no entries' AS detail FROM ledger_transaction t
         WHERE NOT EXISTS (SELECT 1 FROM ledger_entry e WHERE e.transaction_id = t.id)""",
    "balance_mismatch": """
        SELECT a.id::text AS subject, 'balance ' || a.balance_cents || ' but entries sum to '
               || COALESCE(s.total, 0) AS detail
          FROM ledger_account a
          LEFT JOIN (SELECT account_id, sum(amount_cents) AS total
                       FROM ledger_entry GROUP BY account_id) s ON s.account_id = a.id
         WHERE a.balance_cents IS NOT NULL AND a.balance_cents <> COALESCE(s.total, 0)""",
    "negative_wallet": """
        SELECT a.id::text AS subject, 'wallet balance ' || a.balance_cents AS detail
          FROM ledger_account a WHERE a.kind = 'wallet' AND a.balance_cents < 0""",
    "ledger_not_zero": """
        SELECT currency AS subject, 'all entries sum to ' || sum(amount_cents) AS detail
          FROM ledger_entry GROUP BY currency HAVING sum(amount_cents) <> 0""",
}


CHECK_NAMES: tuple[str, ...] = tuple(_CHECKS)


async def find_violations(tx: Tx, *, limit_per_check: int = 100) -> list[ViolationRow]:
    """Every broken ledger invariant (at most *limit_per_check* of each kind)."""
    found: list[ViolationRow] = []
    for check, sql in _CHECKS.items():
        rows = await tx.fetch(f"{sql} LIMIT $1", limit_per_check)
        found.extend(ViolationRow(check, row["subject"], row["detail"]) for row in rows)
    return found


async def totals_by_account_kind(tx: Tx) -> list[tuple[str, str, int]]:
    """Sum of entries per (account kind, currency): the ledger totals for metrics."""
    rows = await tx.fetch(
        """SELECT a.kind, a.currency, COALESCE(sum(e.amount_cents), 0) AS total
             FROM ledger_account a LEFT JOIN ledger_entry e ON e.account_id = a.id
            GROUP BY a.kind, a.currency ORDER BY a.kind, a.currency"""
    )
    return [(row["kind"], row["currency"], int(row["total"])) for row in rows]
