"""Traces leave by OTLP/HTTP when ORDERLY_OTLP_ENDPOINT is set (in a child process: the
tracer provider is process-global, and the other tests run without one)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orderly.core.db import Database
from tests.support.receivers import HttpReceiver, eventually

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import asyncio, sys
import httpx
from asgi_lifespan import LifespanManager
from opentelemetry import trace
from orderly.main import create_app
from tests.conftest import make_settings

async def main(url: str, endpoint: str, data_dir: str) -> None:
    settings = make_settings(url, __import__("pathlib").Path(data_dir), otlp_endpoint=endpoint)
    app = create_app(settings, database_url=url)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/v1/products")
            assert response.status_code == 200, response.text
    assert trace.get_tracer_provider().force_flush(10_000)

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.fixture
async def collector() -> AsyncIterator[HttpReceiver]:
    """A stand-in OTLP/HTTP collector that accepts everything."""
    server = HttpReceiver(default=200)
    await server.start()
    yield server
    await server.stop()


async def test_request_and_sql_spans_are_exported_by_otlp(
    database: Database, database_url: str, collector: HttpReceiver, tmp_path: Path
) -> None:
    endpoint = collector.url.removesuffix("/hooks")
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        database_url,
        endpoint,
        str(tmp_path),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == 0, stderr.decode()[-2000:]

    def payload() -> bytes:
        return b"".join(r.body for r in collector.requests)

    async def exported() -> bool:
        # The request span (named by route template) and a SQL span from asyncpg.
        return b"GET /v1/products" in payload() and b"SELECT" in payload()

    await eventually(exported)
    assert {r.headers["Content-Type"] for r in collector.requests} == {"application/x-protobuf"}
