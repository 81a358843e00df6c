"""/readyz follows the database down and back up, without restarting orderly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from orderly import migrate
from orderly.core.embedded import EmbeddedPostgres
from orderly.main import create_app
from tests.conftest import make_settings


async def test_readyz_turns_503_when_the_database_stops_and_200_when_it_returns(
    tmp_path: Path,
) -> None:
    server = EmbeddedPostgres(tmp_path / "outage")
    url = server.url
    await asyncio.to_thread(migrate.upgrade, url, "head")
    settings = make_settings(url, tmp_path)
    app = create_app(settings, database_url=url)
    try:
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/readyz")).status_code == 200

                await asyncio.to_thread(server.stop)
                down = await client.get("/readyz")
                assert down.status_code == 503
                assert down.json()["checks"]["database"] == "unavailable"
                assert down.json()["status"] == "degraded"

                server = await asyncio.to_thread(EmbeddedPostgres, tmp_path / "outage")
                assert server.url == url
                assert (await client.get("/readyz")).status_code == 200
    finally:
        server.stop()
