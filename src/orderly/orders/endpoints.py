"""Order routes: place (customer), read and list (own; staff all), cancel, warehouse callback."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import ValidationError

from orderly import errors
from orderly.accounts.schemas import Principal, Role
from orderly.api.auth import PUBLIC, CurrentUser, Origin, StaffUser
from orderly.api.auth import require_roles as roles
from orderly.api.deps import (
    AppSettings,
    Page,
    SecurityRuntime,
    StripeGatewayDep,
    Transaction,
    keyset_after,
    keyset_cursor,
)
from orderly.api.idempotency import IDEMPOTENT, IdempotencyKey
from orderly.api.problems import responses_for
from orderly.api.routing import SHED_ORDERS, domain_router, rate_limited
from orderly.notifications.webhooks import verify_webhook
from orderly.orders import actions, service
from orderly.orders.schemas import (
    CardPayment,
    OrderCreate,
    OrderPage,
    OrderRead,
    OrderStatus,
    PaymentCreate,
    WarehouseEvent,
)

router = domain_router(tags=["orders"])
CustomerUser = Annotated[Principal, Depends(roles(Role.customer))]


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderRead,
    dependencies=[
        IDEMPOTENT,
        rate_limited("orders", lambda settings: settings.order_rate_limit),
        SHED_ORDERS,
    ],
    responses=responses_for(
        errors.OutOfStock,
        errors.RateLimited,
        errors.Overloaded,
        errors.IdempotencyKeyReused,
        errors.IdempotencyKeyInUse,
    ),
)
async def place_order(
    data: OrderCreate, tx: Transaction, user: CustomerUser, security: SecurityRuntime
) -> OrderRead:
    """Place an order: stock is reserved in the same transaction, or 409 out_of_stock."""
    return await service.place(tx, user.id, data, security.cipher)


@router.get("/orders", responses=responses_for(errors.Unauthorized))
async def list_orders(
    tx: Transaction,
    user: CurrentUser,
    page: Page,
    status: Annotated[OrderStatus | None, Query()] = None,
) -> OrderPage:
    """The caller's orders, newest first (staff and admins see everyone's)."""
    items, last = await service.list_orders(
        tx,
        viewer_id=user.id,
        sees_all=user.is_staff,
        status=status,
        limit=page.limit,
        after=keyset_after(page.cursor),
    )
    return OrderPage(data=items, next_cursor=keyset_cursor(last))


@router.get("/orders/{order_id}", responses=responses_for(errors.NotFound))
async def get_order(
    order_id: uuid.UUID, tx: Transaction, user: CurrentUser, security: SecurityRuntime
) -> OrderRead:
    """One order with its shipping address; another customer's order is 404."""
    return await service.get(
        tx, order_id, viewer_id=user.id, sees_all=user.is_staff, cipher=security.cipher
    )


@router.post(
    "/orders/{order_id}/pay",
    response_model=OrderRead,
    responses=responses_for(
        errors.NotFound,
        errors.Conflict,
        errors.InsufficientFunds,
        errors.CardDeclined,
        errors.Unavailable,
        errors.IdempotencyKeyInUse,
    ),
)
async def pay_order(
    order_id: uuid.UUID,
    data: PaymentCreate,
    tx: Transaction,
    user: CustomerUser,
    idempotency_key: IdempotencyKey,
    gateway: StripeGatewayDep,
) -> OrderRead:
    """Pay a pending order with credits (402 insufficient_funds) or a card (402 card_declined)."""
    return await actions.pay_order(
        tx,
        gateway,
        order_id,
        customer_id=user.id,
        card_payment_method=data.payment_method if isinstance(data, CardPayment) else None,
        idempotency_key=idempotency_key,
    )


@router.post(
    "/orders/{order_id}/cancel",
    response_model=OrderRead,
    dependencies=[IDEMPOTENT],
    responses=responses_for(errors.NotFound, errors.Conflict, errors.Unavailable),
)
async def cancel_order(
    order_id: uuid.UUID,
    tx: Transaction,
    user: CurrentUser,
    origin: Origin,
    gateway: StripeGatewayDep,
) -> OrderRead:
    """Cancel a pending or paid order: stock returns, a paid order is refunded."""
    context = origin.with_actor(user.id, user.role)
    return await actions.cancel_order(
        tx, gateway, order_id, context=context, sees_all=user.is_staff
    )


@router.post(
    "/orders/{order_id}/refund",
    response_model=OrderRead,
    dependencies=[IDEMPOTENT],
    responses=responses_for(errors.NotFound, errors.Conflict, errors.Unavailable),
)
async def refund_order(
    order_id: uuid.UUID,
    tx: Transaction,
    user: StaffUser,
    origin: Origin,
    gateway: StripeGatewayDep,
) -> OrderRead:
    """Refund a paid or fulfilled order (staff): credits back to the wallet or a card refund."""
    context = origin.with_actor(user.id, user.role)
    return await actions.refund_order(tx, gateway, order_id, context=context)


@router.post(
    "/webhooks/warehouse",
    dependencies=[PUBLIC],
    responses=responses_for(errors.Unauthorized, errors.NotFound, errors.Conflict),
)
async def warehouse_callback(
    request: Request, tx: Transaction, settings: AppSettings, origin: Origin
) -> dict[str, str]:
    """The warehouse's signed callback: ``shipped`` → fulfilled; replays change nothing."""
    if settings.warehouse_webhook_secret is None:
        raise errors.NotFound("No warehouse is configured.")
    body = await request.body()
    verified = verify_webhook(settings.warehouse_webhook_secret, body, request.headers)
    try:
        event = WarehouseEvent.model_validate_json(body)
    except ValidationError:
        raise errors.InvalidInput("expected {order_id, event: 'shipped'}", field="body") from None
    changed = await actions.warehouse_shipped(
        tx, event.order_id, webhook_id=verified.webhook_id, context=origin
    )
    return {"status": "fulfilled", "applied": "true" if changed else "false"}
