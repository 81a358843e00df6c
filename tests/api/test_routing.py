"""Every /v1 route runs as one unit of work; long-lived objects are built once at start-up."""

from __future__ import annotations

import dataclasses

from fastapi import FastAPI
from fastapi.routing import APIRoute

from orderly.api.deps import Runtime
from orderly.api.routing import OrderlyRoute


def _api_routes(app: FastAPI) -> list[APIRoute]:
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        contexts = list(app.routes)
    else:
        contexts = list(iter_route_contexts(app.routes))
    return [
        getattr(context, "original_route", context)
        for context in contexts
        if str(getattr(context, "path", "")).startswith("/v1/")
        and isinstance(getattr(context, "original_route", context), APIRoute)
    ]


def test_every_v1_route_is_a_unit_of_work(app: FastAPI) -> None:
    routes = _api_routes(app)
    assert routes
    plain = [route.path for route in routes if not isinstance(route, OrderlyRoute)]
    assert plain == []


def test_the_runtime_is_built_once_at_start_up(app: FastAPI) -> None:
    runtime = app.state.runtime
    assert isinstance(runtime, Runtime)
    for field in dataclasses.fields(Runtime):
        value = getattr(runtime, field.name)
        # Optional integrations are None only when they are not configured.
        if field.name == "stripe":
            assert value is None
        elif field.name != "recommender":
            assert value is not None, field.name
    # Nothing is attached lazily beside it.
    assert not hasattr(app.state, "limits")
    assert not hasattr(app.state, "stripe_gateway")
    assert not hasattr(app.state, "security")


async def test_an_orderly_route_without_a_policy_refuses_everyone(app: FastAPI) -> None:
    import httpx

    from orderly.api.routing import domain_router

    router = domain_router(prefix="/forgotten-things")

    @router.get("")
    async def forgotten() -> dict[str, str]:
        return {"secret": "data"}

    route = router.routes[-1]
    assert isinstance(route, OrderlyRoute)
    assert route.policy_declared is False
    app.router.routes.extend(router.routes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        denied = await client.get("/v1/forgotten-things")
    assert denied.status_code == 403
    assert "secret" not in denied.text
