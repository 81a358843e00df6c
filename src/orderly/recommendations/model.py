"""The external recommendation model: one bounded call, validated, behind a circuit breaker.

Contract (PRODUCT.md §5): ``POST ORDERLY_RECOMMENDER_URL`` with
``{user_id, product_id|null, limit}`` → ``{items: [{product_id, score}]}`` in
rank order. Any failure — transport error, non-2xx, timeout, malformed body,
open circuit — raises :class:`ModelUnavailable`; the caller falls back to the
built-in source within the same request.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Protocol

import httpx
import orjson

from orderly.config import Settings
from orderly.core.outbound import Breakers, Timeouts, http_client
from orderly.core.telemetry import get_logger
from orderly.errors import CircuitOpen

log = get_logger(__name__)

BREAKER = "recommender"
BREAKER_THRESHOLD = 5
BREAKER_OPEN_SECONDS = 30.0
MAX_ITEMS = 100


class ModelUnavailable(Exception):
    """The model gave no usable answer (the reason is the message)."""


class ModelRouting(Protocol):
    """Who is sent to the model, and where each call's outcome is recorded.

    The flag ``recommendations.model`` plugs in here (see ``routing.py``).
    """

    def use_model(self, user_id: uuid.UUID) -> bool:
        """Whether this signed-in user's request asks the model."""
        ...

    def record_outcome(self, user_id: uuid.UUID, ok: bool) -> None:
        """Record one model call's outcome (an open circuit counts as failed)."""
        ...


def _parse(body: bytes) -> list[uuid.UUID]:
    """The ranked product ids of a model answer; ValueError when it is malformed."""
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError("not JSON") from exc
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ValueError("no items list")
    ids: list[uuid.UUID] = []
    for item in items[:MAX_ITEMS]:
        if not isinstance(item, dict) or not isinstance(item.get("product_id"), str):
            raise ValueError("an item without a product_id")
        score = item.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise ValueError("a score that is not a number")
        try:
            ids.append(uuid.UUID(item["product_id"]))
        except ValueError:
            continue  # an id that is not ours is dropped like an unknown product
    return ids


class ModelClient:
    """Calls the model with a hard deadline through the ``recommender`` circuit breaker."""

    def __init__(
        self, url: str, breakers: Breakers, *, timeout_ms: int, client: httpx.AsyncClient
    ) -> None:
        """Use :meth:`from_settings` outside tests."""
        self.url = url
        self.breakers = breakers
        self.timeout = timeout_ms / 1000
        self.client = client
        breakers.configure(BREAKER, threshold=BREAKER_THRESHOLD, ttl=BREAKER_OPEN_SECONDS)

    @classmethod
    def from_settings(cls, settings: Settings, breakers: Breakers) -> ModelClient | None:
        """The client for ``ORDERLY_RECOMMENDER_URL``, or None when it is not configured."""
        if not settings.recommender_url:
            return None
        seconds = settings.recommender_timeout_ms / 1000
        timeouts = Timeouts(connect=seconds, read=seconds, write=seconds, pool=seconds)
        return cls(
            settings.recommender_url,
            breakers,
            timeout_ms=settings.recommender_timeout_ms,
            client=http_client(timeouts=timeouts, max_connections=100),
        )

    async def recommend(
        self, *, user_id: uuid.UUID, product_id: uuid.UUID | None, limit: int
    ) -> list[uuid.UUID]:
        """The model's ranked product ids; raises :class:`ModelUnavailable` on any failure."""
        payload = {
            "user_id": str(user_id),
            "product_id": str(product_id) if product_id is not None else None,
            "limit": limit,
        }
        try:
            async with self.breakers.guard(BREAKER):
                # The deadline covers the whole call (connect, send, wait, read); its
                # TimeoutError leaves the breaker's block, so a hang counts as a failure.
                async with asyncio.timeout(self.timeout):
                    response = await self.client.post(
                        self.url,
                        content=orjson.dumps(payload),
                        headers={"Content-Type": "application/json"},
                    )
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                return _parse(response.content)
        except CircuitOpen as exc:
            raise ModelUnavailable("circuit open") from exc
        except (httpx.HTTPError, TimeoutError, ValueError) as exc:
            log.warning("recommender_failed", error=f"{type(exc).__name__}: {exc}")
            raise ModelUnavailable(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
