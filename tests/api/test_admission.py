"""Admission control: bounded requests in flight, bounded waits, 503 overloaded beyond."""

from __future__ import annotations

import asyncio

import httpx
from starlette.types import Receive, Scope, Send

from orderly.api.admission import AdmissionMiddleware


def _slow_app(release: asyncio.Event) -> AdmissionMiddleware:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != "/readyz":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return AdmissionMiddleware(app, max_in_flight=2, max_wait=0.2, max_waiting=1)


async def test_sheds_beyond_capacity_with_503_overloaded_and_retry_after() -> None:
    release = asyncio.Event()
    gate = _slow_app(release)
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = [asyncio.create_task(client.get("/v1/products")) for _ in range(2)]
        await asyncio.sleep(0.05)
        waiting = asyncio.create_task(client.get("/v1/products"))  # queues (max_waiting 1)
        await asyncio.sleep(0.05)
        refused_at_once = await client.get("/v1/products")  # the queue is full: no wait
        # Health checks bypass the gate even while it is full.
        assert (await client.get("/readyz")).status_code == 200
        timed_out = await waiting  # waited max_wait, then shed
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]

    for response in (refused_at_once, timed_out):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "overloaded"
    assert gate.shed == 2


async def test_a_waiting_request_gets_the_next_free_slot() -> None:
    release = asyncio.Event()
    gate = AdmissionMiddleware(_slow_app(release).app, max_in_flight=1, max_wait=5, max_waiting=4)
    transport = httpx.ASGITransport(app=gate)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = asyncio.create_task(client.get("/a"))
        second = asyncio.create_task(client.get("/b"))
        await asyncio.sleep(0.05)
        release.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200
    assert gate.shed == 0
