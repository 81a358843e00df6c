"""Recommendation routes: for the signed-in user, and beside a product (public)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from orderly import errors
from orderly.api.auth import PUBLIC, CurrentUser, OptionalUser
from orderly.api.deps import AppRuntime
from orderly.api.problems import responses_for
from orderly.api.routing import domain_router
from orderly.catalog.schemas import ProductRead
from orderly.recommendations import service
from orderly.recommendations.routing import FLAG_ROUTING
from orderly.recommendations.schemas import RecommendationsRead

router = domain_router(tags=["recommendations"])

Limit = Annotated[int, Query(ge=1, le=service.MAX_LIMIT, description="How many products")]


def _read(answer: service.Recommendations) -> RecommendationsRead:
    return RecommendationsRead.model_validate(
        {
            "items": [
                ProductRead.model_validate(item, from_attributes=True) for item in answer.items
            ],
            "source": answer.source,
        }
    )


@router.get("/users/me/recommendations", responses=responses_for(errors.Unauthorized))
async def recommend_for_me(
    user: CurrentUser, runtime: AppRuntime, limit: Limit = service.DEFAULT_LIMIT
) -> RecommendationsRead:
    """Products for the caller: the model (if routed there), co-purchase, then best-sellers."""
    answer = await service.for_user(
        runtime.database, user.id, limit=limit, model=runtime.recommender, routing=FLAG_ROUTING
    )
    return _read(answer)


@router.get(
    "/products/{product_id}/recommendations",
    dependencies=[PUBLIC],
    responses=responses_for(errors.NotFound, errors.Unauthorized),
)
async def recommend_for_product(
    product_id: uuid.UUID,
    runtime: AppRuntime,
    user: OptionalUser,
    limit: Limit = service.DEFAULT_LIMIT,
) -> RecommendationsRead:
    """Products bought with this one, then best-sellers; 404 for an unknown or inactive one.

    Public; with a bearer token the caller's 30-day purchases are left out and
    the flag may send them to the model (an invalid token is a 401).
    """
    answer = await service.for_product(
        runtime.database,
        product_id,
        limit=limit,
        user_id=user.id if user is not None else None,
        model=runtime.recommender if user is not None else None,
        routing=FLAG_ROUTING,
    )
    return _read(answer)
