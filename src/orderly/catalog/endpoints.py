"""Catalog routes: public reads, staff writes."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from orderly import errors
from orderly.api.auth import PUBLIC, StaffUser
from orderly.api.deps import Page, Transaction, keyset_after, keyset_cursor
from orderly.api.idempotency import IDEMPOTENT
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.catalog import service
from orderly.catalog.cache import TTL_SECONDS
from orderly.catalog.schemas import (
    ProductCreate,
    ProductPage,
    ProductRead,
    ProductUpdate,
    StockAdjustmentCreate,
    StockMovementRead,
)

router = domain_router(prefix="/products", tags=["catalog"])
_SHARED_CACHEABLE = {"Cache-Control": f"public, max-age={int(TTL_SECONDS)}"}


@router.post(
    "",
    status_code=201,
    response_model=ProductRead,
    dependencies=[IDEMPOTENT],
    responses=responses_for(errors.Conflict, errors.Forbidden, errors.Unauthorized),
)
async def create_product(data: ProductCreate, tx: Transaction, user: StaffUser) -> ProductRead:
    """Add a product (staff); a taken sku is 409."""
    return await service.create_product(tx, data)


@router.get("", dependencies=[PUBLIC])
async def list_products(tx: Transaction, page: Page) -> ProductPage:
    """Active products, oldest first, cursor-paginated."""
    items, last = await service.list_products(tx, limit=page.limit, after=keyset_after(page.cursor))
    return ProductPage(data=items, next_cursor=keyset_cursor(last))


@router.get(
    "/{product_id}",
    dependencies=[PUBLIC],
    response_model=ProductRead,
    responses=responses_for(errors.NotFound),
)
async def get_product(product_id: uuid.UUID, tx: Transaction) -> Response:
    """One active product (served from a short-lived cache; no connection on a cache hit).

    The answer is the same for everyone and may be ``TTL_SECONDS`` stale anyway, so
    shared caches may keep it that long too (deploy/haproxy.cfg does); a request that
    carries credentials still gets ``no-store`` (api/middleware.py).
    """
    body = await service.get_product_json(tx, product_id)
    return Response(body, media_type="application/json", headers=_SHARED_CACHEABLE)


@router.patch(
    "/{product_id}",
    responses=responses_for(errors.NotFound, errors.Forbidden, errors.Unauthorized),
)
async def update_product(
    product_id: uuid.UUID, data: ProductUpdate, tx: Transaction, user: StaffUser
) -> ProductRead:
    """Change a product's name, description, price, threshold or active flag (staff)."""
    return await service.update_product(tx, product_id, data)


@router.post(
    "/{product_id}/stock-adjustments",
    status_code=201,
    response_model=StockMovementRead,
    dependencies=[IDEMPOTENT],
    responses=responses_for(errors.NotFound, errors.Conflict, errors.Forbidden),
)
async def adjust_stock(
    product_id: uuid.UUID, data: StockAdjustmentCreate, tx: Transaction, user: StaffUser
) -> StockMovementRead:
    """Record a stock movement (staff); stock never goes below zero (409)."""
    return await service.adjust_stock(tx, product_id, data, actor_id=user.id)
