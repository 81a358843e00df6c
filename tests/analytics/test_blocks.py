"""Any range of days is a few aligned blocks that tile it exactly (the top products' roll-up)."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from orderly.analytics import repository as repo
from orderly.analytics.service import MAX_DAYS


@given(
    first=st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 1, 1)),
    length=st.integers(1, MAX_DAYS),
)
def test_blocks_tile_the_range_with_at_most_two_per_level(first: date, length: int) -> None:
    last = first + timedelta(days=length - 1)
    blocks = repo.decompose(first, last)
    day = first
    for level, start in blocks:
        assert start == day
        assert repo.block_start(start, level) == start  # aligned
        day += timedelta(days=1 << level)
    assert day == last + timedelta(days=1)
    assert max(Counter(level for level, _ in blocks).values()) <= 2
    assert all(0 <= level <= repo.SPAN_LEVELS for level, _ in blocks)
