"""Idempotency keys: the table, its repository and the periodic cleanup job.

The HTTP side lives in ``orderly.api.idempotency``; this module holds what the
worker also needs (the cleanup task) and therefore must not import FastAPI.

How concurrent duplicates are resolved by the database, not by Python:
a request *claims* its key with one statement that takes a transaction-scoped
advisory lock on (principal, key) — without waiting — and inserts the key row
in the request's own transaction. The row is uncommitted until the operation's
effects commit with it, so a crash or a rollback frees the key together with
the effects. A concurrent duplicate either sees the committed row (replay, or
422 when the body differs) or fails to take the lock (409 in use). The primary
key on (principal, key) is the last line of defence.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import orjson

from orderly.core.db import Tx
from orderly.core.jobs import JobContext, RetryPolicy, enqueue, task
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

KEY_TTL = timedelta(hours=24)
PRUNE_BATCH = 20_000


@dataclasses.dataclass(frozen=True)
class StoredResponse:
    """A response kept for replay."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: ours to run, a finished earlier request, or busy."""

    owned: bool
    in_use: bool
    fingerprint: str | None = None
    response: StoredResponse | None = None


# One statement, one round trip. ``prior`` reads the committed, unexpired row (the
# statement's snapshot). Only without one do we try the advisory lock — so replays
# never contend — and insert our row, taking over an expired one in place.
_CLAIM_SQL = """
WITH prior AS (
    SELECT fingerprint, response_status, response_headers::text AS response_headers,
           response_body
      FROM idempotency_key
     WHERE principal = $1 AND key = $2 AND created_at >= now() - $6::interval
), lk AS (
    SELECT pg_try_advisory_xact_lock(hashtextextended('idempotency:' || $1 || ':' || $2, 0))
           AS got
     WHERE NOT EXISTS (SELECT 1 FROM prior)
), claimed AS (
    INSERT INTO idempotency_key AS k (principal, key, fingerprint, method, path)
    SELECT $1, $2, $3, $4, $5 FROM lk WHERE lk.got
    ON CONFLICT (principal, key) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, method = EXCLUDED.method, path = EXCLUDED.path,
           created_at = now(), completed_at = NULL, response_status = NULL,
           response_headers = NULL, response_body = NULL
     WHERE k.created_at < now() - $6::interval
    RETURNING 1
)
SELECT (SELECT got FROM lk) AS locked,
       EXISTS (SELECT 1 FROM claimed) AS owned,
       p.fingerprint, p.response_status, p.response_headers, p.response_body
  FROM (SELECT 1) AS one LEFT JOIN prior AS p ON true
"""

_COMPLETE_SQL = """
UPDATE idempotency_key
   SET response_status = $3, response_headers = $4::text::jsonb, response_body = $5,
       completed_at = now()
 WHERE principal = $1 AND key = $2
"""

_STORE_SQL = """
INSERT INTO idempotency_key
       (principal, key, fingerprint, method, path,
        response_status, response_headers, response_body, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, now())
ON CONFLICT (principal, key) DO NOTHING
"""


async def claim(
    tx: Tx,
    *,
    principal: str,
    key: str,
    fingerprint: str,
    method: str,
    path: str,
    ttl: timedelta = KEY_TTL,
) -> Claim:
    """Claim *key* for this transaction, or report the earlier request that holds it."""
    for _ in range(3):
        row = await tx.fetchrow(_CLAIM_SQL, principal, key, fingerprint, method, path, ttl)
        assert row is not None
        if row["fingerprint"] is not None and not row["owned"]:
            response = None
            if row["response_status"] is not None:
                response = StoredResponse(
                    status=row["response_status"],
                    headers=orjson.loads(row["response_headers"] or "{}"),
                    body=bytes(row["response_body"] or b""),
                )
            return Claim(
                owned=False,
                in_use=response is None,
                fingerprint=row["fingerprint"],
                response=response,
            )
        if row["owned"]:
            return Claim(owned=True, in_use=False)
        if not row["locked"]:
            return Claim(owned=False, in_use=True)
        # Locked but neither inserted nor visible: the holder committed between our
        # snapshot and our lock. A new statement sees its row.
    return Claim(owned=False, in_use=True)


async def complete(tx: Tx, *, principal: str, key: str, response: StoredResponse) -> None:
    """Store the response on our claimed row, in the transaction that holds the effects."""
    await tx.execute(
        _COMPLETE_SQL,
        principal,
        key,
        response.status,
        orjson.dumps(response.headers).decode(),
        response.body,
    )


async def release(tx: Tx, *, principal: str, key: str) -> None:
    """Drop our claim without a stored response (the answer was a server error)."""
    await tx.execute(
        "DELETE FROM idempotency_key WHERE principal = $1 AND key = $2", principal, key
    )


async def store(
    tx: Tx,
    *,
    principal: str,
    key: str,
    fingerprint: str,
    method: str,
    path: str,
    response: StoredResponse,
) -> None:
    """Insert a finished response (after a rolled-back attempt); a newer claim wins."""
    await tx.execute(
        _STORE_SQL,
        principal,
        key,
        fingerprint,
        method,
        path,
        response.status,
        orjson.dumps(response.headers).decode(),
        response.body,
    )


async def prune(tx: Tx, *, older_than: timedelta = KEY_TTL, batch: int = PRUNE_BATCH) -> int:
    """Delete up to *batch* keys older than *older_than*; return how many went."""
    deleted = await tx.fetchval(
        """WITH doomed AS (
               SELECT principal, key FROM idempotency_key
                WHERE created_at < now() - $1::interval LIMIT $2
                  FOR UPDATE SKIP LOCKED)
           , gone AS (DELETE FROM idempotency_key k USING doomed d
                       WHERE k.principal = d.principal AND k.key = d.key RETURNING 1)
           SELECT count(*) FROM gone""",
        older_than,
        batch,
    )
    return int(deleted or 0)


PRUNE_KEYS = "idempotency.prune"
"""Job name: forget idempotency keys past their 24 h."""


@task(PRUNE_KEYS, schedule="*/10 * * * *", retry=RetryPolicy(max_attempts=3))
async def prune_keys(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Forget idempotency keys older than 24 h, in bounded batches (short locks)."""
    hours = float(payload.get("older_than_hours", KEY_TTL.total_seconds() / 3600))
    batch = int(payload.get("batch", PRUNE_BATCH))
    deleted = await prune(ctx.tx, older_than=timedelta(hours=hours), batch=batch)
    log.info("idempotency_keys_pruned", deleted=deleted)
    if deleted >= batch:
        # More to go: continue in a follow-up job so every transaction stays short.
        await enqueue(ctx.tx, PRUNE_KEYS, payload)


TASKS = [prune_keys]
