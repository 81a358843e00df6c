"""Wallet routes: the caller's balance and statement; admin credit grants (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from starlette.responses import Response

from orderly import errors
from orderly.api.auth import AdminUser, CurrentUser, Origin
from orderly.api.deps import AppSettings, Page, Transaction, encode_cursor
from orderly.api.idempotency import IDEMPOTENT
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.ledger import service
from orderly.ledger.schemas import (
    CreditGrantCreate,
    CreditGrantRead,
    WalletList,
    WalletRead,
    WalletTransactionPage,
    WalletTransactionRead,
)

router = domain_router(tags=["wallet"])


CurrencyQuery = Annotated[
    str | None,
    Query(pattern=r"^[A-Z]{3}$", description="ISO 4217 code; default: the shop's currency"),
]


@router.get("/wallet", responses=responses_for(errors.Unauthorized))
async def read_wallet(
    tx: Transaction, user: CurrentUser, settings: AppSettings, currency: CurrencyQuery = None
) -> WalletRead:
    """The caller's credits in one currency (0 when they hold none in it)."""
    wallet = await service.get_wallet(tx, user.id, currency or settings.currency)
    return WalletRead(balance_cents=wallet.balance_cents, currency=wallet.currency)


@router.get("/wallets", responses=responses_for(errors.Unauthorized))
async def list_wallets(tx: Transaction, user: CurrentUser) -> WalletList:
    """Every wallet the caller holds, one per currency."""
    wallets = await service.list_wallets(tx, user.id)
    return WalletList(
        data=[WalletRead(balance_cents=w.balance_cents, currency=w.currency) for w in wallets]
    )


@router.get("/wallet/transactions", responses=responses_for(errors.Unauthorized))
async def list_wallet_transactions(
    tx: Transaction,
    user: CurrentUser,
    page: Page,
    settings: AppSettings,
    currency: CurrencyQuery = None,
) -> WalletTransactionPage:
    """The caller's wallet movements in one currency, newest first."""
    lines = await service.list_wallet_transactions(
        tx,
        user.id,
        currency=currency or settings.currency,
        limit=page.limit + 1,
        before=page.integer("e"),
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
    dependencies=[IDEMPOTENT],
    responses={
        200: {"model": CreditGrantRead, "description": "The same grant again: no second credit"},
        **responses_for(errors.NotFound, errors.TransactionIdReused),
    },
)
async def grant_credits(
    data: CreditGrantCreate,
    tx: Transaction,
    user: AdminUser,
    origin: Origin,
    settings: AppSettings,
) -> Response:
    """Credit a wallet: 201 the first time, 200 with the same grant for the same transaction_id."""
    posted = await service.grant_credits_audited(
        tx,
        origin.with_actor(user.id, user.role),
        user_id=data.user_id,
        amount_cents=data.amount_cents,
        transaction_id=data.transaction_id,
        reason=data.reason,
        currency=data.currency or settings.currency,
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
    # 201 the first time, 200 for the same grant again: the status is the answer.
    return Response(
        body.model_dump_json(),
        status_code=201 if posted.created else 200,
        media_type="application/json",
    )
