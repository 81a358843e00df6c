"""Typed FastAPI dependencies shared by every endpoint."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import Depends, Query, Request

from orderly import errors
from orderly.config import Settings
from orderly.core.db import Database, Tx
from orderly.core.outbound import Breakers
from orderly.payments.gateway import StripeGateway

# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` in a thread
# pool, which costs a thread hop on every request for what is an attribute read.


async def get_database(request: Request) -> Database:
    """The app's database (the process's connection pool)."""
    database: Database = request.app.state.database
    return database


async def get_settings(request: Request) -> Settings:
    """The app's validated settings."""
    settings: Settings = request.app.state.settings
    return settings


async def _transaction(request: Request) -> AsyncIterator[Tx]:
    """One transaction per request, committed when the endpoint returns.

    ``scope="function"`` (below) runs this teardown right after the endpoint
    returns and *before* the response is sent, so a failed commit becomes an
    error response instead of a success the database never recorded. The
    transaction is lazy: a request that runs no SQL takes no connection.
    """
    database: Database = request.app.state.database
    async with database.transaction() as tx:
        yield tx
        await tx.commit()


Transaction = Annotated[Tx, Depends(_transaction, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]


def breakers_for(request: Request) -> Breakers:
    """The process's circuit-breaker registry, shared by every outbound dependency."""
    state = request.app.state
    if not hasattr(state, "breakers"):
        state.breakers = Breakers()
    breakers: Breakers = state.breakers
    return breakers


async def get_stripe_gateway(request: Request) -> StripeGateway | None:
    """The process's Stripe gateway, built on first use; None when Stripe is not configured."""
    state = request.app.state
    if not hasattr(state, "stripe_gateway"):
        settings: Settings = state.settings
        state.stripe_gateway = (
            StripeGateway.from_settings(settings, breakers_for(request))
            if settings.stripe_api_key is not None
            else None
        )
    gateway: StripeGateway | None = state.stripe_gateway
    return gateway


StripeGatewayDep = Annotated[StripeGateway | None, Depends(get_stripe_gateway)]


@dataclass(frozen=True)
class PageParams:
    """Cursor pagination parameters: ``?limit=`` (1–100) and an opaque ``?cursor=``."""

    limit: int
    cursor: dict[str, str] | None


def encode_cursor(values: dict[str, str]) -> str:
    """An opaque cursor for the next page (base64url JSON of the last row's sort keys)."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


async def _page(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> PageParams:
    if cursor is None:
        return PageParams(limit, None)
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise errors.InvalidInput("malformed cursor", field="cursor") from None
    if not isinstance(decoded, dict) or not all(isinstance(v, str) for v in decoded.values()):
        raise errors.InvalidInput("malformed cursor", field="cursor")
    return PageParams(limit, decoded)


Page = Annotated[PageParams, Depends(_page)]


def keyset_after(cursor: dict[str, str] | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) keyset a ``next_cursor`` from :func:`keyset_cursor` carries."""
    if cursor is None:
        return None
    try:
        return datetime.fromisoformat(cursor["t"]), uuid.UUID(cursor["id"])
    except (KeyError, ValueError):
        raise errors.InvalidInput("malformed cursor", field="cursor") from None


def keyset_cursor(last: tuple[datetime, uuid.UUID] | None) -> str | None:
    """The ``next_cursor`` for a page that ended at *last* (None: no more pages)."""
    return encode_cursor({"t": last[0].isoformat(), "id": str(last[1])}) if last else None
