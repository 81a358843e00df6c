"""Recommendation use cases: always answer, degrade, never fail.

Order of sources for one request:

1. the external model, when one is configured, the caller is signed in and the
   routing (flag ``recommendations.model``) sends them there. Its ids are
   validated one by one (unknown, inactive, out of stock, the product itself,
   bought in the last 30 days: dropped) and the list is filled up from 2.;
   any failure falls back to 2. within the same request;
2. co-purchase: companions of the product (or of what the user bought in the
   last 30 days), best score first;
3. the 30-day best-sellers, to fill the list up.

``source`` names what answered the first item. Built-in answers are cached in
the process for :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta

from orderly import errors
from orderly.core.db import Database, Tx
from orderly.core.telemetry import get_logger
from orderly.recommendations import repository as repo
from orderly.recommendations.model import ModelClient, ModelRouting, ModelUnavailable
from orderly.recommendations.repository import Candidate

log = get_logger(__name__)

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
CACHE_SECONDS = 2.0
CACHE_ENTRIES = 10_000
# The scores' windows slide with time: even with no order change, they are recomputed this often.
MAX_SCORE_AGE = timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Recommendations:
    """Products to show, and which source answered the first one."""

    items: list[Candidate]
    source: str


class AnswerCache:
    """LRU + TTL map of built-in answers (at most :data:`CACHE_SECONDS` old)."""

    Key = tuple[uuid.UUID | None, uuid.UUID | None, int]

    def __init__(self, ttl: float = CACHE_SECONDS, max_entries: int = CACHE_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[AnswerCache.Key, tuple[float, Recommendations]] = OrderedDict()

    def get(self, key: Key) -> Recommendations | None:
        """The cached answer, or None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: Key, answer: Recommendations) -> None:
        """Remember *answer* for the TTL."""
        self._entries[key] = (time.monotonic() + self.ttl, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (after a refresh in this process)."""
        self._entries.clear()


answer_cache = AnswerCache()


# ---------------------------------------------------------------- refresh


async def recompute(tx: Tx, *, watermark: datetime | None = None) -> None:
    """Recompute co-purchase scores and best-sellers from paid and fulfilled orders.

    *watermark*: every order event stamped before it is visible to this
    transaction (the analytics refresh's horizon). Without one, the next
    :func:`refresh` recomputes again.
    """
    await repo.recompute(tx)
    await repo.mark_computed(tx, watermark)
    tx.after_commit(answer_cache.clear)


async def refresh(tx: Tx, *, watermark: datetime, force: bool = False) -> bool:
    """Bring the scores up to date as of *watermark*; False when skipped as unchanged.

    The scores read only paid and fulfilled orders, so they are recomputed
    when an order event stamped since the last run moved an order into or out
    of those statuses, when the last run is :data:`MAX_SCORE_AGE` old (the 90-
    and 30-day windows slide), or when *force* is set (the nightly rebuild).
    Otherwise a recompute would give the same scores: it is skipped.
    """
    last = await repo.scores_watermark(tx)
    if (
        not force
        and last is not None
        and last > watermark - MAX_SCORE_AGE
        and not await repo.bought_changed_since(tx, last)
    ):
        return False
    await recompute(tx, watermark=watermark)
    return True


# ---------------------------------------------------------------- serve


async def for_product(
    database: Database,
    product_id: uuid.UUID,
    *,
    limit: int = DEFAULT_LIMIT,
    user_id: uuid.UUID | None = None,
    model: ModelClient | None = None,
    routing: ModelRouting | None = None,
) -> Recommendations:
    """Products to show beside *product_id*; NotFound when it is unknown or inactive."""
    return await _recommend(
        database, user_id=user_id, product_id=product_id, limit=limit, model=model, routing=routing
    )


async def for_user(
    database: Database,
    user_id: uuid.UUID,
    *,
    limit: int = DEFAULT_LIMIT,
    model: ModelClient | None = None,
    routing: ModelRouting | None = None,
) -> Recommendations:
    """Products to show a signed-in user."""
    return await _recommend(
        database, user_id=user_id, product_id=None, limit=limit, model=model, routing=routing
    )


async def _recommend(
    database: Database,
    *,
    user_id: uuid.UUID | None,
    product_id: uuid.UUID | None,
    limit: int,
    model: ModelClient | None,
    routing: ModelRouting | None,
) -> Recommendations:
    key = (user_id, product_id, limit)
    if model is None or user_id is None or routing is None or not routing.use_model(user_id):
        cached = answer_cache.get(key)
        if cached is not None:
            if product_id is not None:
                async with database.transaction() as tx:
                    await _check_product(tx, product_id)
            return cached
        answer = await _builtin(database, user_id, product_id, limit)
        answer_cache.put(key, answer)
        return answer
    # The model is asked first; the built-in answer (and the product check) is prepared
    # meanwhile, its connection back in the pool before the wait is over. A model that
    # fails or hangs then costs its timeout from the start of the request, nothing more.
    call = asyncio.create_task(model.recommend(user_id=user_id, product_id=product_id, limit=limit))
    try:
        fallback = await _builtin(database, user_id, product_id, limit)
    except BaseException:
        call.cancel()  # e.g. an unknown product: its 404 does not wait for the model
        raise
    try:
        model_ids = await call
    except ModelUnavailable:
        routing.record_outcome(user_id, ok=False)
        answer_cache.put(key, fallback)
        return fallback
    routing.record_outcome(user_id, ok=True)
    async with database.transaction() as tx:
        return await _assemble(tx, user_id, product_id, limit, model_ids)


async def _check_product(tx: Tx, product_id: uuid.UUID) -> None:
    if not await repo.is_active_product(tx, product_id):
        raise errors.NotFound("no such product")


async def _builtin(
    database: Database, user_id: uuid.UUID | None, product_id: uuid.UUID | None, limit: int
) -> Recommendations:
    async with database.transaction() as tx:
        if product_id is not None:
            await _check_product(tx, product_id)
        return await _assemble(tx, user_id, product_id, limit, [])


async def _assemble(
    tx: Tx,
    user_id: uuid.UUID | None,
    product_id: uuid.UUID | None,
    limit: int,
    model_ids: list[uuid.UUID],
) -> Recommendations:
    bought = await repo.bought_recently(tx, user_id) if user_id is not None else []
    exclude = [*bought, *([product_id] if product_id is not None else [])]
    items: list[Candidate] = []
    if model_ids:
        items = (await repo.recommendable(tx, model_ids, exclude))[:limit]
    if len(items) < limit:
        seeds = [product_id] if product_id is not None else bought
        taken = [*exclude, *(item.id for item in items)]
        items += await repo.candidates(tx, seeds=seeds, exclude=taken, limit=limit - len(items))
    source = items[0].source if items else "popular"
    return Recommendations(items=items, source=source)
