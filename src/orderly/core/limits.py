"""Rate limits and a small cache: on Redis when configured, in-process otherwise.

Rate limits go through the `limits` library, with two strategies:

* ``Limits.limiter`` — a moving window, exact: security counters (login
  failures) where "3 in 2 seconds" must mean exactly that. Few keys, low volume.
* ``Limits.quota`` — a sliding-window counter for per-user request quotas
  (orders): O(1) per check and no burst at a window edge (the previous window's
  count is weighted in), at the price of a small approximation. The moving
  window kept every event and, in memory, expired them through a thread hop
  per key on every sweep — measured at a fifth of the API's CPU under order
  load (benchmarks/README.md).

Several API instances share Redis, so a limit or a cached value holds across
the fleet; the embedded single-process mode keeps both in memory.

Use :class:`Limits` (built once per process by :meth:`Limits.from_settings`):
``await limits.limiter.hit("60/minute", "orders", user_id)`` returns a
:class:`LimitStatus` with the headers a 429 (or any limited response) carries.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.aio.strategies import (
    RateLimiter as Strategy,
)
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.exceptions import RedisError

from orderly.config import Settings
from orderly.core.telemetry import get_logger
from orderly.errors import RateLimited, Unavailable

log = get_logger(__name__)

KEY_PREFIX = "orderly"


@dataclass(frozen=True)
class LimitStatus:
    """The state of one limit after a check: allowed?, how many remain, when it resets."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        """``RateLimit-*`` headers (and ``Retry-After`` when refused) for the response."""
        values = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after),
        }
        if not self.allowed:
            values["Retry-After"] = str(max(1, self.reset_after))
        return values

    def error(self, detail: str | None = None) -> RateLimited:
        """The 429 domain error for this status, carrying every rate-limit header."""
        exc = RateLimited(max(1, self.reset_after), detail)
        exc.headers.update(self.headers())
        return exc


def redis_storage_uri(redis_url: str) -> str:
    """The `limits` storage URI for a redis://, rediss:// or unix:// URL."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    return "async+" + redis_url


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A rate-limit store that is down fails closed, as a 503 (never an unchecked request)."""
    try:
        yield
    except StorageError as exc:
        log.warning("rate_limit_store_unavailable", error=type(exc).__name__)
        raise Unavailable("Rate limiting is temporarily unavailable; retry shortly.") from None


class RateLimiter:
    """Limits keyed by any strings (an account, an IP, a user and a route…)."""

    def __init__(self, storage: Storage, *, exact: bool = True) -> None:
        self.storage = storage
        self._strategy: Strategy = (
            MovingWindowRateLimiter(storage) if exact else SlidingWindowCounterRateLimiter(storage)
        )

    @staticmethod
    def item(rate: str | RateLimitItem) -> RateLimitItem:
        """Parse a rate such as ``10/15minutes`` (already validated by Settings)."""
        return parse(rate) if isinstance(rate, str) else rate

    async def _status(
        self, item: RateLimitItem, allowed: bool, keys: tuple[str, ...]
    ) -> LimitStatus:
        with _storage_errors():
            stats = await self._strategy.get_window_stats(item, KEY_PREFIX, *keys)
        reset_after = max(0, math.ceil(stats.reset_time - time.time()))
        return LimitStatus(allowed, item.amount, max(0, stats.remaining), reset_after)

    async def hit(self, rate: str | RateLimitItem, *keys: str) -> LimitStatus:
        """Count one event; ``allowed`` is False when the limit was already used up."""
        item = self.item(rate)
        with _storage_errors():
            allowed = await self._strategy.hit(item, KEY_PREFIX, *keys)
        return await self._status(item, allowed, keys)

    async def peek(self, rate: str | RateLimitItem, *keys: str) -> LimitStatus:
        """The state without counting; ``allowed`` is False while the limit is used up."""
        item = self.item(rate)
        with _storage_errors():
            allowed = await self._strategy.test(item, KEY_PREFIX, *keys)
        return await self._status(item, allowed, keys)

    async def reset(self, rate: str | RateLimitItem, *keys: str) -> None:
        """Forget the events counted under *keys* (e.g. after a successful login)."""
        with _storage_errors():
            await self._strategy.clear(self.item(rate), KEY_PREFIX, *keys)

    async def enforce(self, rate: str | RateLimitItem, *keys: str) -> LimitStatus:
        """Count one event and raise RateLimited (429 with headers) when over the limit."""
        status = await self.hit(rate, *keys)
        if not status.allowed:
            raise status.error()
        return status


class Cache(Protocol):
    """A small key → JSON value cache with a time to live."""

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """Values for *keys*, None where absent or expired."""
        ...

    async def set(self, key: str, value: Any, ttl_seconds: int) -> None:
        """Store *value* (JSON-serialisable) for *ttl_seconds*."""
        ...

    async def delete(self, *keys: str) -> None:
        """Drop *keys* (invalidation)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """In-process LRU with expiry, for the single-process (embedded) mode."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """Values for *keys*, None where absent or expired."""
        now = time.monotonic()
        values: list[Any | None] = []
        for key in keys:
            entry = self._data.get(key)
            if entry is None or entry[0] < now:
                self._data.pop(key, None)
                values.append(None)
                continue
            self._data.move_to_end(key)
            values.append(orjson.loads(entry[1]))
        return values

    async def set(self, key: str, value: Any, ttl_seconds: int) -> None:
        """Store *value* for *ttl_seconds*, evicting the least recently used entry if full."""
        self._data[key] = (time.monotonic() + ttl_seconds, orjson.dumps(value))
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def delete(self, *keys: str) -> None:
        """Drop *keys*."""
        for key in keys:
            self._data.pop(key, None)

    async def close(self) -> None:
        """Nothing to release."""


class RedisCache:
    """The cache on Redis, shared by every instance."""

    def __init__(self, redis_url: str) -> None:
        import redis.asyncio as aioredis

        self._client: Any = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def _key(self, key: str) -> str:
        return f"{KEY_PREFIX}:cache:{key}"

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """Values for *keys* in one round trip; all misses while Redis is unreachable."""
        try:
            raw = await self._client.mget([self._key(k) for k in keys])
        except (RedisError, OSError) as exc:
            log.warning("cache_unavailable", operation="get", error=type(exc).__name__)
            return [None] * len(keys)
        return [orjson.loads(item) if item is not None else None for item in raw]

    async def set(self, key: str, value: Any, ttl_seconds: int) -> None:
        """Store *value* for *ttl_seconds* (skipped while Redis is unreachable)."""
        try:
            await self._client.set(self._key(key), orjson.dumps(value), ex=ttl_seconds)
        except (RedisError, OSError) as exc:
            log.warning("cache_unavailable", operation="set", error=type(exc).__name__)

    async def delete(self, *keys: str) -> None:
        """Drop *keys* (raises while Redis is down: a lost invalidation must not pass silently)."""
        if keys:
            await self._client.delete(*[self._key(k) for k in keys])

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self._client.ping()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class Limits:
    """The process's rate limiters and cache, on Redis or in memory."""

    def __init__(self, storage: Storage, cache: Cache, *, shared: bool) -> None:
        self.limiter = RateLimiter(storage, exact=True)
        self.quota = RateLimiter(storage, exact=False)
        self.cache = cache
        self.shared = shared

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Redis when ``ORDERLY_REDIS_URL`` is set, else in-process."""
        if settings.redis_url is None:
            return cls(MemoryStorage(), MemoryCache(), shared=False)
        url = settings.redis_url.get_secret_value()
        storage = storage_from_string(
            redis_storage_uri(url),
            implementation="redispy",
            wrap_exceptions=True,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        assert isinstance(storage, Storage)  # the async+ scheme yields an asyncio storage
        return cls(storage, RedisCache(url), shared=True)

    async def ping(self, within_seconds: float = 2.0) -> None:
        """Raise unless the shared backend answers (a readiness check)."""
        if isinstance(self.cache, RedisCache):
            async with asyncio.timeout(within_seconds):
                await self.cache.ping()

    async def close(self) -> None:
        """Release connections."""
        await self.cache.close()
