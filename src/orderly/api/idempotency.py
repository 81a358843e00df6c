"""``Idempotency-Key`` for mutating POSTs, with Stripe's semantics (PRODUCT.md §4).

Usage in an endpoint (the key is optional; without one the operation just runs)::

    @router.post("/orders", status_code=201, response_model=OrderRead,
                 responses=responses_for(IdempotencyKeyReused, IdempotencyKeyInUse, OutOfStock))
    async def create_order(
        data: OrderCreate, tx: Transaction, user: CurrentUser, idempotency: Idempotency
    ) -> Response:
        return await idempotency.run(
            tx,
            principal=str(user.id),
            operation=lambda: orders_service.place(tx, user, data),
            status_code=201,
        )

* same key + same body within 24 h → the stored status, body and headers, plus
  ``Idempotent-Replayed: true``;
* same key + a different body (or another method/path) → 422 ``idempotency_key_reused``;
* same key while the first request is still running → 409 ``idempotency_key_in_use``;
* the stored response is written in the request's own transaction, so it
  commits or rolls back together with the operation's effects;
* domain errors below 500 (except 429) are stored and replayed too, as Stripe
  does: the operation ran and said no. Server errors are never stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Header, Request
from pydantic import BaseModel
from starlette.responses import Response

from orderly import errors
from orderly.api import problems
from orderly.core import idempotency as store
from orderly.core.db import Tx
from orderly.core.models import MAX_KEY_LENGTH
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers worth replaying; hop-by-hop and per-request ones (X-Request-ID) are not.
KEPT_HEADERS = frozenset({"content-type", "location", "etag", "last-modified"})

Operation = Callable[[], Awaitable[Any]]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """SHA-256 of method, path and the canonical body (JSON re-serialised with sorted keys)."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    digest.update(f"{method.upper()}\n{path}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def _render(result: Any, status_code: int) -> Response:
    """Turn an operation's result into the response that is both sent and stored."""
    if isinstance(result, Response):
        return result
    if isinstance(result, BaseModel):
        body = result.model_dump_json().encode()
    else:
        body = orjson.dumps(result)
    return Response(body, status_code=status_code, media_type="application/json")


def _stored(response: Response) -> store.StoredResponse:
    headers = {k: v for k, v in response.headers.items() if k.lower() in KEPT_HEADERS}
    return store.StoredResponse(
        status=response.status_code, headers=headers, body=bytes(response.body)
    )


def _replay(stored: store.StoredResponse) -> Response:
    headers = {**stored.headers, REPLAYED_HEADER: "true"}
    headers.pop("content-length", None)
    return Response(stored.body, status_code=stored.status, headers=headers)


def _storable(error: errors.OrderlyError) -> bool:
    """Client errors the operation decided are final; 429 and 5xx are worth retrying."""
    return problems.status_for(error) < 500 and not isinstance(error, errors.RateLimited)


@dataclass(frozen=True)
class IdempotentRequest:
    """The request's key (if any) and fingerprint; :meth:`run` executes an operation once."""

    key: str | None
    method: str
    path: str
    fingerprint: str

    async def run(
        self,
        tx: Tx,
        *,
        principal: str,
        operation: Operation,
        status_code: int = 201,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Run *operation* at most once per (principal, key); replay its stored response.

        *operation* returns a pydantic model, a JSON-able value (sent with
        *status_code*) or a ready ``Response``. It must use *tx*, whose
        transaction also stores the response. *headers* (e.g. RateLimit-*) are
        per request: added to every answer, replays included, never stored.
        """
        if self.key is None:
            return self._with_headers(_render(await operation(), status_code), headers)
        claim = await store.claim(
            tx,
            principal=principal,
            key=self.key,
            fingerprint=self.fingerprint,
            method=self.method,
            path=self.path,
        )
        if claim.fingerprint is not None and claim.fingerprint != self.fingerprint:
            raise errors.IdempotencyKeyReused()
        if claim.response is not None:
            log.info("idempotent_replay", status=claim.response.status)
            return self._with_headers(_replay(claim.response), headers)
        if not claim.owned:
            raise errors.IdempotencyKeyInUse()
        try:
            result = await operation()
        except errors.OrderlyError as exc:
            if not _storable(exc):
                raise
            return self._with_headers(await self._store_error(tx, principal, exc), headers)
        response = self._with_headers(_render(result, status_code), headers)
        if response.status_code >= 500:  # never stored: free the key for the client's retry
            await store.release(tx, principal=principal, key=self.key)
        else:
            await store.complete(tx, principal=principal, key=self.key, response=_stored(response))
        return response

    async def _store_error(self, tx: Tx, principal: str, exc: errors.OrderlyError) -> Response:
        # Undo whatever the operation flushed before it failed, then record the
        # answer in a fresh transaction (the request commits it).
        assert self.key is not None
        await tx.rollback()
        response = problems.error_response(exc)
        await store.store(
            tx,
            principal=principal,
            key=self.key,
            fingerprint=self.fingerprint,
            method=self.method,
            path=self.path,
            response=_stored(response),
        )
        return response

    @staticmethod
    def _with_headers(response: Response, headers: Mapping[str, str] | None) -> Response:
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response


async def idempotent_request(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            pattern=r"^[\x20-\x7e]+$",
            description="Makes a retried POST safe: same key and body within 24 h replays.",
        ),
    ] = None,
) -> IdempotentRequest:
    """The request's Idempotency-Key and body fingerprint (FastAPI has already read the body)."""
    body = await request.body() if key is not None else b""
    path = request.url.path
    return IdempotentRequest(
        key=key,
        method=request.method,
        path=path,
        fingerprint=fingerprint(request.method, path, body),
    )


Idempotency = Annotated[IdempotentRequest, Depends(idempotent_request)]
