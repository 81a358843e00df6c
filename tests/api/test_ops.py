"""Operational endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import httpx

from orderly.core import jobs
from orderly.core.db import Database
from orderly.core.maintenance import PRUNE_JOB_LOG


async def test_livez_and_readyz_answer_when_healthy(client: httpx.AsyncClient) -> None:
    assert (await client.get("/livez")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "queue": "ok"}}


async def test_readyz_is_503_while_draining(client: httpx.AsyncClient) -> None:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    lifecycle = transport.app.state.lifecycle  # type: ignore[attr-defined]
    lifecycle.draining = True
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "draining"
    assert response.headers["retry-after"] == "5"


async def test_metrics_expose_request_histogram_and_queue_depth(
    client: httpx.AsyncClient, database: Database
) -> None:
    async with database.transaction() as tx:
        await jobs.enqueue(tx, PRUNE_JOB_LOG, {})
        await tx.commit()
    await client.get("/livez")
    body = (await client.get("/metrics")).text
    assert (
        'orderly_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/livez"}'
        in (body)
    )
    assert 'orderly_http_requests_total{method="GET",route="/livez",status="200"}' in body
    assert 'orderly_queue_depth{status="queued"} 1.0' in body
    assert "orderly_queue_oldest_job_age_seconds" in body
    assert "orderly_db_pool_connections" in body


async def test_metrics_label_v1_routes_by_their_full_template(client: httpx.AsyncClient) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await client.get(f"/v1/products/{missing}")).status_code == 404
    body = (await client.get("/metrics")).text
    assert 'route="/v1/products/{product_id}",status="404"' in body
    assert missing not in body
