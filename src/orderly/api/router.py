"""The /v1 router: one include line per domain."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from orderly.accounts.endpoints import router as accounts_router
from orderly.analytics.endpoints import router as analytics_router
from orderly.api.auth import DENY_UNDECLARED
from orderly.audit.endpoints import router as audit_router
from orderly.catalog.endpoints import router as catalog_router
from orderly.flags.endpoints import router as flags_router
from orderly.incidents.endpoints import router as incidents_router
from orderly.jobs.endpoints import router as jobs_router
from orderly.ledger.endpoints import router as ledger_router
from orderly.orders.endpoints import router as orders_router
from orderly.payments.endpoints import router as payments_router
from orderly.recommendations.endpoints import router as recommendations_router

# Deny by default: a route that declares no policy (api/auth.py) refuses every caller.
api_router = APIRouter(prefix="/v1", dependencies=[DENY_UNDECLARED])
api_router.include_router(accounts_router)
api_router.include_router(audit_router)
api_router.include_router(catalog_router)
api_router.include_router(orders_router)
api_router.include_router(jobs_router)
api_router.include_router(ledger_router)
api_router.include_router(payments_router)
api_router.include_router(flags_router)
api_router.include_router(incidents_router)
api_router.include_router(analytics_router)
api_router.include_router(recommendations_router)


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
