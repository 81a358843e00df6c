"""Catalog routes: public reads, staff writes."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from starlette.responses import Response

from orderly import errors
from orderly.api.auth import PUBLIC, StaffUser
from orderly.api.deps import Page, Session, encode_cursor
from orderly.api.idempotency import Idempotency
from orderly.api.problems import responses_for
from orderly.catalog import service
from orderly.catalog.schemas import (
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
    StockAdjustmentCreate,
    StockMovementRead,
)

router = APIRouter(prefix="/products", tags=["catalog"])


def _after(page_cursor: dict[str, str] | None) -> tuple[datetime, uuid.UUID] | None:
    if page_cursor is None:
        return None
    try:
        return datetime.fromisoformat(page_cursor["t"]), uuid.UUID(page_cursor["id"])
    except (KeyError, ValueError):
        raise errors.InvalidInput("malformed cursor", field="cursor") from None


@router.post(
    "",
    status_code=201,
    response_model=ProductRead,
    responses=responses_for(errors.Conflict, errors.Forbidden, errors.Unauthorized),
)
async def create_product(
    data: ProductCreate, session: Session, user: StaffUser, idempotency: Idempotency
) -> Response:
    """Add a product (staff); a taken sku is 409."""
    return await idempotency.run(
        session,
        principal=str(user.id),
        operation=lambda: service.create_product(session, data),
        status_code=201,
    )


@router.get("", dependencies=[PUBLIC])
async def list_products(session: Session, page: Page) -> ProductPage:
    """Active products, oldest first, cursor-paginated."""
    items, last = await service.list_products(session, limit=page.limit, after=_after(page.cursor))
    cursor = encode_cursor({"t": last[0].isoformat(), "id": str(last[1])}) if last else None
    return ProductPage(data=items, next_cursor=cursor)


@router.get(
    "/{product_id}",
    dependencies=[PUBLIC],
    response_model=ProductRead,
    responses=responses_for(errors.NotFound),
)
async def get_product(product_id: uuid.UUID, session: Session) -> Response:
    """One active product (served from a short-lived cache)."""
    body = await service.get_product_json(session, product_id)
    return Response(body, media_type="application/json")


@router.patch(
    "/{product_id}",
    responses=responses_for(errors.NotFound, errors.Forbidden, errors.Unauthorized),
)
async def update_product(
    product_id: uuid.UUID, data: ProductUpdate, session: Session, user: StaffUser
) -> ProductRead:
    """Change a product's name, description, price, threshold or active flag (staff)."""
    return await service.update_product(session, product_id, data)


@router.post(
    "/{product_id}/stock-adjustments",
    status_code=201,
    response_model=StockMovementRead,
    responses=responses_for(errors.NotFound, errors.Conflict, errors.Forbidden),
)
async def adjust_stock(
    product_id: uuid.UUID,
    data: StockAdjustmentCreate,
    session: Session,
    user: StaffUser,
    idempotency: Idempotency,
) -> Response:
    """Record a stock movement (staff); stock never goes below zero (409)."""
    return await idempotency.run(
        session,
        principal=str(user.id),
        operation=lambda: service.adjust_stock(session, product_id, data, actor_id=user.id),
        status_code=201,
    )
