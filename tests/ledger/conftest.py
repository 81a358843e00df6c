"""Ledger test fixtures: users to own wallets (bare rows: the ledger only needs the owner)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from tests.factories import make_user_row

MakeUser = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def make_user(raw_db: asyncpg.Connection) -> MakeUser:
    """Insert a user row and return its id."""

    async def make(role: str = "customer") -> uuid.UUID:
        return await make_user_row(raw_db, role)

    return make
