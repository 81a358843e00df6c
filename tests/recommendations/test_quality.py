"""On a small synthetic shop with planted bundles, co-purchase clearly beats popularity.

The shop and the measurement are benchmarks/rec_quality.py's (the real scoring
SQL and service); this pins the claim of benchmarks/README.md on a small seed.
"""

from __future__ import annotations

import asyncpg
from benchmarks.rec_quality import Synthetic, evaluate

from orderly.core.db import Database
from orderly.recommendations import service

SMALL = Synthetic(seed=7, customers=300, products=150, bundles=15, popular=10)


async def test_co_purchase_clearly_beats_popularity(
    database: Database, raw_db: asyncpg.Connection
) -> None:
    try:
        quality = await evaluate(database, raw_db, SMALL)
    finally:
        service.answer_cache.clear()
    assert quality.customers == 300
    assert quality.co_purchase >= quality.popularity + 0.15, quality
    assert quality.co_purchase >= 1.4 * quality.popularity, quality
