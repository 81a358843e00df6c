"""``Idempotency-Key`` for mutating POSTs, with Stripe's semantics (PRODUCT.md §4).

A route declares it; the handler knows nothing about keys::

    @router.post("/orders", status_code=201, dependencies=[IDEMPOTENT, ...])
    async def place_order(data: OrderCreate, tx: Transaction, user: CustomerUser) -> OrderRead:
        return await orders_service.place(tx, user.id, data)

* same key + same body within 24 h → the stored status, body and headers, plus
  ``Idempotent-Replayed: true`` (the handler does not run; rate quota is not spent,
  since :data:`IDEMPOTENT` is declared before any rate limit);
* same key + a different body (or another method/path) → 422 ``idempotency_key_reused``;
* same key while the first request is still running → 409 ``idempotency_key_in_use``;
* the stored response is written in the request's own transaction, so it
  commits or rolls back together with the operation's effects (``api/routing.py``
  finishes the claim after the handler returned);
* domain errors below 500 (except 401, 403 and 429) are stored and replayed too,
  as Stripe does: the operation ran and said no. Server errors are never stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import Depends, Header, Request
from starlette.responses import Response

from orderly import errors
from orderly.accounts.schemas import Principal
from orderly.api.auth import authenticated
from orderly.api.deps import Transaction
from orderly.api.problems import status_for
from orderly.core import idempotency as store
from orderly.core.db import Tx
from orderly.core.models import MAX_KEY_LENGTH
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Response headers worth replaying; hop-by-hop and per-request ones (X-Request-ID) are not.
KEPT_HEADERS = frozenset({"content-type", "location", "etag", "last-modified"})


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


class Replay(Exception):
    """Raised by :data:`IDEMPOTENT` to answer with a stored response instead of running."""

    def __init__(self, response: Response) -> None:
        super().__init__("idempotent replay")
        self.response = response


@dataclass(frozen=True, slots=True)
class Claim:
    """A key this request owns: the route stores the answer under it before committing."""

    principal: str
    key: str
    method: str
    path: str
    fingerprint: str

    async def finish(self, tx: Tx, response: Response) -> None:
        """Store *response* for replay, or free the key when it is a server error."""
        if response.status_code >= 500:
            await store.release(tx, principal=self.principal, key=self.key)
        else:
            await store.complete(
                tx, principal=self.principal, key=self.key, response=_stored(response)
            )

    async def record_refusal(self, tx: Tx, response: Response) -> None:
        """Store a refusal in a fresh transaction (the attempt's effects were rolled back)."""
        await store.store(
            tx,
            principal=self.principal,
            key=self.key,
            fingerprint=self.fingerprint,
            method=self.method,
            path=self.path,
            response=_stored(response),
        )


def storable(error: errors.OrderlyError) -> bool:
    """Refusals the operation itself decided are final; auth, 429 and 5xx are worth retrying."""
    if isinstance(error, errors.Unauthorized | errors.Forbidden | errors.RateLimited):
        return False
    return status_for(error) < 500


def _stored(response: Response) -> store.StoredResponse:
    headers = {k: v for k, v in response.headers.items() if k.lower() in KEPT_HEADERS}
    return store.StoredResponse(
        status=response.status_code, headers=headers, body=bytes(response.body)
    )


def _replay(stored: store.StoredResponse) -> Response:
    headers = {**stored.headers, REPLAYED_HEADER: "true"}
    headers.pop("content-length", None)
    return Response(stored.body, status_code=stored.status, headers=headers)


KEY_PATTERN = re.compile(rf"^[\x20-\x7e]{{1,{MAX_KEY_LENGTH}}}$")
"""1–255 printable ASCII characters; anything else is a malformed request (400)."""
KeyHeader = Annotated[
    str | None,
    Header(
        alias=KEY_HEADER,
        description="Makes a retried POST safe: same key and body within 24 h replays. "
        "1–255 printable ASCII characters; a malformed key is 400 `bad_request`.",
        # Documented here, enforced in _claim_key: a bad header is a 400, not a body's 422.
        json_schema_extra={
            "minLength": 1,
            "maxLength": MAX_KEY_LENGTH,
            "pattern": KEY_PATTERN.pattern,
        },
    ),
]


async def _claim_key(
    request: Request,
    tx: Transaction,
    principal: Annotated[Principal, Depends(authenticated)],
    key: KeyHeader = None,
) -> str | None:
    """Claim the request's key for this transaction, or answer from the earlier request."""
    if key is None:
        return None
    if not KEY_PATTERN.match(key):
        raise errors.BadRequest(
            f"{KEY_HEADER} must be 1–{MAX_KEY_LENGTH} printable ASCII characters."
        )
    method, path = request.method, request.url.path
    digest = fingerprint(method, path, await request.body())
    owner = str(principal.id)
    claim = await store.claim(
        tx, principal=owner, key=key, fingerprint=digest, method=method, path=path
    )
    if claim.fingerprint is not None and claim.fingerprint != digest:
        raise errors.IdempotencyKeyReused()
    if claim.response is not None:
        log.info("idempotent_replay", status=claim.response.status)
        raise Replay(_replay(claim.response))
    if not claim.owned:
        raise errors.IdempotencyKeyInUse()
    request.state.idempotency = Claim(owner, key, method, path, digest)
    return key


IDEMPOTENT = Depends(_claim_key)
"""Route dependency: the route accepts ``Idempotency-Key`` (declare it before rate limits)."""
IdempotencyKey = Annotated[str | None, Depends(_claim_key)]
"""The request's Idempotency-Key, for a handler that passes it on (e.g. to Stripe)."""
