"""Outbound HTTP: explicit timeouts, retries only when safe, circuit breakers in the metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from orderly.core.outbound import (
    Breakers,
    Outbound,
    Timeouts,
    UpstreamError,
    http_client,
    with_retries,
)
from orderly.core.telemetry import REGISTRY
from orderly.errors import CircuitOpen
from tests.support.receivers import HttpReceiver

SHORT = Timeouts(connect=0.5, read=0.3, write=0.5, pool=0.5)


@pytest.fixture
async def server() -> AsyncIterator[HttpReceiver]:
    """A real HTTP server on 127.0.0.1."""
    receiver = HttpReceiver(default=200)
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client from the one factory."""
    async with http_client(timeouts=SHORT) as c:
        yield c


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("orderly_circuit_breaker_open", {"breaker": name})


def test_the_factory_sets_every_timeout_and_follows_no_redirects() -> None:
    client = http_client(timeouts=Timeouts(connect=1, read=2, write=3, pool=4))
    assert client.timeout == httpx.Timeout(connect=1, read=2, write=3, pool=4)
    assert client.follow_redirects is False
    assert client.headers["user-agent"].startswith("orderly/")
    defaults = http_client().timeout
    assert None not in (defaults.connect, defaults.read, defaults.write, defaults.pool)


async def test_safe_calls_are_retried_with_backoff(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    server.script = [503, 502]
    outbound = Outbound("test-get", client, Breakers(), attempts=3, initial_backoff=0.01)
    response = await outbound.request("GET", server.url)
    assert response.status_code == 200
    assert len(server.requests) == 3


async def test_unsafe_calls_are_not_retried_unless_declared_idempotent(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    server.script = [503]
    outbound = Outbound("test-post", client, Breakers(), attempts=3, initial_backoff=0.01)
    with pytest.raises(UpstreamError):
        await outbound.request("POST", server.url, json={"charge": 1})
    assert len(server.requests) == 1

    server.script = [503]
    response = await outbound.request(
        "POST", server.url, json={"charge": 1}, headers={"Idempotency-Key": "k"}, idempotent=True
    )
    assert response.status_code == 200
    assert len(server.requests) == 3


async def test_client_errors_are_returned_not_retried(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    server.default = 404
    breakers = Breakers(threshold=1)
    outbound = Outbound("test-404", client, breakers, attempts=3)
    for _ in range(3):
        assert (await outbound.request("GET", server.url)).status_code == 404
    assert len(server.requests) == 3
    assert await breakers.state("test-404") == "closed"


async def test_breaker_opens_fails_fast_then_recovers(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    server.default = 503
    breakers = Breakers(threshold=3, ttl=0.3)
    outbound = Outbound("test-recovering", client, breakers, attempts=1)
    with capture_logs() as logs:
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await outbound.request("GET", server.url)
        assert await breakers.state("test-recovering") == "opened"
        assert _gauge("test-recovering") == 1.0
        with pytest.raises(CircuitOpen):
            await outbound.request("GET", server.url)
        assert len(server.requests) == 3  # the open circuit spared the dependency

        server.default = 200
        await asyncio.sleep(0.35)
        assert (await outbound.request("GET", server.url)).status_code == 200
    assert await breakers.state("test-recovering") == "closed"
    assert _gauge("test-recovering") == 0.0
    opened = [e for e in logs if e["event"] == "circuit_state_changed"]
    assert opened[0]["state"] == "opened"  # a warning; recovery is logged at info
    assert opened[0]["breaker"] == "test-recovering"


async def test_a_half_open_probe_that_fails_reopens_the_circuit(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    server.default = 500
    breakers = Breakers(threshold=1, ttl=0.2)
    outbound = Outbound("test-reopen", client, breakers, attempts=1)
    with pytest.raises(UpstreamError):
        await outbound.request("GET", server.url)
    await asyncio.sleep(0.25)
    with pytest.raises(UpstreamError):
        await outbound.request("GET", server.url)  # the probe
    with pytest.raises(CircuitOpen):
        await outbound.request("GET", server.url)
    assert len(server.requests) == 2


async def test_a_timeout_is_a_failure_of_the_dependency(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    server.default = "hang"
    breakers = Breakers(threshold=1, ttl=60)
    outbound = Outbound("test-hang", client, breakers, attempts=1)
    with pytest.raises(httpx.ReadTimeout):
        await outbound.request("GET", server.url)
    with pytest.raises(CircuitOpen):
        await outbound.request("GET", server.url)


async def test_breakers_are_independent_per_name(
    server: HttpReceiver, client: httpx.AsyncClient
) -> None:
    breakers = Breakers(threshold=1, ttl=60)
    server.script = [500]
    with pytest.raises(UpstreamError):
        await Outbound("receiver-a", client, breakers, attempts=1).request("GET", server.url)
    response = await Outbound("receiver-b", client, breakers, attempts=1).request("GET", server.url)
    assert response.status_code == 200
    assert await breakers.state("receiver-a") == "opened"
    assert await breakers.state("receiver-b") == "closed"


async def test_configure_overrides_one_breaker() -> None:
    breakers = Breakers(threshold=5, ttl=60)
    breakers.configure("fragile", threshold=1, ttl=60)

    async def boom() -> None:
        async with breakers.guard("fragile"):
            raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await boom()
    assert await breakers.state("fragile") == "opened"


async def test_with_retries_gives_up_after_the_last_attempt() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    with pytest.raises(httpx.ConnectError):
        await with_retries(flaky, attempts=3, initial=0.01, max_wait=0.02)
    assert calls == 3
