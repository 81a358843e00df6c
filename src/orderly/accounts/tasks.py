"""Accounts jobs: re-encrypt personal data under the newest key after a rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orderly.accounts import service, sessions
from orderly.config import Settings
from orderly.core.crypto import FieldCipher
from orderly.core.jobs import JobContext, Task, enqueue, task
from orderly.core.telemetry import get_logger

log = get_logger(__name__)

REENCRYPT_BATCH = 200

# Job names of the accounts domain.
REENCRYPT_PII = "accounts.reencrypt_pii"
PRUNE_SESSIONS = "accounts.prune_sessions"


@task(REENCRYPT_PII, schedule="17 * * * *", timeout=300)
async def reencrypt_pii(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Re-seal one batch of stale rows, then chain another job while stale rows remain.

    Runs hourly (and on demand): after a new key is put first in
    ORDERLY_ENCRYPTION_KEYS, rows drift to it in short transactions; once none
    is left under the old key, that key can be removed from the list.
    """
    settings = ctx.resource(Settings)
    cipher = FieldCipher(settings.encryption_key_list)
    batch = int(payload.get("batch", REENCRYPT_BATCH))
    changed = await service.reencrypt_pii(ctx.tx, cipher, batch=batch)
    log.info("pii_reencrypted", rows=changed, key_id=cipher.current_key_id)
    if changed == batch:
        await enqueue(ctx.tx, REENCRYPT_PII, {"batch": batch})


@task(PRUNE_SESSIONS, schedule="41 3 * * *", timeout=300)
async def prune_sessions(ctx: JobContext, payload: dict[str, Any]) -> None:
    """Daily: forget expired refresh tokens and long-dead login sessions (tables stay small)."""
    settings = ctx.resource(Settings)
    keep = timedelta(seconds=settings.refresh_token_ttl_seconds)
    tokens, families = await sessions.prune(ctx.tx, older_than=keep)
    log.info("sessions_pruned", refresh_tokens=tokens, sessions=families)


TASKS: list[Task] = [reencrypt_pii, prune_sessions]
