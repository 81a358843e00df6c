"""A small process-local cache of serialized product reads.

``GET /v1/products/{id}`` is the hottest public read; serving it from memory
keeps it within reach of a bare endpoint (PRODUCT.md §9). Entries live a few
seconds and are dropped after a staff change (name, price, active, a stock
adjustment) commits in this process; other API processes see the change within
the TTL. Stock shown in a product read is advisory — reservations are decided
by the database — so orders' reservations and cancellations do not drop entries:
the stock they move shows within the TTL.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

from orderly.core.telemetry import CACHE_EVENTS

TTL_SECONDS = 2.0
MAX_ENTRIES = 10_000


class ProductCache:
    """LRU + TTL map from product id to its JSON bytes."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, bytes]] = OrderedDict()

    def get(self, product_id: uuid.UUID) -> bytes | None:
        """The cached JSON, or None when absent or expired."""
        entry = self._entries.get(product_id)
        if entry is None or entry[0] < time.monotonic():
            CACHE_EVENTS.labels("product", "miss").inc()
            return None
        self._entries.move_to_end(product_id)
        CACHE_EVENTS.labels("product", "hit").inc()
        return entry[1]

    def put(self, product_id: uuid.UUID, body: bytes) -> None:
        """Remember *body* for the TTL, evicting the least recently used entry when full."""
        self._entries[product_id] = (time.monotonic() + self.ttl, body)
        self._entries.move_to_end(product_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, product_id: uuid.UUID) -> None:
        """Forget one product (called after a change commits)."""
        self._entries.pop(product_id, None)


product_cache = ProductCache()
