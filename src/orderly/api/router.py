"""The /v1 API: one line per domain router."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from orderly.accounts.endpoints import router as accounts_router
from orderly.analytics.endpoints import router as analytics_router
from orderly.audit.endpoints import router as audit_router
from orderly.catalog.endpoints import router as catalog_router
from orderly.flags.endpoints import router as flags_router
from orderly.incidents.endpoints import router as incidents_router
from orderly.jobs.endpoints import router as jobs_router
from orderly.ledger.endpoints import router as ledger_router
from orderly.orders.endpoints import router as orders_router
from orderly.payments.endpoints import router as payments_router
from orderly.recommendations.endpoints import router as recommendations_router

# Hot routes first: a request is matched against the routes in this order.
DOMAIN_ROUTERS: tuple[APIRouter, ...] = (
    catalog_router,
    orders_router,
    accounts_router,
    ledger_router,
    recommendations_router,
    flags_router,
    payments_router,
    jobs_router,
    audit_router,
    incidents_router,
    analytics_router,
)


def mount_api(app: FastAPI) -> None:
    """Put every domain's routes on the app's own router, flat.

    Each router was built by ``api.routing.domain_router`` with its ``/v1``
    prefix and the deny-by-default guard already bound to its routes, so no
    ``include_router`` (and none of its per-request walk) is needed.
    """
    for router in DOMAIN_ROUTERS:
        app.router.routes.extend(router.routes)


def route_templates(app: FastAPI) -> dict[int, str]:
    """Map each route object to its full path template ("/v1/orders/{order_id}").

    FastAPI includes routers lazily: the route a request matched carries only
    its own path, without the prefixes of the routers that include it. Metrics
    and logs label requests by the full template, looked up here by identity.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat, with full paths
        return {id(route): str(getattr(route, "path", "")) for route in app.routes}
    return {
        id(getattr(context, "original_route", context)): str(getattr(context, "path", ""))
        for context in iter_route_contexts(app.routes)
    }
