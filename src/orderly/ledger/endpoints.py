"""Wallet routes: the caller's balance and statement; admin credit grants (audited)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from orderly import errors
from orderly.api.auth import AdminUser, CurrentUser, Origin
from orderly.api.deps import Page, Transaction, encode_cursor
from orderly.api.idempotency import Idempotency
from orderly.api.problems import responses_for
from orderly.ledger import service
from orderly.ledger.errors import CurrencyMismatch, TransactionIdReused
from orderly.ledger.schemas import (
    CreditGrantCreate,
    CreditGrantRead,
    WalletRead,
    WalletTransactionPage,
    WalletTransactionRead,
)

router = APIRouter(tags=["wallet"])


def _before(cursor: dict[str, str] | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor["e"])
    except (KeyError, ValueError):
        raise errors.InvalidInput("malformed cursor", field="cursor") from None


@router.get("/wallet", responses=responses_for(errors.Unauthorized))
async def read_wallet(tx: Transaction, user: CurrentUser) -> WalletRead:
    """The caller's credits balance."""
    wallet = await service.get_wallet(tx, user.id)
    return WalletRead(balance_cents=wallet.balance_cents, currency=wallet.currency)


@router.get("/wallet/transactions", responses=responses_for(errors.Unauthorized))
async def list_wallet_transactions(
    tx: Transaction, user: CurrentUser, page: Page
) -> WalletTransactionPage:
    """The caller's wallet movements, newest first."""
    lines = await service.list_wallet_transactions(
        tx, user.id, limit=page.limit + 1, before=_before(page.cursor)
    )
    more = len(lines) > page.limit
    lines = lines[: page.limit]
    items = [
        WalletTransactionRead(
            id=line.transaction_id,
            kind=line.kind,
            reference=line.external_id,
            amount_cents=line.amount_cents,
            balance_after_cents=line.balance_after_cents,
            currency=line.currency,
            reason=line.reason,
            created_at=line.created_at,
        )
        for line in lines
    ]
    cursor = encode_cursor({"e": str(lines[-1].entry_id)}) if more else None
    return WalletTransactionPage(data=items, next_cursor=cursor)


@router.post(
    "/admin/credits",
    status_code=201,
    response_model=CreditGrantRead,
    responses={
        200: {"model": CreditGrantRead, "description": "The same grant again: no second credit"},
        **responses_for(errors.NotFound, TransactionIdReused, CurrencyMismatch),
    },
)
async def grant_credits(
    data: CreditGrantCreate,
    tx: Transaction,
    user: AdminUser,
    idempotency: Idempotency,
    origin: Origin,
) -> Response:
    """Credit a wallet: 201 the first time, 200 with the same grant for the same transaction_id."""

    async def grant() -> Response:
        posted = await service.grant_credits_audited(
            tx,
            origin.with_actor(user.id, user.role),
            user_id=data.user_id,
            amount_cents=data.amount_cents,
            transaction_id=data.transaction_id,
            reason=data.reason,
        )
        grant = posted.transaction
        body = CreditGrantRead(
            id=grant.id,
            transaction_id=grant.external_id,
            user_id=data.user_id,
            amount_cents=grant.amount_cents,
            currency=grant.currency,
            reason=grant.reason,
            created_at=grant.created_at,
        )
        return Response(
            body.model_dump_json(),
            status_code=201 if posted.created else 200,
            media_type="application/json",
        )

    return await idempotency.run(tx, principal=str(user.id), operation=grant)
