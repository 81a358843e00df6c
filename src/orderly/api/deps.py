"""The one module of API dependencies: the process runtime, the request's transaction, paging."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import Depends, Query, Request

from orderly import errors
from orderly.accounts.security import Security
from orderly.config import Settings
from orderly.core.db import Database, Tx
from orderly.core.jobs import QueueDepthMonitor
from orderly.core.limits import Limits
from orderly.core.outbound import Breakers
from orderly.payments.gateway import StripeGateway
from orderly.recommendations.model import ModelClient

# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` in a thread
# pool, which costs a thread hop on every request for what is an attribute read.


@dataclass(frozen=True, slots=True)
class Runtime:
    """Every long-lived object of an API process, built once at start-up (``main.py``).

    Nothing is built lazily on first use: a request never pays for construction,
    and a misconfiguration fails the start, not the first unlucky caller.
    """

    settings: Settings
    database: Database
    limits: Limits
    security: Security
    breakers: Breakers
    stripe: StripeGateway | None
    queue_monitor: QueueDepthMonitor
    recommender: ModelClient | None = None  # ORDERLY_RECOMMENDER_URL's client

    @classmethod
    async def start(cls, settings: Settings, database: Database) -> Runtime:
        """Open the pool and build the process's shared objects."""
        await database.open()
        limits = Limits.from_settings(settings)
        breakers = Breakers()
        return cls(
            settings=settings,
            database=database,
            limits=limits,
            security=Security.from_settings(settings, limits),
            breakers=breakers,
            stripe=(
                StripeGateway.from_settings(settings, breakers)
                if settings.stripe_api_key is not None
                else None
            ),
            queue_monitor=QueueDepthMonitor(),
            recommender=ModelClient.from_settings(settings, breakers),
        )

    async def close(self) -> None:
        """Release what :meth:`start` opened (outbound clients, Redis, the pool)."""
        if self.stripe is not None:
            await self.stripe.aclose()
        if self.recommender is not None:
            await self.recommender.aclose()
        await self.limits.close()
        await self.database.dispose()


async def get_runtime(request: Request) -> Runtime:
    """The process's :class:`Runtime`."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _transaction(request: Request) -> Tx:
    """The request's unit of work, opened and committed by the route (``api/routing.py``)."""
    tx: Tx | None = getattr(request.state, "tx", None)
    if tx is None:
        raise RuntimeError("this route has no unit of work: build its router with domain_router()")
    return tx


async def _settings(request: Request) -> Settings:
    return (await get_runtime(request)).settings


async def _security(request: Request) -> Security:
    return (await get_runtime(request)).security


async def _stripe(request: Request) -> StripeGateway | None:
    return (await get_runtime(request)).stripe


AppRuntime = Annotated[Runtime, Depends(get_runtime)]
Transaction = Annotated[Tx, Depends(_transaction)]
"""The request's transaction: lazy (no connection until the first statement), committed
once by the route before the response is sent, rolled back on any error."""
AppSettings = Annotated[Settings, Depends(_settings)]
SecurityRuntime = Annotated[Security, Depends(_security)]
StripeGatewayDep = Annotated[StripeGateway | None, Depends(_stripe)]


@dataclass(frozen=True)
class PageParams:
    """Cursor pagination parameters: ``?limit=`` (1–100) and an opaque ``?cursor=``."""

    limit: int
    cursor: dict[str, str] | None

    def integer(self, key: str) -> int | None:
        """The cursor's *key* as a BIGINT keyset value (None without a cursor; else 422)."""
        if self.cursor is None:
            return None
        try:
            value = int(self.cursor[key])
        except (KeyError, ValueError):
            raise errors.InvalidInput("malformed cursor", field="cursor") from None
        if not -BIGINT_MAX - 1 <= value <= BIGINT_MAX:
            raise errors.InvalidInput("malformed cursor", field="cursor")
        return value


BIGINT_MAX = 2**63 - 1
"""The largest id PostgreSQL's BIGINT holds: larger ones in paths and cursors are 404/422."""
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,512}$"


def encode_cursor(values: dict[str, str]) -> str:
    """An opaque cursor for the next page (base64url JSON of the last row's sort keys)."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


async def _page(
    limit: Annotated[int, Query(ge=1, le=100, description="Page size")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            max_length=512,
            pattern=CURSOR_PATTERN,
            description="next_cursor of the previous page (opaque, base64url)",
        ),
    ] = None,
) -> PageParams:
    if cursor is None:
        return PageParams(limit, None)
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise errors.InvalidInput("malformed cursor", field="cursor") from None
    if not isinstance(decoded, dict) or not all(
        isinstance(v, str) and "\x00" not in v for v in decoded.values()
    ):
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
