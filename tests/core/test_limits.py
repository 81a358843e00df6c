"""Rate limits and cache, in-process and on Redis (the same behaviour on both)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from orderly.core.limits import Limits
from orderly.errors import Unavailable
from tests.conftest import make_settings


@pytest.fixture(params=["in-process", "redis"])
async def limits(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Limits]:
    overrides = {}
    if request.param == "redis":
        overrides["redis_url"] = request.getfixturevalue("redis_url")
    settings = make_settings("postgresql://unused@localhost/none", tmp_path, **overrides)
    backend = Limits.from_settings(settings)
    assert backend.shared == (request.param == "redis")
    await backend.ping()
    yield backend
    await backend.close()


async def test_hit_counts_and_refuses_over_the_limit(limits: Limits) -> None:
    statuses = [await limits.limiter.hit("3/minute", "orders", "user-1") for _ in range(4)]
    assert [s.allowed for s in statuses] == [True, True, True, False]
    assert [s.remaining for s in statuses] == [2, 1, 0, 0]
    refused = statuses[-1]
    headers = refused.headers()
    assert headers["RateLimit-Limit"] == "3"
    assert headers["RateLimit-Remaining"] == "0"
    assert 0 < int(headers["Retry-After"]) <= 60
    assert int(headers["RateLimit-Reset"]) <= 60
    assert "Retry-After" not in statuses[0].headers()
    # Keys are independent.
    assert (await limits.limiter.hit("3/minute", "orders", "user-2")).allowed


async def test_peek_does_not_count_and_reset_forgets(limits: Limits) -> None:
    for _ in range(2):
        assert (await limits.limiter.peek("2/minute", "k")).allowed
    await limits.limiter.hit("2/minute", "k")
    await limits.limiter.hit("2/minute", "k")
    assert not (await limits.limiter.peek("2/minute", "k")).allowed
    await limits.limiter.reset("2/minute", "k")
    assert (await limits.limiter.peek("2/minute", "k")).allowed


async def test_enforce_raises_a_429_error_with_headers(limits: Limits) -> None:
    from orderly.errors import RateLimited

    await limits.limiter.enforce("1/minute", "x")
    with pytest.raises(RateLimited) as caught:
        await limits.limiter.enforce("1/minute", "x")
    assert caught.value.headers["Retry-After"] == str(caught.value.retry_after)
    assert caught.value.headers["RateLimit-Remaining"] == "0"


async def test_moving_window_frees_capacity_as_time_passes(limits: Limits) -> None:
    await limits.limiter.hit("2/second", "w")
    await limits.limiter.hit("2/second", "w")
    assert not (await limits.limiter.hit("2/second", "w")).allowed
    await asyncio.sleep(1.1)
    assert (await limits.limiter.hit("2/second", "w")).allowed


async def test_cache_get_set_delete_and_expiry(limits: Limits) -> None:
    cache = limits.cache
    assert await cache.get_many(["a", "b"]) == [None, None]
    await cache.set("a", {"role": "staff"}, 60)
    await cache.set("b", [1, 2], 1)
    assert await cache.get_many(["a", "b", "c"]) == [{"role": "staff"}, [1, 2], None]
    await cache.delete("a")
    assert await cache.get_many(["a"]) == [None]
    await asyncio.sleep(1.1)
    assert await cache.get_many(["b"]) == [None]


async def test_redis_down_cache_misses_and_limits_fail_closed(tmp_path: Path) -> None:
    """Nothing listens on port 1: the cache degrades to misses, rate limits answer 503."""
    settings = make_settings(
        "postgresql://unused@localhost/none", tmp_path, redis_url="redis://127.0.0.1:1/0"
    )
    backend = Limits.from_settings(settings)
    try:
        assert await backend.cache.get_many(["a"]) == [None]
        await backend.cache.set("a", 1, 10)  # skipped, no error
        with pytest.raises(Unavailable):
            await backend.limiter.hit("3/minute", "k")
        with pytest.raises(RedisError):  # readiness must report the outage
            await backend.ping()
    finally:
        await backend.close()
