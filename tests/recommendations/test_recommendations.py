"""Recommendations: co-purchase, best-sellers, filters, and the external model failing every way."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiohttp import web

from orderly.accounts.schemas import Role
from orderly.analytics import service as analytics
from orderly.config import Settings
from orderly.core.db import Database
from orderly.core.outbound import Breakers, Timeouts, http_client
from orderly.orders.schemas import OrderStatus
from orderly.recommendations import service
from orderly.recommendations.model import ModelClient
from orderly.recommendations.routing import AlwaysModel
from tests.analytics.history import move, place
from tests.factories import make_product, make_user_row
from tests.support.accounts import signed_in


class ModelServer:
    """A real HTTP model service on 127.0.0.1 whose answer the test sets."""

    def __init__(self) -> None:
        self.answer: Any = {"items": []}
        self.mode = "answer"  # or "hang", "500", "garbage"
        self.calls = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/recommend"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        await request.read()
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "500":
            return web.Response(status=500)
        if self.mode == "garbage":
            return web.Response(body=b"{not json", content_type="application/json")
        return web.Response(body=orjson.dumps(self.answer), content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/recommend", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    server = ModelServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    service.answer_cache.clear()


async def _shop(database: Database, raw_db: asyncpg.Connection) -> dict[str, Any]:
    """Bundles a+b (bought together 3 times), c+d (twice), a best-seller p, and one buyer."""
    products = {k: await make_product(database, stock=100) for k in "abcdpx"}
    buyer = await make_user_row(raw_db)
    now = datetime.now(UTC)

    async def order(*keys: str, status: OrderStatus = OrderStatus.paid) -> None:
        placed = await place(
            raw_db,
            user_id=buyer,
            currency="EUR",
            lines=[(products[k].id, 1, 100) for k in keys],
            at=now,
        )
        await move(raw_db, placed, OrderStatus.paid, at=now, user_id=buyer)
        if status != OrderStatus.paid:
            await move(raw_db, placed, status, at=now, user_id=buyer)

    for _ in range(3):
        await order("a", "b")
    await order("c", "d")
    await order("c", "d", status=OrderStatus.fulfilled)
    await order("a", "d", status=OrderStatus.refunded)  # refunded: does not count
    for _ in range(6):
        await order("p")
    async with database.transaction() as tx:
        await service.recompute(tx)
        await tx.commit()
    return {"products": products, "buyer": buyer}


def _ids(answer: service.Recommendations) -> list[uuid.UUID]:
    return [item.id for item in answer.items]


async def test_co_purchase_then_best_sellers_with_filters(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    shop = await _shop(database, raw_db)
    p = shop["products"]
    answer = await service.for_product(database, p["a"].id, limit=3)
    assert answer.source == "co_purchase"
    assert _ids(answer)[0] == p["b"].id
    assert p["a"].id not in _ids(answer)
    assert _ids(answer)[1] == p["p"].id  # then the best-seller fills up

    # Out of stock and inactive products are never shown.
    await raw_db.execute("UPDATE product SET stock = 0 WHERE id = $1", p["b"].id)
    service.answer_cache.clear()
    assert p["b"].id not in _ids(await service.for_product(database, p["a"].id))

    # A product nobody bought with anything: best-sellers only.
    lonely = await service.for_product(database, p["x"].id)
    assert lonely.source == "popular"

    await raw_db.execute("UPDATE product SET active = false WHERE id = $1", p["x"].id)
    with pytest.raises(Exception, match="no such product"):
        await service.for_product(database, p["x"].id)

    # The buyer bought a, b, c, d and p in the last 30 days: none of them comes back.
    mine = await service.for_user(database, shop["buyer"])
    assert not set(_ids(mine)) & {p[k].id for k in "abcdp"}


async def _model(url: str, breakers: Breakers, timeout_ms: int = 250) -> ModelClient:
    seconds = timeout_ms / 1000
    return ModelClient(
        url,
        breakers,
        timeout_ms=timeout_ms,
        client=http_client(
            timeouts=Timeouts(connect=seconds, read=seconds, write=seconds, pool=seconds)
        ),
    )


async def test_model_answer_is_validated_and_filled_up(
    database: Database, raw_db: asyncpg.Connection, model_server: ModelServer
) -> None:
    shop = await _shop(database, raw_db)
    p = shop["products"]
    shopper = await make_user_row(raw_db)
    model = await _model(model_server.url, Breakers())
    try:
        model_server.answer = {
            "items": [
                {"product_id": str(uuid.uuid4()), "score": 0.9},  # unknown: dropped
                {"product_id": str(p["c"].id), "score": 0.8},
                {"product_id": "not-a-uuid", "score": 0.7},  # dropped
                {"product_id": str(p["d"].id), "score": 0.6},
            ]
        }
        answer = await service.for_user(
            database, shopper, limit=4, model=model, routing=AlwaysModel()
        )
        assert answer.source == "model"
        assert _ids(answer)[:2] == [p["c"].id, p["d"].id]
        assert len(answer.items) == 4  # filled up from the built-in source
        sent = model_server.calls
        assert sent == 1

        for mode in ("500", "garbage"):
            model_server.mode = mode
            fallback = await service.for_user(
                database, shopper, limit=3, model=model, routing=AlwaysModel()
            )
            assert fallback.source == "popular"
            assert len(fallback.items) == 3
    finally:
        await model.aclose()


async def test_a_hanging_model_costs_the_timeout_then_the_breaker_opens(
    database: Database, raw_db: asyncpg.Connection, model_server: ModelServer
) -> None:
    await _shop(database, raw_db)
    shopper = await make_user_row(raw_db)
    model_server.mode = "hang"
    breakers = Breakers()
    outcomes: list[bool] = []

    class Recording(AlwaysModel):
        def record_outcome(self, user_id: uuid.UUID, ok: bool) -> None:
            outcomes.append(ok)

    model = await _model(model_server.url, breakers, timeout_ms=100)
    try:
        answer = await service.for_user(database, shopper, model=model, routing=Recording())
        assert answer.source == "popular"
        assert answer.items
        for _ in range(4):
            await service.for_user(database, shopper, model=model, routing=Recording())
        assert model_server.calls == 5
        assert await breakers.state("recommender") == "opened"
        # Open circuit: the model is not called; the call still counts as failed.
        await service.for_user(database, shopper, model=model, routing=Recording())
        assert model_server.calls == 5
        assert outcomes == [False] * 6
    finally:
        await model.aclose()


async def test_recommendation_routes(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    raw_db: asyncpg.Connection,
) -> None:
    shop = await _shop(database, raw_db)
    p = shop["products"]
    public = await client.get(f"/v1/products/{p['a'].id}/recommendations?limit=2")
    assert public.status_code == 200, public.text
    body = public.json()
    assert body["source"] == "co_purchase"
    assert [item["id"] for item in body["items"]] == [str(p["b"].id), str(p["p"].id)]
    assert set(body["items"][0]) >= {"id", "sku", "name", "price_cents", "currency", "stock"}
    assert (await client.get(f"/v1/products/{uuid.uuid4()}/recommendations")).status_code == 404
    assert (
        await client.get(f"/v1/products/{p['a'].id}/recommendations?limit=0")
    ).status_code == 422

    assert (await client.get("/v1/users/me/recommendations")).status_code == 401
    customer = await signed_in(client, database, settings, Role.customer)
    mine = await client.get("/v1/users/me/recommendations", headers=customer.headers)
    assert mine.status_code == 200
    assert mine.json()["source"] == "popular"
    assert mine.json()["items"][0]["id"] == str(p["p"].id)


async def test_product_route_takes_an_optional_bearer_token(
    client: httpx.AsyncClient,
    database: Database,
    settings: Settings,
    raw_db: asyncpg.Connection,
) -> None:
    shop = await _shop(database, raw_db)
    p = shop["products"]
    url = f"/v1/products/{p['a'].id}/recommendations?limit=2"
    anonymous = await client.get(url)
    assert [item["id"] for item in anonymous.json()["items"]] == [str(p["b"].id), str(p["p"].id)]

    # Signed in: what the caller bought in the last 30 days is left out.
    customer = await signed_in(client, database, settings, Role.customer)
    placed = await place(
        raw_db,
        user_id=customer.id,
        currency="EUR",
        lines=[(p["b"].id, 1, 100)],
        at=datetime.now(UTC),
    )
    await move(raw_db, placed, OrderStatus.paid, at=datetime.now(UTC), user_id=customer.id)
    mine = await client.get(url, headers=customer.headers)
    assert mine.status_code == 200, mine.text
    assert str(p["b"].id) not in [item["id"] for item in mine.json()["items"]]
    assert mine.json()["items"][0]["id"] == str(p["p"].id)

    # A token that does not verify is refused, not ignored.
    bad = await client.get(url, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith("Bearer")


async def test_scores_are_recomputed_only_when_bought_orders_changed(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    """A refresh skips the recompute when no order entered or left paid/fulfilled since the last."""
    a, b, c = [await make_product(database, stock=100) for _ in range(3)]
    buyer = await make_user_row(raw_db)
    t0 = datetime.now(UTC) - timedelta(minutes=30)

    async def order(*products: Any, at: datetime, pay: bool = True) -> None:
        placed = await place(
            raw_db,
            user_id=buyer,
            currency="EUR",
            lines=[(product.id, 1, 100) for product in products],
            at=at,
        )
        target = OrderStatus.paid if pay else OrderStatus.cancelled
        await move(raw_db, placed, target, at=at, user_id=buyer)

    async def refresh(minutes: float, force: bool = False) -> bool:
        async with database.transaction() as tx:
            done = await service.refresh(tx, watermark=t0 + timedelta(minutes=minutes), force=force)
            await tx.commit()
        return done

    for _ in range(2):
        await order(a, b, at=t0)
    assert await refresh(1)  # never computed
    assert not await refresh(2)  # nothing since
    await order(a, c, at=t0 + timedelta(minutes=3), pay=False)  # placed and cancelled unpaid
    assert not await refresh(4)
    assert (await service.for_product(database, c.id)).source == "popular"  # no pair with c yet

    for _ in range(2):
        await order(a, c, at=t0 + timedelta(minutes=5))
    assert await refresh(6)
    service.answer_cache.clear()
    assert (await service.for_product(database, c.id)).source == "co_purchase"

    # Unchanged, but the windows slide: recomputed once the scores are old enough.
    assert not await refresh(7)
    assert await refresh(6 + service.MAX_SCORE_AGE.total_seconds() / 60 + 1)
    assert await refresh(8, force=True)
    # The nightly rebuild always recomputes.
    async with database.transaction() as tx:
        assert (await analytics.refresh_all(tx, full=True)).recommendations
        await tx.commit()
